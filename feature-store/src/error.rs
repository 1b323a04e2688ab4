//! The feature store's errors and the error class each one answers with.

use livora_common::{ConfigError, ErrorCode};

/// Why a feature-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request names something invalid; the message names the field and the reason.
    #[error("{0}")]
    InvalidArgument(String),
    /// A request names a feature, view, service or entity that is not registered.
    #[error("{0}")]
    NotFound(String),
    /// A request carries no credentials, or unknown ones; the message says which.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials that do not grant the request (a key of another client).
    #[error("{0}")]
    PermissionDenied(String),
    /// The client registry (API keys) could not be reached.
    #[error("client registry: {0}")]
    Clients(String),
    /// An online store backend failed; retrying may succeed.
    #[error("online store `{backend}`: {message}")]
    Online {
        /// The backend (`redb`, `redis`, `dynamodb`).
        backend: &'static str,
        /// What failed.
        message: String,
    },
    /// The registry database failed or refused the change.
    #[error("feature registry: {0}")]
    Registry(String),
    /// The apply would break readers of registered views; nothing was recorded.
    #[error("the change is refused:\n  {}", .0.join("\n  "))]
    Breaking(Vec<String>),
    /// The stream aggregator failed (checkpoint store, log); it retries.
    #[error("stream aggregator: {0}")]
    Stream(String),
    /// The configuration is invalid; the message names the key at fault.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Stored data could not be decoded (corruption or an incompatible version).
    #[error("corrupt stored data in {what}: {reason}")]
    Corrupt {
        /// Where the data was read from.
        what: String,
        /// Why it could not be decoded.
        reason: String,
    },
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error class, from which the HTTP status and gRPC code follow.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::Clients(_) => ErrorCode::Unavailable,
            Self::Online { .. } | Self::Registry(_) | Self::Stream(_) => ErrorCode::Unavailable,
            Self::Breaking(_) => ErrorCode::InvalidArgument,
            Self::Config(_) => ErrorCode::Internal,
            Self::Corrupt { .. } => ErrorCode::Internal,
        }
    }

    /// An online-store failure of `backend`.
    pub fn online(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Online { backend, message: message.to_string() }
    }
}
