//! Entity spines: entity rows generated from a history instead of built by hand.
//!
//! A spine holds every entity seen in a source (a feature view's history, or a frame of raw events)
//! sampled at a fixed cadence over `[start, end]`. The sample times form a grid
//! `start, start + cadence, start + 2·cadence, …` up to `end` (included when on the grid). An
//! entity appears from its first event time rounded up to the grid (its first sample is the first
//! grid time at or after its first event), and at every grid time after that up to `end`; an
//! entity first seen after `end` does not appear. The spine feeds
//! [`get_historical_features`](super::get_historical_features) and training-set generation.
//!
//! Only the first event time per entity is computed by polars (a group-by over the source, with
//! the projection pushed into its scan); the grid is then expanded in Rust, since its size
//! (entities × samples) is known exactly from that small aggregate. Rows are ordered by the join
//! keys, then by time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use polars::prelude::*;

use super::{EVENT_TIMESTAMP, is_timestamp, timestamp_dtype};
use crate::error::{Error, Result};

const FIRST: &str = "__livora_first";

/// The sampling of a spine.
#[derive(Debug, Clone)]
pub struct SpineOptions {
    /// The first grid time.
    pub start: DateTime<Utc>,
    /// The last time a sample may take (included).
    pub end: DateTime<Utc>,
    /// The time between two samples; at least one microsecond.
    pub cadence: Duration,
    /// The name of the spine's timestamp column; [`EVENT_TIMESTAMP`] by default.
    pub timestamp_column: String,
}

impl SpineOptions {
    /// Samples every `cadence` over `[start, end]`, in a column named [`EVENT_TIMESTAMP`].
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, cadence: Duration) -> Self {
        Self { start, end, cadence, timestamp_column: EVENT_TIMESTAMP.to_string() }
    }
}

/// Builds the spine of the entities (by `join_keys`) seen in `source`, whose event times are in
/// `source_timestamp`.
///
/// The result has the join keys, then `options.timestamp_column` as `Datetime(Microseconds, UTC)`.
/// Rows with a null key or time in `source` are ignored.
///
/// # Errors
/// [`Error::InvalidArgument`] for a missing or mistyped column, an empty key list, a cadence under
/// a microsecond, `end` before `start` or a spine too large to index; [`Error::Offline`] when the
/// source query fails.
pub fn entity_spine(
    source: LazyFrame,
    join_keys: &[String],
    source_timestamp: &str,
    options: &SpineOptions,
) -> Result<DataFrame> {
    let grid = Grid::new(options.start, options.end, options.cadence, "spine")?;
    if join_keys.is_empty() {
        return Err(Error::InvalidArgument("spine: no join key given".into()));
    }
    let mut source = source;
    let schema = source.collect_schema().map_err(Error::offline("resolving the schema of the spine's source"))?;
    for key in join_keys {
        if schema.get(key).is_none() {
            return Err(Error::InvalidArgument(format!("spine: the source lacks the join key `{key}`")));
        }
        if key == &options.timestamp_column {
            return Err(Error::InvalidArgument(format!("spine: join key `{key}` is also the timestamp column's name")));
        }
    }
    match schema.get(source_timestamp) {
        None => {
            return Err(Error::InvalidArgument(format!(
                "spine: the source lacks the timestamp column `{source_timestamp}`"
            )));
        }
        Some(dtype) if !is_timestamp(dtype) => {
            return Err(Error::InvalidArgument(format!(
                "spine: timestamp column `{source_timestamp}` is {dtype}, expected a datetime"
            )));
        }
        Some(_) => {}
    }

    let keys: Vec<Expr> = join_keys.iter().map(|k| col(k.as_str())).collect();
    let usable =
        join_keys.iter().fold(col(source_timestamp).is_not_null(), |all, k| all.and(col(k.as_str()).is_not_null()));
    let key_names: Vec<PlSmallStr> = join_keys.iter().map(|k| PlSmallStr::from(k.as_str())).collect();
    let firsts = source
        .filter(usable)
        .group_by(keys)
        .agg([col(source_timestamp).cast(timestamp_dtype()).min().to_physical().alias(FIRST)])
        .sort(key_names.clone(), SortMultipleOptions::default())
        .collect()
        .map_err(Error::offline("finding each entity's first event time"))?;

    let first_times = firsts
        .column(FIRST)
        .and_then(|c| c.i64().cloned())
        .map_err(Error::offline("reading each entity's first event time"))?;
    let last_step = grid.last_step();
    let mut entity_index: Vec<IdxSize> = Vec::new();
    let mut times: Vec<i64> = Vec::new();
    for (entity, first) in first_times.iter().enumerate() {
        let Some(first) = first else { continue };
        for step in grid.first_step(first)..=last_step {
            let index = IdxSize::try_from(entity)
                .map_err(|_| Error::InvalidArgument("spine: too many entities to index".into()))?;
            entity_index.push(index);
            times.push(grid.time(step));
        }
        if entity_index.len() > IdxSize::MAX as usize {
            return Err(Error::InvalidArgument(
                "spine: more rows than a frame can index; use a coarser cadence".into(),
            ));
        }
    }

    let indices = IdxCa::from_vec(PlSmallStr::EMPTY, entity_index);
    let mut spine =
        firsts.select(key_names).and_then(|keys| keys.take(&indices)).map_err(Error::offline("expanding the spine"))?;
    let time_column = Int64Chunked::from_vec(options.timestamp_column.as_str().into(), times)
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column();
    spine.with_column(time_column).map_err(Error::offline("expanding the spine"))?;
    Ok(spine)
}

