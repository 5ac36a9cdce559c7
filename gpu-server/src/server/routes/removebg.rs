//! `POST /v1.0/removebg`: remove.bg's API, so a shop plugin or script written for it switches
//! by changing its base URL. The same removal as `POST /api/v2/remove-background`
//! ([`process::cut_out`]), with remove.bg's names, defaults, answers and error bodies.
//!
//! Bodies: multipart (`image_file` or `image_file_b64`, `bg_image_file`), URL-encoded or JSON
//! (`image_file_b64`). Parameters remove.bg documents and this service does the same way are
//! taken as they are (`crop`, `crop_margin`, `scale`, `position`, `channels`, `bg_color`,
//! `format`, `shadow_type=drop`, `shadow_opacity`); `size` bounds the pixels as remove.bg's
//! classes do; `type`, `type_level` and `semitransparency` are accepted and change nothing
//! (one model, for pets). Those it cannot honour are a 400 naming them: `image_url` and
//! `bg_image_url` (this service fetches nothing from outside), `roi`, `format=zip`, car and 3D
//! shadows. This product's own options (`outline`, `shadow_blur`, `dpi`, `refine`, ...) work
//! here too.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{FromRequest, Multipart, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    Form, REMOVEBG_FILES, decode_base64,
    process::{self, Done, Options},
    read_form_named, wants_json,
};
use crate::server::{
    error::{AppError, AppResult},
    state::AppState,
};

/// remove.bg's multipart form (the fields this service takes; see the module's notes).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RemoveBgForm {
    /// The photo (JPEG, PNG or WebP). Or `image_file_b64`.
    #[schema(value_type = Option<String>, format = Binary)]
    image_file: Option<Vec<u8>>,
    /// The photo as base64.
    image_file_b64: Option<String>,
    /// `preview` (default, 0.25 MP; also `small`, `regular`), `medium` (1.5 MP), `hd` (4 MP),
    /// `full`, `4k`, `50MP` or `auto` (the photo's own size).
    size: Option<String>,
    /// `auto` (default: PNG when anything is transparent, else JPEG), `png`, `jpg`, `webp`.
    format: Option<String>,
    /// Accepted, changes nothing: `auto`, `person`, `product`, `animal`, `car`, `graphic`,
    /// `transportation`, `other`.
    r#type: Option<String>,
    crop: Option<bool>,
    crop_margin: Option<String>,
    scale: Option<String>,
    position: Option<String>,
    /// `rgba` or `alpha`.
    channels: Option<String>,
    bg_color: Option<String>,
    /// A background photo.
    #[schema(value_type = Option<String>, format = Binary)]
    bg_image_file: Option<Vec<u8>>,
    /// `none` (default), `drop` or `auto` (a drop shadow, as remove.bg gives animals).
    shadow_type: Option<String>,
    /// 0 to 100 (default 50).
    shadow_opacity: Option<String>,
}

/// remove.bg's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemoveBgErrors {
    errors: Vec<RemoveBgError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemoveBgError {
    title: String,
    code: String,
}

/// remove.bg's JSON answer (`Accept: application/json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RemoveBgJson {
    data: RemoveBgData,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemoveBgData {
    result_b64: String,
    foreground_top: u32,
    foreground_left: u32,
    foreground_width: u32,
    foreground_height: u32,
}

/// remove.bg's `size` classes, in pixels (`None`: the photo's own size).
fn size_pixels(v: &str) -> AppResult<Option<u64>> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "preview" | "small" | "regular" => Some(250_000),
        "medium" => Some(1_500_000),
        "hd" => Some(4_000_000),
        "full" | "4k" | "auto" | "50mp" => None,
        _ => {
            return Err(AppError::bad(
                "invalid_size",
                format!(
                    "`size`: expected preview, small, regular, medium, hd, full, 4k, 50MP or auto, got {v:?}"
                ),
            ));
        }
    })
}

