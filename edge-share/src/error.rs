//! The Worker's one error type: refused (a [`Refusal`], answered as it is) or internal (the
//! generic 500; the detail goes to the log). No handler panics: a panic aborts the isolate.

use shared::{
    intake::IntakeError,
    publish::Failure,
    refusal::{INTERNAL, Refusal, error_json},
    token::TokenError,
};
use worker::{Headers, Response};

pub enum Fail {
    Refused(Refusal),
    Internal(String),
}

pub type Answer = Result<Response, Fail>;

impl From<worker::Error> for Fail {
    fn from(e: worker::Error) -> Self {
        Fail::Internal(e.to_string())
    }
}

impl From<Refusal> for Fail {
    fn from(r: Refusal) -> Self {
        Fail::Refused(r)
    }
}

impl From<IntakeError> for Fail {
    fn from(e: IntakeError) -> Self {
        Fail::Refused(e.into())
    }
}

impl From<TokenError> for Fail {
    fn from(e: TokenError) -> Self {
        Fail::Refused(e.into())
    }
}

impl From<Failure> for Fail {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(r) => Fail::Refused(r),
            Failure::Storage(detail) => storage_unavailable(detail),
            Failure::Internal(detail) => Fail::Internal(detail),
        }
    }
}

/// R2 did not answer: a 503 with `Retry-After`; the detail is logged.
pub fn storage_unavailable(detail: impl std::fmt::Display) -> Fail {
    worker::console_error!("R2: {detail}");
    Fail::Refused(Refusal::storage_unavailable())
}

/// A JSON answer that no cache keeps.
pub fn json_response(status: u16, body: String) -> Response {
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

/// The answer for a failure.
pub fn fail_response(fail: Fail) -> Response {
    match fail {
        Fail::Refused(r) => {
            let res = json_response(r.status, r.to_json());
            if let Some(s) = r.retry_after {
                let _ = res.headers().set("retry-after", &s.to_string());
            }
            res
        }
        Fail::Internal(detail) => {
            worker::console_error!("internal error: {detail}");
            json_response(500, error_json(INTERNAL.0, INTERNAL.1))
        }
    }
}
