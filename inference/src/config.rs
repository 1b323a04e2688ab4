//! The inference configuration (`[inference]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::runtime::sagemaker::SageMakerConfig;

/// `[inference]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// How long what an alias (`churn@production`) points at, and its canary, are trusted
    /// before the model registry is asked again: promotions, rollbacks and canary changes reach
    /// serving within this time. Default 1s.
    #[serde(with = "humantime_serde")]
    pub alias_refresh: Duration,
    /// What a missing or expired feature does when a request does not say: `impute` (score with
    /// the training mean and the missing indicator, and say so; the default) or `refuse` (no
    /// score for that entity).
    pub missing_policy: MissingPolicyConfig,
    /// The ONNX runtime, for models imported as ONNX.
    pub onnx: OnnxConfig,
    /// The SageMaker runtime client, for models served by SageMaker endpoints.
    pub sagemaker: SageMakerConfig,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            alias_refresh: Duration::from_secs(1),
            missing_policy: MissingPolicyConfig::Impute,
            onnx: OnnxConfig::default(),
            sagemaker: SageMakerConfig::default(),
        }
    }
}

impl From<MissingPolicyConfig> for crate::predictor::MissingPolicy {
    fn from(policy: MissingPolicyConfig) -> Self {
        match policy {
            MissingPolicyConfig::Impute => Self::Impute,
            MissingPolicyConfig::Refuse => Self::Refuse,
        }
    }
}

/// `inference.missing_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicyConfig {
    /// Score with imputed values, and say which.
    #[default]
    Impute,
    /// Do not score an entity with a missing value.
    Refuse,
}

/// `[inference.onnx]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnnxConfig {
    /// Path to libonnxruntime.so; default: the ORT_DYLIB_PATH environment variable. The PyPI
    /// `onnxruntime` wheel ships it as `site-packages/onnxruntime/capi/libonnxruntime.so.<version>`.
    /// ONNX Runtime 1.17 or newer.
    pub runtime_path: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_environment_and_refuses_unknown_keys() {
        let config: OnnxConfig = toml::from_str("").expect("an empty table is the default");
        assert_eq!(config, OnnxConfig::default());
        assert_eq!(config.runtime_path, None);

        let config: OnnxConfig =
            toml::from_str(r#"runtime_path = "/opt/ort/libonnxruntime.so.1.32.0""#).expect("a path");
        assert_eq!(config.runtime_path, Some(PathBuf::from("/opt/ort/libonnxruntime.so.1.32.0")));

        let error = toml::from_str::<OnnxConfig>(r#"runtime_pth = "x""#).expect_err("a typo");
        assert!(error.to_string().contains("unknown field `runtime_pth`"), "{error}");
    }
}
