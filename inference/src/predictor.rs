//! Scoring entities with a registered model: resolve the version an alias points at, fetch the
//! model's features online, encode them as the model was trained to read them, score, explain.
//! Callers that bring their own features (KServe V2, [`crate::kserve`]) resolve a version and
//! score their values with [`Loaded::score_table`]: the same encoder and runtime.
//!
//! Loaded versions are cached per (client, model, version); what a reference (`churn`,
//! `churn@staging`) points at, and the alias's canary, are re-read from the model registry at
//! most every `alias_refresh`, so that promoting or rolling back a version, or setting,
//! re-weighting or clearing a canary, reaches serving within that time without a restart (hot
//! reload), while a hot path costs no database round trip.
//!
//! **Canaries.** When the alias a reference names carries a canary, [`Predictor::predict`]
//! scores the canary's share of the entities ([`crate::canary`]: sticky per entity, monotone in
//! the weight) with the canary version and the others with the alias's version; each [`Row`]
//! says which. Both versions read the same features (the registry refuses a canary that does
//! not), so one online read serves both, and each encodes with its own encoder. A reference
//! naming a version (`churn@3`) never takes a canary, and neither do callers that bring their
//! own features ([`Predictor::resolve`], KServe): they score with the version they name.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use livora_common::ClientId;
use livora_feature_store::serving::{EntityColumn, FeatureServer, FeatureStatus, KeyValue, OnlineFeatures, Selection};
use livora_feature_store::value::Value;
use livora_models::algorithms::ranked;
use livora_models::{Algorithm, Classifier, Endpoint, Input, Manifest, ModelRegistry, Ranker, Table, Weights};

use crate::config::OnnxConfig;
use crate::error::{Error, Result};
use crate::prediction_log::{LoggedFeatures, PredictionRecord, PredictionSink};
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
    /// The version that scored it (refused: that would have): the alias's canary for the
    /// entities it takes, else [`Predictions::version`].
    pub version: i64,
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
    /// The version the reference names or its alias points at; the rows a canary scored carry
    /// the canary's in [`Row::version`].
    pub version: i64,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The features read, in input order (`view__feature`).
    pub feature_names: Vec<String>,
    /// The moment the features were read (µs since the epoch): values older than their view's
    /// ttl and `days_since` features are taken at it, and the prediction log records it. A
    /// point-in-time dataset with entity rows at this moment gives the features scored.
    pub features_at: i64,
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
    /// Its encoder's feature names (`view__feature`), as the prediction log names them: shared
    /// by every record of this version.
    names: Arc<[String]>,
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
        let names = manifest.encoder.features.iter().map(|f| f.name.clone()).collect();
        Ok(Self { manifest, runtime, refs, names })
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

/// A canary in force: the version that scores its share of an alias's entities.
#[derive(Clone)]
pub struct ServingCanary {
    /// The alias.
    pub alias: String,
    /// The canary version.
    pub loaded: Arc<Loaded>,
    /// Its share of the alias's entities, in percent (1–100).
    pub weight: u32,
}

/// What a reference scores entities with.
#[derive(Clone)]
pub struct Serving {
    /// The version the reference names or its alias points at.
    pub primary: Arc<Loaded>,
    /// The alias's canary, when it has one that can serve; never for a reference naming a
    /// version.
    pub canary: Option<ServingCanary>,
}

