//! Point-in-time retrieval: the feature values each entity row would have seen at its time.
//!
//! # The rule
//! For each entity row (join keys, timestamp `t`) and each requested feature view with ttl: the
//! view row of the same entity with the greatest `event_timestamp` such that
//! `t − ttl ≤ event_timestamp ≤ t` (both ends included; no ttl means no lower bound). Ties on
//! `event_timestamp` go to the greatest `created_timestamp` (a null `created_timestamp` loses to
//! any value). When the history has no `created_timestamp` column, or two rows tie on both, the
//! row that comes last in the history's order wins: deterministic for a given input, and for the
//! [offline store](super::store) the last one appended. No match gives nulls for that view's
//! features; the entity row is always kept. A null join key or timestamp never matches.
//!
//! The output has every entity row, duplicates included, in the input order: the entity rows'
//! columns as given (the timestamp column cast to `Datetime(Microseconds, UTC)`), then the
//! features of each view in the order requested, named `feature` or, with
//! [`PitOptions::full_feature_names`], `view__feature`.
//!
//! # The algorithm
//! Sorted as-of joins on narrow frames, then one gather of the feature columns:
//!
//! 1. The entity rows get a row index and are reduced to (row index, join keys, timestamp).
//!    This narrow frame is computed once and shared by every view, which sorts it by its own
//!    (join keys, timestamp).
//! 2. Each history gets a row index of its own and is reduced to (join keys, event timestamp,
//!    created, row index). It is sorted by (keys, event timestamp, created) and deduplicated on
//!    (keys, event timestamp) by keeping the last row of each run: the greatest created.
//! 3. For each view, an as-of **backward** join by the join keys matches each entity row to the
//!    history row with the greatest event timestamp `≤ t` (equality allowed), with a tolerance of
//!    the ttl: a match older than `t − ttl` is dropped, and since it was the latest row at or
//!    before `t`, no other row could qualify. Both sides sorted by keys then time, the matches of
//!    one entity are found together (cache-friendly in memory, and a merge rather than a hash
//!    join in the streaming engine). The result is one nullable history row index per entity
//!    row.
//! 4. Those indices are put back in input order by the entity row index, and the view's feature
//!    columns are gathered by them (a null index gives nulls). The entity rows and each view's
//!    gathered columns are concatenated side by side.
//!
//! Each view is a branch of its own from the shared narrow frame, so the views are joined and
//! gathered in parallel. The wide feature columns are read once and moved once (the gather);
//! only the narrow key and time columns are sorted. Each join costs `O(n log n)` for its sorts
//! and `O(n + m)` for the merge, never `O(n × m)`: there is no cross join, and no join that fans
//! out rows, so memory stays proportional to the inputs and output.
//!
//! The as-of joins and the gather (a random access per feature value) are the largest costs. The
//! gather is about three times faster from contiguous columns: scan histories with `rechunk`
//! (the [offline store](super::store) does) or pass rechunked frames.
//!
//! # Why a [`LazyFrame`]
//! The result is a lazy query, not a [`DataFrame`]: over [offline-store scans](super::store) the
//! projections and time filters reach the Parquet files, and the caller chooses between
//! `collect()` (in memory) and [`write_dataset`](super::write_dataset), which streams the result
//! to a Parquet file. Inputs used twice (the narrow and the wide side) are cached, so each input
//! plan runs once. Column checks (missing, wrong type, unknown feature, name collision) need only
//! the schemas and are done before anything runs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use polars::prelude::*;

use super::{CREATED_TIMESTAMP, EVENT_TIMESTAMP, is_timestamp, timestamp_dtype};
use crate::error::{Error, Result};

/// Columns that the query adds for itself start with this; inputs may not use it.
const RESERVED_PREFIX: &str = "__livora_";
const ROW: &str = "__livora_row";
const TS: &str = "__livora_ts";
const CREATED: &str = "__livora_created";
const INDEX: &str = "__livora_index";

