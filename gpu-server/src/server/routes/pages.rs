//! What browsers and social crawlers fetch: the share page, the share images, the web page.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use shared::{
    api::{ErrorBody, ShareFile, ShareManifest, keys},
    ids::is_valid_id,
    page::{escape, not_found_page, share_page as render_page},
};

use super::{immutable, wants_json};
use crate::server::{
    error::{AppError, AppResult, storage_unavailable},
    state::AppState,
};

const INDEX_HTML: &str = include_str!("../../../../web/index.html");
const APP_JS: &str = include_str!("../../../../web/app.js");
const APP_CSS: &str = include_str!("../../../../web/app.css");

fn share_not_found(headers: &HeaderMap) -> Response {
    if wants_json(headers) {
        return AppError::not_found("share_not_found", "no share with this id").into_response();
    }
    (StatusCode::NOT_FOUND, Html(not_found_page("/"))).into_response()
}

/// The share page: Open Graph, Twitter card and Pinterest tags; people see the picture and a
/// link to the shop.
#[utoipa::path(
    get,
    path = "/s/{id}",
    tag = "sharing",
    params(("id" = String, Path, description = "Share id")),
    responses(
        (status = 200, description = "The share page", content_type = "text/html"),
        (status = 404, description = "No such share: a page for people, JSON for `Accept: application/json`",
            content((String = "text/html"), (ErrorBody = "application/json"))),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    )
)]
pub async fn share_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    if !is_valid_id(&id) {
        return Ok(share_not_found(&headers));
    }
    let Some(bytes) = state
        .customer
        .get(&keys::manifest(&id))
        .await
        .map_err(storage_unavailable)?
    else {
        return Ok(share_not_found(&headers));
    };
    let manifest: ShareManifest = serde_json::from_slice(&bytes)
        .map_err(|e| AppError::Internal(format!("share manifest {id}: {e}")))?;
    let html = render_page(&state.page_config(&headers), &manifest);
    let mut res = Html(html).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(res)
}

async fn share_file(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    under_og: bool,
) -> AppResult<Response> {
    let not_found = || AppError::not_found("share_not_found", "no such share image");
    let (id, file) = ShareFile::parse(name, under_og).ok_or_else(not_found)?;
    let etag = format!("{id}-{}", file.name());
    let bytes = state
        .customer
        .get(&file.key(&id))
        .await
        .map_err(storage_unavailable)?
        .ok_or_else(not_found)?;
    Ok(immutable(headers, &etag, file.content_type(), bytes))
}

/// Share images: `{id}.jpg` (1200×630), `{id}-pin.jpg` (1000×1500), `{id}-square.jpg` (1080×1080).
#[utoipa::path(
    get,
    path = "/og/{file}",
    tag = "sharing",
    params(("file" = String, Path, description = "`<id>.jpg`, `<id>-pin.jpg` or `<id>-square.jpg`")),
    responses(
        (status = 200, description = "JPEG, immutable", content_type = "image/jpeg"),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such image", body = ErrorBody),
    )
)]
pub async fn og_image(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    share_file(&state, &headers, &file, true).await
}

/// The whole watermarked picture of a share: `{id}.png`.
#[utoipa::path(
    get,
    path = "/i/{file}",
    tag = "sharing",
    params(("file" = String, Path, description = "`<id>.png`")),
    responses(
        (status = 200, description = "PNG, immutable", content_type = "image/png"),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such image", body = ErrorBody),
    )
)]
pub async fn full_image(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    share_file(&state, &headers, &file, false).await
}

/// The customer's page: upload, cut-out, background choice, download, share.
#[utoipa::path(
    get,
    path = "/",
    tag = "web",
    responses((status = 200, description = "The web page", content_type = "text/html"))
)]
pub async fn index(State(state): State<AppState>) -> Response {
    let html = INDEX_HTML.replace("{{SITE_NAME}}", &escape(&state.site_name));
    let mut res = Html(html).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// The web page's script and styles.
#[utoipa::path(
    get,
    path = "/assets/{file}",
    tag = "web",
    params(("file" = String, Path, description = "`app.js` or `app.css`")),
    responses(
        (status = 200, description = "The asset"),
        (status = 404, description = "No such asset", body = ErrorBody),
    )
)]
pub async fn asset(Path(file): Path<String>) -> AppResult<Response> {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return Err(AppError::not_found("not_found", "no such asset")),
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(res)
}
