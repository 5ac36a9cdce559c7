//! The HTTP service: processing API, share flow, share pages, the web page and operations.
//!
//! `app(state)` builds the whole router (handler tests drive it with `oneshot`); `run` binds,
//! serves and shuts down gracefully on SIGTERM (Cloud Run) or Ctrl-C.

pub mod config;
pub mod engine;
pub mod error;
pub mod limits;
pub mod metrics;
mod openapi;
mod routes;
pub mod state;
pub mod storage;
pub mod telemetry;

use std::{sync::Arc, time::Instant};

use axum::{Router, extract::DefaultBodyLimit};
use shared::intake::Limits;
use tokio::sync::Semaphore;

pub use config::ServeArgs;
pub use openapi::{route_table, table as openapi_table};
pub use state::AppState;

use self::{engine::Engine, metrics::Metrics, state::Inner, storage::Store};

/// Build the shared state from settings: opens storage, starts the inference worker.
pub fn build_state(args: &ServeArgs) -> anyhow::Result<AppState> {
    let metrics = Metrics::new();
    let batch_size = args.batch_size();
    let observe: engine::BatchObserver = {
        let seconds = metrics.inference_seconds.clone();
        let sizes = metrics.batch_size.clone();
        Arc::new(move |n, secs| {
            seconds.observe(secs);
            sizes.observe(n as f64);
        })
    };
    let render = args.render_options()?;
    let cache = Store::open(&args.cache_location(), args.storage_timeout())?;
    let customer = Store::open(&args.customer_storage_bucket, args.storage_timeout())?;
    let secret = match &args.share_token_secret {
        Some(s) if s.len() >= 16 => s.as_bytes().to_vec(),
        Some(_) => anyhow::bail!("SHARE_TOKEN_SECRET must be at least 16 characters"),
        None => {
            tracing::warn!(
                "SHARE_TOKEN_SECRET is not set: using a random secret, share tokens will not survive a restart"
            );
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            key
        }
    };
    let queue = args.queue_size.max(1);
    let (kind, note) = args.served_model()?;
    let (precision, precision_note) = args.precision(kind);
    let engine = Engine::start(
        engine::ServedModel {
            kind,
            backend: args.model.backend,
            models: args.model.dir(),
            resize: args.model.resize_for(kind)?,
            precision,
        },
        queue + batch_size,
        batch_size,
        std::time::Duration::from_millis(args.batch_wait_ms),
        observe,
    );
    let notes = note.into_iter().chain(precision_note).collect::<Vec<_>>();
    for note in &notes {
        tracing::warn!("{note}");
    }
    Ok(AppState(Arc::new(Inner {
        engine,
        cache,
        customer,
        metrics,
        limits: Limits {
            max_bytes: args.max_upload_bytes,
            max_pixels: args.max_pixels,
            ..Limits::default()
        },
        secret,
        token_ttl: std::time::Duration::from_secs(args.share_token_ttl_secs.max(60)),
        render_fingerprint: render.fingerprint(),
        render: Arc::new(render),
        process_slots: Arc::new(Semaphore::new(queue)),
        render_slots: Arc::new(Semaphore::new(args.render_concurrency.max(1))),
        request_timeout: args.request_timeout(),
        public_base_url: args.public_base_url.clone(),
        site_name: args.site_name.clone(),
        shop_url: args.shop_url.clone(),
        api_keys: args
            .api_keys
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect(),
        limiter: limits::Limiter::new(args.rate_limit_per_minute, args.trusted_proxies),
        budget: limits::Budget::new(args.daily_image_budget),
        notes,
        started: Instant::now(),
    })))
}

/// The whole service.
pub fn app(state: AppState, cors_origins: &[String]) -> Router {
    // Room for the form's other fields, and for reading and dropping the rest of a file that
    // crossed the limit before answering 413 (see `routes::form`).
    let upload_limit = state.limits.max_bytes + (8 << 20);
    let (router, api) = openapi::router(upload_limit).split_for_parts();
    let api = Arc::new(api);
    let router = router
        .fallback(routes::no_route)
        .layer(axum::Extension(api));
    routes::layers(router, &state, cors_origins)
        .layer(DefaultBodyLimit::max(64 << 10))
        .with_state(state)
}

/// Serve until SIGTERM or Ctrl-C, then finish in-flight requests.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let state = build_state(&args)?;
    let router = app(state.clone(), &args.cors_allowed_origins);
    let listener = tokio::net::TcpListener::bind((args.host, args.port)).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        commit = env!("GIT_COMMIT"),
        model = %state.engine.kind(),
        backend = ?args.model.backend,
        cache = state.cache.label(),
        shares = state.customer.label(),
        "listening"
    );
    // Forget clients whose allowance is whole again, so the limiter's memory follows the
    // clients of the last minute, not every client ever seen.
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tick.tick().await;
                state.limiter.sweep();
            }
        })
    };
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    sweeper.abort();
    state.engine.close();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
