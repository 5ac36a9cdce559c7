//! Operations: health, readiness, warm-up, version, metrics, the API document and its page.

use std::{sync::Arc, time::Instant};

use axum::{
    Extension, Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use image::{Rgb, RgbImage};
use serde::Serialize;
use shared::{api::ErrorBody, page::escape};
use utoipa::ToSchema;

use crate::server::{
    engine::ModelStatus,
    error::{AppError, AppResult},
    state::AppState,
};

/// `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `loading`, `ready` or `failed`.
    pub model: String,
    pub cache_storage: String,
    pub customer_storage: String,
    /// Why not ready, when not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// Readiness: the model is loaded and both stores answer. 503 with the reasons otherwise.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready, with the reasons", body = Readiness),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    let model = match state.engine.status() {
        ModelStatus::Loading => {
            reasons.push("the model is still loading".to_owned());
            "loading"
        }
        ModelStatus::Ready { .. } => "ready",
        ModelStatus::Failed(e) => {
            reasons.push(format!("the model failed to load: {e}"));
            "failed"
        }
    };
    let (cache, customer) = tokio::join!(state.cache.probe(), state.customer.probe());
    let mut describe = |name: &str, r: Result<(), _>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            reasons.push(format!("{name} storage: {e}"));
            "unreachable".to_owned()
        }
    };
    let cache_storage = describe("cache", cache);
    let customer_storage = describe("customer", customer);
    let ready = reasons.is_empty();
    let body = Readiness {
        ready,
        model: model.into(),
        cache_storage,
        customer_storage,
        reasons,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `/warmup`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Warmup {
    pub ready: bool,
    /// Time this call waited for the model to load.
    pub waited_ms: f64,
    /// Time the model took to load at start.
    pub load_ms: f64,
    /// One tiny inference, end to end through the queue.
    pub inference_ms: f64,
    pub model: String,
    pub device: String,
}

/// Load the model (waiting for a cold start) and run one tiny inference; answers timings.
#[utoipa::path(method(get, post), path = "/warmup", tag = "operations",
    responses(
        (status = 200, description = "Warm", body = Warmup),
        (status = 503, description = "The model could not load, or the queue is full", body = ErrorBody),
    ))]
pub async fn warmup(State(state): State<AppState>) -> AppResult<Json<Warmup>> {
    let t0 = Instant::now();
    let (load_ms, device) = match state.engine.wait_ready(state.request_timeout).await {
        ModelStatus::Ready { load_ms, device } => (load_ms, device),
        ModelStatus::Loading => {
            return Err(AppError::unavailable(
                "model_loading",
                "the model is still loading; try again",
                5,
            ));
        }
        ModelStatus::Failed(e) => {
            return Err(AppError::unavailable(
                "model_unavailable",
                format!("the model failed to load: {e}"),
                30,
            ));
        }
    };
    let waited_ms = t0.elapsed().as_secs_f64() * 1e3;
    let probe = RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 128]));
    let t1 = Instant::now();
    state.engine.infer(probe).await?;
    Ok(Json(Warmup {
        ready: true,
        waited_ms,
        load_ms,
        inference_ms: t1.elapsed().as_secs_f64() * 1e3,
        model: state.engine.kind().to_string(),
        device,
    }))
}

/// `/version`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    pub name: &'static str,
    pub version: &'static str,
    pub commit: &'static str,
    pub build_time: &'static str,
    pub model: String,
    pub backend: String,
    pub device: Option<String>,
    /// `f32` or `f16`.
    pub precision: String,
    pub batch_size: usize,
    /// Cloud Run's revision, when running there.
    pub revision: Option<String>,
    pub uptime_s: f64,
    /// `DAILY_IMAGE_BUDGET` and the images it still allows today (absent: no budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_image_budget: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_image_budget_left: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What is running: commit, build time, model, backend, device, Cloud Run revision.
#[utoipa::path(get, path = "/version", tag = "operations",
    responses((status = 200, description = "Build and runtime facts", body = Version)))]