/// One feature view's history, and what to take from it.
#[derive(Clone)]
pub struct ViewHistory {
    /// The view's name; used in errors and in full feature names.
    pub name: String,
    /// The join-key columns, present with the same types in the entity rows and the history.
    pub join_keys: Vec<String>,
    /// The features to return, in this order.
    pub features: Vec<String>,
    /// How old a row may be and still count; `None` for no limit.
    pub ttl: Option<Duration>,
    /// The rows: the join keys, [`EVENT_TIMESTAMP`], optionally [`CREATED_TIMESTAMP`], and the
    /// feature columns.
    pub history: LazyFrame,
}

/// How to name and shape the output.
#[derive(Debug, Clone, Default)]
pub struct PitOptions {
    /// Name features `view__feature` instead of `feature`. Without it, two views returning a
    /// feature of the same name is an error.
    pub full_feature_names: bool,
}

/// A view whose checks passed, with the names its features take in the output.
struct CheckedView<'a> {
    view: &'a ViewHistory,
    has_created: bool,
    /// (feature column, output name), in request order.
    outputs: Vec<(&'a str, String)>,
}

/// Joins each entity row with the values of the requested features at the row's time.
///
/// `entity_rows` holds the join keys of every view and `timestamp_column`, a datetime. See the
/// [module documentation](self) for the rule and the algorithm.
///
/// # Errors
/// [`Error::InvalidArgument`] for a missing or mistyped column, no view, a view without join keys
/// or features, a reserved column name or a name collision; [`Error::NotFound`] for a feature the
/// history lacks; [`Error::Offline`] when a schema cannot be resolved.
pub fn get_historical_features(
    entity_rows: LazyFrame,
    timestamp_column: &str,
    views: &[ViewHistory],
    options: &PitOptions,
) -> Result<LazyFrame> {
    if views.is_empty() {
        return Err(Error::InvalidArgument("no feature view requested".into()));
    }
    let mut entity_rows = entity_rows.cache();
    let entity_schema =
        entity_rows.collect_schema().map_err(Error::offline("resolving the schema of the entity rows"))?;
    check_entity_schema(&entity_schema, timestamp_column)?;

    // Output name → who produced it, for collision errors.
    let mut owners: HashMap<String, Option<&str>> =
        entity_schema.iter_names().map(|name| (name.to_string(), None)).collect();
    let mut checked = Vec::with_capacity(views.len());
    for view in views {
        checked.push(check_view(view, &entity_schema, options, &mut owners)?);
    }

    // 1. The narrow, time-sorted entity side, shared by every view.
    let mut key_columns: Vec<&str> = Vec::new();
    for view in views {
        for key in &view.join_keys {
            if !key_columns.contains(&key.as_str()) {
                key_columns.push(key);
            }
        }
    }
    let mut narrow_columns = vec![col(ROW)];
    narrow_columns.extend(key_columns.iter().map(|k| col(*k)));
    narrow_columns.push(col(timestamp_column).cast(timestamp_dtype()).alias(TS));
    let narrow = entity_rows.clone().with_row_index(ROW, None).select(narrow_columns).cache();

    let entity_columns: Vec<Expr> = entity_schema
        .iter_names()
        .map(|name| {
            if name.as_str() == timestamp_column {
                col(name.clone()).cast(timestamp_dtype())
            } else {
                col(name.clone())
            }
        })
        .collect();
    let mut parts = vec![entity_rows.select(entity_columns)];
    for view in &checked {
        // 2 and 3. Each view joins on its own, so that the views' branches can run in parallel.
        let history = view.view.history.clone().cache();
        let mut left_columns = vec![col(ROW), col(TS)];
        left_columns.extend(view.view.join_keys.iter().map(|k| col(k.as_str())));
        let mut left_order: Vec<&str> = view.view.join_keys.iter().map(String::as_str).collect();
        left_order.push(TS);
        let matched = narrow
            .clone()
            .select(left_columns)
            .sort(left_order, SortMultipleOptions::default())
            .join(
                latest_rows(history.clone(), view, INDEX),
                [col(TS)],
                [col(TS)],
                JoinArgs::new(JoinType::AsOf(Box::new(asof_options(view.view)))),
            )
            // 4. Back to input order, then gather the view's features.
            .sort([ROW], SortMultipleOptions::default())
            .select([col(INDEX)]);
        let features: Vec<Expr> =
            view.outputs.iter().map(|(feature, output)| col(*feature).alias(output.as_str())).collect();
        parts.push(history.select(features).gather(matched, false));
    }
    concat_lf_horizontal(parts, HConcatOptions { strict: true, ..Default::default() })
        .map_err(Error::offline("assembling the point-in-time result"))
}

