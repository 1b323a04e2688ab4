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
//! `log_interval` or `log_rows` rows. A request queues its scores and goes on; the writer takes
//! what has queued every `batch_interval` rather than waking for each request (at 10,000
//! requests/s a wake-up per request, a thread switch on each side, cost more CPU than the
//! scores themselves). A request waits only when the queue is full (backpressure, never silent
//! loss). [`PredictionSink::flush`] writes everything now.
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
    /// When it was scored (µs): for a prediction from the online store, the moment its
    /// features were read ([`Predictions::features_at`](crate::Predictions::features_at)).
    pub at: i64,
    /// The features it read; logged as a JSON object (`view__feature` → value or null).
    pub features: LoggedFeatures,
    /// A ranker's most probable offer (`probability` is its probability); `None` for a
    /// classifier. Written as `<model>_offer`.
    pub offer: Option<String>,
}

/// The features a prediction read. Requests hand the values over as they are; the writer
/// renders them as a JSON object (`view__feature` → value, `null` when missing), off the
/// request path (at 10,000 predictions/s, formatting the numbers took about 4 % of the server's
/// CPU on the request workers).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedFeatures {
    /// The features' names, shared by every record of a model version.
    pub names: Arc<[String]>,
    /// Each feature's value in `names` order; `None` when it was missing or expired.
    pub values: Vec<Option<Value>>,
}

impl LoggedFeatures {
    /// The JSON object the log holds.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Inference(format!("rendering a prediction's features: {e}")))
    }
}

/// A JSON object of each feature's plain value: `null` for a missing one, and for a number JSON
/// cannot hold (NaN, infinity: serde_json writes those as `null`).
impl serde::Serialize for LoggedFeatures {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.names.len()))?;
        for (name, value) in self.names.iter().zip(&self.values) {
            match value {
                Some(Value::Int64(x) | Value::Timestamp(x)) => map.serialize_entry(name, x)?,
                Some(Value::Float64(x)) => map.serialize_entry(name, x)?,
                Some(Value::Bool(b)) => map.serialize_entry(name, b)?,
                Some(Value::String(text)) => map.serialize_entry(name, text)?,
                Some(Value::Null) | None => map.serialize_entry(name, &())?,
            }
        }
        map.end()
    }
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
    /// How often the writer takes the queued scores.
    pub batch_interval: Duration,
    /// Requests' batches of scores queued before requests wait.
    pub queue: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            online_interval: Duration::from_millis(200),
            log_interval: Duration::from_secs(10),
            log_rows: 50_000,
            batch_interval: Duration::from_millis(20),
            queue: 100_000,
        }
    }
}

/// A caller waiting for [`PredictionSink::flush`].
type FlushDone = oneshot::Sender<Result<()>>;

/// The sending side, shared by every request.
#[derive(Clone)]
pub struct PredictionSink {
    /// Scores, one batch per request. The writer takes them with `try_recv` on its ticks and
    /// never waits on this channel, so a send wakes no thread.
    records: mpsc::Sender<Vec<PredictionRecord>>,
    /// Flush requests, which the writer does wait on: they are answered at once.
    flushes: mpsc::UnboundedSender<FlushDone>,
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
        let (records, queued) = mpsc::channel(config.queue.max(1));
        let (flushes, flush_requests) = mpsc::unbounded_channel();
        let writer = Writer { online, offline_root, config, latest: HashMap::new(), log: Vec::new() }
            .run(queued, flush_requests);
        (Self { records, flushes }, writer)
    }

    /// Queues `records` (waits when the queue is full).
    pub async fn record(&self, records: Vec<PredictionRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.records.send(records).await.map_err(|_| stopped())
    }

    /// Writes everything queued so far, online and to the log, and reports how that went.
    pub async fn flush(&self) -> Result<()> {
        let (done, result) = oneshot::channel();
        self.flushes.send(done).map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Inference("the prediction log writer has stopped".into())
}

/// What woke the writer.
enum Due {
    /// The batch tick: take what has queued.
    Take,
    /// A caller's flush.
    Flush(FlushDone),
    /// The online write's tick.
    Online,
    /// The log's tick.
    Log,
}

/// What the online write needs of an entity's latest prediction (not the features it read).
struct Latest {
    entity: String,
    probability: f64,
    version: i64,
    at: i64,
    offer: Option<String>,
}

struct Writer {
    online: Arc<dyn OnlineStore>,
    offline_root: PathBuf,
    config: SinkConfig,
    /// (client, model, entity key) → the latest score, for the online write.
    latest: HashMap<(ClientId, String, String), Latest>,
    log: Vec<PredictionRecord>,
}

