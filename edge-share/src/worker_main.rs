//! The Worker glue: routing, R2, the Cache API, the rate limiter. Everything that decides what a
//! share looks like comes from `shared`.

use shared::{
    api::{ShareFile, ShareManifest, keys, share_response},
    ids::is_valid_id,
    intake::{self, IntakeError, Limits},
    page::{PageConfig, etag_matches, not_found_page, share_page, wants_json},
    publish::{self, Refusal, share_fields, share_id},
    render::{CardSubjects, OG_SIZE, RenderOptions, render_card, render_og, render_share_with},
    token::{self, TokenError},
};
use worker::{
    Bucket, Cache, Context, Date, Env, FormEntry, Headers, HttpMetadata, Method, Request, Response,
    event,
};

use crate::http::{self, IMMUTABLE, PAGE_CACHE, Range, Settings, error_json};

/// The render settings and their fingerprint: vars do not change within an isolate, so the
/// logo is decoded and fingerprinted once, not per upload.
fn render_settings(env: &Env) -> Result<&'static (RenderOptions, String), String> {
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

/// Why a request failed: refused (4xx/503 with a code) or broken (500, details to the log).
enum Fail {
    Refused(Refusal, Option<u64>),
    Internal(String),
}

type Answer = std::result::Result<Response, Fail>;

impl From<worker::Error> for Fail {
    fn from(e: worker::Error) -> Self {
        Fail::Internal(e.to_string())
    }
}
impl From<Refusal> for Fail {
    fn from(r: Refusal) -> Self {
        Fail::Refused(r, None)
    }
}
impl From<IntakeError> for Fail {
    fn from(e: IntakeError) -> Self {
        refuse(e.http_status(), e.code(), e.to_string())
    }
}
impl From<TokenError> for Fail {
    fn from(e: TokenError) -> Self {
        refuse(e.http_status(), e.code(), e.to_string())
    }
}

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Fail {
    Fail::Refused(Refusal::new(status, code, message), None)
}

fn json_response(status: u16, body: String) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("cache-control", "no-store");
    Response::from_bytes(body.into_bytes())
        .map(|r| r.with_status(status).with_headers(headers))
        .unwrap_or_else(|_| {
            Response::empty()
                .expect("an empty response")
                .with_status(status)
        })
}

fn fail_response(fail: Fail) -> Response {
    match fail {
        Fail::Refused(r, retry) => {
            let res = json_response(r.status, error_json(r.code, &r.message));
            if let Some(s) = retry {
                let _ = res.headers().set("retry-after", &s.to_string());
            }
            res
        }
        Fail::Internal(detail) => {
            worker::console_error!("internal error: {detail}");
            json_response(
                500,
                error_json(
                    "internal",
                    "something went wrong on our side; please try again",
                ),
            )
        }
    }
}

fn now_secs() -> u64 {
    Date::now().as_millis() / 1000
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let settings = Settings::from_vars(|k| env.var(k).ok().map(|v| v.to_string()));
    let origin = req.headers().get("origin").ok().flatten();
    let allowed = settings.allow_origin(origin.as_deref());
    let res = if req.method() == Method::Options {
        preflight(allowed.is_some())
    } else {
        route(req, &env, &ctx, &settings)
            .await
            .unwrap_or_else(fail_response)
    };
    if let Some(origin) = allowed {
        let h = res.headers();
        let _ = h.set("access-control-allow-origin", &origin);
        let _ = h.set("vary", "Origin");
        let _ = h.set(
            "access-control-expose-headers",
            "x-edge-cache, x-request-id",
        );
    }
    Ok(res)
}

fn preflight(allowed: bool) -> Response {
    let res = Response::empty()
        .expect("an empty response")
        .with_status(if allowed { 204 } else { 403 });
    if allowed {
        let h = res.headers();
        let _ = h.set("access-control-allow-methods", "GET, HEAD, POST, OPTIONS");
        let _ = h.set("access-control-allow-headers", "content-type, accept");
        let _ = h.set("access-control-max-age", "3600");
    }
    res
}

