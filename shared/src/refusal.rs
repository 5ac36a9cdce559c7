//! The one refusal type: what both shells answer when they will not do what was asked.
//!
//! A [`Refusal`] is a status, a stable machine code, a sentence for people and, for answers that
//! mean "not now", how long to wait. Everything that refuses (intake, tokens, the share flow's
//! rules) converts into it; each shell's own error type is `Refused(Refusal) | Internal(detail)`
//! and writes [`INTERNAL`] for the second, never the detail.

use crate::{api::ErrorBody, intake::IntakeError, token::TokenError};

/// Seconds a client is asked to wait (`Retry-After`) when the service is busy or its storage
/// is unreachable.
pub const RETRY_AFTER_SECS: u64 = 2;

/// The code and sentence of every 500 answer; the detail goes to the log, not to the client.
pub const INTERNAL: (&str, &str) = (
    "internal",
    "something went wrong on our side; please try again",
);

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub status: u16,
    /// Stable: clients and tests match on it.
    pub code: &'static str,
    pub message: String,
    /// `Retry-After`, in seconds, for answers that mean "try again later".
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: a field is missing or malformed.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(503, code, message).retry_after(retry_after)
    }

    /// Ask the client to wait this many seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The queue or the render slots are full.
    pub fn busy() -> Self {
        Self::unavailable(
            "queue_full",
            "the service is busy; please retry shortly",
            RETRY_AFTER_SECS,
        )
    }

    /// Storage did not answer; nothing was half-written.
    pub fn storage_unavailable() -> Self {
        Self::unavailable(
            "storage_unavailable",
            "storage is unavailable right now; nothing was stored, please retry",
            RETRY_AFTER_SECS,
        )
    }

    /// The JSON body: `{"error": {"code", "message"}}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, &self.message)
    }

    /// The JSON body, serialised.
    pub fn to_json(&self) -> String {
        error_json(self.code, &self.message)
    }
}

/// The body of every 500 answer.
pub fn internal_body() -> ErrorBody {
    ErrorBody::new(INTERNAL.0, INTERNAL.1)
}

/// `{"error": {"code", "message"}}`, serialised.
pub fn error_json(code: &str, message: &str) -> String {
    serde_json::to_string(&ErrorBody::new(code, message))
        .expect("an error body of two strings always serialises")
}

impl From<IntakeError> for Refusal {
    fn from(e: IntakeError) -> Self {
        Refusal::new(e.http_status(), e.code(), e.to_string())
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Self {
        Refusal::new(e.http_status(), e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_one_shape() {
        let r = Refusal::busy();
        assert_eq!(
            (r.status, r.code, r.retry_after),
            (503, "queue_full", Some(2))
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["error"]["code"], "queue_full");
        assert_eq!(v["error"]["message"], r.message);
        let v = serde_json::to_value(internal_body()).unwrap();
        assert_eq!(v["error"]["code"], "internal");
    }

    #[test]
    fn intake_and_token_errors_keep_their_status_and_code() {
        let r = Refusal::from(IntakeError::UnsupportedFormat);
        assert_eq!(
            (r.status, r.code, r.retry_after),
            (415, "unsupported_format", None)
        );
        let r = Refusal::from(TokenError::Expired);
        assert_eq!((r.status, r.code), (403, "token_expired"));
    }
}
