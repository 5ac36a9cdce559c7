//! `POST /api/v2/share-image`: watermark, render the share images, store them, answer links.

use axum::{
    Json,
    extract::{Multipart, State, multipart::MultipartRejection},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use shared::{
    api::{ErrorBody, ShareManifest, ShareResponse, keys, share_response},
    ids::is_valid_id,
    intake,
    publish::{self, ShareFields, ShareObjects, share_fields, share_id},
    render::{CardSubjects, render_share_with},
    token,
};
use utoipa::ToSchema;

use super::{process::storage_unavailable, read_form};
use crate::server::{
    error::{AppError, AppResult, RETRY_AFTER_SECS},
    state::{AppState, unix_now},
};

/// The multipart form of `POST /api/v2/share-image`: an `image`, or a `result_id` with its token.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ShareForm {
    /// The picture to share (JPEG, PNG or WebP); or give `result_id` and `token` instead.
    #[schema(value_type = Option<String>, format = Binary)]
    image: Option<Vec<u8>>,
    /// facebook, twitter, x, pinterest, whatsapp, linkedin, email or copy.
    #[schema(example = "facebook")]
    platform: String,
    /// Caption for the share page and the post text (at most 140 characters).
    title: Option<String>,
    /// A result of `remove-background`, shared without uploading it again.
    result_id: Option<String>,
    /// The result's `share_token`.
    token: Option<String>,
}

/// Share an image: renders 1200×630, 1000×1500 and 1080×1080 JPEGs and a watermarked PNG,
/// stores them, and answers the share page URL and intent links for every platform.
#[utoipa::path(
    post,
    path = "/api/v2/share-image",
    tag = "sharing",
    request_body(content = ShareForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The share's URLs and intent links", body = ShareResponse,
            headers(("x-card-subjects" = String, description = "On a new share: `used` when its cards were made from the result's share-ready subjects, `none` when from the picture"))),
        (status = 400, description = "Missing or unknown platform, bad title, malformed form", body = ErrorBody),
        (status = 403, description = "Invalid or expired share token", body = ErrorBody),
        (status = 404, description = "The result to share no longer exists", body = ErrorBody),
        (status = 413, description = "File or image too large", body = ErrorBody),
        (status = 415, description = "Not a JPEG, PNG or WebP", body = ErrorBody),
        (status = 422, description = "The image cannot be decoded", body = ErrorBody),
        (status = 503, description = "Busy or storage unavailable; nothing was half-written", body = ErrorBody),
    )
)]
pub async fn share_image(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> AppResult<Response> {
    let form = read_form(multipart, state.limits.max_bytes).await?;
    let ShareFields { platform, title } = share_fields(form.text("platform"), form.text("title"))?;

    // The picture, and the stored result's id when it is one.
    let (source, stored): (Bytes, Option<&str>) = match (&form.image, form.text("result_id")) {
        (Some(image), _) => (image.clone(), None),
        (None, Some(result_id)) => {
            if !is_valid_id(result_id) {
                return Err(AppError::not_found(
                    "result_not_found",
                    "no result with this id",
                ));
            }
            let tok = form.text("token").ok_or_else(|| {
                AppError::bad("missing_token", "sharing a result_id needs its `token`")
            })?;
            token::verify_for(&state.secret, tok, result_id, unix_now())?;
            let result = state
                .cache
                .get(&keys::result(result_id))
                .await
                .map_err(storage_unavailable)?
                .ok_or_else(|| {
                    AppError::not_found(
                        "result_not_found",
                        "this result is no longer stored; please upload the photo again",
                    )
                })?;
            (result, Some(result_id))
        }
        (None, None) => {
            return Err(AppError::bad(
                "missing_image",
                "the form needs an `image` file or a `result_id` with its `token`",
            ));
        }
    };
    intake::inspect(&source, &state.limits)?;

    let id = share_id(&source, &title, &state.render_fingerprint);
    let base = state.base_url(&headers);
    let manifest_key = keys::manifest(&id);

    // Content-addressed: the same picture and title were shared before, reuse that share.
    let existing = state
        .customer
        .get(&manifest_key)
        .await
        .map_err(storage_unavailable)?;
    if let Some(existing) = existing
        && let Ok(manifest) = serde_json::from_slice::<ShareManifest>(&existing)
    {
        state.metrics.share_outcome("existing");
        return Ok(Json(share_response(&base, &manifest, platform)).into_response());
    }

    let Ok(permit) = state.render_slots.clone().try_acquire_owned() else {
        return Err(AppError::busy());
    };
    // A stored result comes with its share-ready card subjects (when it has them); optional:
    // without them the cards are made from the result itself.
    let cards = match stored {
        Some(result_id) => state
            .cache
            .get(&keys::card_subjects(result_id))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the card subjects");
                None
            }),
        None => None,
    };
    let limits = state.limits;
    let render = state.render.clone();
    let (rendered, used_subjects) = tokio::time::timeout(
        state.request_timeout,
        tokio::task::spawn_blocking(move || {
            let decoded = intake::decode(&source, &limits)?;
            let subjects = CardSubjects::usable(cards.as_deref(), &source, &render);
            render_share_with(&decoded.image, subjects.as_ref(), &render)
                .map(|r| (r, subjects.is_some()))
                .map_err(AppError::Internal)
        }),
    )
    .await
    .map_err(|_| {
        AppError::unavailable(
            "timeout",
            "rendering took too long; please retry",
            RETRY_AFTER_SECS,
        )
    })?
    .map_err(|e| AppError::Internal(format!("render task: {e}")))??;
    drop(permit);

    // Images first, the manifest last: a share page exists only once all its images do.
    let manifest = publish::manifest(&id, &title, &state.site_name, &rendered, unix_now());
    let ShareObjects {
        images,
        manifest: meta,
    } = publish::objects(rendered, &manifest);
    let store = &state.customer;
    futures::future::try_join_all(
        images
            .into_iter()
            .map(|o| async move { store.put(&o.key, o.bytes).await }),
    )
    .await
    .map_err(storage_unavailable)?;
    store
        .put(&meta.key, meta.bytes)
        .await
        .map_err(storage_unavailable)?;
    state.metrics.share_outcome("rendered");
    let used = if used_subjects { "used" } else { "none" };
    Ok((
        [("x-card-subjects", used)],
        Json(share_response(&base, &manifest, platform)),
    )
        .into_response())
}
