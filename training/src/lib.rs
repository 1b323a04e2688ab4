//! Livora's training jobs.
//!
//! `livora train <model> --start --end` runs [`prepare`] then [`fit`]: the model's feature service
//! is joined point-in-time onto a spine of the model's entities (every entity of the spine view,
//! sampled at a cadence over the range) by the feature store; each row is labelled from the
//! entity's purchases **after** the row's time, read from the raw lake (never from features, so
//! nothing leaks); rows whose label window is not yet over, or outside the model's population,
//! are dropped and counted. The rows are split by time — the latest ones evaluate, the earlier
//! ones train, with a gap of one label horizon so that no training label looks into the
//! evaluation period — the encoding is fitted on the training rows, the model and its baseline
//! are fitted and evaluated on the same evaluation rows, and the result becomes an
//! [`livora_models::Artifact`] for the model registry.

pub mod error;
mod job;
mod table;

pub use error::{Error, Result};
pub use job::{Dropped, Prepared, Purchases, TrainRequest, fit, prepare};
pub use table::table_of;
