//! The edge Worker: a thin shell over `shared` (the same share flow, watermark, share cards,
//! ids, tokens, page HTML and intent links as gpu-server) with R2 for storage and the Cache API
//! in front.
//!
//! Routes: `POST /api/v2/share-image` (gpu-server's contract: `shared::publish::share`),
//! `GET /s/{id}`, `GET /og/{id}.jpg|-pin.jpg|-square.jpg`, `GET /i/{id}.png`, `GET /health`.
//! Every error is gpu-server's JSON shape (`{"error":{"code","message"}}`) and no handler
//! panics: a panic would take the isolate down with every request in it.
//!
//! The pure parts (settings, ranges, CORS decisions) live in [`http`] and are tested natively;
//! the Worker glue is compiled for wasm32 only: [`worker_main`] (entry point, routes, the read
//! side), `share` (the share adapter), `r2` (storage), `error` (the one error type).

pub mod http;

#[cfg(target_arch = "wasm32")]
mod error;
#[cfg(target_arch = "wasm32")]
mod r2;
#[cfg(target_arch = "wasm32")]
mod share;
#[cfg(target_arch = "wasm32")]
mod worker_main;

/// The render settings and their fingerprint: vars do not change within an isolate, so the
/// logo is decoded and fingerprinted once, not per upload.
#[cfg(target_arch = "wasm32")]
fn render_settings(
    env: &worker::Env,
) -> Result<&'static (shared::render::RenderOptions, String), String> {
    use shared::render::RenderOptions;
    static RENDER: std::sync::OnceLock<Result<(RenderOptions, String), String>> =
        std::sync::OnceLock::new();
    RENDER
        .get_or_init(|| {
            let opts = RenderOptions::from_vars(|k| env.var(k).ok().map(|v| v.to_string()), None)?;
            let fingerprint = opts.fingerprint();
            Ok((opts, fingerprint))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The request's origin, for links when no `PUBLIC_BASE_URL` is set.
#[cfg(target_arch = "wasm32")]
fn origin_of(req: &worker::Request) -> String {
    req.url()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

#[cfg(target_arch = "wasm32")]
fn now_secs() -> u64 {
    worker::Date::now().as_millis() / 1000
}