/// When a reference was resolved, and what it served.
type Resolved = (Instant, Serving);

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
    /// (client, model, alias, version) of the canaries left out so far: each is logged once.
    ignored_canaries: Mutex<HashSet<(ClientId, String, String, i64)>>,
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
            ignored_canaries: Mutex::new(HashSet::new()),
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

    /// The loaded version `reference` points at for `client`, without its alias's canary: what
    /// callers that bring their own features (KServe) score with.
    pub async fn resolve(&self, client: &ClientId, reference: &str) -> Result<Arc<Loaded>> {
        Ok(self.serving(client, reference).await?.primary)
    }

    /// What `reference` scores entities with for `client`: the version it names or its alias
    /// points at and, for an alias, the alias's canary; both re-read at most every
    /// `alias_refresh`. A canary that cannot serve — its version does not load, or reads other
    /// features than the version the alias points at now (the alias moved after the canary was
    /// set) — is left out with a warning, logged once per client, model, alias and version: the
    /// alias's version then scores every entity.
    pub async fn serving(&self, client: &ClientId, reference: &str) -> Result<Serving> {
        let key = (client.clone(), reference.to_owned());
        if let Some((at, serving)) = self.resolved.lock().map_err(poisoned)?.get(&key)
            && at.elapsed() < self.alias_refresh
        {
            return Ok(serving.clone());
        }
        // One cheap query (none for `model@<version>`); the manifest and weights are read only
        // for a version not loaded yet.
        let target = self.models.resolve_target(client, reference).await?;
        let primary = self.load(client, &target.model, target.version).await?;
        let canary = match target.canary {
            Some(canary) => self.load_canary(client, &primary, canary).await,
            None => None,
        };
        let serving = Serving { primary, canary };
        self.resolved.lock().map_err(poisoned)?.insert(key, (Instant::now(), serving.clone()));
        Ok(serving)
    }

    /// Version `version` of `model`, loaded once per predictor.
    async fn load(&self, client: &ClientId, model: &str, version: i64) -> Result<Arc<Loaded>> {
        let id = (client.clone(), model.to_owned(), version);
        if let Some(loaded) = self.loaded.lock().map_err(poisoned)?.get(&id) {
            return Ok(loaded.clone());
        }
        let registered = self.models.get(client, model, version).await?;
        let (models, onnx) = (self.models.clone(), self.onnx.clone());
        let sagemaker = if registered.manifest.algorithm == Algorithm::SageMaker {
            let config = &self.sagemaker_config;
            Some(self.sagemaker.get_or_try_init(|| SageMakerRuntime::connect(config)).await?.clone())
        } else {
            None
        };
        // Reading and parsing the artifact (and creating ONNX sessions) blocks: off the async
        // workers.
        let loaded = tokio::task::spawn_blocking(move || {
            let artifact = models.load(&registered)?;
            Loaded::new(artifact.manifest, artifact.weights, &onnx, sagemaker)
        })
        .await
        .map_err(|e| Error::Inference(format!("loading the model panicked: {e}")))??;
        let loaded = Arc::new(loaded);
        tracing::info!(client = %client, model, version, "model loaded");
        self.loaded.lock().map_err(poisoned)?.insert(id, loaded.clone());
        Ok(loaded)
    }

    /// The canary beside `primary`, loaded, or `None` (logged once) when it cannot serve.
    async fn load_canary(
        &self,
        client: &ClientId,
        primary: &Loaded,
        canary: livora_models::Canary,
    ) -> Option<ServingCanary> {
        // The alias was rolled back onto the canary's version: it scores every entity anyway.
        if canary.version == primary.manifest.version {
            return None;
        }
        let loaded = match self.load(client, &canary.model, canary.version).await {
            Ok(loaded) => loaded,
            Err(e) => {
                self.ignore_canary(client, &canary, &format!("v{} does not load: {e}", canary.version));
                return None;
            }
        };
        if let Some(why) = primary.manifest.input_difference(&loaded.manifest) {
            self.ignore_canary(client, &canary, &why);
            return None;
        }
        Some(ServingCanary { alias: canary.alias, loaded, weight: canary.weight })
    }

    /// Logs, the first time only, that `canary` is left out and why.
    fn ignore_canary(&self, client: &ClientId, canary: &livora_models::Canary, why: &str) {
        let key = (client.clone(), canary.model.clone(), canary.alias.clone(), canary.version);
        // A poisoned set costs at most a repeated warning.
        if self.ignored_canaries.lock().unwrap_or_else(PoisonError::into_inner).insert(key) {
            tracing::warn!(
                client = %client,
                model = %canary.model,
                alias = %canary.alias,
                canary = canary.version,
                primary = canary.primary,
                reason = why,
                "canary ignored: the alias's version scores every entity"
            );
        }
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
        let names: Arc<[String]> = table.names.iter().cloned().collect();
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
                    features: table_features(&names, table, i),
                    offer,
                }
            })
            .collect();
        sink.record(records).await
    }

    /// Scores `entity_keys` with the version `reference` points at, and the canary's share of
    /// them with the alias's canary ([`Predictor::serving`]).
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
        let serving = self.serving(client, reference).await?;
        let (primary, canary) = (&serving.primary, serving.canary.as_ref());
        let m = &primary.manifest;
        let mut online = OnlineFeatures::default();
        let column =
            EntityColumn { join_key: &m.join_key, values: entity_keys.iter().map(|k| KeyValue::String(k)).collect() };
        let features_at = chrono::Utc::now().timestamp_micros();
        self.features
            .get_online_features_at(
                client,
                Selection::Features(&primary.refs),
                &[column],
                true,
                features_at,
                &mut online,
            )
            .await?;
        check_answer(primary, &online)?;
        if let Some(c) = canary {
            check_answer(&c.loaded, &online)?;
        }
        let on_canary: Vec<bool> = entity_keys
            .iter()
            .map(|k| canary.is_some_and(|c| crate::canary::scores(client, &m.model, &c.alias, k, c.weight)))
            .collect();
        let mut rows: Vec<Row> = Vec::with_capacity(entity_keys.len());
        for (i, key) in entity_keys.iter().enumerate() {
            let statuses: Vec<FeatureStatus> = online.results.iter().map(|f| f.statuses[i]).collect();
            let event_times = online.results.iter().map(|f| f.event_times[i]).collect();
            let complete = statuses.iter().all(|s| *s == FeatureStatus::Present);
            let status = match (complete, policy) {
                (true, _) => RowStatus::Scored,
                (false, MissingPolicy::Impute) => RowStatus::ScoredWithImputation,
                (false, MissingPolicy::Refuse) => RowStatus::Refused,
            };
            let version = match canary {
                Some(c) if on_canary[i] => c.loaded.manifest.version,
                _ => m.version,
            };
            rows.push(Row {
                entity_key: key.clone(),
                version,
                status,
                score: None,
                offers: Vec::new(),
                statuses,
                event_times,
                contributions: Vec::new(),
            });
        }
        // Each version scores its own entities, with its own encoder and runtime.
        for (loaded, canary_rows) in std::iter::once((primary, false)).chain(canary.map(|c| (&c.loaded, true))) {
            let members: Vec<usize> = (0..rows.len())
                .filter(|&i| on_canary[i] == canary_rows && rows[i].status != RowStatus::Refused)
                .collect();
            if !members.is_empty() {
                score_rows(loaded, &online, &members, &mut rows, top).await?;
            }
        }
        if let Some(sink) = &self.sink {
            let records = rows
                .iter()
                .enumerate()
                .filter_map(|(i, row)| {
                    Some(PredictionRecord {
                        client: client.clone(),
                        model: m.model.clone(),
                        version: row.version,
                        entity: m.entity.clone(),
                        join_key: m.join_key.clone(),
                        entity_key: row.entity_key.clone(),
                        probability: row.score?,
                        at: features_at,
                        features: online_features(&primary.names, &online, i),
                        offer: row.offers.first().map(|o| o.0.clone()),
                    })
                })
                .collect();
            sink.record(records).await?;
        }
        Ok(Predictions {
            model: m.model.clone(),
            version: m.version,
            algorithm: m.algorithm,
            feature_names: online.feature_names,
            features_at,
            rows,
        })
    }
}

