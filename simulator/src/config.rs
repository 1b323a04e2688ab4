//! What to simulate.

use chrono::{DateTime, TimeZone, Utc};
use livora_common::ClientId;

/// The parameters of one simulated run. Two runs with equal configs produce byte-identical streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The tenant every event is attributed to (`client_id` of each event).
    pub client_id: ClientId,
    /// Number of distinct people (customers + anonymous visitors + ~1% bots).
    pub users: u32,
    /// Length of the run in days of 24 hours.
    pub days: u32,
    /// The first simulated instant; every timestamp lies in `[start, start + days)`.
    /// Sub-millisecond precision is dropped.
    pub start: DateTime<Utc>,
    /// The seed of the run's single random number generator.
    pub seed: u64,
}

impl SimConfig {
    /// A config starting at [`SimConfig::default_start`].
    pub fn new(client_id: ClientId, users: u32, days: u32, seed: u64) -> Self {
        Self { client_id, users, days, start: Self::default_start(), seed }
    }

    /// Monday 2026-01-05T00:00:00Z, the start used by [`SimConfig::new`].
    pub fn default_start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).single().unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// The first instant after the run (`start + days`).
    pub fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::days(i64::from(self.days))
    }
}
