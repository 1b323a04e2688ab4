//! Livora's model zoo, shared by training and inference so that the two cannot drift.
//!
//! - [`zoo`]: each model defined once — churn, lead scoring and next-best offer: feature service,
//!   spine, label, default algorithm and baseline.
//! - [`encoding`]: feature values to model columns, fitted on the training rows and stored in the
//!   artifact.
//! - [`algorithms`]: classifiers — the prior, logistic regression (L-BFGS, `argmin`) and
//!   gradient-boosted trees (`forust-ml`), with per-feature contributions for explanations — and
//!   rankers: offer popularity and a softmax MLP (`candle`).
//! - [`metrics`]: ROC AUC, PR AUC, log loss, Brier score, calibration; precision, recall and
//!   NDCG at k.
//! - [`artifact`]: versioned model files (manifest + weights), loadable by inference alone.
//! - [`registry`]: versions and aliases (`production`, `staging`, `shadow`) per client, and each
//!   alias's canary (a second version scoring a share of its entities).

pub mod algorithms;
pub mod artifact;
pub mod encoding;
pub mod error;
pub mod metrics;
pub mod registry;
pub mod zoo;

pub use algorithms::{Algorithm, Classifier, FitParams, Ranker};
pub use artifact::{
    Artifact, Endpoint, Evaluation, FeatureRef, Manifest, RankedOffer, RankingEvaluation, Score, Training, Weights,
};
pub use encoding::{Column, Encoder, Input, Table};
pub use error::{Error, Result};
pub use metrics::{ClassifierMetrics, RankingMetrics, classifier_metrics, ranking_metrics};
pub use registry::{ALIASES, Canary, ModelRegistry, ModelVersion, Target};
pub use zoo::{LabelSpec, ModelSpec, ZOO, spec};
