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
//! One sorted merge per view on narrow frames, then one gather of the feature columns:
//!
//! 1. The entity rows get a row index and are reduced to (row index, join keys, timestamp).
//!    This narrow frame is computed once and shared by every view.
//! 2. Each history gets a row index of its own and is reduced to (join keys, event timestamp,
//!    created, row index), without the rows that can never match (a null key or time).
//! 3. For each view, both narrow frames are stacked into one, and one pass (`merge`) finds the
//!    matches: the join keys become group numbers (a hash group-by), the rows are sorted by
//!    (group, time, side) — the history's rows before the entity rows at an equal time — and the
//!    pass remembers the best history row of the current group so far: at an entity row it is
//!    the row with the greatest event timestamp `≤ t` (equality allowed) and, among rows at that
//!    time, the one of greatest created (a null first, so it loses), then the last in the
//!    history's order. It matches when it is at most the ttl old; otherwise no row does, since
//!    it was the latest at or before `t`. The pass writes the match straight into the entity
//!    row's place: one history row index per entity row, in input order, without a sort back.
//! 4. Each view's feature columns are gathered by those indices, and the rows without a match
//!    are set to null. The entity rows and each view's gathered columns are concatenated side by
//!    side.
//!
//! Each view is a branch of its own from the shared narrow frame, so the views are merged and
//! gathered in parallel. The wide feature columns are read once and moved once (the gather);
//! only the narrow key and time columns are sorted. Each view costs `O((n + m) log (n + m))` for
//! its sort and `O(n + m)` for the pass, never `O(n × m)`: there is no cross join, and no join
//! that fans out rows, so memory stays proportional to the inputs and output.
//!
//! Two choices carry the speed (BENCHMARKS.md, "Point-in-time retrieval"). The sort is of one
//! 64-bit word per row (128 bits when the groups and the time span need more), compared
//! natively, where polars' sort by several columns compares column by column through dynamic
//! dispatch; and the gather takes indices without nulls, where polars builds each gathered value
//! as an `Option` when any index is null (about a quarter of the time before), then sets the
//! rows without a match to null in one vectorised pass.
//!
//! The sorts and the gather (a random access per feature value) are the largest costs. The
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
use std::sync::Arc;
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
/// In the stacked frame of a view's merge: true for an entity row, false for a history row.
const SIDE: &str = "__livora_side";
/// In the stacked frame: the entity row index or the history row index.
const ID: &str = "__livora_id";
/// Whether an entity row matched a history row.
const FOUND: &str = "__livora_found";

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
        // 2 and 3. Each view is merged on its own, so that the views' branches can run in parallel.
        let history = view.view.history.clone().cache();
        let matched = matches(narrow.clone(), history.clone(), view)?.cache();
        // 4. Gather the view's features by indices without nulls (polars' fast path; an empty
        //    history makes index 0 out of bounds, hence null_on_oob), then null the rows
        //    without a match.
        let features: Vec<Expr> =
            view.outputs.iter().map(|(feature, output)| col(*feature).alias(output.as_str())).collect();
        let gathered = history.select(features).gather(matched.clone().select([col(INDEX)]), true);
        let joined = concat_lf_horizontal([gathered, matched.select([col(FOUND)])], HConcatOptions::default())
            .map_err(Error::offline(format!("gathering the features of feature view `{}`", view.view.name)))?;
        let output: Arc<dyn UdfSchema> = Arc::new(|input: &Schema| {
            let mut schema = input.clone();
            schema.shift_remove(FOUND);
            Ok(Arc::new(schema))
        });
        parts.push(joined.map(null_misses, AllowedOptimizations::empty(), Some(output), Some("point-in-time misses")));
    }
    concat_lf_horizontal(parts, HConcatOptions { strict: true, ..Default::default() })
        .map_err(Error::offline("assembling the point-in-time result"))
}

