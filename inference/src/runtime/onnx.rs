//! The ONNX runtime: models trained elsewhere (scikit-learn via skl2onnx, LightGBM or XGBoost via
//! onnxmltools) and exported to ONNX, scored by ONNX Runtime through `ort`.
//!
//! The ONNX Runtime library is not built in: [`init_runtime`] loads the `libonnxruntime.so` that
//! the PyPI `onnxruntime` wheel ships (`site-packages/onnxruntime/capi/`), named by the config key
//! `inference.onnx.runtime_path` or the `ORT_DYLIB_PATH` environment variable, once per process.
//! [`OnnxModel::load`] does so itself if need be.

mod library;
mod model;
mod pool;
mod signature;

pub use library::init_runtime;
pub use model::{OnnxMetadata, OnnxModel, ScoreKind};
