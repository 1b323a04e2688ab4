//! Model runtimes: what loads a model and scores rows of features with it.
//!
//! Today: [`onnx`], models trained elsewhere and exported to ONNX, run by ONNX Runtime.

pub mod onnx;
