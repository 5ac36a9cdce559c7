//! The route table and the OpenAPI document, generated together from the handlers' own
//! annotations: the document cannot list a route the router lacks, or miss one it serves.

use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{routes::*, state::AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pet Cutout",
        description = "Pet-photo background removal and social sharing.",
    ),
    tags(
        (name = "processing", description = "Cut the pet out of a photo"),
        (name = "remove.bg-compatible", description = "remove.bg's API v1.0, for integrations written for it"),
        (name = "sharing", description = "Watermarked share images, pages and links"),
        (name = "operations", description = "Health, readiness, warm-up, version and metrics"),
        (name = "web", description = "The customer's page"),
    )
)]
struct ApiDoc;

/// Every route, with its documentation. Upload routes take bodies up to `upload_limit`.
pub fn router(upload_limit: usize) -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(process::remove_background))
        .routes(routes!(removebg::removebg))
        .routes(routes!(share::share_image))
        .layer(DefaultBodyLimit::max(upload_limit));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(uploads)
        .routes(routes!(process::get_result))
        .routes(routes!(pages::share_page))
        .routes(routes!(pages::og_image))
        .routes(routes!(pages::full_image))
        .routes(routes!(pages::index))
        .routes(routes!(pages::asset))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::warmup))
        .routes(routes!(ops::version))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .routes(routes!(ops::docs))
}

/// `(METHOD, path)` for every route this build serves, from the generated document.
pub fn route_table() -> Vec<(String, String)> {
    let api = router(1).into_openapi();
    table(&api)
}

/// `(METHOD, path)` pairs of an OpenAPI document.
pub fn table(api: &utoipa::openapi::OpenApi) -> Vec<(String, String)> {
    let value = serde_json::to_value(api).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(paths) = value.get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for method in item.keys() {
                    if matches!(
                        method.as_str(),
                        "get" | "post" | "put" | "delete" | "patch" | "head" | "options"
                    ) {
                        out.push((method.to_uppercase(), path.clone()));
                    }
                }
            }
        }
    }
    out.sort();
    out
}
