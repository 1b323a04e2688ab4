//! Scoring entities with a registered model: resolve the version an alias points at, fetch the
//! model's features online, encode them as the model was trained to read them, score, explain.
//! Callers that bring their own features (KServe V2, [`crate::kserve`]) resolve a version and
//! score their values with [`Loaded::score_table`]: the same encoder and runtime.
//!
//! Loaded versions are cached per (client, model, version); what a reference (`churn`,
//! `churn@staging`) points at is re-read from the model registry at most every
//! `alias_refresh`, so that promoting or rolling back a version reaches serving within that
//! time without a restart (hot reload), while a hot path costs no database round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livora_common::ClientId;
use livora_feature_store::serving::{EntityColumn, FeatureServer, FeatureStatus, KeyValue, OnlineFeatures, Selection};
use livora_feature_store::value::Value;
use livora_models::algorithms::ranked;
use livora_models::{Algorithm, Classifier, Endpoint, Input, Manifest, ModelRegistry, Ranker, Table, Weights};

use crate::config::OnnxConfig;
use crate::error::{Error, Result};
use crate::prediction_log::{PredictionRecord, PredictionSink};
use crate::runtime::onnx::OnnxModel;
use crate::runtime::sagemaker::{SageMakerConfig, SageMakerRuntime};

/// What a missing or expired feature value does to a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingPolicy {
    /// Score anyway, imputing as in training (mean + missing indicator); say which were imputed.
    #[default]
    Impute,
    /// Do not score an entity with a missing value.
    Refuse,
}

/// Whether an entity was scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    /// Every feature present.
    Scored,
    /// Scored with some features imputed.
    ScoredWithImputation,
    /// Not scored ([`MissingPolicy::Refuse`] and a feature missing).
    Refused,
}

/// One entity's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The entity key.
    pub entity_key: String,
    /// Scored or refused.
    pub status: RowStatus,
    /// Probability of the positive class (a ranker: of its most probable offer); `None` when
    /// refused.
    pub score: Option<f64>,
    /// A ranker's offers with their probabilities, most probable first; empty for a classifier.
    pub offers: Vec<(String, f64)>,
    /// Each feature's status, in the model's feature order.
    pub statuses: Vec<FeatureStatus>,
    /// Each feature value's event time (µs), in the model's feature order.
    pub event_times: Vec<Option<i64>>,
    /// The largest per-feature contributions to the log-odds, largest first.
    pub contributions: Vec<(String, f64)>,
}

/// The answer to a prediction request.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The model.
    pub model: String,
    /// The version that scored.
    pub version: i64,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The features read, in input order (`view__feature`).
    pub feature_names: Vec<String>,
    /// One per entity key, in request order.
    pub rows: Vec<Row>,
}

/// How a loaded version scores.
enum Runtime {
    Native(Classifier),
    Ranker(Ranker),
    // Boxed: a session pool is far larger than a native classifier.
    Onnx(Box<OnnxModel>),
    SageMaker(Endpoint, SageMakerRuntime),
}

/// A version ready to score.
pub struct Loaded {
    /// Its manifest.
    pub manifest: Manifest,
    runtime: Runtime,
    /// Its features as the feature store names them (`view:feature`).
    refs: Vec<String>,
}

impl Loaded {
    fn new(
        manifest: Manifest,
        weights: Weights,
        onnx: &OnnxConfig,
        sagemaker: Option<SageMakerRuntime>,
    ) -> Result<Self> {
        let runtime = match weights {
            Weights::Native(c) => Runtime::Native(c),
            Weights::Ranker(r) => Runtime::Ranker(r),
            Weights::Onnx(bytes) => Runtime::Onnx(Box::new(OnnxModel::from_bytes(bytes, onnx)?)),
            Weights::Endpoint(e) => Runtime::SageMaker(
                e,
                sagemaker.ok_or_else(|| Error::Inference("no SageMaker client for an endpoint model".into()))?,
            ),
        };
        let refs = manifest.features.iter().map(|f| format!("{}:{}", f.view, f.feature)).collect();
        Ok(Self { manifest, runtime, refs })
    }

