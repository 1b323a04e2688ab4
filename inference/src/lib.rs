//! Livora's model inference.
//!
//! [`Predictor`] scores entities with a registered model version: it resolves the version an
//! alias points at (re-read every `alias_refresh`: promotions reach serving without a restart),
//! fetches the model's features from the online store through the feature server, encodes them
//! with the encoder stored in the artifact — the one training fitted — and scores with the
//! model's runtime: native (logistic regression, boosted trees, with per-feature contributions)
//! or ONNX ([`runtime::onnx`]: a model trained in Python and exported to ONNX, run by the ONNX
//! Runtime library that the `onnxruntime` wheel ships, loaded at run time), or a SageMaker
//! endpoint ([`runtime::sagemaker`]: the model stays where it is served). [`grpc`] serves it
//! as `livora.v1.InferenceService/Predict`; [`kserve`] serves KServe's Open Inference Protocol V2
//! (`inference.GRPCInferenceService`) to callers that bring their own features, scored with the
//! same encoder and runtime.
//!
//! An alias may carry a canary, a second version scoring a share of its entities: [`canary`]
//! says which entities (a fixed hash, sticky per entity), [`Predictor::predict`] scores each
//! group with its version and says which version scored each row.

pub mod canary;
pub mod config;
pub mod error;
pub mod grpc;
pub mod kserve;
pub mod prediction_log;
pub mod predictor;
pub mod runtime;

pub use config::{InferenceConfig, MissingPolicyConfig, OnnxConfig, SageMakerConfig};
pub use error::{Error, Result};
pub use grpc::GrpcInferenceService;
pub use kserve::GrpcKserveService;
pub use prediction_log::{LoggedFeatures, PredictionRecord, PredictionSink, SinkConfig};
pub use predictor::{Loaded, MissingPolicy, Predictions, Predictor, Row, RowStatus, Serving, ServingCanary};
pub use runtime::onnx::{OnnxMetadata, OnnxModel, ScoreKind, init_runtime};
pub use runtime::sagemaker::SageMakerRuntime;
