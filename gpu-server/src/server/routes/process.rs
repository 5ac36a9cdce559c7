//! `POST /api/v2/remove-background` and `GET /api/v2/results/{id}`.

use std::{io::Cursor, time::Instant};

use axum::{
    Json,
    extract::{Multipart, Path, State, multipart::MultipartRejection},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use image::DynamicImage;
use shared::{
    api::{ErrorBody, RemoveResponse, keys},
    compose::{MaskOptions, OutputType},
    cutout::{self, CutoutOptions, Mask, MaskError},
    encode::OutputFormat,
    ids::{content_id, is_valid_id},
    intake::{self, ImageFormat},
    refine::Refine,
    render::CardSubjects,
    token,
};
use utoipa::ToSchema;

use super::{Form, immutable, read_form, wants_json};
use crate::{
    model::ModelKind,
    server::{
        error::{AppError, AppResult, RETRY_AFTER_SECS, storage_unavailable},
        state::{AppState, unix_now},
    },
};

/// The multipart form of `POST /api/v2/remove-background`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RemoveForm {
    /// The photo: JPEG, PNG or WebP (sniffed by its bytes), at most 25 MB and 50 MP by default.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// `rgba` (default), `mask`, `trimap`, `white`, `green`, `color:R,G,B` or `blur`.
    #[schema(example = "rgba")]
    r#type: Option<String>,
    /// `off`, `foreground` or `matting`: alpha matting at full resolution where the mask is
    /// unsure, and the subject's own colour under soft edges. Default `matting` (`off` for
    /// `type=mask`).
    #[schema(example = "matting")]
    refine: Option<String>,
    /// A mask to use instead of the model's: an 8-bit greyscale PNG of any size (stretched to
    /// the photo), under the same limits as the photo.
    #[schema(value_type = Option<String>, format = Binary)]
    mask: Option<Vec<u8>>,
    /// Hard mask threshold in 0..1 (default: soft edges).
    threshold: Option<f32>,
    /// Keep the background, remove the subject.
    reverse: Option<bool>,
    /// `png` (default), `webp` or `jpeg`.
    format: Option<String>,
    /// `u2netp`.
    model: Option<String>,
}

/// Processing options, validated: the cut-out's and the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub cutout: CutoutOptions,
    pub model: ModelKind,
    /// The caller sent a mask: the model does not run.
    pub supplied_mask: bool,
}

fn bool_field(name: &str, v: &str) -> AppResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(AppError::bad(
            "invalid_option",
            format!("`{name}` must be true or false, got {v:?}"),
        )),
    }
}

impl Options {
    pub fn from_form(form: &Form, served: ModelKind) -> AppResult<Options> {
        let output = match form.text("type") {
            Some(t) => t
                .parse::<OutputType>()
                .map_err(|e| AppError::bad("invalid_option", e))?,
            None => OutputType::Rgba,
        };
        let threshold = match form.text("threshold") {
            Some(t) => {
                let v: f32 = t.parse().map_err(|_| {
                    AppError::bad(
                        "invalid_option",
                        format!("`threshold` must be a number, got {t:?}"),
                    )
                })?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(AppError::bad(
                        "invalid_option",
                        format!("`threshold` must be between 0 and 1, got {v}"),
                    ));
                }
                Some(v)
            }
            None => None,
        };
        let reverse = form
            .text("reverse")
            .map(|v| bool_field("reverse", v))
            .transpose()?
            .unwrap_or(false);
        let format = match form.text("format") {
            Some(f) => f
                .parse::<OutputFormat>()
                .map_err(|e| AppError::bad("invalid_option", e))?,
            None => OutputFormat::Png,
        };
        let refine = match form.text("refine") {
            Some(r) => r
                .parse::<Refine>()
                .map_err(|e| AppError::bad("invalid_option", e))?,
            None => CutoutOptions::default_refine(output),
        };
        let model = match form.text("model") {
            Some(m) if m.eq_ignore_ascii_case(served.name()) => served,
            Some(m) => {
                return Err(AppError::bad(
                    "unknown_model",
                    format!("this service runs {served}; model {m:?} is not available"),
                ));
            }
            None => served,
        };
        Ok(Options {
            cutout: CutoutOptions {
                output,
                mask: MaskOptions { threshold, reverse },
                format,
                refine,
            },
            model,
            supplied_mask: form.mask.is_some(),
        })
    }

    /// Every part of the options that changes the output bytes, for the cache key, with the
    /// engine's `variant` (resize and precision when not the model's defaults).
    ///
    /// Written field by field with each type's `Display` (never `Debug`); the threshold is
    /// spelled `None` / `Some(0.5)` as result ids have always hashed it (pinned by a test). A
    /// refinement other than `off` is appended, so results made before refinement existed (all
    /// `off`) keep their ids; a supplied mask stands where the model's name was (its bytes are
    /// hashed beside the photo's).
    fn key(&self, variant: &str) -> String {
        let c = &self.cutout;
        let threshold = c
            .mask
            .threshold
            .map_or_else(|| "None".to_owned(), |t| format!("Some({t:?})"));
        let source = if self.supplied_mask {
            "mask".to_owned()
        } else {
            format!("{}{variant}", self.model)
        };
        let mut key = format!(
            "v1|{source}|{}|{threshold}|{}|{}",
            c.output, c.mask.reverse, c.format
        );
        if c.refine != Refine::Off {
            key.push('|');
            key.push_str(c.refine.name());
        }
        key
    }
}