/// For each entity row, in input order, the history row it matches (steps 2 and 3 of the
/// [module documentation](self)): [`INDEX`], the row's index (0 when there is none, to keep
/// the gather on its fast path), and [`FOUND`], whether there is one.
fn matches(narrow: LazyFrame, history: LazyFrame, view: &CheckedView<'_>) -> Result<LazyFrame> {
    let keys = view.view.join_keys.clone();
    let mut entity: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    entity.extend([col(TS), lit(true).alias(SIDE), col(ROW).alias(ID)]);
    let mut rows: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    rows.extend([col(EVENT_TIMESTAMP).cast(timestamp_dtype()).alias(TS), lit(false).alias(SIDE), col(INDEX).alias(ID)]);
    let has_created = view.has_created;
    if has_created {
        entity.push(lit(NULL).cast(timestamp_dtype()).alias(CREATED));
        rows.push(col(CREATED_TIMESTAMP).cast(timestamp_dtype()).alias(CREATED));
    }
    let matchable = keys.iter().fold(col(TS).is_not_null(), |all, k| all.and(col(k.as_str()).is_not_null()));
    let rows = history.with_row_index(INDEX, None).select(rows).filter(matchable);
    // A ttl beyond the range of i64 microseconds (about 292,000 years) is no limit.
    let ttl = view.view.ttl.and_then(|ttl| i64::try_from(ttl.as_micros()).ok());
    let output: Arc<dyn UdfSchema> = Arc::new(|_: &Schema| {
        Ok(Arc::new(Schema::from_iter([
            Field::new(INDEX.into(), IDX_DTYPE),
            Field::new(FOUND.into(), DataType::Boolean),
        ])))
    });
    let stacked = concat([narrow.select(entity), rows], UnionArgs::default())
        .map_err(Error::offline(format!("stacking the rows of feature view `{}`", view.view.name)))?;
    Ok(stacked.map(
        move |stacked| merge(&stacked, &keys, has_created, ttl),
        AllowedOptimizations::empty(),
        Some(output),
        Some("point-in-time merge"),
    ))
}

/// Step 3 over the stacked rows ([`SIDE`], [`ID`], the join keys, [`TS`] and, with
/// `has_created`, [`CREATED`]): the matched history row of every entity row, in entity row
/// order, as [`matches`] returns it.
///
/// The keys become group numbers (a hash group-by, for keys of any type and number; a null key
/// is a group of entity rows only), and the rows are sorted by one word: group, time,
/// then side (history first at an equal time). Among history rows of one group and time, the
/// pass keeps the one of greatest (created, row index), a null created first.
fn merge(stacked: &DataFrame, keys: &[String], has_created: bool, ttl: Option<i64>) -> PolarsResult<DataFrame> {
    let n = stacked.height();
    let mut group = vec![0u32; n];
    let grouped = stacked.group_by(keys.iter().map(String::as_str))?;
    for (g, members) in grouped.get_groups().iter().enumerate() {
        let g = u32::try_from(g).map_err(|_| polars_err!(ComputeError: "more than 2^32 entities"))?;
        match members {
            GroupsIndicator::Idx((_, all)) => all.iter().for_each(|&i| group[i as usize] = g),
            GroupsIndicator::Slice([first, len]) => group[first as usize..(first + len) as usize].fill(g),
        }
    }
    let times = stacked.column(TS)?.cast(&DataType::Int64)?;
    let is_entity = stacked.column(SIDE)?.bool()?;
    let ids: Vec<IdxSize> = stacked.column(ID)?.idx()?.into_no_null_iter().collect();
    let created: Vec<Option<i64>> =
        if has_created { stacked.column(CREATED)?.cast(&DataType::Int64)?.i64()?.iter().collect() } else { Vec::new() };
    // One unsigned word per row orders by group, then time, then side: (group, time − the
    // earliest, is entity), packed in 64 bits when they fit (the common case: 2^20 entities and
    // years of microseconds), else in 128. A row without time never matches.
    let times = times.i64()?;
    let (Some(earliest), Some(latest)) = (times.min(), times.max()) else {
        return matched_frame(vec![0; is_entity.num_trues()], vec![false; is_entity.num_trues()]);
    };
    // Two i64 differ by less than 2^64.
    let span = (i128::from(latest) - i128::from(earliest)) as u64;
    let time_bits = u64::BITS - span.leading_zeros();
    let group_bits = u32::BITS - (group.iter().max().copied().unwrap_or(0)).leading_zeros();
    let rows = times.iter().zip(is_entity.iter()).zip(&group).enumerate().filter_map(|(row, ((time, entity), &g))| {
        // Below 2^time_bits: time − earliest fits an u64.
        time.map(|t| (u64::from(g), (i128::from(t) - i128::from(earliest)) as u64, entity == Some(true), row as u32))
    });
    let mut pass = Pass::new(is_entity.num_trues(), ttl, &ids, &created);
    let decode_time = |offset: u64| (i128::from(earliest) + i128::from(offset)) as i64;
    if group_bits + time_bits < u64::BITS {
        let shift = time_bits + 1;
        let mut order: Vec<(u64, u32)> =
            rows.map(|(g, offset, entity, row)| ((g << shift) | (offset << 1) | u64::from(entity), row)).collect();
        order.sort_unstable_by_key(|&(word, _)| word);
        let time_mask = (1u64 << time_bits).wrapping_sub(1);
        for (word, row) in order {
            pass.visit((word >> shift) as u32, decode_time((word >> 1) & time_mask), word & 1 == 1, row);
        }
    } else {
        let mut order: Vec<(u128, u32)> = rows
            .map(|(g, offset, entity, row)| {
                ((u128::from(g) << 65) | (u128::from(offset) << 1) | u128::from(entity), row)
            })
            .collect();
        order.sort_unstable_by_key(|&(word, _)| word);
        for (word, row) in order {
            pass.visit((word >> 65) as u32, decode_time((word >> 1) as u64), word & 1 == 1, row);
        }
    }
    let (index, found) = pass.finish();
    matched_frame(index, found)
}

