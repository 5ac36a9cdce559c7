//! Handler tests: every route and every error code, through `app(state)` with `oneshot`, on
//! memory storage and the real embedded model (`gpu-server setup` must have run).

use std::time::Duration;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use clap::Parser;
use gpu_server::server::{AppState, ServeArgs, app, build_state, route_table};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

#[derive(Parser)]
#[command(args_override_self = true)]
struct Wrap {
    #[command(flatten)]
    args: ServeArgs,
}

/// Settings as the binary would parse them, on memory storage unless overridden.
fn args(extra: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "test",
        "--storage-bucket",
        "memory://",
        "--customer-storage-bucket",
        "memory://",
        "--share-token-secret",
        "0123456789abcdef-test-secret",
    ];
    argv.extend_from_slice(extra);
    Wrap::parse_from(argv).args
}

/// A share token this service signed (an upload needs one, for any result).
fn upload_token(state: &AppState) -> String {
    shared::token::sign(&state.secret, &"ab".repeat(16), u64::MAX / 2)
}

async fn setup(extra: &[&str]) -> (AppState, Router) {
    let a = args(extra);
    let state = build_state(&a).expect("state");
    let router = app(state.clone(), &["https://shop.example".to_owned()]);
    (state, router)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(router: &Router, req: Request<Body>) -> Answer {
    let res = router.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(router: &Router, uri: &str) -> Answer {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// A form part: (name, filename, bytes).
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);
type OwnedPart = (&'static str, Option<&'static str>, Vec<u8>);

/// A multipart body from (name, filename, bytes) parts.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "XyZbOuNdArY42";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post(
    router: &Router,
    uri: &str,
    parts: &[(&str, Option<&str>, &[u8])],
    json: bool,
) -> Answer {
    let (ctype, body) = multipart(parts);
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, ctype);
    if json {
        req = req.header(header::ACCEPT, "application/json");
    }
    send(router, req.body(Body::from(body)).unwrap()).await
}

