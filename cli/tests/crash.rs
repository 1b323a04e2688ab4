//! Crash safety: while clients post batches, the server is killed with SIGKILL (twice), then
//! restarted. A client retries what did not get a 200, as a real sender would. Every event that
//! got a 200 must be in the lake exactly once, and nothing may be in it twice. Run against the
//! embedded log and against NATS JetStream.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, ensure};
use chrono::{Duration as Days, Utc};
use livora_common::ClientId;
use livora_simulator::{SimConfig, Simulator};
use livora_tests::{Livora, NatsStream, create_client, eventually, lake, post};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_livora");
const BATCH: usize = 50;
const WORKERS: usize = 4;

fn env() -> Vec<(String, String)> {
    vec![
        ("LIVORA__LAKE__ROLL_INTERVAL".into(), "500ms".into()),
        ("LIVORA__INGEST__RATE_LIMIT__EVENTS_PER_SECOND".into(), "0".into()),
    ]
}

fn batches() -> Vec<Vec<Value>> {
    let start =
        (Utc::now() - Days::days(3)).date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_else(Utc::now);
    let client = ClientId::new("shop").expect("valid id");
    let mut sim = Simulator::new(SimConfig { client_id: client, users: 3000, days: 3, start, seed: 99 });
    let events: Vec<Value> = sim.events().collect();
    events.chunks(BATCH).map(<[Value]>::to_vec).collect()
}

fn ids(batch: &[Value]) -> Vec<String> {
    batch.iter().map(|e| e["event_id"].as_str().expect("simulated events have ids").to_owned()).collect()
}

#[derive(Default)]
struct Ledger {
    acked: Vec<String>,
    unacked: Vec<Vec<Value>>,
}

/// Posts batches from `queue` with several workers until `stop`; records what got a 200.
async fn load(
    url: String,
    key: String,
    queue: Arc<Mutex<Vec<Vec<Value>>>>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client");
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (http, url, key, queue, ledger, stop) =
            (http.clone(), url.clone(), key.clone(), queue.clone(), ledger.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Some(batch) = queue.lock().expect("queue").pop() else { break };
                let body = Value::Array(batch.clone()).to_string();
                match post(&http, &url, "shop", &key, body).await {
                    Ok((200, _)) => ledger.lock().expect("ledger").acked.extend(ids(&batch)),
                    Ok(_) => ledger.lock().expect("ledger").unacked.push(batch),
                    Err(e) => {
                        ledger.lock().expect("ledger").unacked.push(batch);
                        // The server is gone (killed): stop sending, as a client waits for its
                        // server to come back. Without this the workers ran through the whole
                        // queue, every batch refused, in the moment before `stop` was set — on a
                        // busy machine, all of it, and no traffic was left for the next crash.
                        if e.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_connect) {
                            break;
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

async fn scenario(data_dir: &Path, env: Vec<(String, String)>) -> Result<()> {
    let key = create_client(Path::new(BIN), data_dir, &env, "shop")?;
    let mut server = Livora::start(Path::new(BIN), data_dir, &env)?;
    let mut queue = batches();
    queue.reverse();
    let total = queue.len();
    ensure!(total > 200, "enough traffic for two crashes ({total} batches)");
    let queue = Arc::new(Mutex::new(queue));
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    for crash in 1..=2 {
        let stop = Arc::new(AtomicBool::new(false));
        let loader = tokio::spawn(load(server.url(), key.clone(), queue.clone(), ledger.clone(), stop.clone()));
        let target = crash * total / 3 * BATCH;
        let ledger_ = ledger.clone();
        eventually(Duration::from_secs(120), "acknowledged traffic before the crash", || {
            let n = ledger_.lock().expect("ledger").acked.len();
            async move { Ok((n >= target).then_some(())) }
        })
        .await?;
        // Killed while requests are in flight and the lake writer is rolling files.
        server.kill9()?;
        stop.store(true, Ordering::Relaxed);
        loader.await?;
        server.restart()?;
    }

    // The client retries every batch that did not get a 200, then sends the rest.
    let retry = std::mem::take(&mut ledger.lock().expect("ledger").unacked);
    queue.lock().expect("queue").extend(retry);
    load(server.url(), key.clone(), queue.clone(), ledger.clone(), Arc::new(AtomicBool::new(false))).await;
    let ledger = std::mem::take(&mut *ledger.lock().expect("ledger"));
    ensure!(ledger.unacked.is_empty(), "after the restart every batch is accepted");

    let acked: HashSet<String> = ledger.acked.iter().cloned().collect();
    let reader = lake(data_dir)?;
    eventually(Duration::from_secs(120), "every acknowledged event in the lake", || async {
        let in_lake: HashSet<String> = reader.events("shop", None).await?.into_iter().map(|e| e.event_id).collect();
        Ok(acked.is_subset(&in_lake).then_some(()))
    })
    .await?;
    server.stop()?;

    let rows = reader.events("shop", None).await?;
    let mut counts = HashMap::<&str, usize>::new();
    for r in &rows {
        *counts.entry(r.event_id.as_str()).or_default() += 1;
    }
    let twice = counts.values().filter(|&&n| n > 1).count();
    ensure!(twice == 0, "{twice} events are in the lake more than once");
    let missing = acked.iter().filter(|id| !counts.contains_key(id.as_str())).count();
    ensure!(missing == 0, "{missing} acknowledged events are missing from the lake");
    ensure!(
        counts.len() == acked.len(),
        "the lake holds exactly the sent events ({} vs {})",
        counts.len(),
        acked.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_and_duplicates_nothing_with_the_embedded_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    scenario(dir.path(), env()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_and_duplicates_nothing_with_nats() -> Result<()> {
    let dir = tempfile::tempdir()?;
    NatsStream::around(env(), |env| scenario(dir.path(), env)).await
}
