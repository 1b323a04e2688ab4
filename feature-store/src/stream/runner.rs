//! The stream aggregator as a consumer of the event log.
//!
//! Each round polls a batch of records, drops the events already seen (by `event_id`), folds the
//! rest into the [`Aggregator`], writes the changed rows online at once (freshness is one round:
//! `poll_wait` plus the write), and buffers them for the offline feature log. Every
//! `checkpoint_interval` it appends the buffered rows to the feature log, writes a
//! [checkpoint](super::checkpoint) and only then commits the log position. A failed online write
//! or checkpoint is retried until it succeeds or the runner is stopped; nothing is skipped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use livora_common::{ClientId, Event};
use livora_ingest::LogConsumer;
use livora_ingest::log::{Borrowed, LogRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::checkpoint::{Checkpoint, Checkpoints};
use super::engine::{Aggregator, CompiledView, FeatureRow, StateKey};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::online::{OnlineRow, OnlineStore, RowKey};
use crate::registry::Registry;

/// How the stream aggregator runs (`[features.stream]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Whether `livora serve` runs the aggregator. Default `true`.
    pub enabled: bool,
    /// At most this many log records per round. Default `256`.
    pub poll_max: usize,
    /// How long a round waits for records when there are none; bounds freshness when traffic is
    /// light. Default `50ms`.
    #[serde(with = "humantime_serde")]
    pub poll_wait: Duration,
    /// How often state is checkpointed and the log position committed; bounds the work redone
    /// after a crash. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// How often the registry is checked for changed definitions. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub registry_refresh: Duration,
    /// How long an `event_id` is remembered to drop duplicates. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_max: 256,
            poll_wait: Duration::from_millis(50),
            checkpoint_interval: Duration::from_secs(1),
            registry_refresh: Duration::from_secs(5),
            dedupe_window: Duration::from_secs(86_400),
        }
    }
}

impl StreamConfig {
    /// Checks the values, naming the key at fault.
    pub fn validate(&self) -> Result<(), livora_common::ConfigError> {
        use livora_common::ConfigError;
        if self.poll_max == 0 {
            return Err(ConfigError::invalid("features.stream.poll_max", "must be at least 1"));
        }
        for (key, d) in [
            ("features.stream.poll_wait", self.poll_wait),
            ("features.stream.checkpoint_interval", self.checkpoint_interval),
            ("features.stream.registry_refresh", self.registry_refresh),
            ("features.stream.dedupe_window", self.dedupe_window),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(key, "must be longer than zero"));
            }
        }
        Ok(())
    }
}

/// Where feature rows go for history (the offline feature log).
#[async_trait]
pub trait FeatureLog: Send + Sync {
    /// Appends rows of one view of `client`, computed at `created` (µs).
    async fn append(&self, client: &ClientId, view: &CompiledView, rows: &[FeatureRow], created: i64) -> Result<()>;
}

/// The stream aggregator, wired to its stores.
pub struct StreamRunner {
    config: StreamConfig,
    agg: Aggregator,
    checkpoints: Checkpoints,
    online: Arc<dyn OnlineStore>,
    registry: Registry,
    feature_log: Option<Arc<dyn FeatureLog>>,
    metrics: Metrics,
    versions: HashMap<ClientId, i64>,
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

impl StreamRunner {
    /// A runner over the given stores.
    pub fn new(
        config: StreamConfig,
        checkpoints: Checkpoints,
        online: Arc<dyn OnlineStore>,
        registry: Registry,
        feature_log: Option<Arc<dyn FeatureLog>>,
        metrics: Metrics,
    ) -> Self {
        Self {
            config,
            agg: Aggregator::new(),
            checkpoints,
            online,
            registry,
            feature_log,
            metrics,
            versions: HashMap::new(),
        }
    }

