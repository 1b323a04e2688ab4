//! Training datasets: the registered definitions, the offline store and the point-in-time join.
//!
//! [`build`] resolves a feature selection (a list of `view:feature` / `view:*` refs, or a
//! feature service) against a client's definitions, reads each view's history — the offline
//! feature log written by the stream aggregator for a streaming view, the view's Parquet table
//! for a batch view — and joins it point-in-time onto the entity rows: rows the caller gives, or
//! a **spine** of every entity seen in a view's history sampled at a cadence, so that no
//! hand-built entity dataframe is needed. `days_since` features are computed at each entity row's
//! time, exactly as online they are computed at the time of the read.
//!
//! Each view's history is read only over the times the entity rows can match: from the earliest
//! row's time less the view's ttl (unbounded without one) to the latest row's time. The offline
//! store skips the day partitions outside that range and the bound reaches the Parquet reader,
//! so a training set over last month does not read last year. The range costs one more read of
//! the entity rows' time column (their plan runs once for it, once for the join). A spine's own
//! entities come from its view's history up to the spine's end (an entity first seen before the
//! spine's start appears from the start).
//!
//! Batch tables live at `<offline root>/<source path>/client_id=<client>/**/*.parquet`, Hive
//! style like the lake, with the source's timestamp (and optional created) columns.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use livora_common::ClientId;
use polars::prelude::*;

use crate::definitions::{FeatureKind, FeatureView, Repo, SourceKind};
use crate::error::{Error, Result};
use crate::offline::store::range_filter;
use crate::offline::{
    CREATED_TIMESTAMP, EVENT_TIMESTAMP, OfflineStore, PitOptions, SpineOptions, TimeRange, ViewHistory, entity_spine,
    get_historical_features, is_timestamp, timestamp_dtype,
};

/// Which features.
#[derive(Debug, Clone)]
pub enum Selection {
    /// `view:feature` or `view:*` refs, in order.
    Refs(Vec<String>),
    /// A feature service's features.
    Service(String),
}

/// Which entity rows.
pub enum Entities {
    /// Rows given by the caller: the join keys and a timestamp column.
    Rows {
        /// The rows.
        frame: Box<LazyFrame>,
        /// The column holding each row's time.
        timestamp_column: String,
    },
    /// Every entity seen in `view`'s history, sampled at a cadence.
    Spine {
        /// The view whose history gives the entities.
        view: String,
        /// The sampling.
        options: SpineOptions,
    },
}

/// A dataset request.
pub struct DatasetRequest {
    /// The features.
    pub selection: Selection,
    /// The entity rows.
    pub entities: Entities,
    /// Name features `view__feature`.
    pub full_feature_names: bool,
}

/// Resolves `selection` against `repo`: the (view, feature) pairs in order, `view:*` expanded.
pub fn resolve(repo: &Repo, selection: &Selection) -> Result<Vec<(String, String)>> {
    let refs: Vec<(String, String)> = match selection {
        Selection::Service(name) => repo
            .services
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("feature service `{name}` is not registered")))?
            .features
            .clone(),
        Selection::Refs(refs) => {
            if refs.is_empty() {
                return Err(Error::InvalidArgument("features: name at least one `view:feature`".into()));
            }
            let mut out = Vec::new();
            for (i, r) in refs.iter().enumerate() {
                let (view, feature) = r.split_once(':').ok_or_else(|| {
                    Error::InvalidArgument(format!("features[{i}]: `{r}` must be `view:feature` or `view:*`"))
                })?;
                let v = repo.views.get(view).ok_or_else(|| {
                    Error::NotFound(format!("features[{i}]: feature view `{view}` is not registered"))
                })?;
                if feature == "*" {
                    out.extend(v.features.iter().map(|f| (view.to_owned(), f.name.clone())));
                } else if v.feature(feature).is_some() {
                    out.push((view.to_owned(), feature.to_owned()));
                } else {
                    return Err(Error::NotFound(format!("features[{i}]: view `{view}` has no feature `{feature}`")));
                }
            }
            out
        }
    };
    let mut seen = std::collections::HashSet::new();
    Ok(refs.into_iter().filter(|r| seen.insert(r.clone())).collect())
}

