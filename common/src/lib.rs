//! Shared types of Livora.
//!
//! Every room of the platform speaks in these terms: the canonical [`Event`] as it travels the
//! event log, the tenant ([`ClientId`]), the error codes that HTTP and gRPC answers are derived
//! from ([`ErrorCode`]), layered configuration loading ([`config`]) and telemetry set-up
//! ([`telemetry`]).

pub mod client;
pub mod config;
pub mod error;
pub mod event;
pub mod size;
pub mod telemetry;

pub use client::ClientId;
pub use config::ConfigError;
pub use error::{ErrorCode, Problem};
pub use event::{Enrichment, Event, JsonObject};
pub use size::ByteSize;
