//! The collector's one error type: every failure a client sees is an [`AppError`],
//! answered as `{"error": {"code", "message"}}` with the status OTLP/HTTP prescribes.
//!
//! Client mistakes are answered plainly and not logged as errors; internal failures are
//! answered with a generic message while the detail travels in the response's
//! extensions to the logging middleware, which logs it once.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::storage::StorageError;

/// A failed request.
#[derive(Debug, Clone)]
pub struct AppError {
    /// The HTTP status it answers with.
    pub status: StatusCode,
    /// A stable machine-readable code (`too_large`, `invalid_event`).
    pub code: &'static str,
    /// What went wrong, for people; names the field or limit.
    pub message: String,
    /// For 429: seconds until a retry may succeed.
    pub retry_after: Option<u64>,
    /// For 5xx: what really happened, for the log only.
    pub detail: Option<String>,
}

/// Internal detail of a 5xx, handed from the handler to the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl AppError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> AppError {
        AppError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            detail: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no key, or not a valid one.
    pub fn unauthorized(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: a valid key that may not do this.
    pub fn forbidden(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 413: a size limit was passed; the message names the limit.
    pub fn too_large(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 415: not JSON, or an encoding other than gzip.
    pub fn unsupported_media_type(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    }

    /// 422: well-formed JSON that is not a valid event.
    pub fn invalid_event(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", message)
    }

    /// 409: the request contradicts what is stored.
    pub fn conflict(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422: well-formed JSON that is not a valid counts upload.
    pub fn invalid_counts(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_counts", message)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after: u64, message: impl Into<String>) -> AppError {
        AppError {
            retry_after: Some(retry_after),
            ..AppError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// 503: storage cannot take the request now; nothing was committed.
    pub fn unavailable(detail: impl Into<String>) -> AppError {
        AppError {
            detail: Some(detail.into()),
            retry_after: Some(UNAVAILABLE_RETRY_AFTER_SECS),
            ..AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage is unavailable; nothing was stored, retry later",
            )
        }
    }

    /// 500: a bug or an unexpected failure; the detail is logged, not sent.
    pub fn internal(detail: impl Into<String>) -> AppError {
        AppError {
            detail: Some(detail.into()),
            ..AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }
    }
}

/// When a client should try again after a 503: storage that is busy, restarting or out
/// of space usually recovers within seconds, and the SDK's backoff spreads clients out.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl From<StorageError> for AppError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Unavailable(detail) => AppError::unavailable(detail),
            StorageError::Internal(detail) => AppError::internal(detail),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(detail) = self.detail {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response
    }
}
