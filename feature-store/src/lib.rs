//! Livora's feature store.
//!
//! Features are defined as code in a feature repository and recorded in a versioned registry.
//! The [`online`] store keeps the latest value of every feature view per entity for serving;
//! each value carries its event time so that reads can report whether it is present, missing or
//! older than the view's ttl. It runs embedded (redb), on Redis or on DynamoDB, chosen by
//! [`OnlineConfig`] and opened with [`online::open`]. [`serving`] answers online feature reads
//! over gRPC and HTTP, with a status and an event time per value.
//! The [`offline`] store keeps the full history as Parquet and builds
//! training sets from it with point-in-time joins; [`backfill`](mod@backfill) computes a
//! streaming view's history from the raw lake with the [`batch`] engine. [`flight`] serves the
//! lake, feature history, prediction logs and point-in-time datasets over Arrow Flight.

pub mod aws;
pub mod backfill;
pub mod batch;
pub mod config;
pub mod dataset;
pub mod definitions;
pub mod error;
pub mod flight;
pub mod materialize;
pub mod metrics;
pub mod offline;
pub mod online;
pub mod registry;
pub mod serving;
pub mod stream;
pub mod value;

pub use backfill::{BackfillOptions, Backfilled, backfill};
pub use config::FeatureStoreConfig;
pub use definitions::{DefinitionError, Repo, load_repo};
pub use error::{Error, Result};
pub use offline::{
    LocalOfflineStore, ObjectOfflineStore, OfflineStore, PitOptions, SpineOptions, TimeRange, ViewHistory,
    entity_spine, get_historical_features, write_dataset,
};
pub use online::{OnlineConfig, OnlineRow, OnlineStore, RowKey};
pub use registry::{Plan, Registry};
pub use serving::{FeatureServer, ServingConfig};
pub use value::{Value, ValueType};