impl Writer {
    async fn run(
        mut self,
        mut queued: mpsc::Receiver<Vec<PredictionRecord>>,
        mut flush_requests: mpsc::UnboundedReceiver<FlushDone>,
    ) {
        let mut batch_tick = tokio::time::interval(self.config.batch_interval);
        let mut online_tick = tokio::time::interval(self.config.online_interval);
        let mut log_tick = tokio::time::interval(self.config.log_interval);
        for tick in [&mut batch_tick, &mut online_tick, &mut log_tick] {
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            let due = tokio::select! {
                _ = batch_tick.tick() => Due::Take,
                request = flush_requests.recv() => match request {
                    Some(done) => Due::Flush(done),
                    None => break,
                },
                _ = online_tick.tick() => Due::Online,
                _ = log_tick.tick() => Due::Log,
            };
            // Whatever is due, what has queued is taken first, so each write holds every score
            // sent before it; `open` turns false once every sink is gone and the queue is empty.
            let open = self.take(&mut queued).await;
            match due {
                Due::Take => {}
                Due::Flush(done) => {
                    let online = self.write_online().await;
                    let log = self.write_log().await;
                    let _ = done.send(online.and(log));
                }
                Due::Online => {
                    let written = self.write_online().await;
                    self.report(written);
                }
                Due::Log => {
                    let written = self.write_log().await;
                    self.report(written);
                }
            }
            if !open {
                break;
            }
        }
        // Every sink is gone: write what is left.
        self.take(&mut queued).await;
        let online = self.write_online().await;
        self.report(online);
        let log = self.write_log().await;
        self.report(log);
    }

    /// Takes every batch queued so far, without waiting for more, and appends to the log early
    /// when it holds `log_rows`; false once the queue is closed (every sink dropped) and empty.
    async fn take(&mut self, queued: &mut mpsc::Receiver<Vec<PredictionRecord>>) -> bool {
        let open = loop {
            match queued.try_recv() {
                Ok(records) => {
                    for r in records {
                        // A prediction without an entity (KServe without the join-key input)
                        // is logged only.
                        if !r.entity_key.is_empty() {
                            let key = (r.client.clone(), r.model.clone(), r.entity_key.clone());
                            let latest = Latest {
                                entity: r.entity.clone(),
                                probability: r.probability,
                                version: r.version,
                                at: r.at,
                                offer: r.offer.clone(),
                            };
                            self.latest.insert(key, latest);
                        }
                        self.log.push(r);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break true,
                Err(mpsc::error::TryRecvError::Disconnected) => break false,
            }
        };
        if self.log.len() >= self.config.log_rows {
            let written = self.write_log().await;
            self.report(written);
        }
        open
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
        for ((client, model, entity_key), r) in &self.latest {
            let row = OnlineRow {
                event_time: r.at,
                created: r.at,
                values: [
                    (zoo::probability_feature(model), Value::Float64(r.probability)),
                    (zoo::version_feature(model), Value::Int64(r.version)),
                ]
                .into_iter()
                .chain(r.offer.as_ref().map(|o| (zoo::offer_feature(model), Value::String(o.clone()))))
                .collect(),
            };
            let key = RowKey::new(&r.entity, entity_key, zoo::prediction_view(model));
            by_client.entry(client.clone()).or_default().push((key, row));
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
    // Rendered here, on the writer's thread, not by the requests.
    let features = records.iter().map(|r| r.features.to_json()).collect::<Result<Vec<_>>>()?;
    columns.push(Column::new("features".into(), features));
    DataFrame::new_infer_height(columns).map_err(|e| Error::Inference(format!("building the prediction log rows: {e}")))
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::path::Path;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use livora_feature_store::online::{RedbConfig, RedbStore};
    use polars::prelude::{ParquetReader, SerReader};

    use super::*;

    fn shop() -> ClientId {
        ClientId::new("shop").unwrap()
    }

    fn record(key: &str, probability: f64) -> PredictionRecord {
        PredictionRecord {
            client: shop(),
            model: "churn".into(),
            version: 3,
            entity: "user".into(),
            join_key: "user_id".into(),
            entity_key: key.into(),
            probability,
            at: 1_700_000_000_000_000,
            features: LoggedFeatures {
                names: Arc::from(["user_activity__orders_30d".to_owned()]),
                values: vec![Some(Value::Int64(2))],
            },
            offer: None,
        }
    }

    async fn store(dir: &Path) -> Arc<dyn OnlineStore> {
        Arc::new(RedbStore::open(&RedbConfig { fsync: false, ..RedbConfig::default() }, dir).await.unwrap())
    }

    /// The probability online for each of `keys` (`None`: no prediction row).
    async fn online(store: &dyn OnlineStore, keys: &[&str]) -> Vec<Option<f64>> {
        let keys: Vec<RowKey> = keys.iter().map(|k| RowKey::new("user", *k, zoo::prediction_view("churn"))).collect();
        let rows = store.read(&shop(), &keys).await.unwrap();
        rows.into_iter()
            .map(|row| {
                row.and_then(|r| {
                    r.values.into_iter().find_map(|(name, v)| match v {
                        Value::Float64(p) if name == zoo::probability_feature("churn") => Some(p),
                        _ => None,
                    })
                })
            })
            .collect()
    }

    /// How many rows the prediction log holds.
    fn logged(root: &Path) -> usize {
        let mut rows = 0;
        let dir = root.join("predictions/churn/client_id=shop");
        for day in std::fs::read_dir(dir).unwrap() {
            for file in std::fs::read_dir(day.unwrap().path()).unwrap() {
                let file = std::fs::File::open(file.unwrap().path()).unwrap();
                rows += ParquetReader::new(file).finish().unwrap().height();
            }
        }
        rows
    }

    #[test]
    fn logged_strings_are_valid_json_whatever_they_hold() {
        for text in ["plain", "quote \" and \\ backslash", "tab\tline\nreturn\r", "\u{1}\u{1f}", "é ✓ 😀", ""] {
            // As a feature's name and as its value.
            let features =
                LoggedFeatures { names: Arc::from([text.to_owned()]), values: vec![Some(Value::String(text.into()))] };
            let json = features.to_json().unwrap();
            let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed.get(text), Some(&serde_json::Value::String(text.into())), "{json}");
        }
    }

    #[test]
    fn logged_features_are_a_json_object_with_nulls_for_missing_and_non_finite_values() {
        let names = ["v__i", "v__f", "v__nan", "v__b", "v__s", "v__missing", "v__null"].map(String::from);
        let features = LoggedFeatures {
            names: Arc::from(names),
            values: vec![
                Some(Value::Int64(-3)),
                Some(Value::Float64(0.25)),
                Some(Value::Float64(f64::NAN)),
                Some(Value::Bool(true)),
                Some(Value::String("a\"b".into())),
                None,
                Some(Value::Null),
            ],
        };
        let parsed: serde_json::Value = serde_json::from_str(&features.to_json().unwrap()).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "v__i": -3, "v__f": 0.25, "v__nan": null, "v__b": true, "v__s": "a\"b",
                "v__missing": null, "v__null": null
            })
        );
    }

