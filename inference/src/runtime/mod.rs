//! Model runtimes: what loads a model and scores rows of features with it.
//!
//! Beside the native models of the zoo: [`onnx`], models trained elsewhere and exported to ONNX,
//! run by ONNX Runtime; [`sagemaker`], models served by a SageMaker endpoint, called over HTTPS.

pub mod onnx;
pub mod sagemaker;