    async fn refresh_views(&mut self) -> Result<()> {
        for (client, version) in self.registry.clients().await? {
            if self.versions.get(&client) == Some(&version) {
                continue;
            }
            let current = self.registry.version(&client, version).await?;
            let views = CompiledView::all(&client, &current.repo);
            let names: Vec<(String, String)> =
                views.iter().map(|v| (client.as_str().to_owned(), v.view.name.clone())).collect();
            tracing::info!(client = %client, version, views = names.len(), "streaming views loaded");
            self.agg.set_views(&client, views);
            self.checkpoints.record_layouts(&self.agg, &names)?;
            self.versions.insert(client, version);
        }
        Ok(())
    }

    /// Runs until `stop` turns true, then checkpoints and returns.
    pub async fn run(mut self, mut consumer: Box<dyn LogConsumer>, mut stop: watch::Receiver<bool>) -> Result<()> {
        self.refresh_views().await?;
        let restored = self.checkpoints.restore(&mut self.agg)?;
        tracing::info!(states = self.agg.len(), position = ?restored, "stream aggregator started");
        let mut round = Round { checkpointed: restored, position: restored, ..Round::default() };
        let mut last_refresh = Instant::now();
        let mut last_checkpoint = Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            if last_refresh.elapsed() >= self.config.registry_refresh {
                if let Err(e) = self.refresh_views().await {
                    tracing::warn!(error = %e, "cannot refresh the feature registry; keeping the views in force");
                }
                last_refresh = Instant::now();
            }
            let deliveries = tokio::select! {
                polled = consumer.poll(self.config.poll_max, self.config.poll_wait) => polled,
                _ = stop.changed() => break,
            };
            let deliveries = match deliveries {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot poll the event log; retrying");
                    self.metrics.stream_failures.inc();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut received = Vec::new();
            for d in deliveries {
                if round.checkpointed.is_some_and(|p| d.position <= p) {
                    continue; // Already in the checkpointed states.
                }
                round.position = Some(d.position);
                // Events are borrowed from the record, and only those of clients with streaming
                // views are made into owned events: the others cost a scan of their bytes. A
                // client without streaming views has nothing to apply, so nothing to dedupe
                // (should views come, a resent event was never counted).
                match LogRecord::decode_borrowed(&d.payload) {
                    Ok(Borrowed::Events(events)) => {
                        for e in &events {
                            if !self.agg.feeds(e.client_id) {
                                continue;
                            }
                            match e.to_event() {
                                Ok(event) => self.apply(&event, &mut round, &mut received)?,
                                Err(error) => tracing::warn!(
                                    position = d.position, event_id = %e.event_id, %error, "undecodable event skipped"
                                ),
                            }
                        }
                    }
                    Ok(Borrowed::Owned(LogRecord::Events(events))) => {
                        for e in &events {
                            if self.agg.feeds(e.client_id.as_str()) {
                                self.apply(e, &mut round, &mut received)?;
                            }
                        }
                    }
                    Ok(Borrowed::Owned(LogRecord::Rejected(_))) => {}
                    Err(e) => tracing::warn!(position = d.position, error = %e, "undecodable log record skipped"),
                }
            }
            let rows = self.agg.emit(now_micros());
            if !rows.is_empty() {
                self.write_online(&rows, &stop).await?;
                let now = now_micros();
                for r in received {
                    self.metrics.freshness_seconds.observe((now - r).max(0) as f64 / 1e6);
                }
                round.changed.extend(rows.iter().map(|r| r.key.clone()));
                round.rows.extend(rows);
            }
            if last_checkpoint.elapsed() >= self.config.checkpoint_interval && round.position > round.checkpointed {
                self.checkpoint(&mut round, consumer.as_mut(), &stop).await?;
                last_checkpoint = Instant::now();
            }
        }
        if round.position > round.checkpointed {
            self.checkpoint(&mut round, consumer.as_mut(), &stop).await?;
        }
        tracing::info!(states = self.agg.len(), "stream aggregator stopped");
        Ok(())
    }