/// remove.bg's parameters made this service's form fields; the answer's options.
fn translate(form: &mut Form) -> AppResult<Option<u64>> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut size = Some(250_000);
    for (name, value) in std::mem::take(&mut form.fields) {
        let v = value.trim();
        let unsupported = |why: &str| {
            Err(AppError::bad(
                "unsupported_parameter",
                format!("`{name}` is not supported by this service: {why}"),
            ))
        };
        match name.as_str() {
            "size" => size = size_pixels(v)?,
            "image_url" | "bg_image_url" => {
                return unsupported(
                    "it fetches nothing from other servers; send the picture itself (image_file, image_file_b64, bg_image_file)",
                );
            }
            "roi" => return unsupported("the whole photo is always used"),
            "add_shadow" if process::bool_field("add_shadow", v)? => {
                return unsupported("car shadows are not made; use shadow_type=drop");
            }
            "add_shadow" => {}
            "type" => {
                if !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "auto"
                        | "person"
                        | "product"
                        | "animal"
                        | "car"
                        | "graphic"
                        | "graphics"
                        | "transportation"
                        | "other"
                        | ""
                ) {
                    return Err(AppError::bad(
                        "invalid_type",
                        format!("`type`: unknown type {v:?}"),
                    ));
                }
            }
            "type_level" | "semitransparency" => {}
            "format" => {
                let f = match v.to_ascii_lowercase().as_str() {
                    "zip" => return unsupported("send format=png (or auto) for the alpha"),
                    "jpg" => "jpeg".to_owned(),
                    other => other.to_owned(),
                };
                out.insert(name, f);
            }
            "shadow_type" => match v.to_ascii_lowercase().as_str() {
                "drop" | "auto" => {
                    out.insert("shadow".into(), "true".into());
                }
                "none" | "" => {}
                _ => return unsupported("only drop shadows (shadow_type=drop) are made"),
            },
            "shadow_opacity" if v.eq_ignore_ascii_case("auto") => {}
            "crop" | "crop_margin" | "scale" | "position" | "channels" | "bg_color"
            | "shadow_opacity" => {
                out.insert(name, value);
            }
            // This product's own options.
            n if process::OWN_FIELDS.contains(&n) => {
                out.insert(name, value);
            }
            _ => {
                return Err(AppError::bad(
                    "unknown_parameter",
                    format!("unknown parameter `{name}`"),
                ));
            }
        }
    }
    if !out.contains_key("format") {
        out.insert("format".into(), "auto".into());
    }
    form.fields = out;
    Ok(size)
}

/// A form from a URL-encoded or JSON body (`image_file_b64` and the parameters).
fn form_of(pairs: Vec<(String, String)>, max_bytes: usize) -> AppResult<Form> {
    let mut form = Form::default();
    for (name, value) in pairs {
        match name.as_str() {
            "image_file_b64" => {
                if form.image.is_some() {
                    return Err(AppError::bad(
                        "multiple_sources",
                        "more than one image source",
                    ));
                }
                form.image = Some(decode_base64(&name, value.as_bytes(), max_bytes)?);
            }
            "image_file" | "bg_image_file" => {
                return Err(AppError::bad(
                    "invalid_request",
                    format!("`{name}` is a file: send it in a multipart/form-data body"),
                ));
            }
            _ => {
                form.fields.insert(name, value);
            }
        }
    }
    Ok(form)
}

async fn read_body(state: &AppState, request: Request) -> AppResult<Form> {
    let max = state.limits.max_bytes;
    let ctype = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, state).await;
        return Ok(read_form_named(multipart, max, REMOVEBG_FILES).await?);
    }
    let limit = max / 3 * 4 + 64 * 1024;
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            AppError::status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                format!("the body is larger than the limit of {limit} bytes"),
            )
        })?;
    let pairs: Vec<(String, String)> = if ctype.starts_with("application/json") {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
            .map_err(|e| {
                AppError::bad(
                    "invalid_json",
                    format!("the body is not a JSON object: {e}"),
                )
            })?;
        map.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect()
    } else if ctype.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes(&body).map_err(|e| {
            AppError::bad(
                "invalid_form",
                format!("the body is not a URL-encoded form: {e}"),
            )
        })?
    } else {
        return Err(AppError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "send multipart/form-data, application/x-www-form-urlencoded or application/json",
        ));
    };
    form_of(pairs, max)
}