/// A sampling grid in microseconds: `start, start + cadence, …` up to `end` (included when on the
/// grid). Shared by spines and backfills, so that a backfill writes its rows exactly at the times
/// a spine over the same grid asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    start: i64,
    end: i64,
    cadence: i64,
}

impl Grid {
    /// The grid of `[start, end]` every `cadence`; `what` (`spine`, `backfill`) prefixes errors.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a cadence under a microsecond or `end` before `start`.
    pub(crate) fn new(start: DateTime<Utc>, end: DateTime<Utc>, cadence: Duration, what: &str) -> Result<Self> {
        let cadence_us = i64::try_from(cadence.as_micros()).unwrap_or(i64::MAX);
        if cadence_us < 1 {
            return Err(Error::InvalidArgument(format!("{what}: cadence must be at least one microsecond")));
        }
        if end < start {
            return Err(Error::InvalidArgument(format!(
                "{what}: end {} is before start {}",
                end.to_rfc3339(),
                start.to_rfc3339()
            )));
        }
        Ok(Self { start: start.timestamp_micros(), end: end.timestamp_micros(), cadence: cadence_us })
    }

    /// The step of the last grid time at or before `end`.
    pub(crate) fn last_step(&self) -> i64 {
        // `end ≥ start` was checked; i128 keeps extreme bounds from overflowing.
        i64::try_from((i128::from(self.end) - i128::from(self.start)) / i128::from(self.cadence)).unwrap_or(i64::MAX)
    }

    /// The step of the first grid time at or after `first` (an entity's first event time): the
    /// ceiling of its distance from `start` in cadences, 0 before `start`.
    pub(crate) fn first_step(&self, first: i64) -> i64 {
        if first <= self.start {
            return 0;
        }
        let since = i128::from(first) - i128::from(self.start);
        let steps = since / i128::from(self.cadence) + i128::from(since % i128::from(self.cadence) != 0);
        i64::try_from(steps).unwrap_or(i64::MAX)
    }