fn photo() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/u2netp/chelsea.png"
    ))
    .expect("fixture photo")
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn wait_ready(router: &Router) {
    for _ in 0..600 {
        if get(router, "/ready").await.status == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not ready after 30 s");
}

#[tokio::test]
async fn operations_routes_answer() {
    let (_, router) = setup(&[]).await;
    let h = get(&router, "/health").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json()["status"], "ok");
    assert!(!h.header("x-request-id").is_empty());
    assert_eq!(h.header("x-app-commit"), env!("GIT_COMMIT"));

    wait_ready(&router).await;
    let r = get(&router, "/ready").await.json();
    assert_eq!(r["ready"], true);
    assert_eq!(r["model"], "ready");

    let w = get(&router, "/warmup").await;
    assert_eq!(w.status, StatusCode::OK, "{}", w.text());
    assert!(w.json()["inference_ms"].as_f64().unwrap() > 0.0);
    let w = send(
        &router,
        Request::post("/warmup").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(w.status, StatusCode::OK);

    let v = get(&router, "/version").await.json();
    assert_eq!(v["commit"], env!("GIT_COMMIT"));
    assert_eq!(v["model"], "u2netp");
    assert_eq!(v["backend"], "cpu");
    assert!(!v["build_time"].as_str().unwrap().is_empty());

    let m = get(&router, "/metrics").await;
    let text = m.text();
    for name in [
        "http_requests_total",
        "http_request_duration_seconds",
        "inference_queue_depth",
        "inference_batch_seconds",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(text.contains("route=\"/warmup\""), "{text}");

    let docs = get(&router, "/docs").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text().contains("/api/v2/share-image"));

    let page = get(&router, "/").await;
    assert!(page.text().contains("<form id=\"upload\""));
    assert_eq!(get(&router, "/assets/app.js").await.status, StatusCode::OK);
    assert_eq!(get(&router, "/assets/nope.js").await.code(), "not_found");
    assert_eq!(
        get(&router, "/no/such/route").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn openapi_document_and_route_table_agree() {
    let (_, router) = setup(&[]).await;
    let doc = get(&router, "/openapi.json").await.json();
    let mut served: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            served.push((method.to_uppercase(), path.clone()));
        }
    }
    served.sort();
    assert_eq!(served, route_table());
    for (method, path) in [
        ("POST", "/api/v2/remove-background"),
        ("POST", "/api/v2/share-image"),
        ("GET", "/s/{id}"),
        ("GET", "/og/{file}"),
        ("GET", "/i/{file}"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/warmup"),
        ("POST", "/warmup"),
        ("GET", "/version"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/metrics"),
        ("GET", "/"),
    ] {
        assert!(
            served.contains(&(method.into(), path.into())),
            "{method} {path} not documented"
        );
    }
    // Every documented route is served: none answers the router's 404 for unknown paths.
    for (method, path) in &served {
        let uri = path
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace("{file}", "x.jpg");
        let req = Request::builder()
            .method(method.as_str())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let a = send(&router, req).await;
        let code = serde_json::from_slice::<Value>(&a.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        assert!(
            code.as_deref() != Some("route_not_found")
                && a.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but not routed"
        );
    }
    // A path this build does not serve is a JSON 404 with its own code (verify-deploy tells a
    // missing route from a missing share by it).
    let a = get(&router, "/api/v2/share-images").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.code(), "route_not_found");
    assert!(a.text().contains("/api/v2/share-images"), "{}", a.text());
}

#[tokio::test]
async fn removes_background_then_serves_from_cache() {
    let (state, router) = setup(&[]).await;
    let img = photo();
    let a = post(
        &router,
        "/api/v2/remove-background",
        &[("image", Some("cat.png"), &img)],
        false,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("content-type"), "image/png");
    assert_eq!(a.header("x-cache"), "MISS");
    let id = a.header("x-result-id").to_owned();
    assert!(shared::ids::is_valid_id(&id));
    let token = a.header("x-share-token").to_owned();
    shared::token::verify_for(&state.secret, &token, &id, 0).expect("valid token");
    let out = image::load_from_memory(&a.body).unwrap();
    let src = image::load_from_memory(&img).unwrap();
    assert_eq!((out.width(), out.height()), (src.width(), src.height()));
    let rgba = out.to_rgba8();
    let transparent =
        rgba.pixels().filter(|p| p.0[3] < 16).count() as f64 / rgba.pixels().len() as f64;
    assert!(
        (0.1..0.9).contains(&transparent),
        "cut-out has {transparent:.2} transparent"
    );

    let b = post(
        &router,
        "/api/v2/remove-background",
        &[("image", Some("cat.png"), &img)],
        false,
    )
    .await;
    assert_eq!(b.header("x-cache"), "HIT");
    assert_eq!(b.header("x-result-id"), id);
    assert_eq!(b.body, a.body);

    // Other options, JSON answer, then the result by URL.
    let j = post(
        &router,
        "/api/v2/remove-background",
        &[
            ("image", Some("cat.png"), &img),
            ("type", None, b"white"),
            ("format", None, b"jpeg"),
        ],
        true,
    )
    .await;
    assert_eq!(j.status, StatusCode::OK, "{}", j.text());
    let body = j.json();
    assert_eq!(body["content_type"], "image/jpeg");
    assert_eq!(body["cache"], "miss");
    assert_ne!(body["result_id"], id.as_str());
    let url = body["image_url"].as_str().unwrap();
    let path = url.split_once("://").unwrap().1;
    let path = &path[path.find('/').unwrap()..];
    let r = get(&router, path).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "image/jpeg");
    assert!(r.header("cache-control").contains("immutable"));
    let metrics = get(&router, "/metrics").await.text();
    assert!(
        metrics.contains("result_cache_lookups_total{outcome=\"hit\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn processing_errors_have_stable_codes() {
    let (state, router) = setup(&["--max-upload-bytes", "200000", "--max-pixels", "1000000"]).await;
    let img = png(64, 64);
    let cases: Vec<(Vec<OwnedPart>, StatusCode, &str)> = vec![
        (
            vec![("type", None, b"rgba".to_vec())],
            StatusCode::BAD_REQUEST,
            "missing_image",
        ),
        (
            vec![
                ("image", Some("a"), img.clone()),
                ("threshold", None, b"2".to_vec()),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_option",
        ),
        (
            vec![
                ("image", Some("a"), img.clone()),
                ("threshold", None, b"abc".to_vec()),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_option",
        ),
        (
            vec![
                ("image", Some("a"), img.clone()),
                ("type", None, b"sepia".to_vec()),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_option",
        ),
        (
            vec![
                ("image", Some("a"), img.clone()),
                ("format", None, b"gif".to_vec()),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_option",
        ),
        (
            vec![
                ("image", Some("a"), img.clone()),
                ("reverse", None, b"maybe".to_vec()),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_option",
        ),
        (
            vec![
                ("image", Some("a"), img.clone()),
                ("model", None, b"sam".to_vec()),
            ],
            StatusCode::BAD_REQUEST,
            "unknown_model",
        ),
        (
            vec![("image", Some("a"), Vec::new())],
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_file",
        ),
        (
            vec![("image", Some("a"), b"hello, not an image".to_vec())],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (
            vec![("image", Some("a"), b"GIF89a\x01\x00\x01\x00".to_vec())],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (
            vec![("image", Some("a"), img[..img.len() / 2].to_vec())],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_image",
        ),
        (
            vec![("image", Some("a"), png(1, 1))],
            StatusCode::UNPROCESSABLE_ENTITY,
            "image_too_small",
        ),
        (
            vec![("image", Some("a"), png(1100, 1000))],
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
        (
            vec![("image", Some("a"), vec![0x89; 300_000])],
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
        ),
        (
            vec![
                ("image", Some("a"), img.clone()),
                ("image", Some("b"), img.clone()),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_multipart",
        ),
    ];
    for (parts, status, code) in cases {
        let parts: Vec<(&str, Option<&str>, &[u8])> = parts
            .iter()
            .map(|(n, f, d)| (*n, *f, d.as_slice()))
            .collect();
        let a = post(&router, "/api/v2/remove-background", &parts, false).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (status, code),
            "{}",
            a.text()
        );
        assert!(!a.json()["error"]["message"].as_str().unwrap().is_empty());
    }
    // Not multipart at all, and a multipart body cut short.
    let a = send(
        &router,
        Request::post("/api/v2/remove-background")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_multipart")
    );
    let (ctype, body) = multipart(&[("image", Some("a"), &img)]);
    let a = send(
        &router,
        Request::post("/api/v2/remove-background")
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(body[..body.len() / 2].to_vec()))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_multipart"),
        "{}",
        a.text()
    );

    // Full queue: every permit taken, the next request is turned away at once.
    let held = state
        .process_slots
        .clone()
        .try_acquire_many_owned(4)
        .unwrap();
    let a = post(
        &router,
        "/api/v2/remove-background",
        &[("image", Some("a"), &img)],
        false,
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "queue_full")
    );
    assert_eq!(a.header("retry-after"), "2");
    drop(held);
    let a = post(
        &router,
        "/api/v2/remove-background",
        &[("image", Some("a"), &img)],
        false,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    assert_eq!(
        get(&router, "/api/v2/results/../../etc/passwd")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&router, "/api/v2/results/0123456789abcdef0123456789abcdef")
            .await
            .code(),
        "result_not_found"
    );
}

#[tokio::test]
async fn shares_an_upload_and_serves_its_page_and_images() {
    let (state, router) = setup(&["--public-base-url", "https://pets.example"]).await;
    let img = photo();
    let token = upload_token(&state);
    // Without a token nothing is stored: the shop's bucket is not public image hosting.
    let refused = post(
        &router,
        "/api/v2/share-image",
        &[
            ("image", Some("cat.png"), &img),
            ("platform", None, b"facebook"),
        ],
        false,
    )
    .await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::BAD_REQUEST, "missing_token")
    );
    let a = post(
        &router,
        "/api/v2/share-image",
        &[
            ("image", Some("cat.png"), &img),
            ("token", None, token.as_bytes()),
            ("platform", None, b"facebook"),
            ("title", None, b"Rex <3 & me"),
        ],
        false,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let s = a.json();
    let id = s["id"].as_str().unwrap().to_owned();
    assert_eq!(s["share_url"], format!("https://pets.example/s/{id}"));
    assert_eq!(
        s["og_image_url"],
        format!("https://pets.example/og/{id}.jpg")
    );
    assert!(s["intent_url"].as_str().unwrap().starts_with(
        "https://www.facebook.com/sharer/sharer.php?u=https%3A%2F%2Fpets.example%2Fs%2F"
    ));
    assert_eq!(s["intents"].as_object().unwrap().len(), 7);

    let page = get(&router, &format!("/s/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(
        html.contains(&format!(
            "<meta property=\"og:image\" content=\"https://pets.example/og/{id}.jpg\">"
        )),
        "{html}"
    );
    assert!(html.contains("Rex &lt;3 &amp; me"));
    assert!(!html.contains("Rex <3"));

    for (path, size, ctype) in [
        (format!("/og/{id}.jpg"), (1200, 630), "image/jpeg"),
        (format!("/og/{id}-pin.jpg"), (1000, 1500), "image/jpeg"),
        (format!("/og/{id}-square.jpg"), (1080, 1080), "image/jpeg"),
        (format!("/i/{id}.png"), (451, 300), "image/png"),
    ] {
        let r = get(&router, &path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header("content-type"), ctype);
        assert!(r.header("cache-control").contains("immutable"));
        let etag = r.header("etag").to_owned();
        let im = image::load_from_memory(&r.body).unwrap();
        assert_eq!((im.width(), im.height()), size, "{path}");
        let again = send(
            &router,
            Request::get(&path)
                .header(header::IF_NONE_MATCH, &etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
    }

    // The same picture and title again: the same share, nothing re-rendered.
    let b = post(
        &router,
        "/api/v2/share-image",
        &[
            ("image", Some("cat.png"), &img),
            ("token", None, token.as_bytes()),
            ("platform", None, b"x"),
            ("title", None, b"Rex <3 & me"),
        ],
        false,
    )
    .await;
    assert_eq!(b.json()["id"], id.as_str());
    assert!(
        b.json()["intent_url"]
            .as_str()
            .unwrap()
            .starts_with("https://x.com/intent/post?url=")
    );
    let metrics = get(&router, "/metrics").await.text();
    assert!(
        metrics.contains("shares_total{outcome=\"existing\"} 1"),
        "{metrics}"
    );

    for bad in [
        "/s/..%2F..%2Fetc%2Fpasswd",
        "/s/0123",
        "/og/..%2Fmeta.json",
        "/og/0123456789abcdef0123456789abcdef.png",
        "/i/0123456789abcdef0123456789abcdef.jpg",
    ] {
        let r = get(&router, bad).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test]
async fn shares_a_processed_result_with_its_token_only() {
    let (state, router) = setup(&[]).await;
    let img = photo();
    let r = post(
        &router,
        "/api/v2/remove-background",
        &[("image", Some("cat.png"), &img)],
        true,
    )
    .await
    .json();
    let id = r["result_id"].as_str().unwrap().to_owned();
    let token = r["share_token"].as_str().unwrap().to_owned();
    // The card subjects are made and stored after the answer.
    let cards_key = shared::api::keys::card_subjects(&id);
    let mut cards = None;
    for _ in 0..200 {
        cards = state.cache.get(&cards_key).await.unwrap();
        if cards.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let cards = cards.expect("the card subjects, stored beside the result");

    let ok = post(
        &router,
        "/api/v2/share-image",
        &[
            ("result_id", None, id.as_bytes()),
            ("token", None, token.as_bytes()),
            ("platform", None, b"pinterest"),
        ],
        false,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert!(
        ok.json()["intent_url"]
            .as_str()
            .unwrap()
            .contains("-pin.jpg")
    );

    // The result was stored with its share-ready card subjects, and the share used them, with
    // the same cards as an upload of the same picture (made from its pixels).
    assert_eq!(ok.header("x-card-subjects"), "used");
    let result = state
        .cache
        .get(&shared::api::keys::result(&id))
        .await
        .unwrap()
        .expect("the stored result");
    let subjects = shared::render::CardSubjects::from_bytes(&cards).unwrap();
    assert!(subjects.are_of(&result));
    let uploaded = post(
        &router,
        "/api/v2/share-image",
        &[
            ("image", Some("cut-out.png"), &result),
            ("token", None, token.as_bytes()),
            ("platform", None, b"facebook"),
            ("title", None, b"uploaded"),
        ],
        false,
    )
    .await;
    assert_eq!(uploaded.status, StatusCode::OK, "{}", uploaded.text());
    assert_eq!(uploaded.header("x-card-subjects"), "none");
    let (a, b) = (ok.json()["id"].clone(), uploaded.json()["id"].clone());
    assert_ne!(a, b, "different titles, different shares");
    for name in ["og/{}.jpg", "og/{}-pin.jpg", "og/{}-square.jpg", "i/{}.png"] {
        let from_subjects = get(
            &router,
            &format!("/{}", name.replace("{}", a.as_str().unwrap())),
        )
        .await;
        let from_picture = get(
            &router,
            &format!("/{}", name.replace("{}", b.as_str().unwrap())),
        )
        .await;
        assert_eq!(from_subjects.status, StatusCode::OK, "{name}");
        assert!(from_subjects.body.len() > 1000, "{name}");
        assert_eq!(from_subjects.body, from_picture.body, "{name}");
    }

    let expired = shared::token::sign(&state.secret, &id, 1);
    let other = shared::token::sign(b"another secret entirely", &id, u64::MAX / 2);
    let cases: Vec<(Vec<Part>, StatusCode, &str)> = vec![
        (
            vec![("result_id", None, id.as_bytes()), ("platform", None, b"x")],
            StatusCode::BAD_REQUEST,
            "missing_token",
        ),
        (
            vec![
                ("result_id", None, id.as_bytes()),
                ("token", None, b"garbage"),
                ("platform", None, b"x"),
            ],
            StatusCode::FORBIDDEN,
            "invalid_token",
        ),
        (
            vec![
                ("result_id", None, id.as_bytes()),
                ("token", None, other.as_bytes()),
                ("platform", None, b"x"),
            ],
            StatusCode::FORBIDDEN,
            "invalid_token",
        ),
        (
            vec![
                ("result_id", None, id.as_bytes()),
                ("token", None, expired.as_bytes()),
                ("platform", None, b"x"),
            ],
            StatusCode::FORBIDDEN,
            "token_expired",
        ),
        (
            vec![
                ("result_id", None, b"../../secrets"),
                ("token", None, token.as_bytes()),
                ("platform", None, b"x"),
            ],
            StatusCode::NOT_FOUND,
            "result_not_found",
        ),
        (
            vec![("image", Some("a"), &img), ("platform", None, b"myspace")],
            StatusCode::BAD_REQUEST,
            "invalid_platform",
        ),
        (
            vec![("image", Some("a"), &img)],
            StatusCode::BAD_REQUEST,
            "missing_platform",
        ),
        (
            vec![("platform", None, b"x")],
            StatusCode::BAD_REQUEST,
            "missing_image",
        ),
        (
            vec![
                ("image", Some("a"), b"nope"),
                ("token", None, token.as_bytes()),
                ("platform", None, b"x"),
            ],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
    ];
    for (parts, status, code) in cases {
        let a = post(&router, "/api/v2/share-image", &parts, false).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (status, code),
            "{}",
            a.text()
        );
    }
    let long = "a".repeat(141);
    let a = post(
        &router,
        "/api/v2/share-image",
        &[
            ("image", Some("a"), &img),
            ("platform", None, b"x"),
            ("title", None, long.as_bytes()),
        ],
        false,
    )
    .await;
    assert_eq!(a.code(), "invalid_title");
    // A valid token for a result that is not stored.
    let ghost = "f".repeat(32);
    let t = shared::token::sign(&state.secret, &ghost, u64::MAX / 2);
    let a = post(
        &router,
        "/api/v2/share-image",
        &[
            ("result_id", None, ghost.as_bytes()),
            ("token", None, t.as_bytes()),
            ("platform", None, b"x"),
        ],
        false,
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::NOT_FOUND, "result_not_found")
    );
}

#[tokio::test]
async fn unreachable_storage_still_removes_but_refuses_to_share() {
    // SAFETY: set before any thread of this test reads the environment; other tests do not
    // read these variables.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_DEFAULT_REGION", "us-east-1");
    }
    let dead = "s3://bucket";
    let a = args(&[
        "--storage-bucket",
        dead,
        "--customer-storage-bucket",
        dead,
        "--storage-timeout-secs",
        "2",
    ]);
    unsafe {
        std::env::set_var("AWS_ENDPOINT", "http://127.0.0.1:9");
        std::env::set_var("AWS_ALLOW_HTTP", "true");
    }
    let state = build_state(&a).unwrap();
    let router = app(state.clone(), &[]);
    let img = photo();
    let r = post(
        &router,
        "/api/v2/remove-background",
        &[("image", Some("cat.png"), &img)],
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-cache"), "MISS");
    let s = post(
        &router,
        "/api/v2/share-image",
        &[
            ("image", Some("cat.png"), &img),
            ("token", None, upload_token(&state).as_bytes()),
            ("platform", None, b"x"),
        ],
        false,
    )
    .await;
    assert_eq!(
        (s.status, s.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        "{}",
        s.text()
    );
    assert!(!s.header("retry-after").is_empty());
    let ready = get(&router, "/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["cache_storage"], "unreachable");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let (_, router) = setup(&[]).await;
    let pre = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/api/v2/remove-background")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap()
    };
    let ok = send(&router, pre("https://shop.example")).await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        "https://shop.example"
    );
    let no = send(&router, pre("https://evil.example")).await;
    assert_eq!(no.header("access-control-allow-origin"), "");
}

#[tokio::test]
async fn missing_weights_make_the_service_unready_not_broken() {
    let empty = std::env::temp_dir().join(format!("no-models-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let (_, router) = setup(&["--model-dir", empty.to_str().unwrap()]).await;
    let mut ready = get(&router, "/ready").await;
    for _ in 0..100 {
        if ready.json()["model"] != "loading" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = get(&router, "/ready").await;
    }
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["model"], "failed");
    assert!(
        ready.text().contains("gpu-server setup"),
        "{}",
        ready.text()
    );
    let w = get(&router, "/warmup").await;
    assert_eq!(
        (w.status, w.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable")
    );
    let r = post(
        &router,
        "/api/v2/remove-background",
        &[("image", Some("a"), &png(64, 64))],
        false,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable"),
        "{}",
        r.text()
    );
    assert!(!r.header("retry-after").is_empty());
    assert_eq!(get(&router, "/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_request_times_out_with_503() {
    // One second is far shorter than decoding, inferring and encoding 42 MP on a CPU.
    let (_, router) = setup(&["--request-timeout-secs", "1"]).await;
    let big = {
        let img = image::RgbImage::from_fn(7000, 6000, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .unwrap();
        out.into_inner()
    };
    let r = post(
        &router,
        "/api/v2/remove-background",
        &[("image", Some("a"), &big), ("format", None, b"png")],
        false,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn photos_arriving_together_share_one_inference_batch() {
    let (_, router) = setup(&[
        "--batch-size",
        "4",
        "--batch-wait-ms",
        "1500",
        "--queue-size",
        "8",
    ])
    .await;
    wait_ready(&router).await;
    // Four different photos at once: the worker takes the first, waits for the batch to fill
    // and infers all four in one pass.
    let photos: Vec<Vec<u8>> = (0..4).map(|i| png(96 + i, 80)).collect();
    let router = &router;
    let answers = futures::future::join_all(photos.iter().map(|p| async move {
        let parts: [Part<'_>; 1] = [("image", Some("p.png"), p)];
        post(router, "/api/v2/remove-background", &parts, false).await
    }))
    .await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    let metrics = get(router, "/metrics").await.text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    let images = value("inference_batch_size_sum");
    let batches = value("inference_batch_size_count");
    assert_eq!(images, 4.0, "{metrics}");
    assert!(batches <= 2.0, "{batches} batches for 4 photos:\n{metrics}");
}

/// `PRECISION=f16`: the same service in half precision says so, keeps its results apart from
/// f32 ones in the cache, and cuts the photo out within a grey level on average.
#[tokio::test]
async fn half_precision_is_reported_cached_apart_and_close() {
    let img = photo();
    let mut cut = Vec::new();
    for extra in [&[][..], &["--precision", "f16"][..]] {
        let (_, router) = setup(extra).await;
        wait_ready(&router).await;
        let v = get(&router, "/version").await.json();
        let want = if extra.is_empty() { "f32" } else { "f16" };
        assert_eq!(v["precision"], want);
        let a = post(
            &router,
            "/api/v2/remove-background",
            &[("image", Some("cat.png"), &img), ("type", None, b"mask")],
            false,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let mask = image::load_from_memory(&a.body).unwrap().to_luma8();
        cut.push((a.header("x-result-id").to_owned(), mask));
    }
    let ((id32, m32), (id16, m16)) = (&cut[0], &cut[1]);
    assert_ne!(id32, id16, "f16 results are cached under their own ids");
    assert_eq!(m32.dimensions(), m16.dimensions());
    let total: u64 = m32
        .as_raw()
        .iter()
        .zip(m16.as_raw())
        .map(|(&a, &b)| u64::from(a.abs_diff(b)))
        .sum();
    let mean = total as f64 / m32.as_raw().len() as f64;
    assert!(mean <= 2.0, "f16 mask off by {mean:.3} / 255 on average");
    assert!(m16.as_raw().iter().any(|&v| v > 200) && m16.as_raw().iter().any(|&v| v < 50));

    // Asked for on the CPU, ENABLE_GPU_OPTIMIZATIONS keeps f32 and says why.
    let (_, router) = setup(&["--enable-gpu-optimizations"]).await;
    let v = get(&router, "/version").await.json();
    assert_eq!(v["precision"], "f32");
    let notes = v["notes"].to_string();
    assert!(notes.contains("ENABLE_GPU_OPTIMIZATIONS"), "{notes}");
}

#[tokio::test]
async fn request_ids_are_kept_when_plain_and_made_otherwise() {
    let (_, router) = setup(&[]).await;
    let with_id = |id: &'static str| {
        Request::get("/version")
            .header("x-request-id", id)
            .body(Body::empty())
            .unwrap()
    };
    let kept = send(&router, with_id("trace-abc_1.2")).await;
    assert_eq!(kept.header("x-request-id"), "trace-abc_1.2");
    assert!(!kept.header("x-app-commit").is_empty());
    for made_up in ["a b<script>", ""] {
        let replaced = send(&router, with_id(made_up)).await;
        let id = replaced.header("x-request-id");
        let (prefix, counter) = id.split_once('-').expect("<prefix>-<counter>");
        assert!(
            prefix.len() == 8 && prefix.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(counter.parse::<u64>().is_ok(), "{id}");
    }
    let fresh = get(&router, "/version").await;
    assert_ne!(
        fresh.header("x-request-id"),
        send(
            &router,
            Request::get("/version").body(Body::empty()).unwrap()
        )
        .await
        .header("x-request-id")
    );
    let metrics = get(&router, "/metrics").await.text();
    assert!(
        metrics.contains("route=\"/version\"") && metrics.contains("status=\"200\""),
        "{metrics}"
    );
}

fn grey_png(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// `refine` and a supplied `mask`: the default is matting, `off` is the model's mask exactly,
/// the options and the mask's bytes are in the result id, and a bad mask is a 4xx naming it.
#[tokio::test]
async fn refinement_and_supplied_masks() {
    let (_state, router) = setup(&[]).await;
    let img = photo();
    let ask = |extra: Vec<(&'static str, Option<&'static str>, Vec<u8>)>| {
        let router = router.clone();
        let img = img.clone();
        async move {
            let mut parts: Vec<(&str, Option<&str>, &[u8])> =
                vec![("image", Some("cat.png"), &img)];
            for (n, f, d) in &extra {
                parts.push((n, *f, d));
            }
            post(&router, "/api/v2/remove-background", &parts, false).await
        }
    };
    let alpha = |a: &Answer| -> Vec<u8> {
        image::load_from_memory(&a.body)
            .unwrap()
            .to_rgba8()
            .pixels()
            .map(|p| p.0[3])
            .collect()
    };
    let default = ask(vec![]).await;
    let matting = ask(vec![("refine", None, b"matting".to_vec())]).await;
    let off = ask(vec![("refine", None, b"off".to_vec())]).await;
    let mask = ask(vec![("type", None, b"mask".to_vec())]).await;
    for a in [&default, &matting, &off, &mask] {
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    assert_eq!(default.header("x-result-id"), matting.header("x-result-id"));
    assert_eq!(default.body, matting.body);
    assert_ne!(off.header("x-result-id"), default.header("x-result-id"));
    // `off` is the model's mask as it is; `type=mask` defaults to it too.
    let mask_pixels = image::load_from_memory(&mask.body)
        .unwrap()
        .to_luma8()
        .into_raw();
    assert_eq!(alpha(&off), mask_pixels);
    // Matting moves alpha only in the band the mask was unsure of, and changes some of it.
    let (a_off, a_mat) = (alpha(&off), alpha(&default));
    let changed = a_off.iter().zip(&a_mat).filter(|(a, b)| a != b).count();
    assert!(changed > 100, "matting changed {changed} pixels");
    // Far from the band (mask exactly 0 or 255 over a wide neighbourhood) nothing changes:
    // check the photo's corners, which the model is sure of.
    for i in [0, 450, 300 * 451 - 1] {
        assert_eq!(a_off[i], a_mat[i], "pixel {i}");
    }

    // A supplied mask: no model runs; its bytes are part of the id.
    let (w, h) = (451, 300);
    let left = grey_png(w / 3, h / 3, |x, _| if x < w / 6 { 0 } else { 255 });
    let right = grey_png(w / 3, h / 3, |x, _| if x < w / 6 { 255 } else { 0 });
    let a = ask(vec![
        ("mask", Some("m.png"), left.clone()),
        ("refine", None, b"off".to_vec()),
    ])
    .await;
    let b = ask(vec![
        ("mask", Some("m.png"), right),
        ("refine", None, b"off".to_vec()),
    ])
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    assert_ne!(a.header("x-result-id"), b.header("x-result-id"));
    let aa = alpha(&a);
    assert_eq!(aa[10], 0, "left of the supplied mask's edge is background");
    assert_eq!(aa[(w - 10) as usize], 255, "right of it is the subject");
    let trimap = ask(vec![
        ("mask", Some("m.png"), left.clone()),
        ("type", None, b"trimap".to_vec()),
    ])
    .await;
    assert_eq!(trimap.status, StatusCode::OK, "{}", trimap.text());
    let t = image::load_from_memory(&trimap.body).unwrap().to_luma8();
    assert!(t.pixels().all(|p| [0, 128, 255].contains(&p.0[0])));
    assert!(
        t.pixels().any(|p| p.0[0] == 128),
        "a band along the mask's edge"
    );

    // Bad refinements and bad masks are 4xx naming the problem.
    let bad = ask(vec![("refine", None, b"sharpen".to_vec())]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["code"], "invalid_option");
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (Vec::new(), StatusCode::UNPROCESSABLE_ENTITY, "empty"),
        (
            b"not an image".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PNG",
        ),
        (
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/intake/rgb.jpg"
            ))
            .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "JPEG",
        ),
        (png(40, 30), StatusCode::UNPROCESSABLE_ENTITY, "greyscale"),
        (
            grey_png(20000, 1, |_, _| 0)[..].to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "pixels",
        ),
    ];
    for (bytes, status, needle) in cases {
        let r = ask(vec![("mask", Some("m.png"), bytes)]).await;
        assert_eq!(r.status, status, "{needle}: {}", r.text());
        let body = r.json();
        assert_eq!(body["error"]["code"], "invalid_mask", "{needle}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("mask") && message.contains(needle),
            "{message}"
        );
    }
}

/// The print-shop options through the API, on a supplied mask (no model): the subject is the
/// 151×100 block the mask marks in the 451×300 photo.
#[tokio::test]
async fn print_effects_their_headers_and_refusals() {
    let (_state, router) = setup(&[]).await;
    let img = photo();
    let mask = grey_png(451, 300, |x, y| {
        if (150..301).contains(&x) && (100..200).contains(&y) {
            255
        } else {
            0
        }
    });
    let ask = |extra: Vec<OwnedPart>, json: bool| {
        let (router, img, mask) = (router.clone(), img.clone(), mask.clone());
        async move {
            let mut parts: Vec<Part<'_>> = vec![
                ("image", Some("cat.png"), &img),
                ("mask", Some("m.png"), &mask),
                ("refine", None, b"off"),
            ];
            for (n, f, d) in &extra {
                parts.push((n, *f, d));
            }
            post(&router, "/api/v2/remove-background", &parts, json).await
        }
    };
    let field = |n: &'static str, v: &str| (n, None, v.as_bytes().to_vec());
    let boxed = |a: &Answer| {
        [
            "x-foreground-left",
            "x-foreground-top",
            "x-foreground-width",
            "x-foreground-height",
            "x-width",
            "x-height",
        ]
        .map(|h| {
            a.header(h)
                .parse::<u32>()
                .unwrap_or_else(|_| panic!("{h}: {:?}", a.header(h)))
        })
    };

    // Every cut-out says where the subject is, also from the cache, and in its JSON.
    let plain = ask(vec![], false).await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text());
    assert_eq!(boxed(&plain), [150, 100, 151, 100, 451, 300]);
    let again = ask(vec![], false).await;
    assert_eq!(again.header("x-cache"), "HIT");
    assert_eq!(boxed(&again), boxed(&plain));
    let json = ask(vec![], true).await.json();
    assert_eq!(
        [
            &json["foreground_left"],
            &json["foreground_top"],
            &json["foreground_width"],
            &json["foreground_height"]
        ],
        [150, 100, 151, 100]
    );

    // Crop with a margin.
    let crop = ask(
        vec![field("crop", "true"), field("crop_margin", "10px")],
        false,
    )
    .await;
    assert_eq!(crop.status, StatusCode::OK, "{}", crop.text());
    assert_eq!(boxed(&crop), [10, 10, 151, 100, 171, 120]);
    assert_ne!(crop.header("x-result-id"), plain.header("x-result-id"));
    let pic = image::load_from_memory(&crop.body).unwrap().to_rgba8();
    assert_eq!(pic.dimensions(), (171, 120));
    assert_eq!(pic.get_pixel(9, 60).0[3], 0);
    assert_eq!(pic.get_pixel(10, 60).0[3], 255);

    // A 4×6 in print on white, auto format: an opaque JPEG at 300 dpi.
    let print = ask(
        vec![
            field("size", "4x6in"),
            field("bg_color", "white"),
            field("format", "auto"),
            field("shadow", "true"),
        ],
        false,
    )
    .await;
    assert_eq!(print.status, StatusCode::OK, "{}", print.text());
    assert_eq!(print.header("content-type"), "image/jpeg");
    assert_eq!(&print.body[6..11], b"JFIF\0");
    assert_eq!(
        (
            print.body[13],
            u16::from_be_bytes([print.body[14], print.body[15]])
        ),
        (1, 300)
    );
    let [left, top, width, height, w, h] = boxed(&print);
    assert_eq!((w, h), (1200, 1800));
    // Without crop or scale the photo's frame is fitted to the canvas (×1200/451), centred.
    assert_eq!((left, width, height), (399, 402, 266));
    assert_eq!(top, (1800 - 798) / 2 + 266);
    // The same print as PNG carries pHYs.
    let png_print = ask(vec![field("size", "4x6in"), field("format", "png")], false).await;
    let reader = png::Decoder::new(std::io::Cursor::new(&png_print.body[..]))
        .read_info()
        .unwrap();
    assert_eq!(reader.info().pixel_dims.map(|d| d.xppu), Some(11811));

    // A sticker outline: the pixels just outside the block are the border's white.
    let sticker = ask(
        vec![field("outline", "true"), field("outline_width", "4%")],
        false,
    )
    .await;
    assert_eq!(sticker.status, StatusCode::OK, "{}", sticker.text());
    let pic = image::load_from_memory(&sticker.body).unwrap().to_rgba8();
    assert_eq!(
        pic.get_pixel(146, 150).0,
        [255, 255, 255, 255],
        "4% of 151 px is 6 px"
    );
    assert_eq!(pic.get_pixel(140, 150).0[3], 0);

    // A background photo, fitted by cover; the alpha alone.
    let bg = png(40, 30);
    let on_photo = ask(vec![("bg_image", Some("bg.png"), bg.clone())], false).await;
    assert_eq!(on_photo.status, StatusCode::OK, "{}", on_photo.text());
    let pic = image::load_from_memory(&on_photo.body).unwrap();
    assert!(!pic.color().has_alpha(), "an opaque background");
    let alpha = ask(
        vec![field("channels", "alpha"), field("crop", "true")],
        false,
    )
    .await;
    let pic = image::load_from_memory(&alpha.body).unwrap();
    assert_eq!(pic.color(), image::ColorType::L8);
    assert_eq!((pic.width(), pic.height()), (151, 100));

    // A stored result laid out again with its token (the page's live preview): no model, no
    // photo sent; the subject is the stored cut-out.
    let (rid, tok) = (
        plain.header("x-result-id").to_owned(),
        plain.header("x-share-token").to_owned(),
    );
    let relay = |extra: Vec<OwnedPart>| {
        let router = router.clone();
        async move {
            let parts: Vec<Part<'_>> = extra.iter().map(|(n, f, d)| (*n, *f, &d[..])).collect();
            post(&router, "/api/v2/remove-background", &parts, false).await
        }
    };
    let again = relay(vec![
        field("result_id", &rid),
        field("token", &tok),
        field("crop", "true"),
    ])
    .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(boxed(&again), [0, 0, 151, 100, 151, 100]);
    let pic = image::load_from_memory(&again.body).unwrap().to_rgba8();
    assert_eq!(
        pic.get_pixel(0, 0).0[3],
        255,
        "the stored cut-out's own alpha"
    );
    assert!(
        !again.header("x-share-token").is_empty(),
        "the new result can be shared"
    );
    let other = shared::ids::content_id(&[b"another"]);
    let wrong = relay(vec![field("result_id", &other), field("token", &tok)]).await;
    assert!(wrong.status.is_client_error(), "{}", wrong.text());
    let no_token = relay(vec![field("result_id", &rid)]).await;
    assert_eq!(no_token.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_token.code(), "missing_token");

    // Bad values are 4xx naming the field; options that do not go together too.
    for (extra, status, needle) in [
        (
            vec![field("size", "huge")],
            StatusCode::BAD_REQUEST,
            "`size`",
        ),
        (
            vec![field("size", "9000x9000")],
            StatusCode::BAD_REQUEST,
            "`size`",
        ),
        (
            vec![field("bg_color", "nope")],
            StatusCode::BAD_REQUEST,
            "`bg_color`",
        ),
        (
            vec![field("outline_width", "90%")],
            StatusCode::BAD_REQUEST,
            "`outline_width`",
        ),
        (
            vec![field("crop_margin", "1 2 3")],
            StatusCode::BAD_REQUEST,
            "`crop_margin`",
        ),
        (
            vec![field("type", "trimap"), field("crop", "true")],
            StatusCode::BAD_REQUEST,
            "trimap",
        ),
        (
            vec![field("type", "white"), field("bg_color", "red")],
            StatusCode::BAD_REQUEST,
            "one background",
        ),
        (
            vec![("bg_image", Some("bg.png"), b"not an image".to_vec())],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bg_image",
        ),
    ] {
        let r = ask(extra, false).await;
        assert_eq!(r.status, status, "{needle}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(needle), "{needle}: {message}");
    }
}

/// remove.bg's API: its bodies (multipart, URL-encoded, JSON), answers, headers, error shape
/// and keys.
#[tokio::test]
async fn remove_bg_compatible_route() {
    use base64::Engine;
    let (_state, router) = setup(&["--api-keys", "k1,k2"]).await;
    wait_ready(&router).await;
    let img = photo();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&img);
    let send_with = |ctype: &str, body: Vec<u8>, key: Option<&str>, json: bool| {
        let mut req = Request::post("/v1.0/removebg").header(header::CONTENT_TYPE, ctype);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if json {
            req = req.header(header::ACCEPT, "application/json");
        }
        let router = router.clone();
        let req = req.body(Body::from(body)).unwrap();
        async move { send(&router, req).await }
    };
    let multi = |parts: &[Part<'_>], key: Option<&str>, json: bool| {
        let (ctype, body) = multipart(parts);
        send_with(&ctype, body, key, json)
    };
    let errors = |a: &Answer| {
        let v = a.json();
        (
            v["errors"][0]["code"].as_str().unwrap_or("").to_owned(),
            v["errors"][0]["title"].as_str().unwrap_or("").to_owned(),
        )
    };

    // Keys: missing and wrong are 403 in remove.bg's shape; either key opens.
    let parts: Vec<Part<'_>> = vec![("image_file", Some("cat.png"), &img)];
    let missing = multi(&parts, None, false).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert_eq!(
        errors(&missing),
        ("auth_failed".into(), "Missing API Key".into())
    );
    let wrong = multi(&parts, Some("k3"), false).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(errors(&wrong).1, "Invalid API Key");

    // Multipart, remove.bg's default size (preview, 0.25 MP: an 800×600 photo is scaled down,
    // aspect kept) and format (auto: PNG here).
    let big = png(800, 600);
    let ok = multi(&[("image_file", Some("big.png"), &big)], Some("k2"), false).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.header("content-type"), "image/png");
    let pic = image::load_from_memory(&ok.body).unwrap();
    assert_eq!((pic.width(), pic.height()), (577, 433));
    assert_eq!(ok.header("x-width"), pic.width().to_string());
    for h in [
        "x-foreground-top",
        "x-foreground-left",
        "x-foreground-width",
        "x-foreground-height",
        "x-credits-charged",
    ] {
        assert!(ok.header(h).parse::<f64>().is_ok(), "{h}");
    }
    // size=full keeps the photo's size; JSON answers carry the image as base64.
    let full: Vec<Part<'_>> = vec![
        ("image_file", Some("cat.png"), &img),
        ("size", None, b"full"),
    ];
    let j = multi(&full, Some("k1"), true).await;
    assert_eq!(j.status, StatusCode::OK, "{}", j.text());
    let data = &j.json()["data"];
    let png = base64::engine::general_purpose::STANDARD
        .decode(data["result_b64"].as_str().unwrap())
        .unwrap();
    let pic = image::load_from_memory(&png).unwrap();
    assert_eq!((pic.width(), pic.height()), (451, 300));
    assert!(data["foreground_width"].as_u64().unwrap() > 100);

    // URL-encoded base64 with a background colour: opaque, so auto is JPEG.
    let body = format!(
        "image_file_b64={}&bg_color=81d4fa&size=full",
        urlencode(&b64)
    );
    let form = send_with(
        "application/x-www-form-urlencoded",
        body.into_bytes(),
        Some("k1"),
        false,
    )
    .await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text());
    assert_eq!(form.header("content-type"), "image/jpeg");
    // JSON body, crop and a drop shadow.
    let body = serde_json::json!({"image_file_b64": b64, "crop": true, "shadow_type": "drop", "size": "full"});
    let js = send_with(
        "application/json",
        body.to_string().into_bytes(),
        Some("k1"),
        false,
    )
    .await;
    assert_eq!(js.status, StatusCode::OK, "{}", js.text());
    let pic = image::load_from_memory(&js.body).unwrap();
    assert!(pic.width() < 451, "cropped: {}", pic.width());

    // What it cannot honour is a 400 naming it.
    for (field, value, code) in [
        (
            "image_url",
            "https://example.com/cat.jpg",
            "unsupported_parameter",
        ),
        (
            "bg_image_url",
            "https://example.com/bg.jpg",
            "unsupported_parameter",
        ),
        ("roi", "0% 0% 50% 50%", "unsupported_parameter"),
        ("format", "zip", "unsupported_parameter"),
        ("shadow_type", "car", "unsupported_parameter"),
        ("size", "enormous", "invalid_size"),
        ("frobnicate", "1", "unknown_parameter"),
    ] {
        let parts: Vec<Part<'_>> = vec![
            ("image_file", Some("cat.png"), &img),
            (field, None, value.as_bytes()),
        ];
        let r = multi(&parts, Some("k1"), false).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.text());
        let (c, title) = errors(&r);
        assert_eq!(c, code, "{field}");
        assert!(title.contains(field), "{field}: {title}");
    }
    let none = multi(&[("size", None, b"full")], Some("k1"), false).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert_eq!(errors(&none).0, "missing_source");
    let junk = send_with(
        "application/x-www-form-urlencoded",
        b"image_file_b64=%%%%".to_vec(),
        Some("k1"),
        false,
    )
    .await;
    assert_eq!(junk.status, StatusCode::BAD_REQUEST, "{}", junk.text());
}

/// Percent-encoding for a URL-encoded body.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Per-client limits on the routes that cost, through a trusted proxy's `X-Forwarded-For`;
/// API keys; and the day's image budget.
#[tokio::test]
async fn rate_limits_keys_and_the_daily_budget() {
    let (_state, router) = setup(&[
        "--rate-limit-per-minute",
        "2",
        "--trusted-proxies",
        "1",
        "--api-keys",
        "k1",
    ])
    .await;
    let from = |xff: &str, key: Option<(&str, &str)>| {
        let (ctype, body) = multipart(&[("platform", None, b"facebook")]);
        let mut req = Request::post("/api/v2/share-image")
            .header(header::CONTENT_TYPE, ctype)
            .header("x-forwarded-for", xff);
        if let Some((name, value)) = key {
            req = req.header(name, value);
        }
        let router = router.clone();
        let req = req.body(Body::from(body)).unwrap();
        async move { send(&router, req).await }
    };
    // Two requests of client 1.1.1.1 pass (refused for their content, not their rate)...
    for _ in 0..2 {
        let r = from("1.1.1.1", None).await;
        assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    }
    // ...the third is 429 with Retry-After; a spoofed entry to the left changes nothing.
    for xff in ["1.1.1.1", "9.9.9.9, 1.1.1.1"] {
        let r = from(xff, None).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{xff}");
        assert_eq!(r.code(), "rate_limited");
        let wait: u64 = r.header("retry-after").parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
    }
    // Another client is not limited; neither is a caller with the key, even from 1.1.1.1.
    assert_ne!(
        from("2.2.2.2", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    for key in [("x-api-key", "k1"), ("authorization", "Bearer k1")] {
        let r = from("1.1.1.1", Some(key)).await;
        assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS, "{key:?}");
    }
    // A wrong key is 401; reading routes are never limited.
    let wrong = from("3.3.3.3", Some(("x-api-key", "nope"))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "invalid_api_key");
    for _ in 0..5 {
        assert_eq!(get(&router, "/health").await.status, StatusCode::OK);
    }
    // remove.bg's route is limited too, refused in its own shape.
    let rb = {
        let (ctype, body) = multipart(&[("size", None, b"full")]);
        let req = Request::post("/v1.0/removebg")
            .header(header::CONTENT_TYPE, ctype)
            .header("x-forwarded-for", "1.1.1.1")
            .body(Body::from(body))
            .unwrap();
        send(&router, req).await
    };
    assert_eq!(rb.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rb.json()["errors"][0]["code"], "rate_limited");

    // The budget: one image a day. A new photo past it is 429 until midnight UTC; the cached
    // result is still served; /version and /metrics say what is left.
    let (_state, router) = setup(&["--daily-image-budget", "1"]).await;
    wait_ready(&router).await;
    let cut = |img: Vec<u8>| {
        let router = router.clone();
        async move {
            post(
                &router,
                "/api/v2/remove-background",
                &[("image", Some("p.png"), &img), ("refine", None, b"off")],
                false,
            )
            .await
        }
    };
    assert_eq!(cut(photo()).await.status, StatusCode::OK);
    let over = cut(png(64, 48)).await;
    assert_eq!(
        over.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        over.text()
    );
    assert_eq!(over.code(), "daily_budget_exhausted");
    let wait: u64 = over.header("retry-after").parse().unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    let again = cut(photo()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("x-cache"), "HIT");
    let v = get(&router, "/version").await.json();
    assert_eq!(
        (
            v["daily_image_budget"].as_u64(),
            v["daily_image_budget_left"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let m = get(&router, "/metrics").await.text();
    assert!(m.contains("daily_image_budget_left 0"), "{m}");
    assert!(
        m.contains("protective_refusals_total{outcome=\"daily_budget_exhausted\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn previews_are_lossy_webp_of_the_stored_result() {
    let (_state, router) = setup(&[]).await;
    let img = photo();
    let ask = |extra: Vec<(&'static str, &'static [u8])>, json: bool| {
        let (router, img) = (router.clone(), img.clone());
        async move {
            let mut parts: Vec<(&str, Option<&str>, &[u8])> =
                vec![("image", Some("cat.png"), &img)];
            parts.extend(extra.iter().map(|(n, d)| (*n, None, *d)));
            post(&router, "/api/v2/remove-background", &parts, json).await
        }
    };
    let file = ask(vec![], false).await;
    let preview = ask(vec![("preview", b"webp")], false).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.text());
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text());
    // The same result, stored as PNG; only the answer differs.
    assert_eq!(preview.header("x-result-id"), file.header("x-result-id"));
    assert_eq!(preview.header("content-type"), "image/webp");
    assert_eq!(preview.header("x-result-type"), "image/png");
    assert_eq!(file.header("x-result-type"), "image/png");
    assert_eq!(&preview.body[8..12], b"WEBP");
    assert!(
        preview.body.len() * 3 < file.body.len(),
        "preview {} bytes, file {}",
        preview.body.len(),
        file.body.len()
    );
    let stored = get(
        &router,
        &format!("/api/v2/results/{}", file.header("x-result-id")),
    )
    .await;
    assert_eq!(stored.header("content-type"), "image/png");
    assert_eq!(
        stored.body, file.body,
        "the download is the stored file, untouched"
    );
    // At this size the preview is the picture itself: alpha exact, colour close where seen.
    let (a, b) = (
        image::load_from_memory(&file.body).unwrap().to_rgba8(),
        image::load_from_memory(&preview.body).unwrap().to_rgba8(),
    );
    assert_eq!(a.dimensions(), b.dimensions());
    let (mut err, mut weight) = (0.0, 0.0);
    for (p, q) in a.pixels().zip(b.pixels()) {
        assert_eq!(p.0[3], q.0[3], "alpha is lossless");
        let w = f64::from(p.0[3]) / 255.0;
        err += w
            * (0..3)
                .map(|c| f64::from(p.0[c].abs_diff(q.0[c])))
                .sum::<f64>()
            / 3.0;
        weight += w;
    }
    assert!(err / weight < 4.0, "mean colour error {}", err / weight);
    // A cached result previews too.
    let again = ask(vec![("preview", b"webp")], false).await;
    assert_eq!(again.header("x-cache"), "HIT");
    assert_eq!(again.body, preview.body);

    // Bad previews are 400s naming the problem.
    let bad = ask(vec![("preview", b"gif")], false).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("webp")
    );
    let json = ask(vec![("preview", b"webp")], true).await;
    assert_eq!(json.status, StatusCode::BAD_REQUEST);
    assert_eq!(json.code(), "invalid_option");

    // A picture over 2048 px a side previews at 2048.
    let (w, h) = (2600, 1200);
    let big = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 90])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    big.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let mask = grey_png(w / 4, h / 4, |x, _| if x < w / 8 { 0 } else { 255 });
    let parts: Vec<(&str, Option<&str>, &[u8])> = vec![
        ("image", Some("big.png"), png.get_ref()),
        ("mask", Some("m.png"), &mask),
        ("refine", None, b"off"),
        ("preview", None, b"webp"),
    ];
    let big = post(&router, "/api/v2/remove-background", &parts, false).await;
    assert_eq!(big.status, StatusCode::OK, "{}", big.text());
    assert_eq!(
        (big.header("x-width"), big.header("x-height")),
        ("2600", "1200")
    );
    let shown = image::load_from_memory(&big.body).unwrap();
    assert_eq!((shown.width(), shown.height()), (2048, 945));
}
