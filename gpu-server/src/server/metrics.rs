//! Prometheus metrics: requests and latency by route and status, queue depth, inference time
//! and batch size, result-cache outcomes.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone)]
struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.002, 2.0, 16))
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, LatencyBuckets>,
    pub queue_depth: Gauge,
    pub inference_seconds: Histogram,
    pub batch_size: Histogram,
    pub cache: Family<OutcomeLabels, Counter>,
    pub shares: Family<OutcomeLabels, Counter>,
    /// Requests refused to protect the service (rate_limited, daily_budget_exhausted).
    pub refusals: Family<OutcomeLabels, Counter>,
    /// Images the day's budget still allows (-1: no budget); set when scraped.
    pub budget_left: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        let latency = Family::new_with_constructor(LatencyBuckets);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "inference_queue_depth",
            "Images queued or in inference",
            queue_depth.clone(),
        );
        let inference_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "inference_batch_seconds",
            "Time of one inference batch on the device",
            inference_seconds.clone(),
        );
        let batch_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
        registry.register(
            "inference_batch_size",
            "Images per inference batch",
            batch_size.clone(),
        );
        let cache = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "result_cache_lookups",
            "Result cache lookups by outcome (hit, miss, error)",
            cache.clone(),
        );
        let shares = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "shares",
            "Share requests by outcome (rendered, existing)",
            shares.clone(),
        );
        let refusals = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "protective_refusals",
            "Requests refused to protect the service, by code (rate_limited, daily_budget_exhausted)",
            refusals.clone(),
        );
        let budget_left = Gauge::default();
        registry.register(
            "daily_image_budget_left",
            "Images today's DAILY_IMAGE_BUDGET still allows (-1: no budget)",
            budget_left.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            queue_depth,
            inference_seconds,
            batch_size,
            cache,
            shares,
            refusals,
            budget_left,
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    pub fn cache_outcome(&self, outcome: &'static str) {
        self.cache.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn refused(&self, outcome: &'static str) {
        self.refusals
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn share_outcome(&self, outcome: &'static str) {
        self.shares.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
