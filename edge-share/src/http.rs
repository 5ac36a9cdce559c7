//! Target-agnostic HTTP rules of the Worker: settings, byte ranges, CORS, cache headers.

use shared::{intake::Limits, settings as s};

/// Immutable, content-addressed objects: a year, never revalidated.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Share pages: the manifest never changes, but the page's HTML may with a new build.
pub const PAGE_CACHE: &str = "public, max-age=300, s-maxage=86400";

/// Settings from the Worker's vars and secrets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Public base URL of the share routes; empty: the request's own origin.
    pub public_base_url: String,
    pub site_name: String,
    pub shop_url: String,
    /// Origins allowed to call the upload route from a browser; `*` for any.
    pub cors_origins: Vec<String>,
    pub max_upload_bytes: usize,
    pub max_pixels: u64,
}

impl Settings {
    /// From a lookup of vars; missing or blank ones take the defaults of `shared::settings`
    /// (unparsable numbers too: a Worker answers with its defaults rather than not at all).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        Settings {
            public_base_url: s::PUBLIC_BASE_URL
                .read(&var)
                .trim_end_matches('/')
                .to_owned(),
            site_name: s::SITE_NAME.read(&var),
            shop_url: s::SHOP_URL.read(&var),
            cors_origins: s::CORS_ALLOWED_ORIGINS
                .read(&var)
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            max_upload_bytes: s::MAX_UPLOAD_BYTES
                .parse(&var)
                .unwrap_or_else(|_| s::MAX_UPLOAD_BYTES.default_as()),
            max_pixels: s::MAX_PIXELS
                .parse(&var)
                .unwrap_or_else(|_| s::MAX_PIXELS.default_as()),
        }
    }

    /// The upload limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_bytes: self.max_upload_bytes,
            max_pixels: self.max_pixels,
            ..Limits::default()
        }
    }

    /// The base URL for links: the configured one, else the request's origin.
    pub fn base_url(&self, request_origin: &str) -> String {
        if self.public_base_url.is_empty() {
            request_origin.trim_end_matches('/').to_owned()
        } else {
            self.public_base_url.clone()
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if it is allowed.
    pub fn allow_origin(&self, origin: Option<&str>) -> Option<String> {
        let origin = origin?.trim_end_matches('/');
        if self.cors_origins.iter().any(|o| o == "*") {
            Some("*".to_owned())
        } else if self.cors_origins.iter().any(|o| o == origin) {
            Some(origin.to_owned())
        } else {
            None
        }
    }
}

/// A byte range answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// No `Range` header, or one we answer with the whole body (several ranges, other units).
    Full,
    /// Inclusive start and end.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Parse a `Range` header against a body of `len` bytes. A single `bytes=` range is honoured
/// (`a-b`, `a-`, `-n`); anything else gets the whole body, as RFC 9110 allows.
pub fn range(header: Option<&str>, len: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return Range::Full;
            };
            let end = if b.is_empty() {
                Some(len.saturating_sub(1))
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => Some(e.min(len.saturating_sub(1))),
                    _ => return Range::Full,
                }
            };
            if start >= len {
                return Range::Unsatisfiable;
            }
            end.map(|e| (start, e))
        }
        (true, false) => {
            let Ok(n) = b.parse::<u64>() else {
                return Range::Full;
            };
            if n == 0 || len == 0 {
                return Range::Unsatisfiable;
            }
            Some((len.saturating_sub(n), len - 1))
        }
        (true, true) => return Range::Full,
    };
    match parsed {
        Some((s, e)) => Range::Part(s, e),
        None => Range::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range(None, 100), Range::Full);
        assert_eq!(range(Some("bytes=0-9"), 100), Range::Part(0, 9));
        assert_eq!(range(Some("bytes=90-"), 100), Range::Part(90, 99));
        assert_eq!(range(Some("bytes=90-500"), 100), Range::Part(90, 99));
        assert_eq!(range(Some("bytes=-10"), 100), Range::Part(90, 99));
        assert_eq!(range(Some("bytes=-500"), 100), Range::Part(0, 99));
        assert_eq!(range(Some("bytes=100-"), 100), Range::Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 100), Range::Unsatisfiable);
        assert_eq!(range(Some("bytes=5-1"), 100), Range::Full);
        assert_eq!(range(Some("bytes=0-1,5-6"), 100), Range::Full);
        assert_eq!(range(Some("items=0-1"), 100), Range::Full);
        assert_eq!(range(Some("bytes=x-1"), 100), Range::Full);
    }

    #[test]
    fn settings_and_cors() {
        let s = Settings::from_vars(|k| match k {
            "CORS_ALLOWED_ORIGINS" => Some("https://shop.example, https://b.example/".into()),
            "PUBLIC_BASE_URL" => Some("https://share.example/".into()),
            "MAX_UPLOAD_BYTES" => Some("1000".into()),
            _ => None,
        });
        assert_eq!(s.base_url("http://127.0.0.1:8787"), "https://share.example");
        assert_eq!(s.max_upload_bytes, 1000);
        assert_eq!(
            s.allow_origin(Some("https://b.example")).as_deref(),
            Some("https://b.example")
        );
        assert_eq!(s.allow_origin(Some("https://evil.example")), None);
        assert_eq!(s.allow_origin(None), None);
        let open = Settings::from_vars(|k| (k == "CORS_ALLOWED_ORIGINS").then(|| "*".into()));
        assert_eq!(open.allow_origin(Some("https://x")).as_deref(), Some("*"));
        assert_eq!(
            open.base_url("http://127.0.0.1:8787/"),
            "http://127.0.0.1:8787"
        );
    }

    #[test]
    fn defaults_are_the_shared_table() {
        let d = Settings::from_vars(|_| None);
        assert_eq!(d.limits(), Limits::default());
        assert_eq!(d.site_name, shared::settings::SITE_NAME.default);
        assert!(d.cors_origins.is_empty() && d.public_base_url.is_empty());
    }
}
