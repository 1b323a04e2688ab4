//! Configuration of the collector (`[ingest]`), the event log (`[event_log]`), the lake
//! (`[lake]`) and the client registry (`[clients]`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use livora_common::{ByteSize, ConfigError};
use serde::{Deserialize, Serialize};

use crate::log::embedded::EmbeddedLogConfig;
use crate::log::nats::NatsLogConfig;

/// The HTTP collector (`[ingest]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address the HTTP API (`/v1/events`, `/healthz`, `/readyz`, `/metrics`) listens on.
    /// Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Most events in one request. Default `100`.
    pub max_batch_events: usize,
    /// Largest single event, as sent. Default `32KiB`.
    pub max_event_bytes: ByteSize,
    /// Largest request body. Default `512KiB`.
    pub max_request_bytes: ByteSize,
    /// Events stamped further than this in the future are rejected. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
    /// Whether to take the client IP from `X-Forwarded-For` when the event has no `context.ip`
    /// (only behind a trusted proxy). Default `false`: the peer address is used.
    pub trust_forwarded_for: bool,
    /// A MaxMind GeoIP2/GeoLite2 City database (`.mmdb`) for geo enrichment. Default: none, and
    /// the geo fields stay empty.
    pub geoip_database: Option<PathBuf>,
    /// How much of a rejected request body is kept in the quarantine table. Default `64KiB`.
    pub keep_rejected_bytes: ByteSize,
    /// Per-client rate limit.
    pub rate_limit: RateLimitConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_batch_events: 100,
            max_event_bytes: ByteSize::kib(32),
            max_request_bytes: ByteSize::kib(512),
            max_future: Duration::from_secs(24 * 3600),
            trust_forwarded_for: false,
            geoip_database: None,
            keep_rejected_bytes: ByteSize::kib(64),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// A token bucket per client, counted in events (`[ingest.rate_limit]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained events per second allowed for one client. `0` disables the limit.
    /// Default `50000`.
    pub events_per_second: u32,
    /// Events a client may send in a burst above the sustained rate. Default `100000`.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { events_per_second: 50_000, burst: 100_000 }
    }
}

impl IngestConfig {
    /// Checks the values, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000).contains(&self.max_batch_events) {
            return Err(ConfigError::invalid("ingest.max_batch_events", "must be between 1 and 10000"));
        }
        if self.max_event_bytes.0 < 256 {
            return Err(ConfigError::invalid("ingest.max_event_bytes", "must be at least 256B"));
        }
        if self.max_request_bytes < self.max_event_bytes {
            return Err(ConfigError::invalid(
                "ingest.max_request_bytes",
                format!("must be at least ingest.max_event_bytes ({})", self.max_event_bytes),
            ));
        }
        if self.max_request_bytes > ByteSize::mib(64) {
            return Err(ConfigError::invalid("ingest.max_request_bytes", "must be at most 64MiB"));
        }
        if let Some(path) = &self.geoip_database
            && !path.is_file()
        {
            return Err(ConfigError::invalid(
                "ingest.geoip_database",
                format!("{} is not a readable file", path.display()),
            ));
        }
        let rl = &self.rate_limit;
        if rl.events_per_second > 0 && (rl.burst as usize) < self.max_batch_events {
            return Err(ConfigError::invalid(
                "ingest.rate_limit.burst",
                "must be at least ingest.max_batch_events, or a full batch could never pass",
            ));
        }
        Ok(())
    }
}

/// Which event log backs the collector (`[event_log]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventLogConfig {
    /// `embedded` (default: segment files in the data directory) or `nats` (JetStream).
    pub backend: EventLogBackend,
    /// Settings of the embedded log.
    pub embedded: EmbeddedLogConfig,
    /// Settings of the NATS JetStream log.
    pub nats: NatsLogConfig,
}

/// The event log backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventLogBackend {
    /// Durable segment files in the data directory.
    #[default]
    Embedded,
    /// NATS JetStream.
    Nats,
}

impl EventLogConfig {
    /// Checks the values of the selected backend, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.backend {
            EventLogBackend::Embedded => self.embedded.validate(),
            EventLogBackend::Nats => self.nats.validate(),
        }
    }
}

/// The client (tenant) registry and its API keys (`[clients]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientsConfig {
    /// Database URL: `sqlite://path` or `postgres://user@host/db`. Default: SQLite
    /// `<data_dir>/clients.db`.
    pub url: Option<String>,
    /// How long a verified key is trusted before it is checked again; a revoked key stops
    /// working within this time. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        Self { url: None, cache_ttl: Duration::from_secs(5) }
    }
}

impl ClientsConfig {
    /// Checks the values, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        livora_common::config::check_database_url("clients.url", self.url.as_deref())
    }
}
