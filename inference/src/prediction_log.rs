//! Predictions flow back: every scored entity's latest score is written online as the model's
//! prediction view (`churn_prediction`: `churn_probability`, `churn_model_version`; a ranker's
//! also `<model>_offer`, its most probable offer, whose probability is `<model>_probability`), and every
//! prediction is appended to the prediction log, a Parquet table under the offline root
//! (`predictions/<model>/client_id=<client>/dt=YYYY-MM-DD/part-<uuid>.parquet`) holding the
//! entity, the time, the model version, the score and the features it read, for monitoring and
//! retraining. The log is the prediction view's history (its Parquet source).
//!
//! Writes happen on a task of their own, off the request path: the latest score per entity is
//! written online every `online_interval` (one batch per client), the log every
//! `log_interval` or `log_rows` rows. A request waits only when the queue is full
//! (backpressure, never silent loss). [`PredictionSink::flush`] writes everything now.
//!
//! The writer's work is CPU-bound in bursts (a log file of 50,000 rows is encoded and compressed
//! at once), so a server runs it where it cannot stall requests: [`PredictionSink::new`] hands
//! the writer back as a future, which `livora serve` drives on a thread of its own at a lower
//! priority; the Parquet encoding runs on that thread alone (not on polars' shared pool).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use livora_common::ClientId;
use livora_feature_store::offline::{CREATED_TIMESTAMP, EVENT_TIMESTAMP, write_part};
use livora_feature_store::{OnlineRow, OnlineStore, RowKey, Value};
use livora_models::zoo;
use polars::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// One prediction, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRecord {
    /// The client.
    pub client: ClientId,
    /// The model.
    pub model: String,
    /// The version that scored.
    pub version: i64,
    /// The entity (`user`).
    pub entity: String,
    /// Its join key (`user_id`).
    pub join_key: String,
    /// The entity key.
    pub entity_key: String,
    /// The score.
    pub probability: f64,
    /// When it was scored (µs).
    pub at: i64,
    /// The features it read, as a JSON object (`view__feature` → value or null).
    pub features: String,
    /// A ranker's most probable offer (`probability` is its probability); `None` for a
    /// classifier. Written as `<model>_offer`.
    pub offer: Option<String>,
}

/// How often the sink writes.
#[derive(Debug, Clone, Copy)]
pub struct SinkConfig {
    /// Online writes of the latest scores.
    pub online_interval: Duration,
    /// Appends to the prediction log.
    pub log_interval: Duration,
    /// Rows buffered before the log is appended to early.
    pub log_rows: usize,
    /// Predictions queued before requests wait.
    pub queue: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            online_interval: Duration::from_millis(200),
            log_interval: Duration::from_secs(10),
            log_rows: 50_000,
            queue: 100_000,
        }
    }
}

enum Message {
    Records(Vec<PredictionRecord>),
    Flush(oneshot::Sender<Result<()>>),
}

/// The sending side, shared by every request.
#[derive(Clone)]
pub struct PredictionSink {
    tx: mpsc::Sender<Message>,
}

impl PredictionSink {
    /// Starts the writer task over `online` and the log under `offline_root` on the current
    /// runtime.
    pub fn start(
        online: Arc<dyn OnlineStore>,
        offline_root: PathBuf,
        config: SinkConfig,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sink, writer) = Self::new(online, offline_root, config);
        (sink, tokio::spawn(writer))
    }

    /// The sink and its writer, a future the caller drives where it likes (it ends once every
    /// sink is dropped, after writing what is left).
    pub fn new(
        online: Arc<dyn OnlineStore>,
        offline_root: PathBuf,
        config: SinkConfig,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let writer = Writer { online, offline_root, config, latest: HashMap::new(), log: Vec::new() }.run(rx);
        (Self { tx }, writer)
    }

    /// Queues `records` (waits when the queue is full).
    pub async fn record(&self, records: Vec<PredictionRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Message::Records(records))
            .await
            .map_err(|_| Error::Inference("the prediction log writer has stopped".into()))
    }

    /// Writes everything queued so far, online and to the log, and reports how that went.
    pub async fn flush(&self) -> Result<()> {
        let (done, result) = oneshot::channel();
        self.tx
            .send(Message::Flush(done))
            .await
            .map_err(|_| Error::Inference("the prediction log writer has stopped".into()))?;
        result.await.map_err(|_| Error::Inference("the prediction log writer has stopped".into()))?
    }
}