    /// How many values a row's prediction holds: 1 for a classifier (the probability of the
    /// positive class), the number of offers for a ranker (one probability each, in
    /// [`Manifest::offers`] order).
    pub fn outputs(&self) -> usize {
        match &self.runtime {
            Runtime::Ranker(r) => r.offers(),
            Runtime::Native(_) | Runtime::Onnx(_) | Runtime::SageMaker(..) => 1,
        }
    }

    /// Probabilities of caller-given feature values ([`Loaded::outputs`] per row): `table` holds one column per feature of the
    /// encoder, named as the feature (`user_activity__orders_30d`): numbers for numeric features,
    /// text for categorical ones, missing values as `None` (or NaN). Encoded with the artifact's
    /// encoder and scored with the version's runtime, as [`Predictor::predict`] scores online
    /// features. A missing column, or a column of the wrong kind, is an error naming the feature;
    /// columns the model does not read are not looked at.
    pub async fn score_table(&self, table: &Table) -> Result<Vec<f64>> {
        let rows = table.rows();
        if rows == 0 {
            return Ok(Vec::new());
        }
        let x = self.manifest.encoder.encode_table(table)?;
        self.predict(&x, rows).await
    }

    /// Probabilities of `rows` encoded rows (row-major), [`Loaded::outputs`] per row.
    async fn predict(&self, x: &[f64], rows: usize) -> Result<Vec<f64>> {
        let width = self.manifest.encoder.width();
        match &self.runtime {
            Runtime::SageMaker(endpoint, client) => client.predict(endpoint, x, rows).await,
            Runtime::Native(c) => Ok(c.predict(x, width)),
            Runtime::Ranker(r) => Ok(r.predict(x, width)?),
            Runtime::Onnx(m) => {
                let data: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let array = ndarray::ArrayView2::from_shape((rows, width), &data)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
                Ok(m.predict(array)?.into_iter().map(f64::from).collect())
            }
        }
    }
}

/// When a reference was resolved, and the version it pointed at.
type Resolved = (Instant, Arc<Loaded>);

/// Scores entities; shared by the gRPC services.
pub struct Predictor {
    models: ModelRegistry,
    features: Arc<FeatureServer>,
    onnx: OnnxConfig,
    alias_refresh: Duration,
    max_entity_rows: usize,
    /// (client, reference) → when it was resolved, and to what.
    resolved: Mutex<HashMap<(ClientId, String), Resolved>>,
    /// (client, model, version) → the loaded version.
    loaded: Mutex<HashMap<(ClientId, String, i64), Arc<Loaded>>>,
    /// Where scores flow back (prediction view, prediction log); none in tools that only read.
    sink: Option<PredictionSink>,
    /// The SageMaker client's settings, and the client, made on the first endpoint model.
    sagemaker_config: SageMakerConfig,
    sagemaker: tokio::sync::OnceCell<SageMakerRuntime>,
}

fn input(value: &Value, status: FeatureStatus) -> Input<'_> {
    if status != FeatureStatus::Present {
        return Input::Missing;
    }
    match value {
        Value::Int64(x) => Input::Number(*x as f64),
        Value::Float64(x) => Input::Number(*x),
        Value::Bool(b) => Input::Number(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => Input::Text(s),
        Value::Null | Value::Timestamp(_) => Input::Missing,
    }
}

impl Predictor {
    /// A predictor over the model registry and the feature server.
    pub fn new(
        models: ModelRegistry,
        features: Arc<FeatureServer>,
        onnx: OnnxConfig,
        alias_refresh: Duration,
        max_entity_rows: usize,
    ) -> Self {
        Self {
            models,
            features,
            onnx,
            alias_refresh,
            max_entity_rows,
            resolved: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            sink: None,
            sagemaker_config: SageMakerConfig::default(),
            sagemaker: tokio::sync::OnceCell::new(),
        }
    }

    /// Calls the SageMaker endpoints of endpoint models with a client made from `config`.
    pub fn with_sagemaker(mut self, config: SageMakerConfig) -> Self {
        self.sagemaker_config = config;
        self
    }

