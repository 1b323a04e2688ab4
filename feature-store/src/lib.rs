//! Livora's feature store.
//!
//! Features are defined as code in a feature repository and recorded in a versioned registry.
//! The [`online`] store keeps the latest value of every feature view per entity for serving;
//! each value carries its event time so that reads can report whether it is present, missing or
//! older than the view's ttl. It runs embedded (redb), on Redis or on DynamoDB, chosen by
//! [`OnlineConfig`] and opened with [`online::open`].

pub mod error;
pub mod online;
pub mod value;

pub use error::{Error, Result};
pub use online::{OnlineConfig, OnlineRow, OnlineStore, RowKey};
pub use value::{Value, ValueType};