/// An error unless the online answer holds `loaded`'s features, in its encoder's order.
fn check_answer(loaded: &Loaded, online: &OnlineFeatures) -> Result<()> {
    let m = &loaded.manifest;
    let expected = m.encoder.features.iter().map(|f| f.name.as_str());
    if online.feature_names.len() != m.encoder.features.len()
        || !online.feature_names.iter().map(String::as_str).eq(expected)
    {
        return Err(Error::Inference(format!(
            "{} v{} reads {} features but the feature store answered {:?}",
            m.model,
            m.version,
            m.encoder.features.len(),
            online.feature_names
        )));
    }
    Ok(())
}

/// Scores the rows `members` (indices into `rows` and the online answer; none refused) with
/// `loaded`: each one's score, a ranker's offers, and up to `top` feature contributions.
async fn score_rows(
    loaded: &Loaded,
    online: &OnlineFeatures,
    members: &[usize],
    rows: &mut [Row],
    top: usize,
) -> Result<()> {
    let m = &loaded.manifest;
    let encoder = &m.encoder;
    let width = encoder.width();
    let mut x: Vec<f64> = Vec::with_capacity(members.len() * width);
    let mut inputs: Vec<Input<'_>> = Vec::with_capacity(online.results.len());
    for &i in members {
        inputs.clear();
        inputs.extend(online.results.iter().map(|f| input(&f.values[i], f.statuses[i])));
        encoder.encode_into(&inputs, &mut x)?;
    }
    let outputs = loaded.predict(&x, members.len()).await?;
    let per_row = loaded.outputs();
    if outputs.len() != members.len() * per_row {
        return Err(Error::Inference(format!(
            "{} v{} answered {} values for {} rows of {per_row}",
            m.model,
            m.version,
            outputs.len(),
            members.len()
        )));
    }
    for ((j, &i), p) in members.iter().enumerate().zip(outputs.chunks(per_row.max(1))) {
        let row = &mut rows[i];
        // A ranker's row: every offer, most probable first; its score is the first's.
        row.score = Some(if per_row > 1 {
            row.offers = ranked(p).into_iter().map(|o| (m.offers[o].clone(), p[o])).collect();
            row.offers.first().map_or(0.0, |o| o.1)
        } else {
            p[0]
        });
        if top > 0
            && let Runtime::Native(c) = &loaded.runtime
            && let Some((columns, _)) = c.contributions(&x[j * width..(j + 1) * width])
        {
            row.contributions = encoder.feature_contributions(&columns, top);
        }
    }
    Ok(())
}

