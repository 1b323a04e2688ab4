//! [`FeatureServer`]: resolve, key, read once, answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use livora_common::ClientId;

use super::catalog::{Catalog, Catalogs, FeatureSource, Plan};
use super::config::ServingConfig;
use super::keys::{COMPOSITE_SEPARATOR, KeyValue};
use crate::error::{Error, Result};
use crate::online::{OnlineRow, OnlineStore, RowKey};
use crate::registry::Registry;
use crate::value::{Value, ValueType};

const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// Which features a request reads.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// References `view:feature` or `view:*`.
    Features(&'a [String]),
    /// A feature service's name.
    Service(&'a str),
}

/// One column of entity rows: a join key and its value in every row.
#[derive(Debug, Clone)]
pub struct EntityColumn<'a> {
    /// The join key (`user_id`).
    pub join_key: &'a str,
    /// One value per entity row.
    pub values: Vec<KeyValue<'a>>,
}

/// How a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureStatus {
    /// The row holds the feature and is within the view's ttl (the value may still be null).
    Present,
    /// No row, no such feature in the row, or a stored value of another type than declared.
    Missing,
    /// The row is older than the view's ttl; the value is withheld.
    OutsideMaxAge,
}

impl FeatureStatus {
    /// The name used by the JSON API (and, prefixed with `FEATURE_STATUS_`, by protobuf).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Present => "PRESENT",
            Self::Missing => "MISSING",
            Self::OutsideMaxAge => "OUTSIDE_MAX_AGE",
        }
    }
}

/// Receives an answer, feature by feature (column-major), so that each API builds its own
/// response type directly without an intermediate copy.
///
/// Calls come in this order: [`begin`](Self::begin) once; then for each feature,
/// [`feature`](Self::feature) and one [`value`](Self::value) per entity row. Nothing is sent
/// when the request fails.
pub trait FeatureSink {
    /// The answer will hold `features` features of `rows` entity rows each.
    fn begin(&mut self, features: usize, rows: usize);
    /// The next feature, by the name to answer with.
    fn feature(&mut self, name: &str);
    /// The value of the current feature for the next entity row; `event_time` (µs since the
    /// epoch) is `None` when the status is [`FeatureStatus::Missing`].
    fn value(&mut self, value: Value, status: FeatureStatus, event_time: Option<i64>);
}

/// An answer held in plain Rust types (tests, tools, the JSON API).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnlineFeatures {
    /// The features' names, in order.
    pub feature_names: Vec<String>,
    /// One column per feature, in the order of `feature_names`.
    pub results: Vec<FeatureColumn>,
}

/// One feature's values for every entity row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureColumn {
    /// The values.
    pub values: Vec<Value>,
    /// Their statuses.
    pub statuses: Vec<FeatureStatus>,
    /// Their event times (µs since the epoch); `None` where missing.
    pub event_times: Vec<Option<i64>>,
}

impl OnlineFeatures {
    /// The column of the feature `name`, if answered.
    pub fn column(&self, name: &str) -> Option<&FeatureColumn> {
        self.feature_names.iter().position(|n| n == name).map(|i| &self.results[i])
    }
}

impl FeatureSink for OnlineFeatures {
    fn begin(&mut self, features: usize, _rows: usize) {
        self.feature_names.reserve(features);
        self.results.reserve(features);
    }

    fn feature(&mut self, name: &str) {
        self.feature_names.push(name.to_owned());
        self.results.push(FeatureColumn::default());
    }

    fn value(&mut self, value: Value, status: FeatureStatus, event_time: Option<i64>) {
        if let Some(column) = self.results.last_mut() {
            column.values.push(value);
            column.statuses.push(status);
            column.event_times.push(event_time);
        }
    }
}

/// Serves online features: the registry (through a per-client cache of compiled definitions) and
/// the online store.
pub struct FeatureServer {
    registry: Registry,
    online: Arc<dyn OnlineStore>,
    catalogs: Catalogs,
    max_entity_rows: usize,
}

impl FeatureServer {
    /// A server of `online`'s rows, described by `registry`'s definitions.
    pub fn new(registry: Registry, online: Arc<dyn OnlineStore>, config: &ServingConfig) -> Self {
        Self {
            registry,
            online,
            catalogs: Catalogs::new(config.registry_refresh),
            max_entity_rows: config.max_entity_rows,
        }
    }

    /// The online store read from.
    pub fn online(&self) -> &Arc<dyn OnlineStore> {
        &self.online
    }

    /// Checks that the online store and the registry answer (for readiness probes).
    pub async fn ping(&self) -> Result<()> {
        self.online.ping().await?;
        self.registry.ping().await
    }

