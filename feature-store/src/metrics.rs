//! The metrics of the feature store, declared in one place, exposed on `/metrics`.
//!
//! Names follow `livora_features_<what>_<unit>`; no label carries a client or entity id.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Every metric of the feature store.
#[derive(Clone)]
pub struct Metrics {
    /// Events folded into streaming features.
    pub stream_events: Counter,
    /// Duplicate events (by `event_id`) the aggregator dropped.
    pub stream_duplicates: Counter,
    /// Events older than their view's allowed lateness: counted offline only.
    pub stream_late_events: Counter,
    /// Event × aggregation pairs skipped for a missing or mistyped field.
    pub stream_skipped_values: Counter,
    /// Feature rows written online by the aggregator.
    pub stream_rows_written: Counter,
    /// Time from an event's acceptance to its features being online.
    pub freshness_seconds: Histogram,
    /// Entity states the aggregator holds.
    pub stream_states: Gauge,
    /// Failed online writes or checkpoints (each is retried).
    pub stream_failures: Counter,
    /// Bytes of record batches the Arrow Flight streams hold now, between reading and sending.
    pub flight_buffered_bytes: Gauge,
    /// The most bytes any one Arrow Flight stream has held since start; at most
    /// `features.flight.memory_budget` (or one batch, when a batch is larger).
    pub flight_stream_buffered_bytes_max: Gauge,
    /// Record batches sent by Arrow Flight `DoGet`.
    pub flight_batches_sent: Counter,
    /// Rows sent by Arrow Flight `DoGet`.
    pub flight_rows_sent: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them under `livora_features` in `root`.
    pub fn new(root: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = root.sub_registry_with_prefix("livora_features");
        r.register("stream_events", "Events folded into streaming features", m.stream_events.clone());
        r.register("stream_duplicates", "Duplicate events dropped by the aggregator", m.stream_duplicates.clone());
        r.register(
            "stream_late_events",
            "Events older than the allowed lateness, counted offline only",
            m.stream_late_events.clone(),
        );
        r.register(
            "stream_skipped_values",
            "Event and aggregation pairs skipped for a missing or mistyped field",
            m.stream_skipped_values.clone(),
        );
        r.register("stream_rows_written", "Feature rows written online", m.stream_rows_written.clone());
        r.register(
            "freshness_seconds",
            "Time from an event's acceptance to its features being online",
            m.freshness_seconds.clone(),
        );
        r.register("stream_states", "Entity states held by the aggregator", m.stream_states.clone());
        r.register("stream_failures", "Failed online writes or checkpoints, each retried", m.stream_failures.clone());
        r.register(
            "flight_buffered_bytes",
            "Bytes of record batches Arrow Flight streams hold between reading and sending",
            m.flight_buffered_bytes.clone(),
        );
        r.register(
            "flight_stream_buffered_bytes_max",
            "The most bytes one Arrow Flight stream has held since start",
            m.flight_stream_buffered_bytes_max.clone(),
        );
        r.register("flight_batches_sent", "Record batches sent by Arrow Flight DoGet", m.flight_batches_sent.clone());
        r.register("flight_rows_sent", "Rows sent by Arrow Flight DoGet", m.flight_rows_sent.clone());
        m
    }

    /// Metrics registered nowhere (tests, tools).
    pub fn unregistered() -> Self {
        Self {
            stream_events: Counter::default(),
            stream_duplicates: Counter::default(),
            stream_late_events: Counter::default(),
            stream_skipped_values: Counter::default(),
            stream_rows_written: Counter::default(),
            freshness_seconds: Histogram::new(exponential_buckets(0.001, 1.5, 24)),
            stream_states: Gauge::default(),
            stream_failures: Counter::default(),
            flight_buffered_bytes: Gauge::default(),
            flight_stream_buffered_bytes_max: Gauge::default(),
            flight_batches_sent: Counter::default(),
            flight_rows_sent: Counter::default(),
        }
    }
}
