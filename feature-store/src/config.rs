//! The feature store's configuration (`[features]`).

use livora_common::ConfigError;
use serde::{Deserialize, Serialize};

use crate::serving::ServingConfig;

/// `[features]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureStoreConfig {
    /// Registry database URL: `sqlite://path` or `postgres://user@host/db`. Default: SQLite
    /// `<data_dir>/registry.db`.
    pub registry_url: Option<String>,
    /// The offline store's root directory: feature history under `features/`, batch tables under
    /// their sources' paths. Default: the lake's root when it is a local directory (so raw events,
    /// feature history and tables sit side by side), else `<data_dir>/offline`.
    pub offline_root: Option<std::path::PathBuf>,
    /// Feature history in S3 instead of under `offline_root` (`[features.offline_store]`).
    pub offline_store: OfflineStoreConfig,
    /// The stream aggregator (`[features.stream]`).
    pub stream: crate::stream::StreamConfig,
    /// Feature serving (`[features.serving]`).
    pub serving: ServingConfig,
    /// Arrow Flight datasets (`[features.flight]`).
    pub flight: crate::flight::FlightConfig,
}

impl FeatureStoreConfig {
    /// Checks the values, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        livora_common::config::check_database_url("features.registry_url", self.registry_url.as_deref())?;
        self.offline_store.validate()?;
        self.stream.validate()?;
        self.serving.validate()?;
        self.flight.validate()
    }
}

/// `[features.offline_store]`: where feature history (the streaming views' feature log and
/// backfills) is kept. Unset `url`: Parquet under `features.offline_root`. An `s3://bucket/prefix`
/// URL: the same layout in S3, read through a local cache ([`crate::ObjectOfflineStore`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineStoreConfig {
    /// `s3://bucket/prefix`, or unset for the local offline root.
    pub url: Option<String>,
    /// Where downloaded history files are cached. Default: `<data_dir>/offline-cache`.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The S3 client (`[features.offline_store.s3]`: endpoint, region, allow_http, credentials),
    /// as `[lake.s3]`.
    pub s3: livora_ingest::lake::config::S3Config,
}

impl OfflineStoreConfig {
    /// Checks the values, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            let bucket = url.strip_prefix("s3://").map(|rest| rest.split('/').next().unwrap_or_default());
            if bucket.is_none_or(str::is_empty) {
                return Err(ConfigError::invalid(
                    "features.offline_store.url",
                    "must be an s3://bucket/prefix URL (unset for the local offline root)",
                ));
            }
        }
        if self.s3.access_key_id.is_some() != self.s3.secret_access_key.is_some() {
            return Err(ConfigError::invalid(
                "features.offline_store.s3.secret_access_key",
                "features.offline_store.s3.access_key_id and secret_access_key are given together or not at all",
            ));
        }
        Ok(())
    }
}