    /// Reads `selection` for every entity row of `entities`, as `client`, into `sink`, as of
    /// now.
    ///
    /// Everything is checked before anything is read, and everything is read (in one call to
    /// the online store) before `sink` hears of it: on error, `sink` is untouched.
    pub async fn get_online_features(
        &self,
        client: &ClientId,
        selection: Selection<'_>,
        entities: &[EntityColumn<'_>],
        full_feature_names: bool,
        sink: &mut impl FeatureSink,
    ) -> Result<()> {
        self.get_online_features_at(client, selection, entities, full_feature_names, now_micros(), sink).await
    }

    /// [`get_online_features`](Self::get_online_features) as of `at` (µs since the epoch): each
    /// value's age against its view's ttl, and every `days_since` feature, are taken at `at`.
    /// A point-in-time dataset with entity rows at `at` gives the same values, as long as the
    /// store holds no row newer than `at` (a caller that records the moment it scored passes it
    /// here, so the record says exactly which features it read).
    pub async fn get_online_features_at(
        &self,
        client: &ClientId,
        selection: Selection<'_>,
        entities: &[EntityColumn<'_>],
        full_feature_names: bool,
        at: i64,
        sink: &mut impl FeatureSink,
    ) -> Result<()> {
        let catalog = self.catalogs.get(&self.registry, client).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "client `{client}` has no feature definitions; apply a feature repository with `livora apply`"
            ))
        })?;
        let plan: Arc<Plan> = match selection {
            Selection::Service("") => {
                return Err(Error::InvalidArgument("feature_service: the name is empty".into()));
            }
            Selection::Service(name) => catalog.service(name)?,
            Selection::Features(refs) => catalog.plan_refs(refs)?,
        };
        if !full_feature_names && let Some(name) = &plan.clash {
            return Err(Error::InvalidArgument(format!(
                "full_feature_names: two requested features are named `{name}`; set full_feature_names to \
                 answer them as `view__feature`"
            )));
        }
        let rows = self.row_count(entities)?;
        let keys = row_keys(&catalog, &plan, entities, rows)?;
        let mut read = self.online.read(client, &keys).await?;
        if read.len() != keys.len() {
            return Err(Error::online(
                self.online.backend(),
                format!("answered {} rows for {} keys", read.len(), keys.len()),
            ));
        }
        answer(&catalog, &plan, &mut read, rows, at, full_feature_names, sink);
        Ok(())
    }

    /// The number of entity rows, once every column is checked to have it.
    fn row_count(&self, entities: &[EntityColumn<'_>]) -> Result<usize> {
        let Some(first) = entities.first() else {
            return Err(Error::InvalidArgument(
                "entities: no entity rows; give each join key (e.g. `user_id`) a column of values".into(),
            ));
        };
        let rows = first.values.len();
        if let Some(other) = entities.iter().find(|c| c.values.len() != rows) {
            return Err(Error::InvalidArgument(format!(
                "entities.{}: {} values, but entities.{} has {rows}; every column needs one value per entity row",
                other.join_key,
                other.values.len(),
                first.join_key
            )));
        }
        if rows == 0 {
            return Err(Error::InvalidArgument(format!(
                "entities.{}: no values; give at least one entity row",
                first.join_key
            )));
        }
        if rows > self.max_entity_rows {
            return Err(Error::InvalidArgument(format!(
                "entities: {rows} entity rows; at most {} per request",
                self.max_entity_rows
            )));
        }
        Ok(rows)
    }
}

/// One key per (view, entity row), view-major: the row of view slot `s` and entity row `r` is at
/// `s * rows + r`.
fn row_keys(catalog: &Catalog, plan: &Plan, entities: &[EntityColumn<'_>], rows: usize) -> Result<Vec<RowKey>> {
    let mut keys = Vec::with_capacity(plan.views.len() * rows);
    for &v in &plan.views {
        let view = catalog.view(v);
        let composite = view.join_keys.len() > 1;
        let mut columns = Vec::with_capacity(view.join_keys.len());
        for key in &view.join_keys {
            let column = entities.iter().find(|c| c.join_key == key).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "entities: missing the join key column `{key}` of entity `{}` (feature view `{}` needs it)",
                    view.entity, view.name
                ))
            })?;
            columns.push(column);
        }
        for r in 0..rows {
            let mut text = String::new();
            for (j, column) in columns.iter().enumerate() {
                let value = column.values[r];
                check_key(value, view.key_type, composite, column.join_key, r, &view.entity)?;
                if j > 0 {
                    text.push(COMPOSITE_SEPARATOR);
                }
                value.push_text(&mut text);
            }
            keys.push(RowKey { entity: view.entity.clone(), key: text, view: view.name.clone() });
        }
    }
    Ok(keys)
}

