//! The API's one error type: a status, and a JSON body that says what was
//! wrong without saying anything of the server's internals.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald::protocol::ErrorReply;
use serde_json::json;

use crate::http::admission::{retry_after_ms, retry_after_secs};
use crate::ops::metrics::PublishOutcome;

/// An API error: a status and a JSON `{"error": {"code", "reason"}}` body.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) error: ErrorReply,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &str, reason: impl Into<String>) -> Self {
        Self { status, error: ErrorReply::new(code, reason) }
    }

    /// Over the key's rate for `what` ("publish requests", "API calls").
    pub(super) fn rate_limited(what: &str, wait: std::time::Duration) -> Self {
        Self { status: StatusCode::TOO_MANY_REQUESTS, error: ErrorReply::rate_limited(what, retry_after_ms(wait)) }
    }

    pub(super) fn outcome(&self) -> PublishOutcome {
        match self.status {
            StatusCode::UNAUTHORIZED => PublishOutcome::Unauthorized,
            StatusCode::TOO_MANY_REQUESTS => PublishOutcome::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => PublishOutcome::Unavailable,
            _ => PublishOutcome::Invalid,
        }
    }

    pub(super) fn invalid(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_target", reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({ "error": self.error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        if let Some(ms) = self.error.retry_after_ms {
            let secs = retry_after_secs(std::time::Duration::from_millis(ms));
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}
