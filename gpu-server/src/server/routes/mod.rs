//! Handlers, grouped by area, and the middleware every request passes.

pub mod ops;
pub mod pages;
pub mod process;
pub mod share;

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Multipart, Request, State, multipart::MultipartRejection},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use shared::api::ErrorBody;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use super::{
    error::{AppError, AppResult},
    state::AppState,
};

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static APP_COMMIT: HeaderName = HeaderName::from_static("x-app-commit");

/// Request ids: a per-process random prefix and a counter (unique, cheap, no clock).
fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        shared::ids::hex(&b)
    });
    format!("{prefix}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Request id, span, access log, metrics and the commit header, for every request.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().clone();
    // Keep a caller's id (Cloud Run's trace header, a proxy's id) if it is sane.
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(new_request_id, str::to_owned);
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut res = next.run(req).instrument(span.clone()).await;
    let secs = t0.elapsed().as_secs_f64();
    let status = res.status().as_u16();
    state
        .metrics
        .observe_request(method.as_str(), &route, status, secs);
    state.metrics.queue_depth.set(state.engine.depth() as i64);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, ms = secs * 1e3, "request failed");
        } else if route != "/health" && route != "/metrics" {
            tracing::info!(status, ms = secs * 1e3, "request");
        }
    });
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(&REQUEST_ID, v);
    }
    headers.insert(&APP_COMMIT, HeaderValue::from_static(env!("GIT_COMMIT")));
    res
}

/// Any path or method this build does not serve: a JSON 404 naming it, with a code of its own
/// so that `verify-deploy` can tell a missing route from a missing resource.
pub async fn no_route(method: Method, uri: axum::http::Uri) -> AppError {
    AppError::not_found(
        "route_not_found",
        format!("this service has no route {method} {}", uri.path()),
    )
}

/// A panic in a handler answers a generic 500 JSON; the server keeps running.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(ErrorBody::new(
            "internal",
            "something went wrong on our side; please try again",
        )),
    )
        .into_response()
}

/// CORS for the configured origins (none: same-origin only; `*`: any).
pub fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::ACCEPT, REQUEST_ID.clone()])
        .expose_headers([
            REQUEST_ID.clone(),
            HeaderName::from_static("x-result-id"),
            HeaderName::from_static("x-share-token"),
            HeaderName::from_static("x-share-token-expires"),
            HeaderName::from_static("x-processing-time-ms"),
            HeaderName::from_static("x-cache"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// A parsed multipart form: at most one file (`image`) and a few short text fields.
#[derive(Debug, Default)]
pub struct Form {
    pub image: Option<Bytes>,
    pub fields: HashMap<String, String>,
}

impl Form {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
}

const MAX_FIELDS: usize = 16;
const MAX_FIELD_BYTES: usize = 2048;

fn multipart_error(e: impl std::fmt::Display) -> AppError {
    AppError::bad(
        "invalid_multipart",
        format!("the request is not a valid multipart/form-data upload: {e}"),
    )
}

/// Read a multipart form, refusing a file over `max_bytes` as soon as it crosses the limit.
pub async fn read_form(
    multipart: Result<Multipart, MultipartRejection>,
    max_bytes: usize,
) -> AppResult<Form> {
    let mut multipart = multipart.map_err(|e| {
        AppError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_multipart",
            format!("expected a multipart/form-data body with an `image` field: {e}"),
        )
    })?;
    let mut form = Form::default();
    let mut count = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        count += 1;
        if count > MAX_FIELDS {
            return Err(AppError::bad("invalid_multipart", "too many form fields"));
        }
        let name = field.name().unwrap_or_default().to_owned();
        if name == "image" {
            if form.image.is_some() {
                return Err(AppError::bad(
                    "invalid_multipart",
                    "more than one `image` field",
                ));
            }
            let mut buf = BytesMut::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::status(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "file_too_large",
                        format!("the upload is larger than the limit of {max_bytes} bytes"),
                    )
                } else {
                    multipart_error(e)
                }
            })? {
                if buf.len() + chunk.len() > max_bytes {
                    return Err(AppError::status(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "file_too_large",
                        format!("the file is larger than the limit of {max_bytes} bytes"),
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            form.image = Some(buf.freeze());
        } else {
            let mut buf = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if buf.len() + chunk.len() > MAX_FIELD_BYTES {
                    return Err(AppError::bad(
                        "invalid_option",
                        format!("the field `{name}` is longer than {MAX_FIELD_BYTES} bytes"),
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(buf).map_err(|_| {
                AppError::bad(
                    "invalid_option",
                    format!("the field `{name}` is not UTF-8 text"),
                )
            })?;
            form.fields.insert(name, value);
        }
    }
    Ok(form)
}

/// Whether the caller prefers JSON to an image.
pub fn wants_json(headers: &axum::http::HeaderMap) -> bool {
    shared::page::wants_json(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

/// Immutable, content-addressed bytes with an ETag; answers 304 to a matching If-None-Match.
pub fn immutable(
    headers: &axum::http::HeaderMap,
    etag: &str,
    content_type: &str,
    body: Bytes,
) -> Response {
    let tag = format!("\"{etag}\"");
    let matches = shared::page::etag_matches(
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok()),
        &tag,
    );
    let mut res = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
        r
    };
    let h = res.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    res
}
