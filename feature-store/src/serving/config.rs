//! Configuration of feature serving (`[features.serving]`).

use std::net::SocketAddr;
use std::time::Duration;

use livora_common::ConfigError;
use serde::{Deserialize, Serialize};

/// The most entity rows a configuration may allow per request.
const MAX_ENTITY_ROWS_LIMIT: usize = 100_000;

/// `[features.serving]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingConfig {
    /// Whether `livora serve` serves features: the gRPC API on `grpc_listen` and the JSON twin
    /// `POST /v1/features/online` on the collector's HTTP listener (`ingest.listen`).
    /// Default `true`.
    pub enabled: bool,
    /// Address of the gRPC API: `livora.v1.FeatureService`, `grpc.health.v1.Health` and server
    /// reflection. Default `127.0.0.1:50051`.
    pub grpc_listen: SocketAddr,
    /// The most entity rows one request may ask for. Default `1000`.
    pub max_entity_rows: usize,
    /// How long a client's feature definitions are served from memory before the registry is
    /// asked whether they changed: a `livora apply` is served within this time. `0s` asks on
    /// every request. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub registry_refresh: Duration,
}

impl Default for ServingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_entity_rows: 1000,
            registry_refresh: Duration::from_secs(5),
        }
    }
}

impl ServingConfig {
    /// Checks the values beyond their types, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_ENTITY_ROWS_LIMIT).contains(&self.max_entity_rows) {
            return Err(ConfigError::invalid(
                "features.serving.max_entity_rows",
                format!("must be between 1 and {MAX_ENTITY_ROWS_LIMIT}"),
            ));
        }
        if self.registry_refresh > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "features.serving.registry_refresh",
                "must be at most 1h, or an apply would wait that long to be served",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_key() {
        let c = ServingConfig { max_entity_rows: 0, ..ServingConfig::default() };
        assert!(c.validate().is_err_and(|e| e.to_string().contains("features.serving.max_entity_rows")));
        let c = ServingConfig { registry_refresh: Duration::from_secs(7200), ..ServingConfig::default() };
        assert!(c.validate().is_err_and(|e| e.to_string().contains("features.serving.registry_refresh")));
        assert!(ServingConfig::default().validate().is_ok());
    }
}