    /// Sends every score to `sink`: the prediction view online and the prediction log.
    pub fn with_sink(mut self, sink: PredictionSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The most rows one request may score (`features.serving.max_entity_rows`).
    pub fn max_rows(&self) -> usize {
        self.max_entity_rows
    }

    /// Whether the model registry answers: without it no reference resolves.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.models.ping().await?)
    }

    /// Every registered version of `model` for `client`, newest first (none: an empty list).
    pub async fn versions(&self, client: &ClientId, model: &str) -> Result<Vec<i64>> {
        Ok(self.models.list(client, Some(model)).await?.into_iter().map(|v| v.version).collect())
    }

    /// The loaded version `reference` points at for `client`.
    pub async fn resolve(&self, client: &ClientId, reference: &str) -> Result<Arc<Loaded>> {
        let key = (client.clone(), reference.to_owned());
        if let Some((at, loaded)) = self.resolved.lock().map_err(poisoned)?.get(&key)
            && at.elapsed() < self.alias_refresh
        {
            return Ok(loaded.clone());
        }
        // The version number is one cheap query; the manifest and weights are read only for a
        // version not loaded yet.
        let (model, version) = self.models.resolve_version(client, reference).await?;
        let id = (client.clone(), model, version);
        let cached = self.loaded.lock().map_err(poisoned)?.get(&id).cloned();
        let loaded = match cached {
            Some(l) => l,
            None => {
                let registered = self.models.get(client, &id.1, version).await?;
                let (models, onnx) = (self.models.clone(), self.onnx.clone());
                let sagemaker = if registered.manifest.algorithm == Algorithm::SageMaker {
                    let config = &self.sagemaker_config;
                    Some(self.sagemaker.get_or_try_init(|| SageMakerRuntime::connect(config)).await?.clone())
                } else {
                    None
                };
                // Reading and parsing the artifact (and creating ONNX sessions) blocks: off the
                // async workers.
                let loaded = tokio::task::spawn_blocking(move || {
                    let artifact = models.load(&registered)?;
                    Loaded::new(artifact.manifest, artifact.weights, &onnx, sagemaker)
                })
                .await
                .map_err(|e| Error::Inference(format!("loading the model panicked: {e}")))??;
                let loaded = Arc::new(loaded);
                tracing::info!(client = %client, model = %id.1, version, "model loaded");
                self.loaded.lock().map_err(poisoned)?.insert(id, loaded.clone());
                loaded
            }
        };
        self.resolved.lock().map_err(poisoned)?.insert(key, (Instant::now(), loaded.clone()));
        Ok(loaded)
    }

    /// Sends rows a caller scored with its own features (KServe) to the sink: every row to the
    /// prediction log, with the features it was given; rows with an entity key also to the
    /// prediction view online. `outputs` are [`Loaded::score_table`]'s.
    pub async fn record_scored(
        &self,
        client: &ClientId,
        loaded: &Loaded,
        table: &Table,
        entity_keys: Option<&[String]>,
        outputs: &[f64],
    ) -> Result<()> {
        let Some(sink) = &self.sink else { return Ok(()) };
        let m = &loaded.manifest;
        let per_row = loaded.outputs();
        let at = chrono::Utc::now().timestamp_micros();
        let records = outputs
            .chunks(per_row)
            .enumerate()
            .map(|(i, p)| {
                // A ranker's row: its most probable offer.
                let (probability, offer) = if per_row > 1 {
                    let first = ranked(p)[0];
                    (p[first], m.offers.get(first).cloned())
                } else {
                    (p[0], None)
                };
                PredictionRecord {
                    client: client.clone(),
                    model: m.model.clone(),
                    version: m.version,
                    entity: m.entity.clone(),
                    join_key: m.join_key.clone(),
                    entity_key: entity_keys.and_then(|k| k.get(i)).cloned().unwrap_or_default(),
                    probability,
                    at,
                    features: table_json(table, i),
                    offer,
                }
            })
            .collect();
        sink.record(records).await
    }

