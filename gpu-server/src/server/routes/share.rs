//! `POST /api/v2/share-image`: an adapter of `shared::publish::share` (the form from multipart,
//! storage through `object_store`, the render on a blocking thread under a render permit).

use axum::{
    Json,
    extract::{Multipart, State, multipart::MultipartRejection},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use shared::{
    api::{ErrorBody, ShareResponse},
    publish::{self, Failure, RenderJob, ShareContext},
    refusal::{RETRY_AFTER_SECS, Refusal},
    render::Rendered,
};
use utoipa::ToSchema;

use super::{Form, read_form};
use crate::server::{
    error::AppResult,
    state::{AppState, unix_now},
};

/// The multipart form of `POST /api/v2/share-image`: an `image`, or a `result_id`, with a token.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ShareForm {
    /// The picture to share (JPEG, PNG or WebP); or give `result_id` instead.
    #[schema(value_type = Option<String>, format = Binary)]
    image: Option<Vec<u8>>,
    /// facebook, twitter, x, pinterest, whatsapp, linkedin, email or copy.
    #[schema(
        example = "facebook",
        pattern = "^(facebook|twitter|x|pinterest|whatsapp|linkedin|email|copy)$"
    )]
    platform: String,
    /// Caption for the share page and the post text (at most 140 characters).
    #[schema(max_length = 140)]
    title: Option<String>,
    /// A result of `remove-background`, shared without uploading it again.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    result_id: Option<String>,
    /// The `share_token` that `remove-background` answered: for a `result_id`, that result's
    /// own; for an uploaded `image`, any valid one.
    token: String,
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
        (status = 400, description = "Missing or unknown platform, bad title, no image, no token, malformed form", body = ErrorBody),
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
    let base = state.base_url(&headers);
    let ctx = ShareContext {
        secret: &state.secret,
        limits: state.limits,
        render_fingerprint: &state.render_fingerprint,
        site_name: &state.site_name,
        base_url: &base,
        now: unix_now(),
    };
    let done = publish::share(
        share_form(form),
        &ctx,
        &state.cache,
        &state.customer,
        |job| render(&state, job),
    )
    .await?;
    for warning in &done.warnings {
        tracing::warn!("{warning}");
    }
    if done.existing {
        state.metrics.share_outcome("existing");
        return Ok(Json(done.response).into_response());
    }
    state.metrics.share_outcome("rendered");
    let used = if done.used_card_subjects {
        "used"
    } else {
        "none"
    };
    Ok(([("x-card-subjects", used)], Json(done.response)).into_response())
}

fn share_form(form: Form) -> publish::ShareForm {
    let text = |name: &str| form.text(name).map(str::to_owned);
    publish::ShareForm {
        platform: text("platform"),
        title: text("title"),
        token: text("token"),
        result_id: text("result_id"),
        image: form.image.map(Vec::from),
    }
}

/// The render step on a blocking thread. The permit moves into the blocking work, so a request
/// that times out keeps its slot until the render really ends (memory stays bounded by
/// `RENDER_CONCURRENCY` renders).
async fn render(state: &AppState, job: RenderJob) -> Result<(Rendered, bool), Failure> {
    let Ok(permit) = state.render_slots.clone().try_acquire_owned() else {
        return Err(Refusal::busy().into());
    };
    let opts = state.render.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job.run(&opts)
    });
    match tokio::time::timeout(state.request_timeout, task).await {
        Ok(Ok(rendered)) => rendered,
        Ok(Err(e)) => Err(Failure::Internal(format!("render task: {e}"))),
        Err(_) => Err(Refusal::unavailable(
            "timeout",
            "rendering took too long; please retry",
            RETRY_AFTER_SECS,
        )
        .into()),
    }
}
