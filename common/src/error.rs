//! Error codes shared by every API, so that HTTP and gRPC answers come from one place.

use serde::{Deserialize, Serialize};

/// The class of an error as an API reports it. Each room maps its own error enum onto these codes;
/// the HTTP status and (later) the gRPC status are derived from the code alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a value is invalid (HTTP 400, gRPC INVALID_ARGUMENT).
    InvalidArgument,
    /// No credentials, or unknown credentials (HTTP 401, gRPC UNAUTHENTICATED).
    Unauthenticated,
    /// Valid credentials that do not grant this (HTTP 403, gRPC PERMISSION_DENIED).
    PermissionDenied,
    /// The named thing does not exist (HTTP 404, gRPC NOT_FOUND).
    NotFound,
    /// The request body is larger than allowed (HTTP 413, gRPC RESOURCE_EXHAUSTED).
    PayloadTooLarge,
    /// The request body is not of a supported media type (HTTP 415, gRPC INVALID_ARGUMENT).
    UnsupportedMediaType,
    /// A rate limit or quota is exceeded (HTTP 429, gRPC RESOURCE_EXHAUSTED).
    ResourceExhausted,
    /// A dependency is unavailable; retrying later may succeed (HTTP 503, gRPC UNAVAILABLE).
    Unavailable,
    /// The operation is not offered (HTTP 501, gRPC UNIMPLEMENTED).
    Unimplemented,
    /// A bug or an unexpected failure on our side (HTTP 500, gRPC INTERNAL).
    Internal,
}

impl ErrorCode {
    /// The HTTP status code for this error class.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidArgument => 400,
            Self::Unauthenticated => 401,
            Self::PermissionDenied => 403,
            Self::NotFound => 404,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::ResourceExhausted => 429,
            Self::Unavailable => 503,
            Self::Unimplemented => 501,
            Self::Internal => 500,
        }
    }
}

/// One problem found in a request: which item (by index in a batch), which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Index of the item in the request batch; `None` for request-level problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The field at fault, as a dotted path (`timestamp`, `props`, `context.ip`), or `body`.
    pub field: String,
    /// What is wrong, in lowercase words.
    pub reason: String,
}

impl Problem {
    /// A problem with the field of the item at `index`.
    pub fn at(index: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { index: Some(index), field: field.into(), reason: reason.into() }
    }

    /// A request-level problem.
    pub fn request(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { index: None, field: field.into(), reason: reason.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "[{i}].{}: {}", self.field, self.reason),
            None => write!(f, "{}: {}", self.field, self.reason),
        }
    }
}
