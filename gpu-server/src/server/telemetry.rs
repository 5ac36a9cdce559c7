//! Logs: JSON lines for Cloud Logging (`severity`, `message`, `time`, the request's fields) or
//! readable text locally. `LOG_LEVEL` sets the level.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// Install the global subscriber. `format`: `json`, `text`, or `None` for json on Cloud Run
/// (`K_SERVICE` set) and text elsewhere. Safe to call more than once (later calls do nothing).
pub fn init(level: &str, format: Option<&str>) {
    let filter = EnvFilter::try_new(level)
        .or_else(|_| EnvFilter::try_new("info"))
        .expect("'info' is a valid filter");
    let json = match format {
        Some(f) => f.eq_ignore_ascii_case("json"),
        None => std::env::var_os("K_SERVICE").is_some(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder
            .event_format(CloudJson)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

/// One JSON object per line in the shape Cloud Logging reads.
struct CloudJson;

fn severity(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "ERROR",
        tracing::Level::WARN => "WARNING",
        tracing::Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

impl<S, N> FormatEvent<S, N> for CloudJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = serde_json::Map::new();
        let mut visitor = JsonVisitor(&mut fields);
        event.record(&mut visitor);
        let message = fields
            .remove("message")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        // Span fields (request id, route) go in too, innermost last so it wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>()
                    && let Ok(serde_json::Value::Object(map)) =
                        serde_json::from_str::<serde_json::Value>(f.as_str())
                {
                    for (k, v) in map {
                        fields.entry(k).or_insert(v);
                    }
                }
            }
        }
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = serde_json::Map::new();
        line.insert("severity".into(), severity(event.metadata().level()).into());
        line.insert("message".into(), message.into());
        line.insert(
            "timestamp".into(),
            serde_json::json!({"seconds": time.as_secs(), "nanos": time.subsec_nanos()}),
        );
        line.insert("target".into(), event.metadata().target().into());
        line.extend(fields);
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}