async fn route(req: Request, env: &Env, ctx: &Context, settings: &Settings) -> Answer {
    let path = req.path();
    let method = req.method();
    let get = matches!(method, Method::Get | Method::Head);
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    match (segments.as_slice(), get) {
        (["health"], true) => Ok(json_response(200, r#"{"status":"ok"}"#.to_owned())),
        (["api", "v2/share-image"], _) if method == Method::Post => share(req, env, settings).await,
        (["s", id], true) => page(req, env, ctx, settings, id).await,
        (["og", name], true) => share_file(req, env, ctx, name, true).await,
        (["i", name], true) => share_file(req, env, ctx, name, false).await,
        (["__bench", "render"], _)
            if method == Method::Post
                && env.var("BENCH_ROUTES").is_ok_and(|v| v.to_string() == "1") =>
        {
            bench_render(req).await
        }
        _ => Err(refuse(
            404,
            "route_not_found",
            format!("this service has no route {} {path}", method.as_ref()),
        )),
    }
}

fn bucket(env: &Env) -> std::result::Result<Bucket, Fail> {
    env.bucket("BUCKET")
        .map_err(|e| Fail::Internal(format!("no R2 binding BUCKET: {e}")))
}

fn storage_unavailable(e: worker::Error) -> Fail {
    worker::console_error!("R2: {e}");
    Fail::Refused(
        Refusal::new(
            503,
            "storage_unavailable",
            "storage is unavailable; nothing was stored, please retry",
        ),
        Some(2),
    )
}

async fn read_object(bucket: &Bucket, key: &str) -> std::result::Result<Option<Vec<u8>>, Fail> {
    match bucket
        .get(key)
        .execute()
        .await
        .map_err(storage_unavailable)?
    {
        Some(obj) => match obj.body() {
            Some(body) => Ok(Some(body.bytes().await.map_err(storage_unavailable)?)),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

async fn read_manifest(
    bucket: &Bucket,
    id: &str,
) -> std::result::Result<Option<ShareManifest>, Fail> {
    Ok(read_object(bucket, &keys::manifest(id))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

fn origin_of(req: &Request) -> String {
    req.url()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// The per-client limit on uploads (the `SHARE_LIMITER` binding; absent: no limit).
async fn rate_limited(req: &Request, env: &Env) -> bool {
    let Ok(limiter) = env.rate_limiter("SHARE_LIMITER") else {
        return false;
    };
    let client = req
        .headers()
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown".to_owned());
    match limiter.limit(client).await {
        Ok(outcome) => !outcome.success,
        Err(e) => {
            worker::console_warn!("rate limiter: {e}");
            false
        }
    }
}

/// The body's length as the client declares it (`content-length`).
fn declared_length(req: &Request) -> Option<usize> {
    req.headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
}

/// How much of a refused upload's body is read and dropped before answering (see [`drain`]).
const DRAIN_LIMIT: usize = 32 << 20;

/// Reads and drops what a client sends, up to [`DRAIN_LIMIT`] bytes. An answer sent before the
/// body is read makes the runtime close the connection while the client is still sending, and
/// the client sees a reset instead of the refusal (a browser: "network error", not "please wait
/// a minute"). Bodies that declare more than the limit are not read.
async fn drain(req: &mut Request) {
    use futures::StreamExt;
    if declared_length(req).is_some_and(|n| n > DRAIN_LIMIT) {
        return;
    }
    let Ok(mut body) = req.stream() else { return };
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}

async fn share(mut req: Request, env: &Env, settings: &Settings) -> Answer {
    match admit(&req, env, settings).await {
        Ok((secret, limits)) => share_admitted(req, env, settings, secret, limits).await,
        Err(refusal) => {
            drain(&mut req).await;
            Err(refusal)
        }
    }
}

/// The checks made before the body is read: rate limit, configuration, declared size, type.
async fn admit(
    req: &Request,
    env: &Env,
    settings: &Settings,
) -> std::result::Result<(String, Limits), Fail> {
    if rate_limited(req, env).await {
        return Err(Fail::Refused(
            Refusal::new(
                429,
                "rate_limited",
                "too many shares from this connection; please wait a minute",
            ),
            Some(60),
        ));
    }
    let secret = env
        .secret("SHARE_TOKEN_SECRET")
        .map(|s| s.to_string())
        .ok()
        .filter(|s| s.len() >= 16)
        .ok_or_else(|| {
            Fail::Refused(
                Refusal::new(
                    503,
                    "not_configured",
                    "sharing is not configured here (no SHARE_TOKEN_SECRET)",
                ),
                None,
            )
        })?;
    let limits = Limits {
        max_bytes: settings.max_upload_bytes,
        max_pixels: settings.max_pixels,
        ..Limits::default()
    };
    if declared_length(req).is_some_and(|n| n > limits.max_bytes + (1 << 20)) {
        return Err(refuse(
            413,
            "file_too_large",
            format!(
                "the upload is larger than the limit of {} bytes",
                limits.max_bytes
            ),
        ));
    }
    let content_type = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(refuse(
            415,
            "invalid_multipart",
            "expected a multipart/form-data body with an `image` field",
        ));
    }
    Ok((secret, limits))
}

async fn share_admitted(
    mut req: Request,
    env: &Env,
    settings: &Settings,
    secret: String,
    limits: Limits,
) -> Answer {
    let form = req.form_data().await.map_err(|e| {
        refuse(
            400,
            "invalid_multipart",
            format!("the request is not a valid multipart/form-data upload: {e}"),
        )
    })?;
    let text = |name: &str| {
        form.get_field(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let fields = share_fields(text("platform").as_deref(), text("title").as_deref())?;
    let tok = text("token").ok_or_else(|| {
        refuse(
            401,
            "missing_token",
            "sharing here needs the `token` that remove-background answered",
        )
    })?;
    let bucket = bucket(env)?;
    // The picture, and the stored result's id when it is one.
    let (source, stored) = match (form.get("image"), text("result_id")) {
        (Some(FormEntry::File(file)), _) => {
            if file.size() > limits.max_bytes {
                return Err(IntakeError::TooLarge {
                    size: file.size(),
                    limit: limits.max_bytes,
                }
                .into());
            }
            token::verify(secret.as_bytes(), &tok, now_secs())?;
            (file.bytes().await?, None)
        }
        (Some(FormEntry::Field(_)), _) => {
            return Err(refuse(
                400,
                "invalid_multipart",
                "`image` must be a file, not a text field",
            ));
        }
        (None, Some(result_id)) => {
            if !is_valid_id(&result_id) {
                return Err(refuse(404, "result_not_found", "no result with this id"));
            }
            token::verify_for(secret.as_bytes(), &tok, &result_id, now_secs())?;
            let result = read_object(&bucket, &keys::result(&result_id))
                .await?
                .ok_or_else(|| {
                    refuse(
                        404,
                        "result_not_found",
                        "this result is not stored at the edge; upload the image instead",
                    )
                })?;
            (result, Some(result_id))
        }
        (None, None) => {
            return Err(refuse(
                400,
                "missing_image",
                "the form needs an `image` file or a `result_id` with its `token`",
            ));
        }
    };
    intake::inspect(&source, &limits)?;

    let (render, fingerprint) =
        render_settings(env).map_err(|e| Fail::Internal(format!("render settings: {e}")))?;
    let id = share_id(&source, &fields.title, fingerprint);
    let base = settings.base_url(&origin_of(&req));
    if let Some(existing) = read_manifest(&bucket, &id).await? {
        return Ok(json_response(
            200,
            serde_json::to_string(&share_response(&base, &existing, fields.platform))
                .map_err(|e| Fail::Internal(e.to_string()))?,
        ));
    }

    // A stored result comes with its share-ready card subjects (when gpu-server stored them);
    // optional: without them the cards are made from the result itself.
    let cards = match &stored {
        Some(result_id) => read_object(&bucket, &keys::card_subjects(result_id))
            .await
            .unwrap_or(None),
        None => None,
    };
    let subjects = CardSubjects::usable(cards.as_deref(), &source, render);
    let used_subjects = if subjects.is_some() { "used" } else { "none" };
    drop(cards);
    let decoded = intake::decode(&source, &limits)?;
    drop(source);
    let rendered =
        render_share_with(&decoded.image, subjects.as_ref(), render).map_err(Fail::Internal)?;
    drop(decoded);
    let manifest = publish::manifest(
        &id,
        &fields.title,
        &settings.site_name,
        &rendered,
        now_secs(),
    );
    let objects = publish::objects(rendered, &manifest);
    // Images first (together), the manifest last: a page never points at a missing image.
    let puts = objects.images.into_iter().map(|o| {
        let bucket = &bucket;
        async move {
            bucket
                .put(&o.key, o.bytes)
                .http_metadata(HttpMetadata {
                    content_type: Some(o.content_type.to_owned()),
                    cache_control: Some(IMMUTABLE.to_owned()),
                    ..Default::default()
                })
                .execute()
                .await
        }
    });
    for r in futures::future::join_all(puts).await {
        r.map_err(storage_unavailable)?;
    }
    bucket
        .put(&objects.manifest.key, objects.manifest.bytes)
        .http_metadata(HttpMetadata {
            content_type: Some(objects.manifest.content_type.to_owned()),
            ..Default::default()
        })
        .execute()
        .await
        .map_err(storage_unavailable)?;
    let res = json_response(
        200,
        serde_json::to_string(&share_response(&base, &manifest, fields.platform))
            .map_err(|e| Fail::Internal(e.to_string()))?,
    );
    // Which way the cards were made (a result's share-ready subjects, or the picture).
    let _ = res.headers().set("x-card-subjects", used_subjects);
    Ok(res)
}

/// A cached answer for this URL, if the edge has one (`GET` only, as the Cache API keys).
async fn cached(req: &Request) -> Option<Response> {
    let url = req.url().ok()?.to_string();
    Cache::default().get(url, true).await.ok().flatten()
}

/// Store a full 200 answer in the edge cache after the response is sent.
fn remember(req: &Request, ctx: &Context, res: &mut Response) {
    let (Ok(url), Ok(copy)) = (req.url(), res.cloned()) else {
        return;
    };
    let url = url.to_string();
    ctx.wait_until(async move {
        if let Err(e) = Cache::default().put(url, copy).await {
            worker::console_warn!("cache put: {e}");
        }
    });
}

/// Answer `bytes` honouring `If-None-Match`, `Range` and `HEAD`.
fn serve_bytes(
    req: &Request,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
    etag: &str,
    cache_status: &str,
) -> Answer {
    let headers = object_headers(content_type, cache_control, etag)?;
    headers.set("accept-ranges", "bytes")?;
    headers.set("x-edge-cache", cache_status)?;
    let h = |name: &str| req.headers().get(name).ok().flatten();
    if etag_matches(h("if-none-match").as_deref(), etag) {
        return Ok(Response::empty()?.with_status(304).with_headers(headers));
    }
    let len = bytes.len() as u64;
    let (status, body) = match http::range(h("range").as_deref(), len) {
        Range::Full => (200, bytes),
        Range::Part(start, end) => {
            headers.set("content-range", &format!("bytes {start}-{end}/{len}"))?;
            (206, bytes[start as usize..=end as usize].to_vec())
        }
        Range::Unsatisfiable => {
            headers.set("content-range", &format!("bytes */{len}"))?;
            return Ok(Response::empty()?.with_status(416).with_headers(headers));
        }
    };
    headers.set("content-length", &body.len().to_string())?;
    let body = if req.method() == Method::Head {
        Vec::new()
    } else {
        body
    };
    Ok(Response::from_bytes(body)?
        .with_status(status)
        .with_headers(headers))
}

/// `/og/…` and `/i/…`: content-addressed images, from the edge cache or R2.
async fn share_file(req: Request, env: &Env, ctx: &Context, name: &str, under_og: bool) -> Answer {
    let Some((id, kind)) = ShareFile::parse(name, under_og) else {
        return Err(refuse(404, "share_not_found", "no such share image"));
    };
    let etag = format!("\"{name}\"");
    if let Some(mut hit) = cached(&req).await {
        let bytes = hit.bytes().await?;
        return serve_bytes(&req, bytes, kind.content_type(), IMMUTABLE, &etag, "HIT");
    }
    let bytes = read_object(&bucket(env)?, &kind.key(&id))
        .await?
        .ok_or_else(|| refuse(404, "share_not_found", "no such share image"))?;
    let mut full = serve_bytes_plain(bytes.clone(), kind.content_type(), IMMUTABLE, &etag)?;
    remember(&req, ctx, &mut full);
    serve_bytes(&req, bytes, kind.content_type(), IMMUTABLE, &etag, "MISS")
}

/// The headers every stored object is answered with.
fn object_headers(content_type: &str, cache_control: &str, etag: &str) -> worker::Result<Headers> {
    let headers = Headers::new();
    headers.set("content-type", content_type)?;
    headers.set("cache-control", cache_control)?;
    headers.set("etag", etag)?;
    Ok(headers)
}

/// The plain 200 stored in the edge cache.
fn serve_bytes_plain(
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
    etag: &str,
) -> Answer {
    let headers = object_headers(content_type, cache_control, etag)?;
    Ok(Response::from_bytes(bytes)?.with_headers(headers))
}

fn share_not_found(wants_json: bool, settings: &Settings) -> Answer {
    if wants_json {
        return Err(refuse(404, "share_not_found", "no share with this id"));
    }
    Ok(Response::from_html(not_found_page(&settings.shop_url))?.with_status(404))
}

/// `/s/{id}`: the share page, from the edge cache or rendered from the stored manifest.
async fn page(req: Request, env: &Env, ctx: &Context, settings: &Settings, id: &str) -> Answer {
    let json = wants_json(req.headers().get("accept").ok().flatten().as_deref());
    if !is_valid_id(id) {
        return share_not_found(json, settings);
    }
    let etag = format!("\"page-{id}\"");
    let html_type = "text/html; charset=utf-8";
    if let Some(mut hit) = cached(&req).await {
        let bytes = hit.bytes().await?;
        return serve_bytes(&req, bytes, html_type, PAGE_CACHE, &etag, "HIT");
    }
    let Some(manifest) = read_manifest(&bucket(env)?, id).await? else {
        return share_not_found(json, settings);
    };
    let cfg = PageConfig {
        base_url: settings.base_url(&origin_of(&req)),
        site_name: settings.site_name.clone(),
        shop_url: settings.shop_url.clone(),
    };
    let html = share_page(&cfg, &manifest).into_bytes();
    let mut full = serve_bytes_plain(html.clone(), html_type, PAGE_CACHE, &etag)?;
    remember(&req, ctx, &mut full);
    serve_bytes(&req, html, html_type, PAGE_CACHE, &etag, "MISS")
}

/// Benchmark only (`BENCH_ROUTES=1`): a PNG in (or a result's share-ready card subjects, which
/// need no decoding and no resizing), the 1200×630 share card out, nothing stored. `?n=` renders
/// it that many times (at most 100), so a client can take the render's own time apart from
/// moving the body into the isolate.
async fn bench_render(mut req: Request) -> Answer {
    let n = req
        .url()?
        .query_pairs()
        .find(|(k, _)| k == "n")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 100);
    let body = req.bytes().await?;
    let opts = RenderOptions::default();
    let render = || {
        if body.starts_with(b"PCCARDS") {
            let subjects = CardSubjects::from_bytes_for(&body, &[OG_SIZE])
                .map_err(|e| refuse(400, "invalid_image", e))?;
            render_card(&subjects, OG_SIZE, &opts).map_err(Fail::Internal)
        } else {
            render_og(&intake::decode(&body, &Limits::default())?.image, &opts)
                .map_err(Fail::Internal)
        }
    };
    let mut og = render()?;
    for _ in 1..n {
        og = render()?;
    }
    serve_bytes_plain(og.bytes, "image/jpeg", "no-store", "\"bench\"")
}
