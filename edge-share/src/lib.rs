//! The edge Worker: a thin shell over `shared` (the same watermark, share cards, ids, tokens,
//! page HTML and intent links as gpu-server) with R2 for storage and the Cache API in front.
//!
//! Routes: `POST /api/v2/share-image` (gpu-server's contract; a valid share token is required),
//! `GET /s/{id}`, `GET /og/{id}.jpg|-pin.jpg|-square.jpg`, `GET /i/{id}.png`, `GET /health`.
//! Every error is gpu-server's JSON shape (`{"error":{"code","message"}}`) and no handler
//! panics: a panic would take the isolate down with every request in it.
//!
//! The pure parts (config parsing, ranges, CORS decisions) live in [`http`] and are tested
//! natively; the Worker glue is compiled for wasm32 only.

pub mod http;

#[cfg(target_arch = "wasm32")]
mod worker_main;
