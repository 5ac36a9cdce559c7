//! Deploy safety: `gpu-server verify-deploy` against a live service, against a stale one that
//! lacks a route, and against the wrong commit; the deploy scripts' dry runs.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    process::Output,
};

use tests::{Server, gpu_server, output, root};

fn verify(base: &str, extra: &[&str]) -> Output {
    output(
        gpu_server()
            .args(["verify-deploy", base, "--timeout", "20s"])
            .args(extra),
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn verify_deploy_passes_against_a_live_service_and_fails_on_the_wrong_commit() {
    let server = Server::start("verify-live", &[]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let commit = server.get("/version").json()["commit"]
        .as_str()
        .expect("a commit")
        .to_owned();

    let out = verify(&base, &["--expect-commit", &commit]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    // Every route of this build was probed and listed.
    for route in gpu_server::server::route_table() {
        let row = format!("{} {}", route.0, route.1);
        let line = all
            .lines()
            .find(|l| l.starts_with(&format!("{row} ")))
            .unwrap_or_else(|| panic!("no row for {row}:\n{all}"));
        assert!(line.contains(" ok ") && line.contains("listed"), "{line}");
    }
    assert!(all.contains("POST /api/v2/share-image") && all.contains("422 image_too_small"));

    let out = verify(&base, &["--expect-commit", "0123456789abcdef"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("1 of")
            && all.contains("version (commit")
            && all.contains("expected 0123456789abcdef"),
        "{all}"
    );
}

/// A stale build: an older route table (no share-image) in `/openapi.json` and the router's
/// plain 404 for the route it lacks; everything else answers.
fn stale_service(openapi: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (status, body) = match path.as_str() {
                "/openapi.json" => ("200 OK", openapi.clone()),
                "/version" => ("200 OK", r#"{"commit":"1111111aaaaaaa"}"#.to_owned()),
                "/api/v2/share-image" => ("404 Not Found", String::new()),
                _ => ("200 OK", "{}".to_owned()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

#[test]
fn verify_deploy_names_the_route_a_stale_service_lacks() {
    let server = Server::start("verify-stale", &[]);
    let mut doc = server.get("/openapi.json").json();
    doc["paths"]
        .as_object_mut()
        .unwrap()
        .remove("/api/v2/share-image")
        .expect("the live document lists share-image");
    let base = stale_service(doc.to_string());

    let out = verify(&base, &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let failed = all
        .lines()
        .find(|l| l.starts_with("verify-deploy:"))
        .unwrap_or_else(|| panic!("no summary:\n{all}"));
    assert!(failed.contains("1 of"), "{failed}");
    assert!(
        failed.contains("POST /api/v2/share-image (missing from /openapi.json, answered 404"),
        "{failed}"
    );
    assert!(
        all.contains("(the service does not serve this route)"),
        "{all}"
    );
}

#[test]
fn verify_deploy_fails_when_the_service_never_gets_ready() {
    // Nothing listens on this port: the check waits out its timeout, then names `ready`.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = output(gpu_server().args([
        "verify-deploy",
        &format!("http://127.0.0.1:{port}"),
        "--timeout",
        "1s",
    ]));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("ready (not ready after"), "{all}");
}

fn dry_run(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(root().join(script));
    cmd.args(args).current_dir(root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output(&mut cmd);
    let all = text(&out);
    assert!(out.status.success(), "{script} {args:?}:\n{all}");
    all
}

#[test]
fn the_deploy_dry_run_builds_by_commit_deploys_without_traffic_verifies_then_moves_traffic() {
    let env = [
        ("GCP_PROJECT", "pet-shop-prod"),
        ("GCP_REGION", "europe-west4"),
    ];
    let all = dry_run("scripts/deploy", &["--dry-run"], &env);
    let commit = String::from_utf8(
        output(
            std::process::Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(root()),
        )
        .stdout,
    )
    .unwrap();
    let commit = commit.trim();
    let lines: Vec<&str> = all.lines().filter(|l| l.starts_with("+ ")).collect();
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in the dry run:\n{all}"))
    };
    let build = pos("docker build");
    let push = pos("docker push");
    let deploy = pos("gcloud run deploy");
    let verify = pos("verify-deploy");
    let traffic = pos("update-traffic");
    assert!(
        build < push && push < deploy && deploy < verify && verify < traffic,
        "{all}"
    );
    assert!(
        lines[build].contains(&format!(":{commit} ")),
        "{}",
        lines[build]
    );
    assert!(
        lines[build].contains(&format!("GIT_COMMIT={commit} ")),
        "{}",
        lines[build]
    );
    // Every image reference is the commit's tag, never `latest`.
    let refs: Vec<&str> = all.split("/gpu-server:").skip(1).collect();
    assert!(refs.len() >= 3, "{all}");
    for r in refs {
        assert!(
            r.starts_with(commit),
            "an image not tagged with the commit: {r}"
        );
    }
    let tag = format!("c-{}", &commit[..12]);
    // The new revision gets no traffic until the image's own verify-deploy passed on its tag URL.
    for flag in [
        "--no-traffic".to_owned(),
        format!("--tag {tag}"),
        "--min-instances 0".to_owned(),
        "--max-instances 1".to_owned(),
        "--gpu 1 --gpu-type nvidia-l4".to_owned(),
        "--cpu 8".to_owned(),
        "--memory 32Gi".to_owned(),
        "--timeout 600".to_owned(),
        "--concurrency 16".to_owned(),
        "--startup-probe httpGet.path=/ready,".to_owned(),
    ] {
        assert!(
            lines[deploy].contains(&flag),
            "no `{flag}` in {}",
            lines[deploy]
        );
    }
    assert!(
        lines[verify].contains(&format!("https://{tag}---"))
            && lines[verify].contains(&format!("--expect-commit {commit}")),
        "{}",
        lines[verify]
    );
    assert!(
        lines[traffic].contains(&format!("--to-tags {tag}=100")),
        "{}",
        lines[traffic]
    );

    let all = dry_run("scripts/deploy", &["rollback", "--dry-run"], &env);
    assert!(
        all.contains("update-traffic") && all.contains("--to-revisions"),
        "{all}"
    );
}

#[test]
fn ignore_files_cannot_leave_out_code() {
    let tracked = String::from_utf8(
        output(
            std::process::Command::new("git")
                .args(["ls-files"])
                .current_dir(root()),
        )
        .stdout,
    )
    .unwrap();
    for ignore in [".dockerignore", ".gcloudignore"] {
        let rules = std::fs::read_to_string(root().join(ignore)).expect(ignore);
        let patterns: Vec<&str> = rules
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        for p in &patterns {
            assert!(
                !p.contains('*') || *p == "**/target",
                "{ignore}: `{p}`: only plain paths, so what it leaves out is obvious"
            );
        }
        for file in tracked.lines() {
            let ignored = patterns.iter().any(|p| {
                let p = p.trim_start_matches("**/").trim_end_matches('/');
                file == p
                    || file.starts_with(&format!("{p}/"))
                    || file.split('/').any(|part| part == p)
            });
            assert!(!ignored, "{ignore} leaves out tracked file {file}");
        }
    }
}
