//! Why a training job failed.

use livora_common::ErrorCode;

/// A training job's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is invalid; the message names the flag or field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The feature store refused or failed (unknown service, no history, a polars error).
    #[error(transparent)]
    FeatureStore(#[from] livora_feature_store::Error),
    /// The model zoo refused or failed (too few rows, one class, a fit error).
    #[error(transparent)]
    Model(#[from] livora_models::Error),
    /// Polars failed while reading the dataset.
    #[error("reading the training set: {0}")]
    Dataset(#[from] polars::error::PolarsError),
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error class.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::FeatureStore(e) => e.code(),
            Self::Model(e) => e.code(),
            Self::Dataset(_) => ErrorCode::Internal,
        }
    }
}
