//! Livora's feature store.
//!
//! Features are defined as code in a feature repository and recorded in a versioned registry.
//! The [`online`] store keeps the latest value of every feature view per entity for serving;
//! each value carries its event time so that reads can report whether it is present, missing or
//! older than the view's ttl. The [`offline`] store keeps the full history as Parquet and builds
//! training sets from it with point-in-time joins.

pub mod error;
pub mod offline;
pub mod online;
pub mod value;

pub use error::{Error, Result};
pub use offline::{
    LocalOfflineStore, OfflineStore, PitOptions, SpineOptions, TimeRange, ViewHistory, entity_spine,
    get_historical_features, write_dataset,
};
pub use online::{OnlineRow, OnlineStore, RowKey};
pub use value::{Value, ValueType};
