//! Livora's model inference.
//!
//! The crate will hold the model registry, the runtimes that score rows of features (native,
//! ONNX, SageMaker) and the Predict and KServe V2 services in front of them. Today it holds the
//! ONNX runtime ([`runtime::onnx`]): a binary classifier or scorer trained in Python and exported
//! to ONNX ([`OnnxModel`]), run by the ONNX Runtime library that the `onnxruntime` wheel ships,
//! loaded at run time ([`init_runtime`], configured by [`OnnxConfig`]).

pub mod config;
pub mod error;
pub mod runtime;

pub use config::{InferenceConfig, OnnxConfig};
pub use error::{Error, Result};
pub use runtime::onnx::{OnnxMetadata, OnnxModel, ScoreKind, init_runtime};