fn check_key(
    value: KeyValue<'_>,
    ty: ValueType,
    composite: bool,
    column: &str,
    row: usize,
    entity: &str,
) -> Result<()> {
    match (ty, value) {
        (ValueType::String, KeyValue::String(s)) if composite && s.contains(COMPOSITE_SEPARATOR) => {
            Err(Error::InvalidArgument(format!(
                "entities.{column}[{row}]: a part of a composite key cannot contain U+001F (the separator of its parts)"
            )))
        }
        (ValueType::String, KeyValue::String(_))
        | (ValueType::Int64, KeyValue::Int64(_))
        | (ValueType::Bool, KeyValue::Bool(_)) => Ok(()),
        (_, KeyValue::Null) => {
            Err(Error::InvalidArgument(format!("entities.{column}[{row}]: null; every entity row needs a {ty} key")))
        }
        (_, other) => Err(Error::InvalidArgument(format!(
            "entities.{column}[{row}]: expected {ty} (the key type of entity `{entity}`), got {}",
            other.type_name()
        ))),
    }
}

/// Fills `sink` from the rows read (view-major, as [`row_keys`] made them).
fn answer(
    catalog: &Catalog,
    plan: &Plan,
    read: &mut [Option<OnlineRow>],
    rows: usize,
    now: i64,
    full_feature_names: bool,
    sink: &mut impl FeatureSink,
) {
    sink.begin(plan.features.len(), rows);
    for selected in &plan.features {
        let view = catalog.view(selected.view);
        let feature = &view.features[selected.feature];
        sink.feature(if full_feature_names { &feature.full_name } else { &feature.name });
        // `now − event_time > ttl` ⇔ `event_time < now − ttl`.
        let oldest = view.ttl_micros.map(|ttl| now.saturating_sub(ttl));
        for row in &mut read[selected.slot * rows..(selected.slot + 1) * rows] {
            let Some(row) = row else {
                sink.value(Value::Null, FeatureStatus::Missing, None);
                continue;
            };
            let event_time = row.event_time;
            let (name, hint) = match &feature.source {
                FeatureSource::Stored { hint } => (feature.name.as_str(), *hint),
                FeatureSource::DaysSince { of, hint } => (of.as_str(), *hint),
            };
            let Some(stored) = find(&mut row.values, name, hint) else {
                sink.value(Value::Null, FeatureStatus::Missing, None);
                continue;
            };
            if oldest.is_some_and(|oldest| event_time < oldest) {
                sink.value(Value::Null, FeatureStatus::OutsideMaxAge, Some(event_time));
                continue;
            }
            let value = match &feature.source {
                FeatureSource::Stored { .. } if stored.fits(feature.value_type) => Some(take(stored)),
                FeatureSource::Stored { .. } => None,
                FeatureSource::DaysSince { .. } => match stored {
                    Value::Null => Some(Value::Null),
                    Value::Timestamp(t) => Some(Value::Float64(now.saturating_sub(*t) as f64 / MICROS_PER_DAY)),
                    _ => None,
                },
            };
            match value {
                Some(value) => sink.value(value, FeatureStatus::Present, Some(event_time)),
                None => {
                    type_mismatch(&view.name, name, feature.value_type);
                    sink.value(Value::Null, FeatureStatus::Missing, None);
                }
            }
        }
    }
}

/// The value named `name` in a row, looked for first at `hint` (rows hold values in the view's
/// order, so the hint is nearly always right).
fn find<'r>(values: &'r mut [(String, Value)], name: &str, hint: usize) -> Option<&'r mut Value> {
    let at = match values.get(hint) {
        Some((n, _)) if n == name => hint,
        _ => values.iter().position(|(n, _)| n == name)?,
    };
    values.get_mut(at).map(|(_, v)| v)
}

/// The value, moving text out rather than copying it: each stored value is answered at most once
/// (a plan holds each feature once), and `days_since` reads only timestamps, which stay.
fn take(value: &mut Value) -> Value {
    match value {
        Value::String(s) => Value::String(std::mem::take(s)),
        other => other.clone(),
    }
}

/// Logs a stored value that does not have its feature's declared type (the 1st, 2nd, 4th, 8th…
/// time, so that a bad row read at full rate does not flood the log).
fn type_mismatch(view: &str, feature: &str, declared: ValueType) {
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let n = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(
            view, feature, %declared, occurrences = n,
            "an online value does not have its feature's declared type; answered as missing"
        );
    }
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