    /// Scores `entity_keys` with the version `reference` points at.
    pub async fn predict(
        &self,
        client: &ClientId,
        reference: &str,
        entity_keys: &[String],
        top: usize,
        policy: MissingPolicy,
    ) -> Result<Predictions> {
        if reference.trim().is_empty() {
            return Err(Error::InvalidInput("model: name a model (`churn`, `churn@staging`, `churn@3`)".into()));
        }
        if entity_keys.is_empty() {
            return Err(Error::InvalidInput("entity_keys: give at least one entity key".into()));
        }
        if entity_keys.len() > self.max_entity_rows {
            return Err(Error::InvalidInput(format!(
                "entity_keys: {} keys, more than the {} a request may score",
                entity_keys.len(),
                self.max_entity_rows
            )));
        }
        let loaded = self.resolve(client, reference).await?;
        let m = &loaded.manifest;
        let mut online = OnlineFeatures::default();
        let column =
            EntityColumn { join_key: &m.join_key, values: entity_keys.iter().map(|k| KeyValue::String(k)).collect() };
        self.features
            .get_online_features(client, Selection::Features(&loaded.refs), &[column], true, &mut online)
            .await?;
        let encoder = &m.encoder;
        let expected = encoder.features.iter().map(|f| f.name.as_str());
        if online.feature_names.len() != encoder.features.len()
            || !online.feature_names.iter().map(String::as_str).eq(expected)
        {
            return Err(Error::Inference(format!(
                "{} v{} reads {} features but the feature store answered {:?}",
                m.model,
                m.version,
                encoder.features.len(),
                online.feature_names
            )));
        }
        let n = entity_keys.len();
        let width = encoder.width();
        let mut rows: Vec<Row> = Vec::with_capacity(n);
        let mut x: Vec<f64> = Vec::with_capacity(n * width);
        let mut scored: Vec<usize> = Vec::with_capacity(n);
        let mut inputs: Vec<Input<'_>> = Vec::with_capacity(m.features.len());
        for (i, key) in entity_keys.iter().enumerate() {
            inputs.clear();
            let mut statuses = Vec::with_capacity(m.features.len());
            let mut event_times = Vec::with_capacity(m.features.len());
            for f in &online.results {
                inputs.push(input(&f.values[i], f.statuses[i]));
                statuses.push(f.statuses[i]);
                event_times.push(f.event_times[i]);
            }
            let complete = statuses.iter().all(|s| *s == FeatureStatus::Present);
            let status = match (complete, policy) {
                (true, _) => RowStatus::Scored,
                (false, MissingPolicy::Impute) => RowStatus::ScoredWithImputation,
                (false, MissingPolicy::Refuse) => RowStatus::Refused,
            };
            if status != RowStatus::Refused {
                encoder.encode_into(&inputs, &mut x)?;
                scored.push(i);
            }
            rows.push(Row {
                entity_key: key.clone(),
                status,
                score: None,
                offers: Vec::new(),
                statuses,
                event_times,
                contributions: Vec::new(),
            });
        }
        let mut records = Vec::new();
        if !scored.is_empty() {
            let outputs = loaded.predict(&x, scored.len()).await?;
            let per_row = loaded.outputs();
            // A ranker's row: every offer, most probable first; its score is the first's.
            let scores: Vec<f64> = if per_row > 1 {
                scored
                    .iter()
                    .zip(outputs.chunks(per_row))
                    .map(|(&i, p)| {
                        rows[i].offers = ranked(p).into_iter().map(|o| (m.offers[o].clone(), p[o])).collect();
                        rows[i].offers.first().map_or(0.0, |o| o.1)
                    })
                    .collect()
            } else {
                outputs
            };
            if self.sink.is_some() {
                let at = chrono::Utc::now().timestamp_micros();
                records = scored
                    .iter()
                    .zip(&scores)
                    .map(|(&i, &probability)| PredictionRecord {
                        client: client.clone(),
                        model: m.model.clone(),
                        version: m.version,
                        entity: m.entity.clone(),
                        join_key: m.join_key.clone(),
                        entity_key: entity_keys[i].clone(),
                        probability,
                        at,
                        features: features_json(&online, i),
                        offer: rows[i].offers.first().map(|o| o.0.clone()),
                    })
                    .collect();
            }
            for (j, &i) in scored.iter().enumerate() {
                rows[i].score = Some(scores[j]);
                if top > 0
                    && let Runtime::Native(c) = &loaded.runtime
                    && let Some((columns, _)) = c.contributions(&x[j * width..(j + 1) * width])
                {
                    rows[i].contributions = encoder.feature_contributions(&columns, top);
                }
            }
        }
        if let Some(sink) = &self.sink {
            sink.record(records).await?;
        }
        Ok(Predictions {
            model: m.model.clone(),
            version: m.version,
            algorithm: m.algorithm,
            feature_names: online.feature_names,
            rows,
        })
    }
}