/// Row `i` of a caller's table, for the prediction log (`names` are the table's).
fn table_features(names: &Arc<[String]>, table: &Table, i: usize) -> LoggedFeatures {
    let values = table
        .columns
        .iter()
        .map(|column| match column {
            livora_models::Column::Numeric(v) => v[i].map(Value::Float64),
            livora_models::Column::Categorical(v) => v[i].clone().map(Value::String),
        })
        .collect();
    LoggedFeatures { names: names.clone(), values }
}

/// Row `i`'s feature values, for the prediction log: a value that is not present is `None`
/// (`names` are the encoder's, which [`check_answer`] found equal to the answer's).
fn online_features(names: &Arc<[String]>, online: &OnlineFeatures, i: usize) -> LoggedFeatures {
    let values = online
        .results
        .iter()
        .map(|column| (column.statuses[i] == FeatureStatus::Present).then(|| column.values[i].clone()))
        .collect();
    LoggedFeatures { names: names.clone(), values }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> Error {
    Error::Inference("a model cache lock was poisoned by a panic".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::table_features;
    use livora_models::{Column, Table};

    #[test]
    fn a_callers_row_is_logged_as_a_json_object_with_nulls_for_missing_values() {
        let mut table = Table::default();
        table.push("v__n", Column::Numeric(vec![Some(0.1), None, Some(f64::NAN)])).unwrap();
        table.push("v__c", Column::Categorical(vec![Some("a\"b".into()), None, Some(String::new())])).unwrap();
        let names: Arc<[String]> = table.names.iter().cloned().collect();
        let rows: Vec<serde_json::Value> = (0..3)
            .map(|i| serde_json::from_str(&table_features(&names, &table, i).to_json().unwrap()).unwrap())
            .collect();
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
