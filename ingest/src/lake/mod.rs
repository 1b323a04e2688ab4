//! The raw lake: the log's events as Parquet, partitioned by client and event time.
//!
//! Layout under the offline root:
//! - `raw/events/client_id=<c>/dt=YYYY-MM-DD/hour=HH/part-<uuid v7>.parquet`
//! - `quarantine/client_id=<c>/dt=YYYY-MM-DD/part-<uuid v7>.parquet`
//!
//! The [`LakeWriter`] consumes the event log, buffers events per partition and writes a file
//! when a buffer reaches `lake.roll_bytes` or `lake.roll_interval`. Each file appears whole
//! (object stores publish a put atomically; the local store writes a staging file, syncs it,
//! renames it and syncs the directory: see [`store::DurableLocal`]). Each event lands exactly once: see [`dedupe`]. The log position is committed only once
//! every event up to it is in a written file, so a crash or a failed write means redelivery,
//! never loss. A write that fails is retried with backoff, without end: an outage of the store
//! stalls the lake, it does not drop events. A log record that cannot be decoded, and every
//! request the collector refused, go to the quarantine table with the reason.

pub mod config;
pub mod dedupe;
pub mod reader;
pub mod schema;
pub mod store;
mod writer;

pub use config::LakeConfig;
pub use reader::{LakeReader, UserEventProps, UserEventTimes};
pub use writer::{LakeError, LakeWriter};

/// The object path prefix of a client's raw events.
pub fn events_prefix(client: &str) -> String {
    format!("raw/events/client_id={client}")
}

/// The object path prefix of the partition of a client's raw events of the UTC day `dt` and hour
/// `hour` (`raw/events/client_id=<c>/dt=YYYY-MM-DD/hour=HH`).
pub fn events_partition(client: &str, dt: chrono::NaiveDate, hour: u32) -> String {
    format!("{}/dt={dt}/hour={hour:02}", events_prefix(client))
}

/// The object path prefix of a client's quarantine records.
pub fn quarantine_prefix(client: &str) -> String {
    format!("quarantine/client_id={client}")
}