/// The earliest and latest time of the entity rows, in microseconds; `None` when no row has a
/// time, or when the column is missing or not a datetime (the point-in-time join reports that).
fn time_bounds(frame: &LazyFrame, timestamp_column: &str) -> Result<Option<(i64, i64)>> {
    let mut frame = frame.clone();
    let schema = frame.collect_schema().map_err(Error::offline("resolving the schema of the entity rows"))?;
    if !schema.get(timestamp_column).is_some_and(is_timestamp) {
        return Ok(None);
    }
    let micros = || col(timestamp_column).cast(timestamp_dtype()).to_physical();
    let bounds = frame
        .select([micros().min().alias("earliest"), micros().max().alias("latest")])
        .collect()
        .and_then(|b| Ok((b.column("earliest")?.i64()?.get(0), b.column("latest")?.i64()?.get(0))))
        .map_err(Error::offline("reading the time range of the entity rows"))?;
    Ok(bounds.0.zip(bounds.1))
}

/// The event times of a view's history that entity rows within `bounds` can match: from the
/// earliest row's time less the ttl (no lower bound without a ttl) to the latest row's time.
/// Every time when the bounds are unknown.
fn usable_range(bounds: Option<(i64, i64)>, ttl: Option<std::time::Duration>) -> TimeRange {
    let Some((earliest, latest)) = bounds else { return TimeRange::all() };
    let at = DateTime::<Utc>::from_timestamp_micros;
    let start = ttl
        .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
        .and_then(|ttl| at(earliest).and_then(|t| t.checked_sub_signed(ttl)));
    TimeRange { start, end: at(latest) }
}

/// The history of `view` for `client`, with `event_timestamp` and, when known,
/// `created_timestamp`.
pub fn history(
    repo: &Repo,
    store: &dyn OfflineStore,
    root: &Path,
    client: &ClientId,
    view: &FeatureView,
) -> Result<LazyFrame> {
    history_in(repo, store, root, client, view, TimeRange::all())
}

/// The history of `view` for `client` with `event_timestamp` in `range`. Feature-log
/// partitions outside the range are not read; the bound reaches the Parquet reader.
pub fn history_in(
    repo: &Repo,
    store: &dyn OfflineStore,
    root: &Path,
    client: &ClientId,
    view: &FeatureView,
    range: TimeRange,
) -> Result<LazyFrame> {
    let source = repo.sources.get(&view.source).ok_or_else(|| {
        Error::NotFound(format!("source `{}` of view `{}` is not registered", view.source, view.name))
    })?;
    match &source.kind {
        SourceKind::EventLog { .. } => store.scan(client, &view.name, range),
        SourceKind::Parquet { path, timestamp_field, created_timestamp_field } => {
            let dir: PathBuf = root.join(path).join(format!("client_id={client}"));
            let mut frame =
                scan_table(&dir, &format!("client `{client}` has no data for batch source `{}`", source.name))?;
            let mut renames = vec![(timestamp_field.as_str(), EVENT_TIMESTAMP)];
            if let Some(created) = created_timestamp_field {
                renames.push((created.as_str(), CREATED_TIMESTAMP));
            }
            let (from, to): (Vec<&str>, Vec<&str>) = renames.into_iter().filter(|(a, b)| a != b).unzip();
            if !from.is_empty() {
                frame = frame.rename(from, to, true);
            }
            Ok(match range_filter(range) {
                Some(predicate) => frame.filter(predicate),
                None => frame,
            })
        }
    }
}

/// A lazy scan of every Parquet file under `dir` (a client's directory of a table), in path
/// order, files missing columns read as nulls.
///
/// # Errors
/// [`Error::NotFound`] saying `missing` (`client `c` has no data for …`) and where the files
/// were expected, when there is none.
pub fn scan_table(dir: &Path, missing: &str) -> Result<LazyFrame> {
    if !dir.is_dir() {
        return Err(Error::NotFound(format!("{missing} (expected Parquet files under {})", dir.display())));
    }
    let mut files = Vec::new();
    parquet_files(dir, &mut files)?;
    if files.is_empty() {
        return Err(Error::NotFound(format!("{missing} (no Parquet file under {})", dir.display())));
    }
    files.sort();
    scan_table_files(&files, &dir.display().to_string())
}

