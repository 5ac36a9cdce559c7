//! The one error type of the HTTP layer: refused (a [`Refusal`], answered as it is) or internal
//! (a generic 500; the detail goes to the log).

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use shared::{
    intake::IntakeError,
    publish::Failure,
    refusal::{Refusal, internal_body},
    token::TokenError,
};

use super::engine::EngineError;

pub use shared::refusal::RETRY_AFTER_SECS;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The caller sent something we refuse, or we cannot serve now; `code` is stable.
    #[error("{0}")]
    Refused(Refusal),
    /// A bug or a broken dependency; the caller sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// 400 with a stable code.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Refused(Refusal::bad(code, message))
    }

    pub fn status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError::Refused(Refusal::new(status.as_u16(), code, message))
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Refused(Refusal::not_found(code, message))
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        AppError::Refused(Refusal::unavailable(code, message, retry_after))
    }

    /// The queue or the render slots are full.
    pub fn busy() -> Self {
        AppError::Refused(Refusal::busy())
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Refused(r) => r.code,
            AppError::Internal(_) => "internal",
        }
    }
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        AppError::Refused(r)
    }
}

impl From<IntakeError> for AppError {
    fn from(e: IntakeError) -> Self {
        AppError::Refused(e.into())
    }
}

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        AppError::Refused(e.into())
    }
}

impl From<Failure> for AppError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(r) => AppError::Refused(r),
            Failure::Storage(detail) => storage_unavailable(detail),
            Failure::Internal(detail) => AppError::Internal(detail),
        }
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::QueueFull => AppError::busy(),
            EngineError::Unavailable(reason) => AppError::unavailable(
                "model_unavailable",
                format!("the model is not available: {reason}"),
                30,
            ),
            EngineError::Failed(detail) => AppError::Internal(detail),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Refused(r) => {
                let status =
                    StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut res = (status, Json(r.body())).into_response();
                if let Some(secs) = r.retry_after {
                    res.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                res
            }
            AppError::Internal(detail) => internal_error(&detail),
        }
    }
}

/// Storage did not answer: a 503 with `Retry-After`; the detail is logged.
pub fn storage_unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::warn!(error = %e, "storage unavailable");
    AppError::Refused(Refusal::storage_unavailable())
}

/// The generic 500 (a handler's internal error, or a panic): the detail is logged only.
pub fn internal_error(detail: &str) -> Response {
    tracing::error!(error = %detail, "internal error");
    (StatusCode::INTERNAL_SERVER_ERROR, Json(internal_body())).into_response()
}

pub type AppResult<T> = Result<T, AppError>;
