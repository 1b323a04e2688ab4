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
    /// The request asks for an operation this service does not offer; the message says what it
    /// offers instead.
    #[error("{0}")]
    Unimplemented(String),
    /// A request is larger than a configured limit; the message names the limit.
    #[error("{0}")]
    TooLarge(String),
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
    /// The offline engine (polars) failed while planning or running a query over offline data.
    #[error("offline store: {context}: {source}")]
    Offline {
        /// What was being done (`reading the schema of feature view `x``).
        context: String,
        /// The engine's error.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A file of the offline store could not be read, written or renamed.
    #[error("offline store: {context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
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
            Self::TooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::Unimplemented(_) => ErrorCode::Unimplemented,
            Self::Clients(_) => ErrorCode::Unavailable,
            Self::Online { .. } | Self::Registry(_) | Self::Stream(_) => ErrorCode::Unavailable,
            Self::Breaking(_) => ErrorCode::InvalidArgument,
            Self::Config(_) => ErrorCode::Internal,
            Self::Offline { .. } | Self::Io { .. } => ErrorCode::Internal,
            Self::Corrupt { .. } => ErrorCode::Internal,
        }
    }

    /// An online-store failure of `backend`.
    pub fn online(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Online { backend, message: message.to_string() }
    }

    /// Wraps an offline-engine error with what was being done; for `map_err`.
    pub fn offline(context: impl Into<String>) -> impl FnOnce(polars::error::PolarsError) -> Self {
        let context = context.into();
        move |source| Self::Offline { context, source }
    }

    /// Wraps an I/O error with what was being done; for `map_err`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
