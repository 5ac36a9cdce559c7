//! `gpu-server verify-deploy <base-url>`: checks a running service against this build.
//!
//! Everything is driven by this binary's own route table (the same list the router and the
//! OpenAPI document are generated from), so a route added to the code is checked from the next
//! build on, with nothing to keep in step by hand:
//!
//! 1. `/ready` passes, waiting through a cold start up to `--timeout`;
//! 2. `/version` reports the expected commit (`--expect-commit`);
//! 3. `/openapi.json` lists every route this build serves;
//! 4. every route answers something other than "no such route": a 404 counts only when it is
//!    this API's JSON error for a missing resource (an unknown share id), never the router's
//!    own 404 or 405. Upload routes are probed with a 1×1 PNG, which a current build refuses
//!    with a 4xx validation error before storing anything.

use std::{
    fmt::Write as _,
    io::Cursor,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use reqwest::{Method, StatusCode, header};
use shared::api::ErrorBody;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The service's base URL, for example a Cloud Run revision tag URL.
    pub base_url: String,
    /// The git commit the service must report (a prefix of at least 7 characters is enough).
    #[arg(long, env = "EXPECT_COMMIT")]
    pub expect_commit: Option<String>,
    /// How long to wait for `/ready` through a cold start, for example `300s` or `5m`.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer …` (a private Cloud Run service wants an identity token).
    #[arg(long, env = "VERIFY_ID_TOKEN", hide_env_values = true)]
    pub id_token: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s or 5m"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("`{s}`: use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// One row of the report.
#[derive(Debug)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

impl Check {
    fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checks = runtime.block_on(verify(&args))?;
    print!("{}", report(&checks));
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    if failed.is_empty() {
        println!("verify-deploy: all {} checks passed", checks.len());
        Ok(ExitCode::SUCCESS)
    } else {
        let names: Vec<String> = failed
            .iter()
            .map(|c| format!("{} ({})", c.name, c.detail))
            .collect();
        eprintln!(
            "verify-deploy: {} of {} checks failed: {}",
            failed.len(),
            checks.len(),
            names.join("; ")
        );
        Ok(ExitCode::FAILURE)
    }
}

fn report(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:<width$}  {:<6}  DETAIL\n", "CHECK", "RESULT");
    for c in checks {
        let result = if c.ok { "ok" } else { "FAILED" };
        let _ = writeln!(out, "{:<width$}  {:<6}  {}", c.name, result, c.detail);
    }
    out
}

struct Probe {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Probe {
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let res = self.request(Method::GET, path).send().await?;
        let status = res.status();
        let body = res.bytes().await?;
        let value = serde_json::from_slice(&body)
            .with_context(|| format!("{path} answered {status} without JSON"))?;
        Ok((status, value))
    }
}

async fn verify(args: &VerifyArgs) -> anyhow::Result<Vec<Check>> {
    let base = args.base_url.trim_end_matches('/').to_owned();
    anyhow::ensure!(
        base.starts_with("http://") || base.starts_with("https://"),
        "the base URL must start with http:// or https://, not `{base}`"
    );
    let probe = Probe {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        base,
        token: args.id_token.clone(),
    };
    let mut checks = vec![wait_ready(&probe, args.timeout).await];
    checks.push(check_version(&probe, args.expect_commit.as_deref()).await);

    let ours = crate::server::route_table();
    let listed = match probe.get_json("/openapi.json").await {
        Ok((status, doc)) if status.is_success() => {
            match serde_json::from_value::<utoipa::openapi::OpenApi>(doc) {
                Ok(api) => {
                    let theirs = crate::server::openapi_table(&api);
                    let extra = theirs.iter().filter(|r| !ours.contains(r)).count();
                    let detail = if extra == 0 {
                        format!("{} routes", theirs.len())
                    } else {
                        format!("{} routes, {extra} this build does not know", theirs.len())
                    };
                    checks.push(Check::new("openapi.json", true, detail));
                    Some(theirs)
                }
                Err(e) => {
                    checks.push(Check::new(
                        "openapi.json",
                        false,
                        format!("not an OpenAPI document: {e}"),
                    ));
                    None
                }
            }
        }
        Ok((status, _)) => {
            checks.push(Check::new(
                "openapi.json",
                false,
                format!("answered {status}"),
            ));
            None
        }
        Err(e) => {
            checks.push(Check::new("openapi.json", false, format!("{e:#}")));
            None
        }
    };

    for (method, path) in &ours {
        let name = format!("{method} {path}");
        let in_doc = listed
            .as_ref()
            .map(|l| l.contains(&(method.clone(), path.clone())));
        let (answered, detail) = probe_route(&probe, method, path).await;
        let mut notes = Vec::new();
        match in_doc {
            Some(false) => notes.push("missing from /openapi.json".to_owned()),
            Some(true) => notes.push("listed".to_owned()),
            None => {}
        }
        notes.push(detail);
        checks.push(Check::new(
            name,
            answered && in_doc != Some(false),
            notes.join(", "),
        ));
    }
    Ok(checks)
}