/// A lazy scan of the Parquet `files` (at least one) as one table, as [`scan_table`] scans a
/// directory's; `what` names them in errors.
pub fn scan_table_files(files: &[PathBuf], what: &str) -> Result<LazyFrame> {
    let paths: Vec<PlRefPath> = files.iter().map(|p| PlRefPath::new(p.to_string_lossy().as_ref())).collect();
    let args = ScanArgsParquet {
        hive_options: HiveOptions { enabled: Some(false), ..Default::default() },
        glob: false,
        allow_missing_columns: true,
        ..Default::default()
    };
    LazyFrame::scan_parquet_files(paths.into(), args).map_err(Error::offline(format!("scanning {what}")))
}

/// Every `*.parquet` file under `dir`, recursively (hidden and temporary files skipped).
fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    for entry in entries {
        let path = entry.map_err(Error::io(format!("listing {}", dir.display())))?.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            parquet_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// Builds the dataset: the entity rows with the selected features at each row's time.
pub fn build(
    repo: &Repo,
    store: &dyn OfflineStore,
    root: &Path,
    client: &ClientId,
    request: DatasetRequest,
) -> Result<LazyFrame> {
    let selected = resolve(repo, &request.selection)?;
    let mut order: Vec<String> = Vec::new();
    for (view, _) in &selected {
        if !order.contains(view) {
            order.push(view.clone());
        }
    }
    let out_name = |view: &str, feature: &str| {
        if request.full_feature_names { format!("{view}__{feature}") } else { feature.to_owned() }
    };
    // The entity rows first: their time range bounds what each view's history must give.
    let (frame, timestamp_column) = match request.entities {
        Entities::Rows { frame, timestamp_column } => (*frame, timestamp_column),
        Entities::Spine { view, options } => {
            let fv = repo
                .views
                .get(&view)
                .ok_or_else(|| Error::NotFound(format!("spine: feature view `{view}` is not registered")))?;
            let keys = repo.entities.get(&fv.entity).map(|e| e.join_keys.clone()).unwrap_or_default();
            // Every entity seen up to the spine's end; one first seen before its start appears
            // from the start, so the history is not bounded below.
            let source = history_in(repo, store, root, client, fv, TimeRange { start: None, end: Some(options.end) })?;
            let column = options.timestamp_column.clone();
            (entity_spine(source, &keys, EVENT_TIMESTAMP, &options)?.lazy(), column)
        }
    };
    let bounds = time_bounds(&frame, &timestamp_column)?;
    let mut views = Vec::with_capacity(order.len());
    // (output name, timestamp column output name) of each days_since feature.
    let mut days_since: Vec<(String, String, bool)> = Vec::new();
    for name in &order {
        let view = &repo.views[name];
        let entity = repo
            .entities
            .get(&view.entity)
            .ok_or_else(|| Error::NotFound(format!("entity `{}` of view `{name}` is not registered", view.entity)))?;
        let mut features: Vec<String> = Vec::new();
        for (_, f) in selected.iter().filter(|(v, _)| v == name) {
            match view.feature(f).map(|x| &x.kind) {
                Some(FeatureKind::DaysSince { of }) => {
                    let requested = selected.iter().any(|(v, x)| v == name && x == of);
                    if !features.contains(of) {
                        features.push(of.clone());
                    }
                    days_since.push((out_name(name, f), out_name(name, of), requested));
                }
                _ => {
                    if !features.contains(f) {
                        features.push(f.clone());
                    }
                }
            }
        }
        views.push(ViewHistory {
            name: name.clone(),
            join_keys: entity.join_keys.clone(),
            features,
            ttl: view.ttl,
            history: history_in(repo, store, root, client, view, usable_range(bounds, view.ttl))?,
        });
    }
    let joined = get_historical_features(
        frame,
        &timestamp_column,
        &views,
        &PitOptions { full_feature_names: request.full_feature_names },
    )?;
    if days_since.is_empty() {
        return Ok(joined);
    }
    let day = 86_400_000_000.0_f64;
    let mut with = joined.with_columns(
        days_since
            .iter()
            .map(|(name, of, _)| {
                ((col(timestamp_column.as_str()).cast(DataType::Int64) - col(of.as_str()).cast(DataType::Int64))
                    .cast(DataType::Float64)
                    / lit(day))
                .alias(name.as_str())
            })
            .collect::<Vec<_>>(),
    );
    let helpers: Vec<String> =
        days_since.iter().filter(|(_, _, requested)| !requested).map(|(_, of, _)| of.clone()).collect();
    if !helpers.is_empty() {
        with = with.drop(by_name(helpers.iter().map(String::as_str), true, false));
    }
    Ok(with)
}