/// Row `i` of a caller's table as a JSON object of feature values, for the prediction log.
fn table_json(table: &Table, i: usize) -> String {
    json_object(table.names.iter().zip(&table.columns), |out, column| match column {
        livora_models::Column::Numeric(v) => json_number(out, v[i]),
        livora_models::Column::Categorical(v) => match &v[i] {
            Some(s) => json_string(out, s),
            None => out.push_str("null"),
        },
    })
}

/// Row `i`'s feature values as a JSON object, for the prediction log.
fn features_json(online: &OnlineFeatures, i: usize) -> String {
    json_object(online.feature_names.iter().zip(&online.results), |out, column| {
        match (&column.values[i], column.statuses[i]) {
            (_, s) if s != FeatureStatus::Present => out.push_str("null"),
            (Value::Int64(x) | Value::Timestamp(x), _) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{x}");
            }
            (Value::Float64(x), _) => json_number(out, Some(*x)),
            (Value::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
            (Value::String(s), _) => json_string(out, s),
            (Value::Null, _) => out.push_str("null"),
        }
    })
}

/// A JSON object of `fields`, each name's value written by `value`.
fn json_object<'a, T: 'a>(
    fields: impl ExactSizeIterator<Item = (&'a String, &'a T)>,
    mut value: impl FnMut(&mut String, &T),
) -> String {
    let mut out = String::with_capacity(32 * fields.len() + 2);
    out.push('{');
    for (k, (name, field)) in fields.enumerate() {
        if k > 0 {
            out.push(',');
        }
        json_string(&mut out, name);
        out.push(':');
        value(&mut out, field);
    }
    out.push('}');
    out
}

/// Appends a number, or `null` when it is missing or not finite (JSON has no NaN or infinity).
fn json_number(out: &mut String, x: Option<f64>) {
    use std::fmt::Write as _;
    match x {
        Some(x) if x.is_finite() => {
            let _ = write!(out, "{x:?}");
        }
        _ => out.push_str("null"),
    }
}

/// Appends `s` as a JSON string.
fn json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> Error {
    Error::Inference("a model cache lock was poisoned by a panic".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{json_string, table_json};
    use livora_models::{Column, Table};

    #[test]
    fn logged_strings_are_valid_json_whatever_they_hold() {
        for text in ["plain", "quote \" and \\ backslash", "tab\tline\nreturn\r", "\u{1}\u{1f}", "é ✓ 😀", ""] {
            let mut out = String::new();
            json_string(&mut out, text);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text, "{out}");
        }
    }

    #[test]
    fn a_callers_row_is_logged_as_a_json_object_with_nulls_for_missing_values() {
        let mut table = Table::default();
        table.push("v__n", Column::Numeric(vec![Some(0.1), None, Some(f64::NAN)])).unwrap();
        table.push("v__c", Column::Categorical(vec![Some("a\"b".into()), None, Some(String::new())])).unwrap();
        let rows: Vec<serde_json::Value> =
            (0..3).map(|i| serde_json::from_str(&table_json(&table, i)).unwrap()).collect();
        assert_eq!(
            rows,
            [
                serde_json::json!({"v__n": 0.1, "v__c": "a\"b"}),
                serde_json::json!({"v__n": null, "v__c": null}),
                serde_json::json!({"v__n": null, "v__c": ""}),
            ]
        );
    }
}