async fn wait_ready(probe: &Probe, timeout: Duration) -> Check {
    let t0 = Instant::now();
    loop {
        let last = match probe.get_json("/ready").await {
            Ok((status, _)) if status.is_success() => {
                return Check::new(
                    "ready",
                    true,
                    format!("ready after {:.1} s", t0.elapsed().as_secs_f64()),
                );
            }
            Ok((status, body)) => {
                let reasons = body
                    .get("reasons")
                    .and_then(|r| r.as_array())
                    .map(|r| {
                        r.iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                format!("{status}: {reasons}")
            }
            Err(e) => format!("{e:#}"),
        };
        if t0.elapsed() >= timeout {
            return Check::new(
                "ready",
                false,
                format!("not ready after {:.0} s: {last}", timeout.as_secs_f64()),
            );
        }
        tokio::time::sleep(Duration::from_secs(2).min(timeout.saturating_sub(t0.elapsed()))).await;
    }
}

async fn check_version(probe: &Probe, expect: Option<&str>) -> Check {
    let (status, body) = match probe.get_json("/version").await {
        Ok(v) => v,
        Err(e) => return Check::new("version", false, format!("{e:#}")),
    };
    let commit = body.get("commit").and_then(|c| c.as_str()).unwrap_or("");
    if !status.is_success() || commit.is_empty() {
        return Check::new(
            "version",
            false,
            format!("answered {status} without a commit"),
        );
    }
    let built = body
        .get("build_time")
        .and_then(|c| c.as_str())
        .unwrap_or("?");
    match expect {
        None => Check::new("version", true, format!("commit {commit}, built {built}")),
        Some(want) => {
            let want = want.trim().to_ascii_lowercase();
            let have = commit.to_ascii_lowercase();
            let same = want.len() >= 7
                && have.len() >= 7
                && (have.starts_with(&want) || want.starts_with(&have));
            let detail = if same {
                format!("commit {commit}, built {built}")
            } else {
                format!("commit {commit}, expected {want}")
            };
            Check::new("version", same, detail)
        }
    }
}

/// A path with its parameters filled: ids well-formed but unknown, files named as the route
/// expects them.
fn sample_path(path: &str) -> String {
    let id = "0".repeat(32);
    let file = if path.starts_with("/assets/") {
        "app.js".to_owned()
    } else if path.starts_with("/i/") {
        format!("{id}.png")
    } else {
        format!("{id}.jpg")
    };
    path.replace("{id}", &id).replace("{file}", &file)
}

/// A 1×1 PNG: every upload route must refuse it with a 4xx before storing anything.
fn tiny_png() -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbaImage::from_pixel(1, 1, image::Rgba([200, 120, 40, 255]))
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encoding a 1×1 PNG in memory cannot fail");
    out
}

fn multipart_probe() -> (String, Vec<u8>) {
    let boundary = "verify-deploy-probe-7f3a";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"platform\"\r\n\r\nfacebook\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"probe.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&tiny_png());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Whether the route answers as a route of this API, and what it answered.
async fn probe_route(probe: &Probe, method: &str, path: &str) -> (bool, String) {
    let Ok(m) = Method::from_bytes(method.as_bytes()) else {
        return (false, format!("unknown method {method}"));
    };
    let mut req = probe.request(m.clone(), &sample_path(path));
    if m == Method::POST && path.starts_with("/api/") {
        let (kind, body) = multipart_probe();
        req = req.header(header::CONTENT_TYPE, kind).body(body);
    }
    let res = match req.send().await {
        Ok(r) => r,
        Err(e) => return (false, format!("no answer: {e:#}")),
    };
    let status = res.status();
    let body = res.bytes().await.unwrap_or_default();
    let code = serde_json::from_slice::<ErrorBody>(&body)
        .ok()
        .map(|b| b.error.code);
    let shown = match &code {
        Some(c) => format!("answered {} {c}", status.as_u16()),
        None => format!("answered {}", status.as_u16()),
    };
    let ok = match status {
        StatusCode::NOT_FOUND => matches!(&code, Some(c) if c != "route_not_found"),
        StatusCode::METHOD_NOT_ALLOWED => false,
        s => !s.is_server_error(),
    };
    let detail = if ok {
        shown
    } else if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
        format!("{shown} (the service does not serve this route)")
    } else {
        shown
    };
    (ok, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sample_paths_fill_every_parameter() {
        for (_, path) in crate::server::route_table() {
            let filled = sample_path(&path);
            assert!(!filled.contains('{'), "{path} -> {filled}");
        }
        assert_eq!(sample_path("/assets/{file}"), "/assets/app.js");
        assert!(sample_path("/i/{file}").ends_with(".png"));
    }

    #[test]
    fn the_probe_image_is_a_png_every_upload_route_refuses() {
        let png = tiny_png();
        let err = shared::intake::inspect(&png, &shared::intake::Limits::default()).unwrap_err();
        assert_eq!(err.code(), "image_too_small");
    }
}
