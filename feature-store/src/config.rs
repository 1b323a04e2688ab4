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
        self.stream.validate()?;
        self.serving.validate()?;
        self.flight.validate()
    }
}
