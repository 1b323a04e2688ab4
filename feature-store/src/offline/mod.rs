//! The offline store and point-in-time retrieval.
//!
//! Feature history lives as Parquet files, one directory per client, view and day, on the local
//! file system ([`store`]) or in S3 ([`object`]).
//! Training and evaluation sets are built from it by point-in-time joins ([`pit`]): for each entity
//! row at time `t`, the latest feature row of the same entity known at `t` and no older than the
//! view's ttl. The entity rows come from the caller or are generated from the entities seen in a
//! history, sampled at a cadence ([`spine`]).
//!
//! Everything is expressed as polars lazy queries, so that projections and filters reach the
//! Parquet scans and the caller chooses between collecting in memory and streaming to a file.
//!
//! Timestamps are `Datetime(Microseconds, UTC)` throughout. Inputs in milliseconds or nanoseconds,
//! in another time zone or naive (taken as UTC) are cast on the way in; nanoseconds are truncated
//! to the microsecond.

pub mod object;
pub mod pit;
pub mod spine;
pub mod store;

use polars::prelude::{DataType, TimeUnit, TimeZone};

pub use object::ObjectOfflineStore;
pub use pit::{PitOptions, ViewHistory, get_historical_features};
pub use spine::{SpineOptions, entity_spine};
pub use store::{LocalOfflineStore, OfflineStore, TimeRange, write_dataset, write_part};

/// The column of a feature history holding the time from which a row's values hold.
pub const EVENT_TIMESTAMP: &str = "event_timestamp";

/// The optional column of a feature history holding when a row was computed; breaks ties between
/// rows with the same event timestamp (the latest computation wins).
pub const CREATED_TIMESTAMP: &str = "created_timestamp";

/// The timestamp type of the offline store: microseconds since the epoch, UTC.
pub fn timestamp_dtype() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

/// Whether `dtype` is a timestamp the offline store accepts (any unit, any or no time zone).
pub(crate) fn is_timestamp(dtype: &DataType) -> bool {
    matches!(dtype, DataType::Datetime(_, _))
}
