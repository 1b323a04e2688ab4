//! The collector's errors and how each one answers over HTTP.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use livora_common::{ErrorCode, Problem};
use serde::Serialize;

use crate::log::LogError;

/// Why a request to the collector failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No `Authorization: Bearer` key, or a key that is unknown or revoked.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A valid key of another client than `X-Client-Id` names.
    #[error("the api key does not belong to client `{0}`")]
    WrongClient(String),
    /// The request is not acceptable; every problem is listed.
    #[error("the request is invalid ({} problem(s))", .0.len())]
    Invalid(Vec<Problem>),
    /// The body is larger than `ingest.max_request_bytes`.
    #[error("request body exceeds the limit of {0}")]
    TooLarge(livora_common::ByteSize),
    /// The body is not `application/json`.
    #[error("content type must be application/json, got `{0}`")]
    UnsupportedMediaType(String),
    /// The client's rate limit is exhausted; retry after the given number of seconds.
    #[error("rate limit exceeded for client `{client}`; retry after {retry_after_secs}s")]
    RateLimited {
        /// The client.
        client: String,
        /// Seconds until the batch would fit in the bucket.
        retry_after_secs: u64,
    },
    /// The event log could not take the batch; nothing was accepted.
    #[error("the event log is unavailable: {0}")]
    Log(#[from] LogError),
    /// The client registry could not be reached.
    #[error("the client registry is unavailable: {0}")]
    Registry(#[from] sqlx::Error),
}

/// Convenience alias.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

impl IngestError {
    /// The error class, from which the HTTP status follows.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::WrongClient(_) => ErrorCode::PermissionDenied,
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::TooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::RateLimited { .. } => ErrorCode::ResourceExhausted,
            Self::Log(_) | Self::Registry(_) => ErrorCode::Unavailable,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: ErrorCode,
    message: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    problems: &'a [Problem],
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if matches!(code, ErrorCode::Unavailable) {
            tracing::error!(error = %self, "ingest request failed");
        }
        let problems = match &self {
            Self::Invalid(p) => p.as_slice(),
            _ => &[],
        };
        let body = ErrorBody { error: ErrorDetail { code, message: self.to_string(), problems } };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::RateLimited { retry_after_secs, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Log(_) | Self::Registry(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