/// The history reduced to the latest row per (keys, event timestamp), sorted for the as-of join:
/// (keys, [`TS`], `index`), where `index` is the row's position in `history`.
fn latest_rows(history: LazyFrame, view: &CheckedView<'_>, index: &str) -> LazyFrame {
    let keys = &view.view.join_keys;
    let mut columns: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    columns.push(col(EVENT_TIMESTAMP).cast(timestamp_dtype()).alias(TS));
    let mut sort_by: Vec<&str> = keys.iter().map(String::as_str).collect();
    sort_by.push(TS);
    if view.has_created {
        columns.push(col(CREATED_TIMESTAMP).cast(timestamp_dtype()).alias(CREATED));
        sort_by.push(CREATED);
    }
    columns.push(col(index));
    let matchable = keys.iter().fold(col(TS).is_not_null(), |all, k| all.and(col(k.as_str()).is_not_null()));
    // After the sort, a row is the last of its (keys, event timestamp) run when the next row
    // differs in any of them; the last row of the frame compares with a null and is kept.
    let last_of_run = keys
        .iter()
        .map(String::as_str)
        .chain([TS])
        .map(|c| col(c).neq_missing(col(c).shift(lit(-1))))
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(true));
    let mut output: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    output.extend([col(TS), col(index)]);
    history
        .with_row_index(index, None)
        .select(columns)
        .filter(matchable)
        .sort(sort_by, SortMultipleOptions::default().with_maintain_order(true).with_nulls_last(false))
        .filter(last_of_run)
        .select(output)
}

/// Backward as-of by the join keys, equality allowed, with the ttl as tolerance.
fn asof_options(view: &ViewHistory) -> AsOfOptions {
    let keys: Vec<PlSmallStr> = view.join_keys.iter().map(|k| PlSmallStr::from(k.as_str())).collect();
    // A ttl beyond the range of i64 microseconds (about 292,000 years) is no limit.
    let tolerance = view
        .ttl
        .and_then(|ttl| i64::try_from(ttl.as_micros()).ok())
        .map(|micros| Scalar::new(DataType::Int64, AnyValue::Int64(micros)));
    AsOfOptions {
        strategy: AsofStrategy::Backward,
        tolerance,
        left_by: Some(keys.clone()),
        right_by: Some(keys),
        allow_eq: true,
        check_sortedness: false,
        ..Default::default()
    }
}

fn check_entity_schema(schema: &Schema, timestamp_column: &str) -> Result<()> {
    if let Some(name) = schema.iter_names().find(|n| n.starts_with(RESERVED_PREFIX)) {
        return Err(Error::InvalidArgument(format!(
            "entity rows: column `{name}` uses the reserved prefix `{RESERVED_PREFIX}`"
        )));
    }
    let dtype = schema
        .get(timestamp_column)
        .ok_or_else(|| Error::InvalidArgument(format!("entity rows have no timestamp column `{timestamp_column}`")))?;
    if !is_timestamp(dtype) {
        return Err(Error::InvalidArgument(format!(
            "entity rows: timestamp column `{timestamp_column}` is {dtype}, expected a datetime"
        )));
    }
    Ok(())
}

