//! `POST /api/v2/remove-background` and `GET /api/v2/results/{id}`.

use std::{io::Cursor, sync::Arc, time::Instant};

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
    cutout::{self, CutoutError, CutoutOptions, Mask, MaskError},
    effects::{Effects, Rect},
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
    #[schema(
        example = "rgba",
        pattern = "^(rgba|transparent|mask|map|trimap|white|green|blur|color:[0-9]{1,3},[0-9]{1,3},[0-9]{1,3})$"
    )]
    r#type: Option<String>,
    /// `off`, `foreground` or `matting`: alpha matting at full resolution where the mask is
    /// unsure, and the subject's own colour under soft edges. Default `matting` (`off` for
    /// `type=mask`).
    #[schema(example = "matting", pattern = "^(off|foreground|matting)$")]
    refine: Option<String>,
    /// A mask to use instead of the model's: an 8-bit greyscale PNG of any size (stretched to
    /// the photo), under the same limits as the photo.
    #[schema(value_type = Option<String>, format = Binary)]
    mask: Option<Vec<u8>>,
    /// Hard mask threshold in 0..1 (default: soft edges).
    #[schema(minimum = 0.0, maximum = 1.0)]
    threshold: Option<f32>,
    /// Keep the background, remove the subject.
    reverse: Option<bool>,
    /// `png` (default), `webp`, `jpeg`, or `auto` (PNG when anything is transparent, else JPEG).
    #[schema(pattern = "^(png|webp|jpeg|jpg|auto)$")]
    format: Option<String>,
    /// The model this service runs (`/version`), e.g. `u2netp`.
    #[schema(pattern = "^(u2netp|inspyrenet-base|inspyrenet-fast)$")]
    model: Option<String>,
    /// Crop to the subject (specks ignored).
    crop: Option<bool>,
    /// Margin around the cropped subject: 1, 2 or 4 lengths as CSS (`20px`, `5%` of the subject).
    #[schema(example = "5%")]
    crop_margin: Option<String>,
    /// The canvas: `WxH` pixels, a print size in `in`, `cm` or `mm` (`4x6in`), or a preset
    /// (`4x6in`, `5x7in`, `8x10in`, `11x14in`, `a5`, `a4`, `a3`, `letter`).
    #[schema(example = "4x6in")]
    size: Option<String>,
    /// Resolution written into the file, 72 to 1200 (300 with a print size).
    #[schema(minimum = 72, maximum = 1200)]
    dpi: Option<u16>,
    /// The subject's share of the canvas, `10%` to `100%` (or `original`).
    #[schema(example = "80%")]
    scale: Option<String>,
    /// `original`, `center`, or `x% y%`.
    #[schema(example = "center")]
    position: Option<String>,
    /// A drop shadow under the subject.
    shadow: Option<bool>,
    /// 0 to 100 (default 50).
    #[schema(minimum = 0.0, maximum = 100.0)]
    shadow_opacity: Option<f32>,
    /// The shadow's softness, % of the subject's long side (default 2).
    shadow_blur: Option<String>,
    /// `x% y%` of the subject's long side (default `1% 2%`).
    shadow_offset: Option<String>,
    /// A sticker border around the subject (one closed contour).
    outline: Option<bool>,
    /// `#rrggbb`, `#rrggbbaa` or a colour name (default white).
    outline_color: Option<String>,
    /// % of the subject's long side (default 3).
    outline_width: Option<String>,
    /// A background colour, `#rrggbb` or `#rrggbbaa`, or a colour name.
    #[schema(example = "#ffffff")]
    bg_color: Option<String>,
    /// A background photo (JPEG, PNG or WebP, same limits as `image`), fitted by cover.
    #[schema(value_type = Option<String>, format = Binary)]
    bg_image: Option<Vec<u8>>,
    /// `rgba` (default) or `alpha` (the final alpha alone, grey).
    #[schema(pattern = "^(rgba|alpha)$")]
    channels: Option<String>,
    /// Instead of `image`: a stored result to lay out again with these options (no model
    /// runs); needs the result's `token`.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    result_id: Option<String>,
    /// The share token that came with `result_id`.
    token: Option<String>,
    /// `webp`: answer a preview for showing instead of the file: the result scaled to at most
    /// 2048 px a side as lossy WebP (its alpha exact), several times smaller. The stored result,
    /// `GET /api/v2/results/{id}` and the result id are as without it; `x-result-type` names
    /// the stored file's type. Not with `Accept: application/json`.
    #[schema(pattern = "^webp$")]
    preview: Option<String>,
}

