//! The metrics of the ingest room, declared in one place and exposed on `/metrics`.
//!
//! Names follow `livora_ingest_<what>_<unit>`; labels are of bounded cardinality (HTTP status
//! codes only — never client ids).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `livora_ingest_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The HTTP status answered.
    pub status: u16,
}

/// Every metric of the ingest room.
pub struct Metrics {
    registry: Registry,
    /// Requests to `/v1/events` by answer.
    pub requests: Family<StatusLabel, Counter>,
    /// Events acknowledged (durable in the log).
    pub events_accepted: Counter,
    /// Time from receiving a request to answering 200.
    pub request_seconds: Histogram,
    /// Time the log took to make a batch durable.
    pub append_seconds: Histogram,
    /// Events written to the lake.
    pub lake_events_written: Counter,
    /// Lake files written.
    pub lake_files_written: Counter,
    /// Duplicate events dropped by the lake writer.
    pub lake_duplicates: Counter,
    /// Records written to the quarantine table.
    pub lake_quarantined: Counter,
    /// Failed lake writes (each is retried).
    pub lake_write_failures: Counter,
    /// Log records that could not be decoded.
    pub lake_undecodable: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("livora_ingest");
        let latency = || Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        let m = Self {
            requests: Family::default(),
            events_accepted: Counter::default(),
            request_seconds: latency(),
            append_seconds: latency(),
            lake_events_written: Counter::default(),
            lake_files_written: Counter::default(),
            lake_duplicates: Counter::default(),
            lake_quarantined: Counter::default(),
            lake_write_failures: Counter::default(),
            lake_undecodable: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests to /v1/events by HTTP status", m.requests.clone());
        registry.register("events_accepted", "Events acknowledged as durable", m.events_accepted.clone());
        registry.register("request_duration_seconds", "Time to answer an accepted request", m.request_seconds.clone());
        registry.register(
            "append_duration_seconds",
            "Time for the log to make a batch durable",
            m.append_seconds.clone(),
        );
        registry.register("lake_events_written", "Events written to the lake", m.lake_events_written.clone());
        registry.register("lake_files_written", "Parquet files written to the lake", m.lake_files_written.clone());
        registry.register("lake_duplicates", "Duplicate events dropped by the lake writer", m.lake_duplicates.clone());
        registry.register("lake_quarantined", "Records written to the quarantine table", m.lake_quarantined.clone());
        registry.register("lake_write_failures", "Failed lake writes, each retried", m.lake_write_failures.clone());
        registry.register("lake_undecodable", "Log records that could not be decoded", m.lake_undecodable.clone());
        Self { registry: root, ..m }
    }

    /// The registry `/metrics` exposes, for other rooms to add their metrics under their own
    /// prefix (`sub_registry_with_prefix("livora_features")`) before serving starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
