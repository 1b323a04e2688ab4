//! Inference errors and the error class each one answers with.

use std::path::PathBuf;

use livora_common::ErrorCode;

/// How to get the ONNX Runtime library; every message about a missing library ends with it.
pub(crate) const RUNTIME_HINT: &str = "install it with `python3 -m pip install onnxruntime` and set \
     ORT_DYLIB_PATH (or the config key inference.onnx.runtime_path) to \
     .../site-packages/onnxruntime/capi/libonnxruntime.so.<version>";

/// Why an inference operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither the config key nor `ORT_DYLIB_PATH` names the ONNX Runtime library.
    #[error("no ONNX Runtime library is configured: {RUNTIME_HINT}")]
    RuntimeNotConfigured,
    /// The configured ONNX Runtime library does not exist.
    #[error("the ONNX Runtime library `{}` (from {origin}) does not exist: {RUNTIME_HINT}", path.display())]
    RuntimeMissing {
        /// The configured path.
        path: PathBuf,
        /// Where the path came from: the config key or the environment variable.
        origin: &'static str,
    },
    /// The file is there but is not an ONNX Runtime shared library that can be loaded.
    #[error("the ONNX Runtime library `{}` (from {origin}) cannot be loaded: {reason}", path.display())]
    RuntimeNotLoadable {
        /// The configured path.
        path: PathBuf,
        /// Where the path came from: the config key or the environment variable.
        origin: &'static str,
        /// Why: the loader's message.
        reason: String,
    },
    /// The library is an ONNX Runtime older than the one `ort` needs.
    #[error(
        "the ONNX Runtime library `{}` is version {found}, older than the {required} this build needs: upgrade it \
         (`python3 -m pip install --upgrade onnxruntime`) or point ORT_DYLIB_PATH or inference.onnx.runtime_path \
         at a newer one",
        path.display()
    )]
    RuntimeTooOld {
        /// The library's path.
        path: PathBuf,
        /// The version the library reports.
        found: String,
        /// The oldest version accepted (`1.17`).
        required: String,
    },
    /// The process already loaded an ONNX Runtime library from another path; a process holds one.
    #[error(
        "the ONNX Runtime library is already loaded from `{}` in this process, so `{}` cannot be used; \
         configure one path, or restart the process to change it",
        loaded.display(),
        requested.display()
    )]
    RuntimeAlreadyLoaded {
        /// The library the process holds.
        loaded: PathBuf,
        /// The library asked for now.
        requested: PathBuf,
    },
    /// The library loaded but ONNX Runtime could not be set up (environment, thread pool).
    #[error("the ONNX Runtime library `{}` loaded but could not be initialised: {reason}", path.display())]
    RuntimeInit {
        /// The library's path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A model file could not be read.
    #[error("cannot read the model file `{}`: {source}", path.display())]
    ModelRead {
        /// The model file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// ONNX Runtime refused the model: not an ONNX model, or one it cannot run.
    #[error("{origin} is not an ONNX model this runtime can load: {reason}")]
    InvalidModel {
        /// Where the model came from (`the model file `x.onnx``, `the model bytes`).
        origin: String,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// The model loads, but its inputs or outputs are not those of a tabular scorer.
    #[error("{origin} is not supported: {reason}")]
    UnsupportedModel {
        /// Where the model came from.
        origin: String,
        /// What is wrong with its signature, naming the inputs or outputs found.
        reason: String,
    },
    /// The rows given to a prediction do not fit the model (feature count).
    #[error("{0}")]
    InvalidInput(String),
    /// ONNX Runtime failed while scoring, or returned an output of an unexpected shape.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A SageMaker endpoint could not be called, refused the call, or answered something that
    /// is not one probability per row.
    #[error("SageMaker endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// The endpoint's name.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The model registry or an artifact failed, or a model, version or alias is unknown.
    #[error(transparent)]
    Model(#[from] livora_models::Error),
    /// The feature store failed to answer the model's features, or refused the request.
    #[error(transparent)]
    Features(#[from] livora_feature_store::Error),
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error class, from which the HTTP status and gRPC code follow.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::RuntimeNotConfigured
            | Self::RuntimeMissing { .. }
            | Self::RuntimeNotLoadable { .. }
            | Self::RuntimeTooOld { .. }
            | Self::RuntimeAlreadyLoaded { .. }
            | Self::RuntimeInit { .. } => ErrorCode::Internal,
            Self::ModelRead { source, .. } if source.kind() == std::io::ErrorKind::NotFound => ErrorCode::NotFound,
            Self::ModelRead { .. } => ErrorCode::Internal,
            Self::InvalidModel { .. } | Self::UnsupportedModel { .. } | Self::InvalidInput(_) => {
                ErrorCode::InvalidArgument
            }
            Self::Inference(_) => ErrorCode::Internal,
            Self::Endpoint { .. } => ErrorCode::Unavailable,
            Self::Model(e) => e.code(),
            Self::Features(e) => e.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_say_how_to_get_the_library() {
        let message = Error::RuntimeNotConfigured.to_string();
        assert!(message.contains("pip install onnxruntime"), "{message}");
        assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
        assert!(message.contains("inference.onnx.runtime_path"), "{message}");
        assert!(message.contains("capi/libonnxruntime.so"), "{message}");
        assert_eq!(Error::RuntimeNotConfigured.code(), ErrorCode::Internal);
    }

    #[test]
    fn bad_models_and_rows_are_the_callers_fault() {
        let missing = Error::ModelRead { path: "m.onnx".into(), source: std::io::ErrorKind::NotFound.into() };
        assert_eq!(missing.code(), ErrorCode::NotFound);
        assert_eq!(Error::InvalidInput("x".into()).code(), ErrorCode::InvalidArgument);
        let invalid = Error::InvalidModel { origin: "the model bytes".into(), reason: "protobuf".into() };
        assert_eq!(invalid.code(), ErrorCode::InvalidArgument);
    }
}
