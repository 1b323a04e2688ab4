//! The offline feature log: the rows the stream aggregator emits, appended to the offline store.
//!
//! Each row becomes one line of the view's history — the entity's join key, `event_timestamp`
//! (the time from which the values hold), `created_timestamp` (when they were computed) and one
//! typed column per aggregation — so point-in-time retrieval reads streaming views like any other
//! view. Appends happen before each checkpoint; after a crash the rows since the last checkpoint
//! are emitted and appended again with a later `created_timestamp` and the same values, which the
//! point-in-time rule (ties go to the latest created) makes harmless. A
//! [backfill](mod@crate::backfill) writes rows of the same layout, computed by the batch engine on a
//! grid, into the same history.

use std::sync::Arc;

use async_trait::async_trait;
use livora_common::ClientId;
use polars::prelude::*;

use super::engine::{CompiledView, FeatureRow};
use super::runner::FeatureLog;
use crate::error::{Error, Result};
use crate::offline::{CREATED_TIMESTAMP, EVENT_TIMESTAMP, OfflineStore};
use crate::value::{Value, ValueType};

/// A [`FeatureLog`] over an [`OfflineStore`].
pub struct OfflineFeatureLog {
    store: Arc<dyn OfflineStore>,
}

impl OfflineFeatureLog {
    /// Appends to `store`.
    pub fn new(store: Arc<dyn OfflineStore>) -> Self {
        Self { store }
    }
}

fn datetime(name: &str, values: Vec<Option<i64>>) -> Column {
    Int64Chunked::from_iter_options(name.into(), values.into_iter())
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column()
}

/// One row of a streaming view's history, as [`frame`] lays it out: the stream's
/// [`FeatureRow`]s, and the rows a [backfill](mod@crate::backfill) computes on a grid.
pub trait HistoryRow {
    /// The entity key (the join key's value).
    fn key(&self) -> &str;
    /// The time (µs) from which the values hold.
    fn event_time(&self) -> i64;
    /// The value of the view's `i`-th aggregation; `None` (or [`Value::Null`]) is a null.
    fn value(&self, i: usize) -> Option<&Value>;
}

impl HistoryRow for FeatureRow {
    fn key(&self) -> &str {
        &self.key.key
    }

    fn event_time(&self) -> i64 {
        self.event_time
    }

    fn value(&self, i: usize) -> Option<&Value> {
        self.values.get(i).map(|(_, v)| v)
    }
}

/// The rows as a frame of the view's history layout: `key_column`, `event_timestamp`,
/// `created_timestamp` (`created` for every row) and one typed column per aggregation.
pub fn frame<R: HistoryRow>(view: &CompiledView, key_column: &str, rows: &[R], created: i64) -> Result<DataFrame> {
    let mut columns: Vec<Column> = Vec::with_capacity(view.aggs.len() + 3);
    columns.push(Column::new(key_column.into(), rows.iter().map(HistoryRow::key).collect::<Vec<_>>()));
    columns.push(datetime(EVENT_TIMESTAMP, rows.iter().map(|r| Some(r.event_time())).collect()));
    columns.push(datetime(CREATED_TIMESTAMP, vec![Some(created); rows.len()]));
    for (i, agg) in view.aggs.iter().enumerate() {
        let name = agg.name.as_str();
        let column = match agg.ty {
            ValueType::Int64 => Column::new(
                name.into(),
                rows.iter()
                    .map(|r| if let Some(Value::Int64(x)) = r.value(i) { Some(*x) } else { None })
                    .collect::<Vec<_>>(),
            ),
            ValueType::Float64 => Column::new(
                name.into(),
                rows.iter()
                    .map(|r| if let Some(Value::Float64(x)) = r.value(i) { Some(*x) } else { None })
                    .collect::<Vec<_>>(),
            ),
            ValueType::Bool => Column::new(
                name.into(),
                rows.iter()
                    .map(|r| if let Some(Value::Bool(x)) = r.value(i) { Some(*x) } else { None })
                    .collect::<Vec<_>>(),
            ),
            ValueType::String => Column::new(
                name.into(),
                rows.iter()
                    .map(|r| if let Some(Value::String(x)) = r.value(i) { Some(x.as_str()) } else { None })
                    .collect::<Vec<_>>(),
            ),
            ValueType::Timestamp => datetime(
                name,
                rows.iter().map(|r| if let Some(Value::Timestamp(x)) = r.value(i) { Some(*x) } else { None }).collect(),
            ),
        };
        columns.push(column);
    }
    DataFrame::new(rows.len(), columns)
        .map_err(Error::offline(format!("building the feature log rows of `{}`", view.view.name)))
}

#[async_trait]
impl FeatureLog for OfflineFeatureLog {
    async fn append(&self, client: &ClientId, view: &CompiledView, rows: &[FeatureRow], created: i64) -> Result<()> {
        let frame = frame(view, &view.key_column, rows, created)?;
        let store = self.store.clone();
        let client = client.clone();
        let name = view.view.name.clone();
        tokio::task::spawn_blocking(move || store.append(&client, &name, frame))
            .await
            .map_err(|e| Error::Stream(format!("feature log append panicked: {e}")))??;
        Ok(())
    }
}
