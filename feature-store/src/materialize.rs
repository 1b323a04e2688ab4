//! Materialization: batch views loaded from the offline store into the online store.
//!
//! For each online batch view of a client, the latest row per entity — greatest
//! `event_timestamp`, ties to the greatest `created_timestamp` — among the source rows selected is
//! written online. Writes are ordered by `(event_time, created)` in every backend, so running the
//! same materialization twice, or two overlapping ones, is harmless.
//!
//! Two modes, as `livora materialize` offers them:
//! - **range**: the rows whose `event_timestamp` lies in `[start, end]`;
//! - **incremental**: the rows **created** after the view's watermark, whatever their event time,
//!   and the watermark moves to the greatest `created_timestamp` loaded. A row that arrives late
//!   (an old event time, written to the table after the last run) is therefore loaded by the next
//!   run — the gap Feast's incremental materialization, watermarked on event time, leaves. A view
//!   whose source has no created column is watermarked on event time, and says so.
//!
//! Watermarks are kept in the registry database (`feature_materializations`).

use std::path::Path;

use chrono::{DateTime, Utc};
use livora_common::ClientId;
use polars::prelude::*;

use crate::dataset::history;
use crate::definitions::{FeatureKind, FeatureView, Repo, SourceKind};
use crate::error::{Error, Result};
use crate::offline::{CREATED_TIMESTAMP, EVENT_TIMESTAMP, LocalOfflineStore};
use crate::online::{OnlineRow, OnlineStore, RowKey};
use crate::registry::Registry;
use crate::value::{Value, ValueType};

/// Which source rows to load.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Rows with `event_timestamp` in `[start, end]`.
    Range {
        /// First event time included.
        start: DateTime<Utc>,
        /// Last event time included.
        end: DateTime<Utc>,
    },
    /// Rows created after the view's watermark.
    Incremental,
}

/// What one view's materialization did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialized {
    /// The view.
    pub view: String,
    /// Entities whose latest row was offered to the online store.
    pub entities: usize,
    /// Rows the online store applied (the others were not newer than what it held).
    pub applied: usize,
    /// The watermark after the run (µs), for incremental runs.
    pub watermark: Option<i64>,
}

