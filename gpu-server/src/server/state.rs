//! What every handler shares.

use std::{
    ops::Deref,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::http::{HeaderMap, header};
use shared::{intake::Limits, page::PageConfig, render::RenderOptions};
use tokio::sync::Semaphore;

use super::{engine::Engine, metrics::Metrics, storage::Store};

#[derive(Clone, Debug)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

#[derive(Debug)]
pub struct Inner {
    pub engine: Engine,
    /// Processing cache (`STORAGE_BUCKET`).
    pub cache: Store,
    /// Shares and kept results (`CUSTOMER_STORAGE_BUCKET`).
    pub customer: Store,
    pub metrics: Metrics,
    pub limits: Limits,
    pub secret: Vec<u8>,
    pub token_ttl: Duration,
    pub render: Arc<RenderOptions>,
    pub render_fingerprint: String,
    /// Admission for processing: one permit per image decoded, queued or inferred.
    pub process_slots: Arc<Semaphore>,
    /// Admission for share renders.
    pub render_slots: Arc<Semaphore>,
    pub request_timeout: Duration,
    pub public_base_url: Option<String>,
    pub site_name: String,
    pub shop_url: String,
    /// `API_KEYS`: keys server-to-server callers send (empty: none needed).
    pub api_keys: Vec<String>,
    /// `RATE_LIMIT_PER_MINUTE` per client, `TRUSTED_PROXIES`.
    pub limiter: super::limits::Limiter,
    /// `DAILY_IMAGE_BUDGET`.
    pub budget: super::limits::Budget,
    /// Settings worth telling an operator about (`/version`).
    pub notes: Vec<String>,
    pub started: Instant,
}

impl Inner {
    /// Whether `sent` is one of the configured API keys (compared in constant time, every key
    /// tried, so the time says nothing of which or how much matched).
    pub fn api_key_matches(&self, sent: &str) -> bool {
        use subtle::ConstantTimeEq;
        let sent = sent.trim().as_bytes();
        self.api_keys
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.as_bytes().ct_eq(sent)
            })
            .into()
    }
}

/// Now, in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Inner {
    /// The base URL for absolute links: the configured one, else the request's own host
    /// (with Cloud Run's `x-forwarded-proto`).
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.public_base_url {
            return base.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() < 256
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            })
            .unwrap_or("localhost");
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .filter(|p| *p == "https" || *p == "http")
            .unwrap_or("http");
        format!("{proto}://{host}")
    }

    pub fn page_config(&self, headers: &HeaderMap) -> PageConfig {
        PageConfig {
            base_url: self.base_url(headers),
            site_name: self.site_name.clone(),
            shop_url: self.shop_url.clone(),
        }
    }
}