/// Sets to null the rows of `frame`'s columns where [`FOUND`] is false, and drops [`FOUND`].
/// Numeric columns (the common case) only get a new validity bitmap, their values untouched:
/// a second copy of every gathered value would cost as much as the gather. Other columns are
/// zipped with nulls.
fn null_misses(mut frame: DataFrame) -> PolarsResult<DataFrame> {
    let found = frame.drop_in_place(FOUND)?;
    let found = found.bool()?.rechunk().into_owned();
    let Some(mask) = found.downcast_iter().next().map(|chunk| chunk.values().clone()) else {
        return Ok(frame);
    };
    let columns = frame
        .into_columns()
        .into_iter()
        .map(|column| {
            let series = column.as_materialized_series();
            let dtype = series.dtype().clone();
            let physical = series.to_physical_repr();
            macro_rules! masked {
                ($ca:expr) => {{
                    let mut ca = $ca.rechunk().into_owned();
                    let validity = match ca.rechunk_validity() {
                        Some(valid) => &valid & &mask,
                        None => mask.clone(),
                    };
                    ca.set_validity(Some(validity));
                    ca.into_series()
                }};
            }
            let masked = match physical.dtype() {
                DataType::Int64 => masked!(physical.i64()?),
                DataType::Int32 => masked!(physical.i32()?),
                DataType::Int16 => masked!(physical.i16()?),
                DataType::Int8 => masked!(physical.i8()?),
                DataType::UInt64 => masked!(physical.u64()?),
                DataType::UInt32 => masked!(physical.u32()?),
                DataType::UInt16 => masked!(physical.u16()?),
                DataType::UInt8 => masked!(physical.u8()?),
                DataType::Float64 => masked!(physical.f64()?),
                DataType::Float32 => masked!(physical.f32()?),
                _ => {
                    return series
                        .zip_with(&found, &Series::full_null(series.name().clone(), series.len(), &dtype))
                        .map(Column::from);
                }
            };
            let masked = if masked.dtype() == &dtype { masked } else { masked.cast(&dtype)? };
            Ok(Column::from(masked))
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    DataFrame::new_infer_height(columns)
}

fn matched_frame(index: Vec<IdxSize>, found: Vec<bool>) -> PolarsResult<DataFrame> {
    DataFrame::new_infer_height(vec![
        IdxCa::from_vec(INDEX.into(), index).into_column(),
        BooleanChunked::from_slice(FOUND.into(), &found).into_column(),
    ])
}

/// The pass of [`merge`] over rows sorted by (group, time, side).
struct Pass<'a> {
    ttl: Option<i64>,
    ids: &'a [IdxSize],
    created: &'a [Option<i64>],
    index: Vec<IdxSize>,
    found: Vec<bool>,
    /// The best history row so far of the current group: (group, time, created, row index).
    last: Option<(u32, i64, Option<i64>, IdxSize)>,
}

impl<'a> Pass<'a> {
    fn new(entities: usize, ttl: Option<i64>, ids: &'a [IdxSize], created: &'a [Option<i64>]) -> Self {
        Self { ttl, ids, created, index: vec![0; entities], found: vec![false; entities], last: None }
    }

    fn visit(&mut self, g: u32, time: i64, is_entity: bool, row: u32) {
        let id = self.ids[row as usize];
        if !is_entity {
            let candidate = (g, time, self.created.get(row as usize).copied().flatten(), id);
            // Sorted by time within the group: a later row wins; at an equal time, the greater
            // (created, row index).
            if self.last.is_none_or(|l| l.0 != g || (l.1, l.2, l.3) < (candidate.1, candidate.2, candidate.3)) {
                self.last = Some(candidate);
            }
        } else if let Some((lg, at, _, matched)) = self.last
            && lg == g
            && self.ttl.is_none_or(|ttl| i128::from(time) - i128::from(at) <= i128::from(ttl))
            && let (Some(i), Some(f)) = (self.index.get_mut(id as usize), self.found.get_mut(id as usize))
        {
            *i = matched;
            *f = true;
        }
    }

    fn finish(self) -> (Vec<IdxSize>, Vec<bool>) {
        (self.index, self.found)
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