    /// Applies one event of a client with streaming views, unless this round or a checkpoint
    /// has seen it; `received` collects the receive times of the events applied.
    fn apply(&mut self, e: &Event, round: &mut Round, received: &mut Vec<i64>) -> Result<()> {
        let id = (e.client_id.as_str().to_owned(), e.event_id.as_u128());
        if round.seen.contains(&id) || self.checkpoints.seen(&id.0, id.1)? {
            self.metrics.stream_duplicates.inc();
            return Ok(());
        }
        let before = self.agg.counters;
        self.agg.apply(e);
        let after = self.agg.counters;
        self.metrics.stream_late_events.inc_by(after.late - before.late);
        self.metrics.stream_skipped_values.inc_by(after.skipped_values - before.skipped_values);
        if after.applied > before.applied {
            self.metrics.stream_events.inc();
            received.push(e.received_at.timestamp_micros());
        }
        round.seen.insert(id.clone());
        round.new_seen.push(id);
        Ok(())
    }

    async fn write_online(&self, rows: &[FeatureRow], stop: &watch::Receiver<bool>) -> Result<()> {
        let created = now_micros();
        let mut by_client: HashMap<&str, Vec<(RowKey, OnlineRow)>> = HashMap::new();
        for r in rows {
            by_client.entry(r.key.client.as_str()).or_default().push((
                RowKey { entity: r.entity.clone(), key: r.key.key.clone(), view: r.key.view.clone() },
                OnlineRow { event_time: r.event_time, created, values: r.values.clone() },
            ));
        }
        for (client, rows) in by_client {
            let client = ClientId::new(client).map_err(|e| Error::Stream(e.to_string()))?;
            retry(&self.metrics, stop, "online write", || self.online.write(&client, &rows)).await?;
            self.metrics.stream_rows_written.inc_by(rows.len() as u64);
        }
        Ok(())
    }

    async fn checkpoint(
        &mut self,
        round: &mut Round,
        consumer: &mut dyn LogConsumer,
        stop: &watch::Receiver<bool>,
    ) -> Result<()> {
        if let Some(log) = &self.feature_log {
            let created = now_micros();
            let mut by_view: HashMap<(String, String), Vec<FeatureRow>> = HashMap::new();
            for r in round.rows.drain(..) {
                by_view.entry((r.key.client.clone(), r.key.view.clone())).or_default().push(r);
            }
            for ((client, view), rows) in by_view {
                let Some(compiled) = self.agg.view(&client, &view).cloned() else { continue };
                let client = ClientId::new(client).map_err(|e| Error::Stream(e.to_string()))?;
                retry(&self.metrics, stop, "feature log append", || log.append(&client, &compiled, &rows, created))
                    .await?;
            }
        } else {
            round.rows.clear();
        }
        let Some(position) = round.position else { return Ok(()) };
        let states = self.agg.snapshot(round.changed.iter());
        let checkpoint = Checkpoint { states, seen: &round.new_seen, latest: self.agg.latest(), position };
        self.checkpoints.write(checkpoint)?;
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = consumer.commit(position).await {
            self.metrics.stream_failures.inc();
            if *stop.borrow() {
                return Err(Error::Stream(format!("log commit: {e}")));
            }
            tracing::warn!(error = %e, "cannot commit the log position; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        round.checkpointed = Some(position);
        round.changed.clear();
        round.new_seen.clear();
        round.seen.clear();
        self.metrics.stream_states.set(self.agg.len() as i64);
        Ok(())
    }
}

/// What happened since the last checkpoint.
#[derive(Default)]
struct Round {
    checkpointed: Option<u64>,
    position: Option<u64>,
    changed: HashSet<StateKey>,
    seen: HashSet<(String, u128)>,
    new_seen: Vec<(String, u128)>,
    rows: Vec<FeatureRow>,
}

async fn retry<T, F, Fut>(metrics: &Metrics, stop: &watch::Receiver<bool>, what: &str, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(_) => return Ok(()),
            Err(e) => {
                metrics.stream_failures.inc();
                if *stop.borrow() {
                    return Err(e);
                }
                tracing::warn!(error = %e, what, "failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
