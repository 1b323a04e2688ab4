//! Livora's model inference.
//!
//! The crate will hold the model registry, the runtimes that score rows of features (native,
//! ONNX, SageMaker) and the Predict and KServe V2 services in front of them.

pub mod config;
pub mod error;

pub use config::OnnxConfig;
pub use error::{Error, Result};
