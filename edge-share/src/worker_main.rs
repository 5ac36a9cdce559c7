//! The Worker's entry point and routes (`worker::Router`), and the read side: share pages and
//! images from the edge cache or R2. Everything that decides what a share is comes from
//! `shared`; the share flow itself is [`crate::share`].

use shared::{
    api::ShareFile,
    ids::is_valid_id,
    intake::{self, Limits},
    page::{PageConfig, etag_matches, not_found_page, share_page, wants_json},
    refusal::{Refusal, error_json},
    render::{CardSubjects, OG_SIZE, RenderOptions, render_card, render_og},
};
use worker::{
    Cache, Context, Env, Headers, Method, Request, Response, RouteContext, Router, event,
};

use crate::{
    error::{Answer, Fail, fail_response, json_response},
    http::{self, IMMUTABLE, PAGE_CACHE, Range, Settings},
    r2::R2,
};

/// What every route gets: the request's settings and the event's context.
struct Shell<'a> {
    settings: Settings,
    ctx: &'a Context,
}

type Route<'a> = RouteContext<&'a Shell<'a>>;

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let settings = Settings::from_vars(|k| env.var(k).ok().map(|v| v.to_string()));
    let origin = req.headers().get("origin").ok().flatten();
    let allowed = settings.allow_origin(origin.as_deref());
    let res = if req.method() == Method::Options {
        preflight(allowed.is_some())
    } else {
        let shell = Shell {
            settings,
            ctx: &ctx,
        };
        route(req, env, &shell).await
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

/// The generic 500's body, for the JS entry point's answer to a trap (`entry.mjs` reads it
/// once, while the instance is sound).
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn internal_error_body() -> String {
    error_json(shared::refusal::INTERNAL.0, shared::refusal::INTERNAL.1)
}

fn answer(result: Answer) -> worker::Result<Response> {
    Ok(result.unwrap_or_else(fail_response))
}

async fn route(req: Request, env: Env, shell: &Shell<'_>) -> Response {
    let bench = env.var("BENCH_ROUTES").is_ok_and(|v| v.to_string() == "1");
    let mut router = Router::with_data(shell)
        .get_async("/health", |_, _| async {
            answer(Ok(json_response(200, r#"{"status":"ok"}"#.to_owned())))
        })
        .post_async("/api/v2/share-image", |req, cx: Route| async move {
            answer(crate::share::share(req, &cx.env, &cx.data.settings).await)
        });
    router = router
        .get_async("/og/:name", og_route)
        .head_async("/og/:name", og_route)
        .get_async("/i/:name", image_route)
        .head_async("/i/:name", image_route)
        .get_async("/s/:id", page_route)
        .head_async("/s/:id", page_route);
    if bench {
        router = router.post_async("/__bench/render", |req, _| async {
            answer(bench_render(req).await)
        });
    }
    let no_route = |req: Request, _| async move {
        answer(Err(Refusal::not_found(
            "route_not_found",
            format!(
                "this service has no route {} {}",
                req.method().as_ref(),
                req.path()
            ),
        )
        .into()))
    };
    let router = router
        .or_else_any_method_async("/", no_route)
        .or_else_any_method_async("/*path", no_route);
    let method = req.method();
    let path = req.path();
    match router.run(req, env).await {
        // The router's own answer for a known path and another method is plain text.
        Ok(res) if res.status_code() == 405 => fail_response(Fail::Refused(Refusal::new(
            405,
            "method_not_allowed",
            format!("{path} does not take {}", method.as_ref()),
        ))),
        Ok(res) => res,
        Err(e) => fail_response(e.into()),
    }
}

async fn og_route(req: Request, cx: Route<'_>) -> worker::Result<Response> {
    let name = cx.param("name").cloned().unwrap_or_default();
    answer(share_file(req, &cx, &name, true).await)
}

async fn image_route(req: Request, cx: Route<'_>) -> worker::Result<Response> {
    let name = cx.param("name").cloned().unwrap_or_default();
    answer(share_file(req, &cx, &name, false).await)
}

async fn page_route(req: Request, cx: Route<'_>) -> worker::Result<Response> {
    let id = cx.param("id").cloned().unwrap_or_default();
    answer(page(req, &cx, &id).await)
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
async fn share_file(req: Request, cx: &Route<'_>, name: &str, under_og: bool) -> Answer {
    let Some((id, kind)) = ShareFile::parse(name, under_og) else {
        return Err(Refusal::not_found("share_not_found", "no such share image").into());
    };
    let etag = format!("\"{name}\"");
    if let Some(mut hit) = cached(&req).await {
        let bytes = hit.bytes().await?;
        return serve_bytes(&req, bytes, kind.content_type(), IMMUTABLE, &etag, "HIT");
    }
    let bytes = R2::of(&cx.env)?
        .object(&kind.key(&id))
        .await?
        .ok_or_else(|| Refusal::not_found("share_not_found", "no such share image"))?;
    let mut full = serve_bytes_plain(bytes.clone(), kind.content_type(), IMMUTABLE, &etag)?;
    remember(&req, cx.data.ctx, &mut full);
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
        return Err(Refusal::not_found("share_not_found", "no share with this id").into());
    }
    Ok(Response::from_html(not_found_page(&settings.shop_url))?.with_status(404))
}

/// `/s/{id}`: the share page, from the edge cache or rendered from the stored manifest.
async fn page(req: Request, cx: &Route<'_>, id: &str) -> Answer {
    let settings = &cx.data.settings;
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
    let Some(manifest) = R2::of(&cx.env)?.manifest(id).await? else {
        return share_not_found(json, settings);
    };
    let cfg = PageConfig {
        base_url: settings.base_url(&crate::origin_of(&req)),
        site_name: settings.site_name.clone(),
        shop_url: settings.shop_url.clone(),
    };
    let html = share_page(&cfg, &manifest).into_bytes();
    let mut full = serve_bytes_plain(html.clone(), html_type, PAGE_CACHE, &etag)?;
    remember(&req, cx.data.ctx, &mut full);
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
    let render = || -> Result<_, Fail> {
        if body.starts_with(b"PCCARDS") {
            let subjects = CardSubjects::from_bytes_for(&body, &[OG_SIZE])
                .map_err(|e| Refusal::bad("invalid_image", e))?;
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