/// The finished result of one request.
struct Output {
    bytes: Bytes,
    content_type: &'static str,
    width: u32,
    height: u32,
    /// The picture the file decodes to, for its share-ready card subjects (lossless formats
    /// only; made and stored after the answer, see [`store_card_subjects`]).
    picture: Option<DynamicImage>,
}

fn sniffed_type(bytes: &[u8]) -> &'static str {
    intake::sniff(bytes).map_or("application/octet-stream", ImageFormat::mime)
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .unwrap_or((0, 0))
}

/// Remove the background of a photo.
///
/// Answers the image (PNG by default) with `x-result-id`, `x-processing-time-ms`, `x-cache`
/// (HIT or MISS) and `x-share-token`; with `Accept: application/json`, JSON with URLs instead.
#[utoipa::path(
    post,
    path = "/api/v2/remove-background",
    tag = "processing",
    request_body(content = RemoveForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The processed image (or JSON with `Accept: application/json`)", content_type = "image/png", body = RemoveResponse),
        (status = 400, description = "Bad option or malformed form", body = ErrorBody),
        (status = 413, description = "File or image too large", body = ErrorBody),
        (status = 415, description = "Not a JPEG, PNG or WebP", body = ErrorBody),
        (status = 422, description = "The image cannot be decoded", body = ErrorBody),
        (status = 503, description = "Queue full, model unavailable or timeout; see Retry-After", body = ErrorBody),
    )
)]
pub async fn remove_background(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> AppResult<Response> {
    let t0 = Instant::now();
    let form = read_form(multipart, state.limits.max_bytes).await?;
    let options = Options::from_form(&form, state.engine.kind())?;
    let bytes = form
        .image
        .ok_or_else(|| AppError::bad("missing_image", "the form has no `image` file field"))?;
    // Cheap checks first: magic bytes, size, header dimensions.
    intake::inspect(&bytes, &state.limits)?;
    if let Some(mask) = &form.mask {
        intake::inspect(mask, &state.limits)
            .map_err(|e| AppError::Refused(MaskError::Intake(e).into()))?;
    }
    let key_string = options.key(state.engine.variant());
    let id = match &form.mask {
        None => content_id(&[&bytes, key_string.as_bytes()]),
        Some(mask) => content_id(&[&bytes, key_string.as_bytes(), mask]),
    };
    let json = wants_json(&headers);
    let key = keys::result(&id);

    let cached = match state.cache.get(&key).await {
        Ok(Some(b)) => {
            state.metrics.cache_outcome("hit");
            Some(b)
        }
        Ok(None) => {
            state.metrics.cache_outcome("miss");
            None
        }
        Err(e) => {
            state.metrics.cache_outcome("error");
            tracing::warn!(error = %e, "result cache unreachable; processing without it");
            None
        }
    };
    let (output, hit) = match cached {
        Some(b) => {
            let (width, height) = dimensions(&b);
            (
                Output {
                    content_type: sniffed_type(&b),
                    bytes: b,
                    width,
                    height,
                    picture: None,
                },
                true,
            )
        }
        None => {
            let mut output = process(&state, bytes, form.mask.clone(), options).await?;
            match state.cache.put(&key, output.bytes.clone()).await {
                Ok(()) => {
                    if let Some(picture) = output.picture.take() {
                        store_card_subjects(&state, &id, picture, output.bytes.clone());
                    }
                }
                Err(e) if json => {
                    tracing::warn!(error = %e, "cannot store the result");
                    return Err(AppError::unavailable(
                        "storage_unavailable",
                        "the result could not be stored; ask for the image itself (without Accept: application/json) or try again",
                        RETRY_AFTER_SECS,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot store the result; answering it anyway")
                }
            }
            (output, false)
        }
    };

    let expires = unix_now() + state.token_ttl.as_secs();
    let share_token = token::sign(&state.secret, &id, expires);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if json {
        let base = state.base_url(&headers);
        return Ok(Json(RemoveResponse {
            image_url: format!("{base}/api/v2/results/{id}"),
            result_id: id,
            share_token,
            share_token_expires_at: expires,
            content_type: output.content_type.to_owned(),
            width: output.width,
            height: output.height,
            cache: if hit { "hit" } else { "miss" }.into(),
            model: options.model.to_string(),
            processing_ms: (ms * 10.0).round() / 10.0,
        })
        .into_response());
    }
    let mut res = output.bytes.into_response();
    let h = res.headers_mut();
    let ext = match output.content_type {
        "image/webp" => "webp",
        "image/jpeg" => "jpg",
        _ => "png",
    };
    let pairs = [
        (
            header::CONTENT_TYPE.as_str(),
            output.content_type.to_owned(),
        ),
        (
            header::CONTENT_DISPOSITION.as_str(),
            format!("inline; filename=\"pet-{}.{ext}\"", &id[..12]),
        ),
        (
            header::CACHE_CONTROL.as_str(),
            "private, max-age=3600".into(),
        ),
        ("x-result-id", id),
        ("x-processing-time-ms", format!("{ms:.1}")),
        ("x-cache", if hit { "HIT" } else { "MISS" }.into()),
        ("x-share-token", share_token),
        ("x-share-token-expires", expires.to_string()),
    ];
    for (name, value) in pairs {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    Ok(res)
}

/// Decode → infer → compose → encode, admitted by a permit and bounded by the request timeout.
///
/// The work runs as a task of its own that holds the permit: a request that times out answers
/// at once, but its slot stays taken until the work (and its decoded image) is really gone, so
/// memory stays bounded by `QUEUE_SIZE` images even under timeouts.
async fn process(
    state: &AppState,
    bytes: Bytes,
    mask: Option<Bytes>,
    options: Options,
) -> AppResult<Output> {
    let Ok(permit) = state.process_slots.clone().try_acquire_owned() else {
        return Err(AppError::busy());
    };
    let work = tokio::spawn(pipeline(state.clone(), bytes, mask, options, permit));
    match tokio::time::timeout(state.request_timeout, work).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => Err(AppError::Internal(format!("processing task: {e}"))),
        Err(_) => Err(AppError::unavailable(
            "timeout",
            format!(
                "processing took longer than {} s; please retry",
                state.request_timeout.as_secs()
            ),
            RETRY_AFTER_SECS,
        )),
    }
}

async fn pipeline(
    state: AppState,
    bytes: Bytes,
    supplied: Option<Bytes>,
    options: Options,
    _permit: tokio::sync::OwnedSemaphorePermit,
) -> AppResult<Output> {
    let limits = state.limits;
    let decoded = tokio::task::spawn_blocking(move || intake::decode(&bytes, &limits))
        .await
        .map_err(|e| AppError::Internal(format!("decode task: {e}")))??;
    let (image, mask) = match supplied {
        // The caller's mask: the model does not run.
        Some(png) => {
            let (w, h) = (decoded.image.width(), decoded.image.height());
            let mask = tokio::task::spawn_blocking(move || Mask::decode(&png, &limits, w, h))
                .await
                .map_err(|e| AppError::Internal(format!("mask task: {e}")))?
                .map_err(|e| AppError::Refused(e.into()))?;
            (decoded.image, mask)
        }
        None => {
            // Hand the model RGB; keep the original (alpha, 16-bit) only when it differs.
            let (rgb, original) = match decoded.image {
                DynamicImage::ImageRgb8(rgb) => (rgb, None),
                other => (other.to_rgb8(), Some(other)),
            };
            let inferred = state.engine.infer(rgb).await?;
            tracing::debug!(
                infer_ms = inferred.infer_ms,
                queued_ms = inferred.queued_ms,
                batch = inferred.batch,
                "inferred"
            );
            (
                original.unwrap_or(DynamicImage::ImageRgb8(inferred.rgb)),
                inferred.mask,
            )
        }
    };
    tokio::task::spawn_blocking(move || {
        let done = cutout::finish(&image, mask, &options.cutout).map_err(AppError::Internal)?;
        let (width, height) = (done.width(), done.height());
        // The pixels the stored file decodes to: lossless formats only.
        let picture = done.is_lossless().then_some(done.picture);
        Ok::<_, AppError>(Output {
            bytes: Bytes::from(done.bytes),
            content_type: done.content_type,
            width,
            height,
            picture,
        })
    })
    .await
    .map_err(|e| AppError::Internal(format!("encode task: {e}")))?
}

/// A processed result, by id (content-addressed, immutable).
#[utoipa::path(
    get,
    path = "/api/v2/results/{id}",
    tag = "processing",
    params(("id" = String, Path, description = "Result id (32 hex digits)")),
    responses(
        (status = 200, description = "The processed image", content_type = "image/png"),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such result", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    )
)]
pub async fn get_result(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let not_found = || AppError::not_found("result_not_found", "no result with this id");
    if !is_valid_id(&id) {
        return Err(not_found());
    }
    let bytes = state
        .cache
        .get(&keys::result(&id))
        .await
        .map_err(storage_unavailable)?
        .ok_or_else(not_found)?;
    Ok(immutable(&headers, &id, sniffed_type(&bytes), bytes))
}

/// Makes a result's share-ready card subjects and stores them beside it, after the answer (about
/// 15 ms of CPU for a 1024² cut-out, kept off the request). Best effort: a share of a result
/// without them makes its cards from the result, with the same bytes, and the subjects carry
/// the result's digest, so none can stand in for another picture.
fn store_card_subjects(state: &AppState, id: &str, picture: DynamicImage, encoded: Bytes) {
    let (cache, key) = (state.cache.clone(), keys::card_subjects(id));
    tokio::spawn(async move {
        let packed = tokio::task::spawn_blocking(move || {
            CardSubjects::new(&picture, &encoded)?
                .map(|c| c.to_bytes())
                .transpose()
        })
        .await;
        let result = match packed {
            Ok(Ok(Some(bytes))) => cache
                .put(&key, Bytes::from(bytes))
                .await
                .map_err(|e| e.to_string()),
            Ok(Ok(None)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("card subjects task: {e}")),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot store the share-ready card subjects");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Result ids are cache keys of stored results: a change here orphans every cached result.
    /// `refine=off` keeps the keys results had before refinement existed.
    #[test]
    fn result_keys_are_unchanged() {
        let options = |output, threshold, reverse, format| Options {
            cutout: CutoutOptions {
                output,
                mask: MaskOptions { threshold, reverse },
                format,
                refine: Refine::Off,
            },
            model: ModelKind::U2netp,
            supplied_mask: false,
        };
        let default = options(OutputType::Rgba, None, false, OutputFormat::Png);
        assert_eq!(default.key(""), "v1|u2netp|rgba|None|false|png");
        assert_eq!(
            content_id(&[b"photo", default.key("").as_bytes()]),
            content_id(&[b"photo", b"v1|u2netp|rgba|None|false|png"])
        );
        let custom = options(
            OutputType::Color([1, 2, 3]),
            Some(0.5),
            true,
            OutputFormat::Webp,
        );
        assert_eq!(
            custom.key("@640"),
            "v1|u2netp@640|color:1,2,3|Some(0.5)|true|webp"
        );
        let mut matted = default;
        matted.cutout.refine = Refine::Matting;
        assert_eq!(matted.key(""), "v1|u2netp|rgba|None|false|png|matting");
        matted.supplied_mask = true;
        assert_eq!(matted.key("@640"), "v1|mask|rgba|None|false|png|matting");
    }
}
