//! What every request passes, as tower layers ([`layers`]): tower-http's request ids (a caller's
//! own id kept when it is sane), trace spans and the access log, the commit header and panics
//! as generic 500s; our own [`record`] for the Prometheus metrics. Also the JSON answer for
//! unknown routes, and CORS.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};
use tracing::Span;

use crate::server::{error::AppError, state::AppState};

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static APP_COMMIT: HeaderName = HeaderName::from_static("x-app-commit");

/// Every layer a request passes, outermost first: panics → the commit header → a caller's
/// insane request id dropped → a request id set (the caller's, or a new one) and answered →
/// the span and the access log → metrics → CORS.
pub fn layers(
    router: Router<AppState>,
    state: &AppState,
    cors_origins: &[String],
) -> Router<AppState> {
    router
        .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
        .layer(cors(cors_origins))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(access_log)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), NewRequestId))
        .layer(axum::middleware::map_request(drop_insane_request_id))
        .layer(SetResponseHeaderLayer::overriding(
            APP_COMMIT.clone(),
            HeaderValue::from_static(env!("GIT_COMMIT")),
        ))
        .layer(CatchPanicLayer::custom(panic_response))
}

/// The routes that cost: processing and sharing.
const LIMITED: [&str; 3] = [
    "/api/v2/remove-background",
    "/v1.0/removebg",
    "/api/v2/share-image",
];

/// Admission to the routes that cost: a caller with a valid API key passes; a wrong key is
/// 401 `invalid_api_key` (remove.bg's route answers keys itself, its way); anyone else takes
/// one request of their address's allowance or is 429 `rate_limited`.
async fn admit(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if request.method() != axum::http::Method::POST || !LIMITED.contains(&path) {
        return next.run(request).await;
    }
    let removebg = path == "/v1.0/removebg";
    let headers = request.headers();
    let key = super::api_key(headers);
    if let (Some(key), false) = (key, state.api_keys.is_empty()) {
        if state.api_key_matches(key) {
            return next.run(request).await;
        }
        if !removebg {
            return AppError::status(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "the API key is not one of this service's",
            )
            .into_response();
        }
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(client) = state.limiter.client(peer, headers)
        && let Err(refused) = state.limiter.check(client)
    {
        state.metrics.refused("rate_limited");
        let e = AppError::Refused(refused);
        return if removebg {
            super::removebg::error_response(e)
        } else {
            e.into_response()
        };
    }
    next.run(request).await
}

/// Request ids: a per-process random prefix and a counter (unique, cheap, no clock).
#[derive(Debug, Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let prefix = PREFIX.get_or_init(|| {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            shared::ids::hex(&b)
        });
        let id = format!("{prefix}-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// A caller's id (Cloud Run's, a proxy's) is kept only if it is short and plain, so that logs
/// never carry what a client made up; otherwise a new one is made.
async fn drop_insane_request_id(mut req: Request) -> Request {
    let sane = req.headers().get(&REQUEST_ID).is_none_or(|v| {
        let v = v.as_bytes();
        !v.is_empty()
            && v.len() <= 64
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
    });
    if !sane {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

fn route_of<B>(req: &axum::http::Request<B>) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
}

/// The request's span: its id, method and route on every log line inside it. Health checks
/// and metric scrapes get none and are not logged.
fn request_span<B>(req: &axum::http::Request<B>) -> Span {
    let route = route_of(req);
    if route == "/health" || route == "/metrics" {
        return Span::none();
    }
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route)
}

/// One line per answered request (a warning for 5xx).
fn access_log<B>(res: &axum::http::Response<B>, latency: Duration, span: &Span) {
    if span.is_none() {
        return;
    }
    let status = res.status().as_u16();
    let ms = latency.as_secs_f64() * 1e3;
    if status >= 500 {
        tracing::warn!(status, ms, "request failed");
    } else {
        tracing::info!(status, ms, "request");
    }
}

/// Request counts and durations by method, route and status, and the queue's depth.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let route = route_of(&req).to_owned();
    let method = req.method().clone();
    let res = next.run(req).await;
    state.metrics.observe_request(
        method.as_str(),
        &route,
        res.status().as_u16(),
        t0.elapsed().as_secs_f64(),
    );
    state.metrics.queue_depth.set(state.engine.depth() as i64);
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
    crate::server::error::internal_error(&format!("handler panicked: {detail}"))
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
            HeaderName::from_static("x-result-type"),
            HeaderName::from_static("x-width"),
            HeaderName::from_static("x-height"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}