fn authorised(state: &AppState, headers: &HeaderMap) -> AppResult<()> {
    if state.api_keys.is_empty() {
        return Ok(());
    }
    let sent = super::api_key(headers);
    match sent {
        None => Err(AppError::status(
            StatusCode::FORBIDDEN,
            "auth_failed",
            "Missing API Key",
        )),
        Some(k) if state.api_key_matches(k) => Ok(()),
        Some(_) => Err(AppError::status(
            StatusCode::FORBIDDEN,
            "auth_failed",
            "Invalid API Key",
        )),
    }
}

async fn answer(state: AppState, headers: HeaderMap, request: Request) -> AppResult<Response> {
    authorised(&state, &headers)?;
    let mut form = read_body(&state, request).await?;
    let max_pixels = translate(&mut form)?;
    if form.image.is_none() {
        return Err(AppError::bad(
            "missing_source",
            "no image given: send image_file or image_file_b64",
        ));
    }
    let mut options = Options::from_form(&form, state.engine.kind())?;
    options.max_pixels = max_pixels;
    let json = wants_json(&headers);
    let Done { output, id, .. } = process::cut_out(&state, form, options, false).await?;
    let boxed = process::box_headers(output.width, output.height, output.subject);
    let mut res = if json {
        Json(RemoveBgJson {
            data: RemoveBgData {
                result_b64: base64::engine::general_purpose::STANDARD.encode(&output.bytes),
                foreground_top: output.subject.top,
                foreground_left: output.subject.left,
                foreground_width: output.subject.width,
                foreground_height: output.subject.height,
            },
        })
        .into_response()
    } else {
        let mut res = output.bytes.into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(output.content_type),
        );
        res
    };
    let h = res.headers_mut();
    for (name, value) in boxed
        .into_iter()
        .chain([("x-credits-charged", "0".to_owned()), ("x-result-id", id)])
    {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    Ok(res)
}

/// remove.bg's API: remove the background of a photo.
///
/// The photo's background removed, as remove.bg answers it: the image (or, with
/// `Accept: application/json`, `{"data":{"result_b64",...}}`), with `X-Width`, `X-Height` and
/// `X-Foreground-Top/Left/Width/Height`. Errors are remove.bg's `{"errors":[{"title","code"}]}`.
/// When `API_KEYS` is set, `X-Api-Key` must be one of them (403 otherwise).
#[utoipa::path(
    post,
    path = "/v1.0/removebg",
    tag = "remove.bg-compatible",
    request_body(content = RemoveBgForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The image (or JSON with `Accept: application/json`)", content_type = "image/png", body = RemoveBgJson),
        (status = 400, description = "Bad or unsupported parameter, no image", body = RemoveBgErrors),
        (status = 403, description = "Missing or invalid API key (when API_KEYS is set)", body = RemoveBgErrors),
        (status = 413, description = "File or image too large", body = RemoveBgErrors),
        (status = 415, description = "Not a JPEG, PNG or WebP", body = RemoveBgErrors),
        (status = 422, description = "The image cannot be decoded", body = RemoveBgErrors),
        (status = 503, description = "Busy or storage unreachable; see Retry-After", body = RemoveBgErrors),
    )
)]
pub async fn removebg(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    match answer(state, headers, request).await {
        Ok(res) => res,
        Err(e) => error_response(e),
    }
}

/// An error in remove.bg's shape, with the status and `Retry-After` this service's would have.
pub fn error_response(e: AppError) -> Response {
    let (status, code, title, retry) = match e {
        AppError::Refused(r) => (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            r.code.to_owned(),
            r.message,
            r.retry_after,
        ),
        AppError::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            let (code, title) = shared::refusal::INTERNAL;
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                code.to_owned(),
                title.to_owned(),
                None,
            )
        }
    };
    let mut res = (
        status,
        Json(RemoveBgErrors {
            errors: vec![RemoveBgError { title, code }],
        }),
    )
        .into_response();
    if let Some(secs) = retry {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}