/// This product's options that remove.bg does not have, also taken by `POST /v1.0/removebg`
/// (its `size` and `type` mean remove.bg's there).
pub const OWN_FIELDS: [&str; 10] = [
    "refine",
    "outline",
    "outline_color",
    "outline_width",
    "shadow",
    "shadow_blur",
    "shadow_offset",
    "dpi",
    "threshold",
    "reverse",
];

/// Processing options, validated: the cut-out's and the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub cutout: CutoutOptions,
    pub model: ModelKind,
    /// The caller sent a mask: the model does not run.
    pub supplied_mask: bool,
    /// The caller sent a background photo.
    pub bg_image: bool,
    /// Photos larger than this many pixels are scaled down first (remove.bg's `size`).
    pub max_pixels: Option<u64>,
    /// A stored result laid out again (its cut-out is the subject; no model runs): the page's
    /// live preview of the print options.
    pub from_result: Option<String>,
}

pub fn bool_field(name: &str, v: &str) -> AppResult<bool> {
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
        let effects = Effects::from_fields(|name| form.text(name)).map_err(AppError::Refused)?;
        let from_result = form.text("result_id").map(str::to_owned);
        if let Some(id) = &from_result {
            if !is_valid_id(id) {
                return Err(AppError::bad(
                    "invalid_option",
                    "`result_id` must be a result's id (32 hex digits)",
                ));
            }
            if form.image.is_some() || form.mask.is_some() {
                return Err(AppError::bad(
                    "invalid_option",
                    "send either `image` or `result_id`, not both (and no `mask` with a result)",
                ));
            }
            if form.text("token").is_none() {
                return Err(AppError::bad(
                    "missing_token",
                    "a `result_id` needs its share `token`",
                ));
            }
        }
        // A stored result is already refined: it is laid out as it is.
        let refine = if from_result.is_some() {
            Refine::Off
        } else {
            refine
        };
        let cutout = CutoutOptions {
            output,
            mask: MaskOptions { threshold, reverse },
            format,
            refine,
            effects,
        };
        cutout
            .check(form.bg_image.is_some())
            .map_err(AppError::Refused)?;
        Ok(Options {
            cutout,
            model,
            supplied_mask: form.mask.is_some(),
            bg_image: form.bg_image.is_some(),
            max_pixels: None,
            from_result,
        })
    }

    /// Every part of the options that changes the output bytes, for the cache key, with the
    /// engine's `variant` (resize and precision when not the model's defaults).
    ///
    /// Written field by field with each type's `Display` (never `Debug`); the threshold is
    /// spelled `None` / `Some(0.5)` as result ids have always hashed it (pinned by a test). A
    /// refinement other than `off` is appended with its edition (`refine::EDITION`), so
    /// results made before refinement existed (all `off`) keep their ids, and so are the
    /// effects when any is asked; a supplied mask stands where the model's name was; a
    /// supplied mask's and background's bytes are hashed beside the photo's.
    fn key(&self, variant: &str) -> String {
        let c = &self.cutout;
        let threshold = c
            .mask
            .threshold
            .map_or_else(|| "None".to_owned(), |t| format!("Some({t:?})"));
        let source = if let Some(id) = &self.from_result {
            format!("result:{id}")
        } else if self.supplied_mask {
            "mask".to_owned()
        } else {
            format!("{}{variant}", self.model)
        };
        let mut key = format!(
            "v1|{source}|{}|{threshold}|{}|{}",
            c.output, c.mask.reverse, c.format
        );
        if let Some(refine) = c.refine.key() {
            key.push('|');
            key.push_str(&refine);
        }
        let fx = c.effects.key();
        if !fx.is_empty() {
            key.push('|');
            key.push_str(&fx);
        }
        if self.bg_image {
            key.push_str("|bg_image");
        }
        if let Some(n) = self.max_pixels {
            key.push_str(&format!("|max {n}"));
        }
        key
    }
}