    /// Intervals no test reaches: only a flush or the end of the sinks writes.
    fn never() -> SinkConfig {
        let hour = Duration::from_secs(3600);
        SinkConfig { online_interval: hour, log_interval: hour, batch_interval: hour, ..SinkConfig::default() }
    }

    #[tokio::test]
    async fn a_flush_writes_every_score_sent_before_it_online_and_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let online_store = store(dir.path()).await;
        let (sink, _writer) = PredictionSink::start(online_store.clone(), dir.path().join("lake"), never());
        sink.record(vec![record("u-1", 0.25), record("u-2", 0.5)]).await.unwrap();
        // A later score of the same entity replaces the earlier one online; both are logged.
        sink.record(vec![record("u-1", 0.75)]).await.unwrap();
        sink.flush().await.unwrap();
        assert_eq!(online(online_store.as_ref(), &["u-1", "u-2", "u-3"]).await, vec![Some(0.75), Some(0.5), None]);
        assert_eq!(logged(&dir.path().join("lake")), 3);
    }

    #[tokio::test]
    async fn when_every_sink_is_dropped_the_writer_writes_what_is_queued_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let online_store = store(dir.path()).await;
        let (sink, writer) = PredictionSink::start(online_store.clone(), dir.path().join("lake"), never());
        let other = sink.clone();
        sink.record(vec![record("u-1", 0.25)]).await.unwrap();
        other.record(vec![record("u-2", 0.5)]).await.unwrap();
        drop(sink);
        drop(other);
        writer.await.unwrap();
        assert_eq!(online(online_store.as_ref(), &["u-1", "u-2"]).await, vec![Some(0.25), Some(0.5)]);
        assert_eq!(logged(&dir.path().join("lake")), 2);
    }

    #[tokio::test]
    async fn a_full_queue_holds_requests_back_until_the_writer_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let online_store = store(dir.path()).await;
        let config = SinkConfig { queue: 1, ..never() };
        let (sink, writer) = PredictionSink::new(online_store.clone(), dir.path().join("lake"), config);
        sink.record(vec![record("u-1", 0.25)]).await.unwrap();
        // The writer is not running: the second batch finds the queue full and waits.
        let writer = {
            let mut second = pin!(sink.record(vec![record("u-2", 0.5)]));
            assert!(second.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
            let writer = tokio::spawn(writer);
            second.await.unwrap();
            writer
        };
        sink.flush().await.unwrap();
        assert_eq!(online(online_store.as_ref(), &["u-1", "u-2"]).await, vec![Some(0.25), Some(0.5)]);
        drop(sink);
        writer.await.unwrap();
    }
}