struct Writer {
    online: Arc<dyn OnlineStore>,
    offline_root: PathBuf,
    config: SinkConfig,
    /// (client, model, entity key) → the latest record, for the online write.
    latest: HashMap<(ClientId, String, String), PredictionRecord>,
    log: Vec<PredictionRecord>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut online_tick = tokio::time::interval(self.config.online_interval);
        let mut log_tick = tokio::time::interval(self.config.log_interval);
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Records(records)) => {
                        for r in records {
                            let key = (r.client.clone(), r.model.clone(), r.entity_key.clone());
                            self.latest.insert(key, r.clone());
                            self.log.push(r);
                        }
                        if self.log.len() >= self.config.log_rows {
                            let written = self.write_log().await;
                            self.report(written);
                        }
                    }
                    Some(Message::Flush(done)) => {
                        let online = self.write_online().await;
                        let log = self.write_log().await;
                        let _ = done.send(online.and(log));
                    }
                    None => {
                        let online = self.write_online().await;
                        self.report(online);
                        let log = self.write_log().await;
                        self.report(log);
                        return;
                    }
                },
                _ = online_tick.tick() => {
                    let written = self.write_online().await;
                    self.report(written);
                }
                _ = log_tick.tick() => {
                    let written = self.write_log().await;
                    self.report(written);
                }
            }
        }
    }

    fn report(&self, result: Result<()>) {
        if let Err(e) = result {
            tracing::error!(error = %e, "writing predictions failed; they stay queued and are retried");
        }
    }

    /// The latest score per entity, online, one batch per client. On failure the rows stay
    /// pending (a newer score for the same entity replaces them).
    async fn write_online(&mut self) -> Result<()> {
        if self.latest.is_empty() {
            return Ok(());
        }
        let mut by_client: HashMap<ClientId, Vec<(RowKey, OnlineRow)>> = HashMap::new();
        // A prediction without an entity (KServe without the join-key input) is logged only.
        for r in self.latest.values().filter(|r| !r.entity_key.is_empty()) {
            let row = OnlineRow {
                event_time: r.at,
                created: r.at,
                values: [
                    (zoo::probability_feature(&r.model), Value::Float64(r.probability)),
                    (zoo::version_feature(&r.model), Value::Int64(r.version)),
                ]
                .into_iter()
                .chain(r.offer.as_ref().map(|o| (zoo::offer_feature(&r.model), Value::String(o.clone()))))
                .collect(),
            };
            let key = RowKey::new(&r.entity, &r.entity_key, zoo::prediction_view(&r.model));
            by_client.entry(r.client.clone()).or_default().push((key, row));
        }
        for (client, rows) in by_client {
            self.online.write(&client, &rows).await?;
            self.latest.retain(|(c, _, _), _| c != &client);
        }
        Ok(())
    }

    /// Appends the buffered predictions to the log, one file per client, model and day. On
    /// failure they stay buffered.
    async fn write_log(&mut self) -> Result<()> {
        if self.log.is_empty() {
            return Ok(());
        }
        let mut groups: HashMap<(ClientId, String, String), Vec<PredictionRecord>> = HashMap::new();
        for r in self.log.drain(..) {
            let day = chrono::DateTime::from_timestamp_micros(r.at).unwrap_or_default().format("%Y-%m-%d").to_string();
            groups.entry((r.client.clone(), r.model.clone(), day)).or_default().push(r);
        }
        let root = self.offline_root.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut failed = Vec::new();
            let mut first_error = None;
            for ((client, model, day), records) in groups {
                let dir = root
                    .join(zoo::prediction_log_path(&model))
                    .join(format!("client_id={client}"))
                    .join(format!("dt={day}"));
                // Encoded on this (low-priority) thread alone, not on polars' shared pool.
                let written = frame(&records).and_then(|mut f| Ok(write_part(&dir, &mut f, false)?));
                if let Err(e) = written {
                    first_error.get_or_insert(e);
                    failed.extend(records);
                }
            }
            (failed, first_error)
        })
        .await
        .map_err(|e| Error::Inference(format!("the prediction log writer panicked: {e}")))?;
        let (failed, error) = written;
        self.log.extend(failed);
        error.map_or(Ok(()), Err)
    }
}

/// The log rows of one client, model and day, as the prediction view's source reads them.
fn frame(records: &[PredictionRecord]) -> Result<DataFrame> {
    let Some(first) = records.first() else { return Err(Error::Inference("no predictions to log".into())) };
    let times: Vec<i64> = records.iter().map(|r| r.at).collect();
    let datetime = |name: &str| {
        Int64Chunked::from_vec(name.into(), times.clone())
            .into_datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC))
            .into_column()
    };
    let model = &first.model;
    let mut columns = vec![
        Column::new(first.join_key.as_str().into(), records.iter().map(|r| r.entity_key.as_str()).collect::<Vec<_>>()),
        datetime(EVENT_TIMESTAMP),
        datetime(CREATED_TIMESTAMP),
        Column::new(zoo::probability_feature(model).into(), records.iter().map(|r| r.probability).collect::<Vec<_>>()),
        Column::new(zoo::version_feature(model).into(), records.iter().map(|r| r.version).collect::<Vec<_>>()),
    ];
    // A ranker's log also names the offer the probability is of.
    if records.iter().any(|r| r.offer.is_some()) {
        let offers: Vec<Option<&str>> = records.iter().map(|r| r.offer.as_deref()).collect();
        columns.push(Column::new(zoo::offer_feature(model).into(), offers));
    }
    columns.push(Column::new("features".into(), records.iter().map(|r| r.features.as_str()).collect::<Vec<_>>()));
    DataFrame::new_infer_height(columns).map_err(|e| Error::Inference(format!("building the prediction log rows: {e}")))
}