/// The finished result of one request.
pub struct Output {
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
    /// The subject's box in the picture.
    pub subject: Rect,
    /// The picture the file decodes to, for its share-ready card subjects (made and stored
    /// after the answer, see [`store_card_subjects`]) and the page's preview, so neither decodes
    /// the file just encoded (lossless formats only; none on a cache hit).
    picture: Option<Arc<DynamicImage>>,
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
    let json = wants_json(&headers);
    let preview = match form.text("preview") {
        None => false,
        Some(p) if p.trim().eq_ignore_ascii_case("webp") && !json => true,
        Some(p) if p.trim().eq_ignore_ascii_case("webp") => {
            return Err(AppError::bad(
                "invalid_option",
                "`preview` answers an image; JSON answers carry the result's URL instead",
            ));
        }
        Some(p) => {
            return Err(AppError::bad(
                "invalid_option",
                format!("unknown preview {p:?}: expected webp"),
            ));
        }
    };
    let model = options.model;
    let Done { output, id, hit } = cut_out(&state, form, options, json).await?;
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
            foreground_top: output.subject.top,
            foreground_left: output.subject.left,
            foreground_width: output.subject.width,
            foreground_height: output.subject.height,
            cache: if hit { "hit" } else { "miss" }.into(),
            model: model.to_string(),
            processing_ms: (ms * 10.0).round() / 10.0,
        })
        .into_response());
    }
    let result_type = output.content_type;
    let (body, content_type, name) = match preview {
        true => match preview_of(output.bytes.clone(), output.picture.clone()).await {
            Ok(webp) => (
                webp,
                "image/webp",
                format!("pet-{}-preview.webp", &id[..12]),
            ),
            Err(e) => {
                // The file itself still answers: a preview is an optimisation.
                tracing::warn!(error = %e, "cannot make the preview; answering the result");
                (output.bytes, result_type, file_name(&id, result_type))
            }
        },
        false => (output.bytes, result_type, file_name(&id, result_type)),
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    let pairs = [
        (header::CONTENT_TYPE.as_str(), content_type.to_owned()),
        (
            header::CONTENT_DISPOSITION.as_str(),
            format!("inline; filename=\"{name}\""),
        ),
        ("x-result-type", result_type.to_owned()),
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
    let boxed = box_headers(output.width, output.height, output.subject);
    let pairs = pairs.into_iter().chain(boxed);
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

/// The name a result's file is offered under.
fn file_name(id: &str, content_type: &str) -> String {
    let ext = match content_type {
        "image/webp" => "webp",
        "image/jpeg" => "jpg",
        _ => "png",
    };
    format!("pet-{}.{ext}", &id[..12])
}

/// The page's preview of a result file (`crate::preview`), made off the async threads from the
/// pixels it was encoded from when this request made it (decoding the 12 MP cut-out's PNG again
/// took 56 ms, AMD EPYC), else from the file.
async fn preview_of(file: Bytes, picture: Option<Arc<DynamicImage>>) -> Result<Bytes, String> {
    tokio::task::spawn_blocking(move || {
        let decoded;
        let picture = match &picture {
            Some(p) => p.as_ref(),
            None => {
                decoded = image::load_from_memory(&file).map_err(|e| e.to_string())?;
                &decoded
            }
        };
        match picture {
            DynamicImage::ImageRgba8(rgba) => crate::preview::preview(rgba),
            other => crate::preview::preview(&other.to_rgba8()),
        }
        .map(Bytes::from)
    })
    .await
    .map_err(|e| format!("preview task: {e}"))?
}

/// A stored result, for laying it out again, with the share token made for it.
async fn stored_result(state: &AppState, id: &str, token: &str) -> AppResult<Bytes> {
    token::verify_for(&state.secret, token, id, unix_now())
        .map_err(|e| AppError::Refused(e.into()))?;
    state
        .cache
        .get(&keys::result(id))
        .await
        .map_err(storage_unavailable)?
        .ok_or_else(|| AppError::not_found("result_not_found", "no result with this id"))
}

/// `image` scaled down (Lanczos3, aspect kept) to at most `max` pixels.
fn shrink(image: DynamicImage, max: u64) -> DynamicImage {
    let (w, h) = (u64::from(image.width()), u64::from(image.height()));
    if w * h <= max {
        return image;
    }
    let s = (max as f64 / (w * h) as f64).sqrt();
    let (nw, nh) = (
        ((w as f64 * s).floor() as u32).max(1),
        ((h as f64 * s).floor() as u32).max(1),
    );
    image.resize_exact(nw, nh, image::imageops::FilterType::Lanczos3)
}

/// A finished removal: the result, its id, and whether it came from the cache.
pub struct Done {
    pub output: Output,
    pub id: String,
    pub hit: bool,
}

/// The removal every route runs: the uploads checked, the result from the cache or made and
/// stored (with its box, and its card subjects after). `must_store`: the answer points at the
/// stored result, so a result that cannot be stored is refused (503) rather than answered.
pub async fn cut_out(
    state: &AppState,
    form: Form,
    options: Options,
    must_store: bool,
) -> AppResult<Done> {
    let bytes = match &options.from_result {
        Some(id) => stored_result(state, id, form.text("token").unwrap_or("")).await?,
        None => form
            .image
            .clone()
            .ok_or_else(|| AppError::bad("missing_image", "the form has no `image` file field"))?,
    };
    // Cheap checks first: magic bytes, size, header dimensions.
    intake::inspect(&bytes, &state.limits)?;
    if let Some(mask) = &form.mask {
        intake::inspect(mask, &state.limits)
            .map_err(|e| AppError::Refused(MaskError::Intake(e).into()))?;
    }
    if let Some(bg) = &form.bg_image {
        intake::inspect(bg, &state.limits).map_err(bg_refusal)?;
    }
    let key_string = options.key(state.engine.variant());
    let mut parts: Vec<&[u8]> = vec![&bytes, key_string.as_bytes()];
    parts.extend(form.mask.as_deref());
    parts.extend(form.bg_image.as_deref());
    let id = content_id(&parts);
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
            let subject = stored_box(state, &id, &b).await;
            (
                Output {
                    content_type: sniffed_type(&b),
                    bytes: b,
                    width,
                    height,
                    subject,
                    picture: None,
                },
                true,
            )
        }
        None => {
            let output = process(
                state,
                bytes,
                form.mask.clone(),
                form.bg_image.clone(),
                options,
            )
            .await?;
            let boxed = serde_json::to_vec(&output.subject).expect("a box serialises");
            let stored = match state
                .cache
                .put(&keys::result_box(&id), Bytes::from(boxed))
                .await
            {
                Ok(()) => state.cache.put(&key, output.bytes.clone()).await,
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => {
                    if let Some(picture) = output.picture.clone() {
                        store_card_subjects(state, &id, picture, output.bytes.clone());
                    }
                }
                Err(e) if must_store => {
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

    Ok(Done { output, id, hit })
}

/// remove.bg's headers: the picture's size and the subject's box in it.
pub fn box_headers(width: u32, height: u32, subject: Rect) -> [(&'static str, String); 6] {
    [
        ("x-width", width.to_string()),
        ("x-height", height.to_string()),
        ("x-foreground-top", subject.top.to_string()),
        ("x-foreground-left", subject.left.to_string()),
        ("x-foreground-width", subject.width.to_string()),
        ("x-foreground-height", subject.height.to_string()),
    ]
}

/// A `bg_image` refused by the intake rules, its message naming the field.
fn bg_refusal(e: intake::IntakeError) -> AppError {
    let mut r = shared::refusal::Refusal::from(e);
    r.message = format!("the `bg_image` file: {}", r.message);
    AppError::Refused(r)
}

/// A cached result's subject box: its stored box, or (results stored before boxes were) the
/// box of its alpha, read from the file.
async fn stored_box(state: &AppState, id: &str, bytes: &Bytes) -> Rect {
    if let Ok(Some(b)) = state.cache.get(&keys::result_box(id)).await
        && let Ok(r) = serde_json::from_slice::<Rect>(&b)
    {
        return r;
    }
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || {
        image::load_from_memory(&bytes).map_or(Rect::default(), |img| match img {
            DynamicImage::ImageLuma8(a) => shared::effects::subject_box(&a),
            other if other.color().has_alpha() => {
                let rgba = other.to_rgba8();
                let alpha = image::GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                    image::Luma([rgba.get_pixel(x, y).0[3]])
                });
                shared::effects::subject_box(&alpha)
            }
            other => Rect {
                left: 0,
                top: 0,
                width: other.width(),
                height: other.height(),
            },
        })
    })
    .await
    .unwrap_or_default()
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
    bg_image: Option<Bytes>,
    options: Options,
) -> AppResult<Output> {
    let Ok(permit) = state.process_slots.clone().try_acquire_owned() else {
        return Err(AppError::busy());
    };
    let work = tokio::spawn(pipeline(
        state.clone(),
        bytes,
        mask,
        bg_image,
        options,
        permit,
    ));
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
    bg_image: Option<Bytes>,
    options: Options,
    _permit: tokio::sync::OwnedSemaphorePermit,
) -> AppResult<Output> {
    let limits = state.limits;
    let max_pixels = options.max_pixels;
    let decoded = tokio::task::spawn_blocking(move || {
        intake::decode(&bytes, &limits).map(|mut d| {
            if let Some(max) = max_pixels {
                d.image = shrink(d.image, max);
            }
            d
        })
    })
    .await
    .map_err(|e| AppError::Internal(format!("decode task: {e}")))??;
    let background = match bg_image {
        Some(b) => Some(
            tokio::task::spawn_blocking(move || {
                intake::decode(&b, &limits).map(|d| d.rgb8().into_owned())
            })
            .await
            .map_err(|e| AppError::Internal(format!("decode task: {e}")))?
            .map_err(bg_refusal)?,
        ),
        None => None,
    };
    let (image, mask) = match supplied {
        // A stored cut-out: its own alpha is the subject (the mask lets all of it through).
        None if options.from_result.is_some() => {
            let (w, h) = (decoded.image.width(), decoded.image.height());
            let full = Mask {
                pixels: image::GrayImage::from_pixel(w, h, image::Luma([255])),
                grid: w.max(h),
            };
            (decoded.image, full)
        }
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
            // The model runs for this one: it counts against the day's budget (only images
            // admitted to inference, decoded and about to run, count).
            state.budget.take(unix_now()).map_err(|r| {
                state.metrics.refused("daily_budget_exhausted");
                AppError::Refused(r)
            })?;
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
        let done = cutout::finish(&image, mask, &options.cutout, background.as_ref()).map_err(
            |e| match e {
                CutoutError::Refused(r) => AppError::Refused(r),
                CutoutError::Encode(e) => AppError::Internal(e),
            },
        )?;
        let (width, height) = (done.width(), done.height());
        // The pixels the stored file decodes to: lossless formats only.
        let picture = done.is_lossless().then(|| Arc::new(done.picture));
        Ok::<_, AppError>(Output {
            bytes: Bytes::from(done.bytes),
            content_type: done.content_type,
            width,
            height,
            subject: done.subject,
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
fn store_card_subjects(state: &AppState, id: &str, picture: Arc<DynamicImage>, encoded: Bytes) {
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
                effects: Effects::default(),
            },
            model: ModelKind::U2netp,
            supplied_mask: false,
            bg_image: false,
            max_pixels: None,
            from_result: None,
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
        assert_eq!(matted.key(""), "v1|u2netp|rgba|None|false|png|matting/3");
        matted.supplied_mask = true;
        assert_eq!(matted.key("@640"), "v1|mask|rgba|None|false|png|matting/3");
    }
}
