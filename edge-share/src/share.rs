//! `POST /api/v2/share-image` at the edge: an adapter of `shared::publish::share` (the form
//! from the runtime's `FormData`, R2 for storage, the render in the isolate). Checks that need
//! no body (rate limit, configuration, declared size, type) come first.

use shared::{
    intake::{IntakeError, Limits},
    publish::{self, ShareContext},
    refusal::Refusal,
};
use worker::{Env, FormEntry, Request};

use crate::{
    error::{Answer, Fail, json_response},
    http::Settings,
    r2::R2,
    render_settings,
};

pub async fn share(mut req: Request, env: &Env, settings: &Settings) -> Answer {
    match admit(&req, env, settings).await {
        Ok((secret, limits)) => share_admitted(req, env, settings, secret, limits).await,
        Err(refusal) => {
            drain(&mut req).await;
            Err(refusal)
        }
    }
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

/// The checks made before the body is read: rate limit, configuration, declared size, type.
async fn admit(req: &Request, env: &Env, settings: &Settings) -> Result<(String, Limits), Fail> {
    if rate_limited(req, env).await {
        return Err(Refusal::new(
            429,
            "rate_limited",
            "too many shares from this connection; please wait a minute",
        )
        .retry_after(60)
        .into());
    }
    let secret = env
        .secret("SHARE_TOKEN_SECRET")
        .map(|s| s.to_string())
        .ok()
        .filter(|s| s.len() >= 16)
        .ok_or_else(|| {
            Refusal::new(
                503,
                "not_configured",
                "sharing is not configured here (no SHARE_TOKEN_SECRET)",
            )
        })?;
    let limits = settings.limits();
    if declared_length(req).is_some_and(|n| n > limits.max_bytes + (1 << 20)) {
        return Err(IntakeError::TooLarge {
            size: declared_length(req).unwrap_or_default(),
            limit: limits.max_bytes,
        }
        .into());
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
        return Err(Refusal::new(
            415,
            "invalid_multipart",
            "expected a multipart/form-data body with an `image` field",
        )
        .into());
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
        Refusal::bad(
            "invalid_multipart",
            format!("the request is not a valid multipart/form-data upload: {e}"),
        )
    })?;
    let text = |name: &str| {
        form.get_field(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let image = match form.get("image") {
        Some(FormEntry::File(file)) => {
            if file.size() > limits.max_bytes {
                return Err(IntakeError::TooLarge {
                    size: file.size(),
                    limit: limits.max_bytes,
                }
                .into());
            }
            Some(file.bytes().await?)
        }
        Some(FormEntry::Field(_)) => {
            return Err(Refusal::bad(
                "invalid_multipart",
                "`image` must be a file, not a text field",
            )
            .into());
        }
        None => None,
    };
    let form = publish::ShareForm {
        platform: text("platform"),
        title: text("title"),
        token: text("token"),
        result_id: text("result_id"),
        image,
    };
    let (render, fingerprint) =
        render_settings(env).map_err(|e| Fail::Internal(format!("render settings: {e}")))?;
    let base = settings.base_url(&crate::origin_of(&req));
    let ctx = ShareContext {
        secret: secret.as_bytes(),
        limits,
        render_fingerprint: fingerprint,
        site_name: &settings.site_name,
        base_url: &base,
        now: crate::now_secs(),
    };
    let bucket = R2::of(env)?;
    let done = publish::share(form, &ctx, &bucket, &bucket, |job| async move {
        job.run(render)
    })
    .await?;
    for warning in &done.warnings {
        worker::console_warn!("{warning}");
    }
    let body = serde_json::to_string(&done.response).map_err(|e| Fail::Internal(e.to_string()))?;
    let res = json_response(200, body);
    if !done.existing {
        // Which way the cards were made (a result's share-ready subjects, or the picture).
        let used = if done.used_card_subjects {
            "used"
        } else {
            "none"
        };
        let _ = res.headers().set("x-card-subjects", used);
    }
    Ok(res)
}