pub async fn version(State(state): State<AppState>) -> Json<Version> {
    let device = match state.engine.status() {
        ModelStatus::Ready { device, .. } => Some(device),
        _ => None,
    };
    Json(Version {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("GIT_COMMIT"),
        build_time: env!("BUILD_TIME"),
        model: state.engine.kind().to_string(),
        backend: format!("{:?}", state.engine.backend()).to_lowercase(),
        device,
        precision: state.engine.precision().name().to_owned(),
        batch_size: state.engine.batch_size(),
        revision: std::env::var("K_REVISION").ok(),
        uptime_s: (state.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        daily_image_budget: (state.budget.limit() > 0).then(|| state.budget.limit()),
        daily_image_budget_left: state.budget.left(crate::server::state::unix_now()),
        notes: state.notes.clone(),
    })
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.queue_depth.set(state.engine.depth() as i64);
    let left = state.budget.left(crate::server::state::unix_now());
    state
        .metrics
        .budget_left
        .set(left.map_or(-1, |l| l.min(i64::MAX as u64) as i64));
    let mut res = state.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document, generated from the routes")))]
pub async fn openapi_json(Extension(api): Extension<Arc<utoipa::openapi::OpenApi>>) -> Response {
    Json(api.as_ref().clone()).into_response()
}

/// A readable API reference, rendered from the OpenAPI document on the server.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The API reference", content_type = "text/html")))]
pub async fn docs(Extension(api): Extension<Arc<utoipa::openapi::OpenApi>>) -> Html<String> {
    Html(render_docs(api.as_ref()))
}

fn render_docs(api: &utoipa::openapi::OpenApi) -> String {
    let doc = serde_json::to_value(api).unwrap_or_default();
    let text = |v: &serde_json::Value| escape(v.as_str().unwrap_or(""));
    let mut body = String::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let summary = text(&op["summary"]);
                let description = text(&op["description"]).replace("\n\n", "</p><p>");
                body.push_str(&format!(
                    "<section><h2><span class=\"m {m}\">{M}</span> <code>{p}</code></h2><p><b>{summary}</b></p><p>{description}</p>",
                    m = escape(method),
                    M = escape(&method.to_uppercase()),
                    p = escape(path),
                ));
                if let Some(params) = op["parameters"].as_array() {
                    body.push_str("<h3>Parameters</h3><ul>");
                    for p in params {
                        body.push_str(&format!(
                            "<li><code>{}</code> ({}) — {}</li>",
                            text(&p["name"]),
                            text(&p["in"]),
                            text(&p["description"])
                        ));
                    }
                    body.push_str("</ul>");
                }
                if let Some(content) = op["requestBody"]["content"].as_object() {
                    for (ctype, c) in content {
                        body.push_str(&format!("<h3>Body: <code>{}</code></h3>", escape(ctype)));
                        let schema = &c["schema"];
                        let resolved = schema["$ref"]
                            .as_str()
                            .and_then(|r| r.rsplit('/').next())
                            .map(|name| &doc["components"]["schemas"][name])
                            .unwrap_or(schema);
                        if let Some(props) = resolved["properties"].as_object() {
                            body.push_str("<ul>");
                            for (name, prop) in props {
                                body.push_str(&format!(
                                    "<li><code>{}</code> — {}</li>",
                                    escape(name),
                                    text(&prop["description"])
                                ));
                            }
                            body.push_str("</ul>");
                        }
                    }
                }
                if let Some(responses) = op["responses"].as_object() {
                    body.push_str("<h3>Responses</h3><ul>");
                    for (status, r) in responses {
                        body.push_str(&format!(
                            "<li><b>{}</b> — {}</li>",
                            escape(status),
                            text(&r["description"])
                        ));
                    }
                    body.push_str("</ul>");
                }
                body.push_str("</section>");
            }
        }
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} API</title><style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:0 auto;padding:1em;color:#1d1d1f}}\
section{{border-top:1px solid #ddd;padding:.5em 0}}h2{{font-size:1.1em}}.m{{display:inline-block;min-width:3.5em;padding:0 .4em;border-radius:4px;color:#fff;background:#1d4ed8;font-size:.85em;text-align:center}}\
.m.post{{background:#15803d}}code{{background:#f3f4f6;padding:0 .2em;border-radius:3px}}</style></head><body>\
<h1>{title} API</h1><p>{desc}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. Errors are <code>{{\"error\":{{\"code\",\"message\"}}}}</code>.</p>{body}</body></html>",
        title = text(&doc["info"]["title"]),
        desc = text(&doc["info"]["description"]),
    )
}