    /// The time (µs) of grid step `step`.
    pub(crate) fn time(&self, step: i64) -> i64 {
        self.start + step * self.cadence
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, day, hour, 0, 0).single().expect("valid date")
    }

    fn micros(day: u32, hour: u32) -> i64 {
        at(day, hour).timestamp_micros()
    }

    fn source(rows: &[(&str, i64)]) -> LazyFrame {
        let users: Vec<&str> = rows.iter().map(|r| r.0).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.1).collect();
        // Naive microseconds: the spine takes them as UTC.
        let time = Int64Chunked::from_vec("ts".into(), times).into_datetime(TimeUnit::Microseconds, None).into_column();
        DataFrame::new_infer_height(vec![Column::new("user".into(), users), time]).expect("frame").lazy()
    }

    fn rows(spine: &DataFrame) -> Vec<(String, i64)> {
        let users = spine.column("user").expect("user").str().expect("str").clone();
        let times = spine.column(EVENT_TIMESTAMP).expect("ts").to_physical_repr();
        let times = times.i64().expect("i64").clone();
        users.iter().zip(times.iter()).map(|(u, t)| (u.expect("user").to_string(), t.expect("time"))).collect()
    }

    #[test]
    fn entities_start_at_their_first_event_rounded_up_to_the_grid() {
        let events = source(&[
            ("b", micros(2, 1)), // first seen 2024-01-02 01:00 → first sample day 3
            ("a", micros(1, 0)), // exactly on the grid → from day 1
            ("a", micros(4, 0)), // later events do not matter
            ("c", micros(9, 0)), // after end → absent
            ("d", micros(3, 0)), // on the grid → day 3
        ]);
        let options = SpineOptions::new(at(1, 0), at(4, 0), Duration::from_secs(86_400));
        let spine = entity_spine(events, &["user".into()], "ts", &options).expect("spine");
        assert_eq!(
            spine.schema().get(EVENT_TIMESTAMP),
            Some(&timestamp_dtype()),
            "the spine's timestamp is microseconds, UTC"
        );
        let expected: Vec<(String, i64)> = vec![
            ("a".into(), micros(1, 0)),
            ("a".into(), micros(2, 0)),
            ("a".into(), micros(3, 0)),
            ("a".into(), micros(4, 0)),
            ("b".into(), micros(3, 0)),
            ("b".into(), micros(4, 0)),
            ("d".into(), micros(3, 0)),
            ("d".into(), micros(4, 0)),
        ];
        assert_eq!(rows(&spine), expected);
    }

    #[test]
    fn end_off_the_grid_and_events_before_start() {
        let events = source(&[("a", micros(1, 0) - 5)]);
        // Grid 1st 00:00, 1st 12:00, 2nd 00:00; end 2nd 06:00 is off the grid.
        let options = SpineOptions::new(at(1, 0), at(2, 6), Duration::from_secs(12 * 3600));
        let spine = entity_spine(events, &["user".into()], "ts", &options).expect("spine");
        assert_eq!(
            rows(&spine),
            vec![("a".to_string(), micros(1, 0)), ("a".to_string(), micros(1, 12)), ("a".to_string(), micros(2, 0)),]
        );
    }

    #[test]
    fn bad_options_and_columns_are_named() {
        let events = source(&[("a", 0)]);
        let zero = SpineOptions::new(at(1, 0), at(2, 0), Duration::ZERO);
        let err = entity_spine(events.clone(), &["user".into()], "ts", &zero).expect_err("zero cadence");
        assert!(err.to_string().contains("cadence"), "{err}");
        let reversed = SpineOptions::new(at(2, 0), at(1, 0), Duration::from_secs(60));
        let err = entity_spine(events.clone(), &["user".into()], "ts", &reversed).expect_err("reversed");
        assert!(err.to_string().contains("before start"), "{err}");
        let options = SpineOptions::new(at(1, 0), at(2, 0), Duration::from_secs(60));
        let err = entity_spine(events.clone(), &["shop".into()], "ts", &options).expect_err("missing key");
        assert!(err.to_string().contains("`shop`"), "{err}");
        let err = entity_spine(events, &["user".into()], "user", &options).expect_err("not a datetime");
        assert!(err.to_string().contains("expected a datetime"), "{err}");
    }

    #[test]
    fn an_empty_source_gives_an_empty_spine() {
        let options = SpineOptions::new(at(1, 0), at(2, 0), Duration::from_secs(60));
        let spine = entity_spine(source(&[]), &["user".into()], "ts", &options).expect("spine");
        assert_eq!(spine.height(), 0);
        assert_eq!(spine.get_column_names(), ["user", EVENT_TIMESTAMP]);
    }
}