/// Materializes every online batch view of `client` (or only `only`), calling `progress(done,
/// total)` as rows are written.
#[allow(clippy::too_many_arguments)]
pub async fn materialize(
    repo: &Repo,
    root: &Path,
    client: &ClientId,
    online: &dyn OnlineStore,
    registry: &Registry,
    mode: Mode,
    only: Option<&str>,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> Result<Vec<Materialized>> {
    let store = LocalOfflineStore::new(root);
    let mut out = Vec::new();
    for view in repo.views.values() {
        let Some(SourceKind::Parquet { created_timestamp_field, .. }) = repo.sources.get(&view.source).map(|s| &s.kind)
        else {
            continue;
        };
        if !view.online || only.is_some_and(|o| o != view.name) {
            continue;
        }
        if let Some(o) = only
            && !repo.views.contains_key(o)
        {
            return Err(Error::NotFound(format!("feature view `{o}` is not registered")));
        }
        let has_created = created_timestamp_field.is_some();
        let watermark_column = if has_created { CREATED_TIMESTAMP } else { EVENT_TIMESTAMP };
        let mut frame = match history(repo, &store, root, client, view) {
            Ok(frame) => frame,
            // A view whose table has no data yet (the prediction log before the first score) is
            // skipped when every view is loaded; named alone, it is an error.
            Err(Error::NotFound(reason)) if only.is_none() => {
                tracing::info!(view = %view.name, %reason, "nothing to materialize yet");
                continue;
            }
            Err(e) => return Err(e),
        };
        let previous = match mode {
            Mode::Incremental => registry.watermark(client, &view.name).await?,
            Mode::Range { .. } => None,
        };
        frame = match mode {
            Mode::Range { start, end } => frame.filter(
                col(EVENT_TIMESTAMP)
                    .cast(DataType::Int64)
                    .gt_eq(lit(start.timestamp_micros()))
                    .and(col(EVENT_TIMESTAMP).cast(DataType::Int64).lt_eq(lit(end.timestamp_micros()))),
            ),
            Mode::Incremental => match previous {
                Some(w) => frame.filter(col(watermark_column).cast(DataType::Int64).gt(lit(w))),
                None => frame,
            },
        };
        // polars blocks; keep it off the async workers.
        let (repo_owned, view_owned) = (repo.clone(), view.clone());
        let rows = tokio::task::spawn_blocking(move || latest_rows(frame, &repo_owned, &view_owned, has_created))
            .await
            .map_err(|e| Error::Stream(format!("materialization of `{}` panicked: {e}", view.name)))??;
        let total = rows.len() as u64;
        let mut applied = 0;
        let mut done = 0u64;
        progress(&view.name, 0, total);
        for chunk in rows.chunks(1000) {
            applied += online.write(client, chunk).await?;
            done += chunk.len() as u64;
            progress(&view.name, done, total);
        }
        let watermark = match mode {
            Mode::Incremental => {
                let loaded = rows.iter().map(|(_, r)| if has_created { r.created } else { r.event_time }).max();
                let next = loaded.max(previous);
                if let Some(w) = next
                    && next != previous
                {
                    registry.set_watermark(client, &view.name, w).await?;
                }
                next
            }
            Mode::Range { .. } => None,
        };
        out.push(Materialized { view: view.name.clone(), entities: rows.len(), applied, watermark });
    }
    Ok(out)
}

/// The latest row per entity of `frame`, as online rows.
fn latest_rows(
    frame: LazyFrame,
    repo: &Repo,
    view: &FeatureView,
    has_created: bool,
) -> Result<Vec<(RowKey, OnlineRow)>> {
    let entity = repo.entities.get(&view.entity).ok_or_else(|| {
        Error::NotFound(format!("entity `{}` of view `{}` is not registered", view.entity, view.name))
    })?;
    let columns: Vec<(&str, ValueType)> = view
        .features
        .iter()
        .filter(|f| matches!(f.kind, FeatureKind::Column))
        .map(|f| (f.name.as_str(), f.value_type))
        .collect();
    let mut sort_by: Vec<PlSmallStr> = entity.join_keys.iter().map(|k| k.as_str().into()).collect();
    sort_by.push(EVENT_TIMESTAMP.into());
    let mut select: Vec<Expr> = entity.join_keys.iter().map(|k| col(k.as_str()).cast(DataType::String)).collect();
    select.push(col(EVENT_TIMESTAMP).cast(DataType::Int64));
    if has_created {
        sort_by.push(CREATED_TIMESTAMP.into());
        select.push(col(CREATED_TIMESTAMP).cast(DataType::Int64));
    }
    for (name, ty) in &columns {
        let c = col(*name);
        select.push(match ty {
            ValueType::Timestamp => c.cast(DataType::Int64),
            _ => c,
        });
    }
    let df = frame
        .select(select)
        .sort(sort_by, SortMultipleOptions::default())
        .unique_stable(Some(cols(entity.join_keys.iter().map(String::as_str))), UniqueKeepStrategy::Last)
        .collect()
        .map_err(Error::offline(format!("reading the source of view `{}`", view.name)))?;
    let now = Utc::now().timestamp_micros();
    let mut out = Vec::with_capacity(df.height());
    let key_columns: Vec<&Column> = entity
        .join_keys
        .iter()
        .map(|k| df.column(k))
        .collect::<PolarsResult<_>>()
        .map_err(Error::offline("key columns"))?;
    let times = df.column(EVENT_TIMESTAMP).map_err(Error::offline("event_timestamp"))?;
    let created = if has_created {
        Some(df.column(CREATED_TIMESTAMP).map_err(Error::offline("created_timestamp"))?)
    } else {
        None
    };
    let feature_columns: Vec<&Column> = columns
        .iter()
        .map(|(n, _)| df.column(n))
        .collect::<PolarsResult<_>>()
        .map_err(Error::offline("feature columns"))?;
    for i in 0..df.height() {
        let mut parts = Vec::with_capacity(key_columns.len());
        for c in &key_columns {
            match c.get(i).map_err(Error::offline("a key"))? {
                AnyValue::String(s) => parts.push(s.to_owned()),
                AnyValue::StringOwned(s) => parts.push(s.to_string()),
                _ => break,
            }
        }
        if parts.len() != key_columns.len() {
            continue; // A null key never matches.
        }
        let Some(event_time) = int(times.get(i).map_err(Error::offline("event_timestamp"))?) else { continue };
        let created = match created {
            Some(c) => int(c.get(i).map_err(Error::offline("created_timestamp"))?).unwrap_or(now),
            None => now,
        };
        let values = columns
            .iter()
            .zip(&feature_columns)
            .map(|((name, ty), c)| {
                Ok(((*name).to_owned(), Value::from_cell(c.get(i).map_err(Error::offline("a feature"))?, *ty)))
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let Some(text) = crate::serving::keys::composite(&refs) else { continue };
        let key = RowKey::new(view.entity.clone(), text, view.name.clone());
        out.push((key, OnlineRow { event_time, created, values }));
    }
    Ok(out)
}

fn int(v: AnyValue<'_>) -> Option<i64> {
    match v {
        AnyValue::Int64(x) => Some(x),
        AnyValue::Int32(x) => Some(i64::from(x)),
        AnyValue::Datetime(x, _, _) => Some(x),
        _ => None,
    }
}
