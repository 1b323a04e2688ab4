//! The inference configuration (`[inference]`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[inference]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// The ONNX runtime, for models imported as ONNX.
    pub onnx: OnnxConfig,
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
