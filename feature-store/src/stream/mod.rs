//! Streaming features: the event log folded into windowed aggregations, kept fresh online.
//!
//! [`engine`] holds the semantics (states, windows, lateness, timers) and [`kernel`] the
//! aggregation functions that the batch engine shares; [`extract`] reads fields from events.

pub mod checkpoint;
pub mod engine;
pub mod extract;
pub mod feature_log;
pub mod fsum;
pub mod kernel;
pub mod runner;
#[cfg(test)]
pub(crate) mod tests;

pub use engine::{Aggregator, CompiledView, EntityState, FeatureRow, StateKey};
pub use runner::{FeatureLog, StreamConfig, StreamRunner};
