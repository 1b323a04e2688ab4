//! The model zoo's errors and the error class each one answers with.

use livora_common::ErrorCode;

/// Why a model operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request names something invalid; the message names the field and the reason.
    #[error("{0}")]
    InvalidArgument(String),
    /// A request names a model, version or alias that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The data cannot train a model (too few rows, a single class); the message says what is
    /// missing.
    #[error("{0}")]
    InsufficientData(String),
    /// An algorithm failed while fitting.
    #[error("fitting {algorithm}: {message}")]
    Fit {
        /// The algorithm.
        algorithm: &'static str,
        /// What failed.
        message: String,
    },
    /// The model registry database failed.
    #[error("model registry: {0}")]
    Registry(String),
    /// An artifact could not be read or written.
    #[error("model artifact {path}: {message}")]
    Artifact {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error class, from which the HTTP status and gRPC code follow.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) | Self::InsufficientData(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Registry(_) => ErrorCode::Unavailable,
            Self::Fit { .. } | Self::Artifact { .. } => ErrorCode::Internal,
        }
    }

    /// An [`Error::Artifact`] for `path`.
    pub(crate) fn artifact(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        Self::Artifact { path: path.display().to_string(), message: message.to_string() }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Registry(e.to_string())
    }
}
