//! Backfill: a streaming view's offline history computed from events at rest.
//!
//! The stream aggregator writes a streaming view's history (the offline feature log) as events
//! arrive. A view defined today, or a shop that imports past events, has none; and in a fast
//! replay the stream's window timers follow the wall clock, so some intermediate rows it writes
//! fall at the timer's time rather than the event's. [`backfill`] computes the history instead
//! with the [batch engine](crate::batch), which shares the stream's kernels: for every entity of
//! the view, the values at every time of a grid `start, start + cadence, …` up to `end`, from the
//! entity's first event rounded up to the grid — the rows a [spine](crate::offline::spine) over
//! the same grid asks for, so a dataset built on that grid reads exactly the batch engine's
//! values.
//!
//! Rows are written in the feature log's layout ([`frame`]) through [`OfflineStore::append`], so
//! they sit in the same `dt=` partitions as the stream's, with `created_timestamp` = the run's
//! `created`. Rows of the stream and of backfills coexist: at equal `event_timestamp` the
//! point-in-time rule takes the latest `created_timestamp`, so a later run supersedes an earlier
//! one and running the same backfill twice leaves datasets unchanged.
//!
//! Entities are computed and written in chunks of about [`BackfillOptions::chunk_rows`] rows
//! (whole entities), each chunk folding only its own entities' events: memory holds the events
//! and one chunk, never the whole history as one frame. Each chunk writes one file per day it
//! covers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use livora_common::{ClientId, Event};

use crate::batch;
use crate::definitions::{Repo, SourceKind};
use crate::error::{Error, Result};
use crate::offline::OfflineStore;
use crate::offline::spine::Grid;
use crate::stream::CompiledView;
use crate::stream::extract::micros;
use crate::stream::feature_log::{HistoryRow, frame};
use crate::value::Value;

/// Rows computed and written at once, by default: about 60 MB of values for a view of 20
/// features.
pub const DEFAULT_CHUNK_ROWS: usize = 100_000;

/// The most grid times an entity may have: a cadence that fine is a mistake, and would not fit
/// in memory.
pub const MAX_GRID_TIMES: i64 = 10_000_000;

/// The grid of a backfill, and how much it computes at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillOptions {
    /// The first grid time.
    pub start: DateTime<Utc>,
    /// The last time a row may take (included when on the grid).
    pub end: DateTime<Utc>,
    /// The time between two rows of an entity; at least one microsecond.
    pub cadence: Duration,
    /// Rows per chunk: entities are added to a chunk until it holds at least this many rows
    /// (an entity is never split). Default [`DEFAULT_CHUNK_ROWS`].
    pub chunk_rows: usize,
}

impl BackfillOptions {
    /// Every `cadence` over `[start, end]`, in chunks of [`DEFAULT_CHUNK_ROWS`].
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, cadence: Duration) -> Self {
        Self { start, end, cadence, chunk_rows: DEFAULT_CHUNK_ROWS }
    }
}

/// What a backfill wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfilled {
    /// The view.
    pub view: String,
    /// Entities with at least one row (first seen at or before `end`).
    pub entities: u64,
    /// Rows written.
    pub rows: u64,
    /// Files written (one per chunk and day).
    pub files: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// The streaming view `name` of `repo`, compiled for `client`.
///
/// # Errors
/// [`Error::NotFound`] when no view has that name, [`Error::InvalidArgument`] for a batch view;
/// both list the streaming views.
pub fn streaming_view(client: &ClientId, repo: &Repo, name: &str) -> Result<Arc<CompiledView>> {
    let mut views = CompiledView::all(client, repo);
    let names = || {
        let mut names: Vec<&str> = views.iter().map(|v| v.view.name.as_str()).collect();
        names.sort_unstable();
        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
    };
    let Some(view) = repo.views.get(name) else {
        return Err(Error::NotFound(format!("feature view `{name}` is not registered; streaming views: {}", names())));
    };
    let Some(index) = views.iter().position(|v| v.view.name == name) else {
        let from = match repo.sources.get(&view.source).map(|s| &s.kind) {
            Some(SourceKind::Parquet { .. }) => format!("a batch view (source `{}`, a table)", view.source),
            _ => "not a streaming view (no aggregation over the event log)".to_owned(),
        };
        return Err(Error::InvalidArgument(format!(
            "feature view `{name}` is {from}: only streaming views are backfilled; streaming views: {}",
            names()
        )));
    };
    Ok(views.swap_remove(index))
}