/// Checks one view against the entity rows and its own history, and records its output names.
fn check_view<'a>(
    view: &'a ViewHistory,
    entity_schema: &Schema,
    options: &PitOptions,
    owners: &mut HashMap<String, Option<&'a str>>,
) -> Result<CheckedView<'a>> {
    let name = view.name.as_str();
    if view.join_keys.is_empty() {
        return Err(Error::InvalidArgument(format!("feature view `{name}` has no join key")));
    }
    if view.features.is_empty() {
        return Err(Error::InvalidArgument(format!("feature view `{name}`: no feature requested")));
    }
    let schema = view
        .history
        .clone()
        .collect_schema()
        .map_err(Error::offline(format!("resolving the schema of the history of feature view `{name}`")))?;
    if let Some(column) = schema.iter_names().find(|n| n.starts_with(RESERVED_PREFIX)) {
        return Err(Error::InvalidArgument(format!(
            "feature view `{name}`: column `{column}` uses the reserved prefix `{RESERVED_PREFIX}`"
        )));
    }
    for key in &view.join_keys {
        let entity_dtype = entity_schema.get(key).ok_or_else(|| {
            Error::InvalidArgument(format!("entity rows lack the join key `{key}` of feature view `{name}`"))
        })?;
        let history_dtype = schema.get(key).ok_or_else(|| {
            Error::InvalidArgument(format!("the history of feature view `{name}` lacks its join key `{key}`"))
        })?;
        if entity_dtype != history_dtype {
            return Err(Error::InvalidArgument(format!(
                "join key `{key}` is {entity_dtype} in the entity rows but {history_dtype} in feature view `{name}`"
            )));
        }
    }
    for (column, required) in [(EVENT_TIMESTAMP, true), (CREATED_TIMESTAMP, false)] {
        match schema.get(column) {
            None if required => {
                return Err(Error::InvalidArgument(format!(
                    "the history of feature view `{name}` lacks the column `{column}`"
                )));
            }
            Some(dtype) if !is_timestamp(dtype) => {
                return Err(Error::InvalidArgument(format!(
                    "feature view `{name}`: column `{column}` is {dtype}, expected a datetime"
                )));
            }
            _ => {}
        }
    }

    let mut seen = HashSet::new();
    let mut outputs = Vec::with_capacity(view.features.len());
    for feature in &view.features {
        if !seen.insert(feature.as_str()) {
            return Err(Error::InvalidArgument(format!("feature view `{name}`: feature `{feature}` requested twice")));
        }
        if view.join_keys.contains(feature) || feature == EVENT_TIMESTAMP || feature == CREATED_TIMESTAMP {
            return Err(Error::InvalidArgument(format!(
                "feature view `{name}`: `{feature}` is a join key or timestamp column, not a feature"
            )));
        }
        if schema.get(feature).is_none() {
            return Err(Error::NotFound(format!("feature view `{name}` has no feature `{feature}`")));
        }
        let output = if options.full_feature_names { format!("{name}__{feature}") } else { feature.clone() };
        match owners.get(&output) {
            Some(None) => {
                return Err(Error::InvalidArgument(format!(
                    "feature `{feature}` of feature view `{name}` collides with the entity rows' column `{output}`"
                )));
            }
            Some(Some(other)) => {
                return Err(Error::InvalidArgument(format!(
                    "feature `{output}` is returned by both feature views `{other}` and `{name}`; \
                     request full feature names (`view__feature`) or only one of them"
                )));
            }
            None => {
                owners.insert(output.clone(), Some(name));
            }
        }
        outputs.push((feature.as_str(), output));
    }
    Ok(CheckedView { view, has_created: schema.get(CREATED_TIMESTAMP).is_some(), outputs })
}
