//! Handlers, grouped by area (`process`, `removebg`, `share`, `pages`, `ops`); the middleware every request
//! passes (`middleware`); the multipart form reader (`form`); the answer helpers both use.

mod form;
mod middleware;
pub mod ops;
pub mod pages;
pub mod process;
pub mod removebg;
pub mod share;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;

pub use form::{Form, REMOVEBG_FILES, decode_base64, read_form, read_form_named};
pub use middleware::{layers, no_route};

/// The API key a caller sent: `X-Api-Key`, or `Authorization: Bearer`.
pub fn api_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
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