/// One grid row of a chunk: the entity key, the grid time and the batch engine's values.
struct GridRow<'a> {
    key: &'a str,
    time: i64,
    values: &'a [Value],
}

impl HistoryRow for GridRow<'_> {
    fn key(&self) -> &str {
        self.key
    }

    fn event_time(&self) -> i64 {
        self.time
    }

    fn value(&self, i: usize) -> Option<&Value> {
        self.values.get(i)
    }
}

/// Computes the history of the streaming view `view` of `client` from `events` on the grid of
/// `options` and appends it to `store`, every row with `created_timestamp` = `created` (µs).
/// Events of other clients or types, or without the view's key, are ignored; events before
/// `start` count (they fill the windows), events after `end` do not matter. Calls
/// `progress(entities done, entities)` after each chunk.
///
/// # Errors
/// [`Error::NotFound`] / [`Error::InvalidArgument`] for a view that is unknown or not streaming
/// (see [`streaming_view`]); [`Error::InvalidArgument`] for a bad grid; the store's errors. Rows
/// of the chunks written before an error stay: they are exact, and a rerun supersedes them.
#[allow(clippy::too_many_arguments)]
pub fn backfill(
    store: &dyn OfflineStore,
    client: &ClientId,
    repo: &Repo,
    view: &str,
    events: &[Event],
    options: &BackfillOptions,
    created: i64,
    progress: &dyn Fn(u64, u64),
) -> Result<Backfilled> {
    let started = Instant::now();
    let compiled = streaming_view(client, repo, view)?;
    let grid = Grid::new(options.start, options.end, options.cadence, "backfill")?;
    let last_step = grid.last_step();
    if last_step >= MAX_GRID_TIMES {
        return Err(Error::InvalidArgument(format!(
            "backfill: the grid has {} times per entity, more than {MAX_GRID_TIMES}; use a coarser cadence",
            i128::from(last_step) + 1
        )));
    }
    // Each entity's events and first grid step; entities first seen after `end` have no row.
    let entities: Vec<(String, Vec<&Event>, i64)> = batch::events_by_entity(&compiled, events)
        .into_iter()
        .filter_map(|(key, events)| {
            let first = events.iter().map(|e| micros(e)).min()?;
            let step = grid.first_step(first);
            (step <= last_step).then_some((key, events, step))
        })
        .collect();
    let total = entities.len() as u64;
    let mut out = Backfilled { view: view.to_owned(), entities: total, rows: 0, files: 0, elapsed: Duration::ZERO };
    progress(0, total);
    let mut done = 0u64;
    let mut chunk_start = 0;
    while chunk_start < entities.len() {
        // Whole entities until the chunk holds `chunk_rows` rows.
        let mut rows = 0usize;
        let mut chunk_end = chunk_start;
        while chunk_end < entities.len() && (rows < options.chunk_rows.max(1) || chunk_end == chunk_start) {
            let steps = last_step - entities[chunk_end].2 + 1;
            rows = rows.saturating_add(usize::try_from(steps).unwrap_or(usize::MAX));
            chunk_end += 1;
        }
        let chunk = &entities[chunk_start..chunk_end];
        let mut queries: Vec<(String, i64)> = Vec::with_capacity(rows);
        for (key, _, first_step) in chunk {
            queries.extend((*first_step..=last_step).map(|step| (key.clone(), grid.time(step))));
        }
        let values =
            batch::values_at(&compiled, chunk.iter().flat_map(|(_, events, _)| events.iter().copied()), &queries);
        let grid_rows: Vec<GridRow<'_>> =
            queries.iter().zip(&values).map(|((key, time), values)| GridRow { key, time: *time, values }).collect();
        let written = store.append(client, view, frame(&compiled, &compiled.key_column, &grid_rows, created)?)?;
        out.rows += grid_rows.len() as u64;
        out.files += written.len() as u64;
        done += chunk.len() as u64;
        progress(done, total);
        tracing::debug!(
            view,
            entities = chunk.len(),
            rows = grid_rows.len(),
            files = written.len(),
            "backfilled a chunk"
        );
        chunk_start = chunk_end;
    }
    out.elapsed = started.elapsed();
    Ok(out)
}
