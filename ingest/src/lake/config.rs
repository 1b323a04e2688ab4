//! Configuration of the raw lake (`[lake]`).

use std::time::Duration;

use livora_common::{ByteSize, ConfigError};
use serde::{Deserialize, Serialize};

/// Where and how the lake writer writes (`[lake]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// The offline root: a local directory (`/var/lib/livora/lake`, `file:///…`) or an S3 URL
    /// (`s3://bucket/prefix`). Default: `<data_dir>/lake`.
    pub root: Option<String>,
    /// Parquet compression: `zstd` (default) or `snappy`.
    pub compression: Compression,
    /// A partition's buffer is written as a file once it holds this much (estimated,
    /// uncompressed). Default `64MiB`.
    pub roll_bytes: ByteSize,
    /// A partition's buffer is written at the latest this long after its first event.
    /// Default `60s`.
    #[serde(with = "humantime_serde")]
    pub roll_interval: Duration,
    /// Everything buffered is written when the buffers together exceed this. Default `256MiB`.
    pub max_buffer_bytes: ByteSize,
    /// How long an `event_id` is remembered to drop redeliveries and resent duplicates.
    /// Default `24h`.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// S3 settings, used when `root` is an `s3://` URL. Credentials come from the usual
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment variables.
    pub s3: S3Config,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            root: None,
            compression: Compression::Zstd,
            roll_bytes: ByteSize::mib(64),
            roll_interval: Duration::from_secs(60),
            max_buffer_bytes: ByteSize::mib(256),
            dedupe_window: Duration::from_secs(24 * 3600),
            s3: S3Config::default(),
        }
    }
}

/// Parquet compression codecs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Zstandard (level 3): smaller files.
    #[default]
    Zstd,
    /// Snappy: faster to write and read.
    Snappy,
}

/// S3 settings (`[lake.s3]`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// A custom endpoint (MinIO, moto, …). Default: AWS.
    pub endpoint: Option<String>,
    /// The region. Default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain HTTP endpoints (for local test servers). Default `false`.
    pub allow_http: bool,
    /// The access key id. Default: `AWS_ACCESS_KEY_ID`, else the instance's role. Prefer the
    /// environment (`LIVORA__LAKE__S3__ACCESS_KEY_ID`) to a file for secrets.
    pub access_key_id: Option<String>,
    /// The secret access key, given with `access_key_id`. Default: `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
}

impl LakeConfig {
    /// Checks the values, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(root) = &self.root
            && root.contains("://")
            && !(root.starts_with("s3://") || root.starts_with("file://"))
        {
            return Err(ConfigError::invalid("lake.root", "must be a local path, file:// or s3:// URL"));
        }
        if self.roll_bytes.0 < 1024 {
            return Err(ConfigError::invalid("lake.roll_bytes", "must be at least 1KiB"));
        }
        if self.roll_interval.is_zero() {
            return Err(ConfigError::invalid("lake.roll_interval", "must be more than 0s"));
        }
        if self.max_buffer_bytes < self.roll_bytes {
            return Err(ConfigError::invalid("lake.max_buffer_bytes", "must be at least lake.roll_bytes"));
        }
        if self.s3.access_key_id.is_some() != self.s3.secret_access_key.is_some() {
            return Err(ConfigError::invalid(
                "lake.s3.secret_access_key",
                "lake.s3.access_key_id and lake.s3.secret_access_key are given together or not at all",
            ));
        }
        if self.dedupe_window.is_zero() {
            return Err(ConfigError::invalid("lake.dedupe_window", "must be more than 0s"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
