//! Livora's event ingestion.
//!
//! The HTTP collector ([`server`]) authenticates a request ([`auth`]), applies the client's rate
//! limit ([`rate_limit`]), validates every event ([`validate`]), enriches it ([`enrich`]) and
//! appends the whole batch to the [`log`] — answering 200 only once the batch is durable. The
//! [`lake`] writer consumes the log into Parquet partitions and keeps what can never be written
//! in a quarantine table.

pub mod auth;
pub mod config;
pub mod enrich;
pub mod error;
pub mod lake;
pub mod log;
pub mod metrics;
pub mod rate_limit;
pub mod server;
pub mod validate;

pub use auth::ClientStore;
pub use error::IngestError;
pub use log::{EventLog, LogConsumer};
pub use server::Collector;
