//! The stream aggregator end to end on the embedded parts: the embedded event log, the redb
//! online store, the SQLite registry and the fjall checkpoints. Simulated shop traffic (with
//! resent batches) goes through the log; the online rows must equal what the batch engine
//! computes from the unique events — also after the aggregator is killed mid-stream and resumed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, Utc};
use futures::FutureExt;
use livora_common::{ClientId, Event};
use livora_feature_store::definitions::{EXAMPLE_REPO, parse_files};
use livora_feature_store::online::{self, OnlineConfig};
use livora_feature_store::stream::checkpoint::Checkpoints;
use livora_feature_store::stream::{CompiledView, StreamConfig, StreamRunner};
use livora_feature_store::{OnlineStore, Registry, RowKey, Value, batch, metrics::Metrics};
use livora_ingest::EventLog;
use livora_ingest::log::LogRecord;
use livora_ingest::log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use livora_simulator::{SimConfig, Simulator};
use tokio::sync::watch;

fn shop() -> ClientId {
    ClientId::new("shop").unwrap()
}

fn simulated(users: u32, days: u32) -> Vec<Event> {
    // Recent traffic, so that the windows still hold events when the test compares.
    let start =
        (Utc::now() - chrono::Duration::days(i64::from(days))).duration_trunc(chrono::Duration::days(1)).unwrap();
    let mut sim = Simulator::new(SimConfig { client_id: shop(), users, days, start, seed: 7 });
    sim.events()
        .map(|mut v| {
            v["received_at"] = v["timestamp"].clone();
            serde_json::from_value(v).unwrap()
        })
        .collect()
}

fn config() -> StreamConfig {
    StreamConfig {
        poll_wait: Duration::from_millis(10),
        checkpoint_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

struct Parts {
    log: Arc<EmbeddedLog>,
    online: Arc<dyn OnlineStore>,
    registry: Registry,
    dir: PathBuf,
    metrics: Metrics,
}

async fn parts(dir: &Path) -> Parts {
    let log = Arc::new(EmbeddedLog::open(&dir.join("log"), &EmbeddedLogConfig::default()).unwrap());
    let online = online::open(&OnlineConfig::default(), dir).await.unwrap();
    let registry = Registry::connect(&format!("sqlite://{}/registry.db?mode=rwc", dir.display())).await.unwrap();
    let files: Vec<(PathBuf, String)> = EXAMPLE_REPO.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())).collect();
    registry.apply(&shop(), &parse_files(&files).unwrap(), false, false).await.unwrap();
    Parts { log, online, registry, dir: dir.to_path_buf(), metrics: Metrics::unregistered() }
}

type Task = tokio::task::JoinHandle<livora_feature_store::Result<()>>;

/// Starts a runner; returns its stop switch and task.
async fn start(p: &Parts) -> (watch::Sender<bool>, Task) {
    let checkpoints = Checkpoints::open(&p.dir.join("stream"), Duration::from_secs(86_400)).unwrap();
    let runner =
        StreamRunner::new(config(), checkpoints, p.online.clone(), p.registry.clone(), None, p.metrics.clone());
    let consumer = p.log.consumer("stream-aggregator").await.unwrap();
    let (stop, stopped) = watch::channel(false);
    (stop, tokio::spawn(runner.run(consumer, stopped)))
}

async fn append(log: &EmbeddedLog, events: &[Event]) {
    for batch in events.chunks(50) {
        log.append(&shop(), LogRecord::Events(batch.to_vec()).encode()).await.unwrap();
    }
}

/// Waits until the online rows of every user equal the batch engine's values at their times.
async fn converges(p: &Parts, unique: &[Event], task: &mut Task) {
    let repo = p.registry.current(&shop()).await.unwrap().unwrap().repo;
    let views = CompiledView::all(&shop(), &repo);
    let activity = views.iter().find(|v| v.view.name == "user_activity").unwrap();
    let users: Vec<String> = batch::entities(activity, unique).into_iter().map(|(k, _)| k).collect();
    assert!(users.len() > 20, "the simulation must yield users; got {}", users.len());
    let keys: Vec<RowKey> = users.iter().map(|u| RowKey::new("user", u.clone(), "user_activity")).collect();
    let mut last = String::new();
    for _ in 0..300 {
        let rows = p.online.read(&shop(), &keys).await.unwrap();
        let queries: Vec<(String, i64)> =
            users.iter().zip(&rows).map(|(u, r)| (u.clone(), r.as_ref().map_or(0, |r| r.event_time))).collect();
        let expected = batch::values_at(activity, unique, &queries);
        let mismatch = users.iter().zip(&rows).zip(&expected).find_map(|((u, row), want)| {
            let got: Option<Vec<Value>> = row.as_ref().map(|r| r.values.iter().map(|(_, v)| v.clone()).collect());
            (got.as_ref() != Some(want)).then(|| {
                let times: Vec<i64> = unique
                    .iter()
                    .filter(|e| e.user_id.as_deref() == Some(u.as_str()))
                    .map(|e| e.timestamp.timestamp_micros())
                    .collect();
                format!(
                    "{u} at {:?}: online {got:?}, batch {want:?}; event times {times:?}",
                    row.as_ref().map(|r| r.event_time)
                )
            })
        });
        match mismatch {
            None => return,
            Some(_) if task.is_finished() => panic!("the aggregator stopped: {:?}", task.now_or_never()),
            Some(m) => last = m,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("online rows never matched the batch engine; last difference: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_rows_equal_the_batch_engine_with_resent_batches_and_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let p = parts(dir.path()).await;
    let events = simulated(400, 14);
    assert!(events.len() > 2_000, "{}", events.len());
    let (first, rest) = events.split_at(events.len() / 2);

    let (_stop, task) = start(&p).await;
    append(&p.log, first).await;
    // A client resends its latest batches (within the allowed lateness, so only the event ids
    // can tell them apart from new events).
    append(&p.log, &first[first.len() - 120..]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Killed, not stopped: no final checkpoint; the log redelivers what was not committed.
    task.abort();
    let _ = task.await;

    append(&p.log, rest).await;
    append(&p.log, &rest[rest.len() - 120..]).await;
    let (stop, mut task) = start(&p).await;
    let mut seen = HashSet::new();
    let unique: Vec<Event> = events.iter().filter(|e| seen.insert(e.event_id)).cloned().collect();
    converges(&p, &unique, &mut task).await;

    assert!(p.metrics.stream_duplicates.get() >= 120, "{}", p.metrics.stream_duplicates.get());
    assert_eq!(p.metrics.stream_late_events.get(), 0);
    // A clean stop and restart changes nothing.
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let (stop, mut task) = start(&p).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    converges(&p, &unique, &mut task).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
