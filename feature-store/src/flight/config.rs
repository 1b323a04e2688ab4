//! Configuration of the Arrow Flight service (`[features.flight]`).

use std::time::Duration;

use livora_common::{ByteSize, ConfigError};
use serde::{Deserialize, Serialize};

/// `[features.flight]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlightConfig {
    /// Whether `livora serve` serves Arrow Flight (`arrow.flight.protocol.FlightService`) on the
    /// feature-serving gRPC port (`features.serving.grpc_listen`, so only while
    /// `features.serving.enabled`). Default `true`.
    pub enabled: bool,
    /// The most rows of one record batch sent by `DoGet`. Default `65536`.
    pub batch_rows: usize,
    /// The most bytes of record batches one `DoGet` holds between reading them and handing them
    /// to the network: a reader that gets ahead of its client waits. A result of any size streams
    /// within it (besides what the query engine needs to compute a point-in-time join). Default
    /// `64MiB`.
    pub memory_budget: ByteSize,
    /// How long an entity dataframe uploaded with `DoPut` can be referred to. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub upload_ttl: Duration,
    /// The largest entity dataframe one `DoPut` may upload (Arrow bytes). Default `1GiB`.
    pub max_upload: ByteSize,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_rows: 65_536,
            memory_budget: ByteSize::mib(64),
            upload_ttl: Duration::from_secs(3600),
            max_upload: ByteSize::mib(1024),
        }
    }
}

/// The smallest memory budget: one small batch must fit.
const MIN_BUDGET: ByteSize = ByteSize::kib(64);
/// The largest memory budget (the budget is counted in `u32` bytes).
const MAX_BUDGET: ByteSize = ByteSize::mib(4095);

impl FlightConfig {
    /// Checks the values beyond their types, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_048_576).contains(&self.batch_rows) {
            return Err(ConfigError::invalid("features.flight.batch_rows", "must be between 1 and 1048576"));
        }
        if self.memory_budget < MIN_BUDGET || self.memory_budget > MAX_BUDGET {
            return Err(ConfigError::invalid(
                "features.flight.memory_budget",
                format!("must be between {MIN_BUDGET} and {MAX_BUDGET}"),
            ));
        }
        if self.upload_ttl.is_zero() {
            return Err(ConfigError::invalid("features.flight.upload_ttl", "must be more than 0s"));
        }
        if self.max_upload.0 == 0 {
            return Err(ConfigError::invalid("features.flight.max_upload", "must be more than 0 bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_key() {
        let named = |c: FlightConfig, key: &str| c.validate().is_err_and(|e| e.to_string().contains(key));
        assert!(named(FlightConfig { batch_rows: 0, ..FlightConfig::default() }, "features.flight.batch_rows"));
        assert!(named(
            FlightConfig { memory_budget: ByteSize::kib(1), ..FlightConfig::default() },
            "features.flight.memory_budget"
        ));
        assert!(named(
            FlightConfig { upload_ttl: Duration::ZERO, ..FlightConfig::default() },
            "features.flight.upload_ttl"
        ));
        assert!(named(
            FlightConfig { max_upload: ByteSize(0), ..FlightConfig::default() },
            "features.flight.max_upload"
        ));
        assert!(FlightConfig::default().validate().is_ok());
    }
}
