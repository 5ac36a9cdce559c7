//! The one error type of the HTTP layer: a stable code, a status and a sentence.
//!
//! 4xx answers name the problem; 5xx answers are generic and the detail goes to the log.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use shared::{api::ErrorBody, intake::IntakeError, token::TokenError};

use super::engine::EngineError;

/// Seconds a client is asked to wait (`Retry-After`) when the service is busy.
pub const RETRY_AFTER_SECS: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The caller sent something we refuse; `code` is stable.
    #[error("{message}")]
    BadRequest {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// We cannot serve now; try again after `retry_after` seconds.
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    /// A bug or a broken dependency; the caller sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::status(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        AppError::Unavailable {
            code,
            message: message.into(),
            retry_after,
        }
    }

    /// The queue or the render slots are full.
    pub fn busy() -> Self {
        Self::unavailable(
            "queue_full",
            "the service is busy; please retry shortly",
            RETRY_AFTER_SECS,
        )
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { code, .. } | AppError::Unavailable { code, .. } => code,
            AppError::Internal(_) => "internal",
        }
    }
}

impl From<IntakeError> for AppError {
    fn from(e: IntakeError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        AppError::status(status, e.code(), e.to_string())
    }
}

impl From<shared::publish::Refusal> for AppError {
    fn from(r: shared::publish::Refusal) -> Self {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
        AppError::status(status, r.code, r.message)
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

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN);
        AppError::status(status, e.code(), e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::BadRequest {
                status,
                code,
                message,
            } => (status, Json(ErrorBody::new(code, message))).into_response(),
            AppError::Unavailable {
                code,
                message,
                retry_after,
            } => {
                let mut r = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(ErrorBody::new(code, message)),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                r
            }
            AppError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(ErrorBody::new(
                        "internal",
                        "something went wrong on our side; please try again",
                    )),
                )
                    .into_response()
            }
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
