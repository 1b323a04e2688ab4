//! End to end: 10,000 simulated events posted through the real API, with resent batches,
//! duplicates across batches and refused batches mixed in. The lake must hold exactly the unique
//! accepted events, and the quarantine exactly the refused requests. Run against the embedded log
//! and against NATS JetStream.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use chrono::{Duration as Days, Utc};
use livora_common::ClientId;
use livora_simulator::{SimConfig, Simulator};
use livora_tests::{Livora, NatsStream, create_client, eventually, lake, post};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_livora");

fn base_env() -> Vec<(String, String)> {
    vec![
        ("LIVORA__LAKE__ROLL_INTERVAL".into(), "1s".into()),
        ("LIVORA__INGEST__RATE_LIMIT__EVENTS_PER_SECOND".into(), "0".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

fn shop_events(n: usize) -> Vec<Value> {
    let start =
        (Utc::now() - Days::days(3)).date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_else(Utc::now);
    let client = ClientId::new("shop").expect("valid id");
    let mut sim = Simulator::new(SimConfig { client_id: client, users: 2000, days: 3, start, seed: 2026 });
    let events: Vec<Value> = sim.events().take(n).collect();
    assert_eq!(events.len(), n, "the simulator gives enough events");
    events
}

fn ids(batch: &[Value]) -> impl Iterator<Item = String> + '_ {
    batch.iter().map(|e| e["event_id"].as_str().expect("simulated events have ids").to_owned())
}

async fn scenario(data_dir: &Path, env: Vec<(String, String)>) -> Result<()> {
    let key = create_client(Path::new(BIN), data_dir, &env, "shop")?;
    let other_key = create_client(Path::new(BIN), data_dir, &env, "other")?;
    let mut server = Livora::start(Path::new(BIN), data_dir, &env)?;
    let url = server.url();
    let http = reqwest::Client::new();
    let events = shop_events(10_000);
    let mut rng = StdRng::seed_from_u64(7);
    let mut expected = HashSet::new();
    let mut refused = 0usize;
    let mut i = 0;
    while i < events.len() {
        let n = rng.random_range(1..=100).min(events.len() - i);
        let batch = &events[i..i + n];
        i += n;
        if rng.random_bool(1.0 / 12.0) && n < 100 {
            // A sender's bug: one broken event (an id never sent elsewhere) refuses the batch.
            let mut bad = batch.to_vec();
            bad.push(json!({"event_id": uuid::Uuid::new_v4().to_string(), "timestamp": "yesterday",
                            "client_id": "shop", "anon_id": "a", "event_type": "page_view"}));
            let (status, body) = post(&http, &url, "shop", &key, Value::Array(bad).to_string()).await?;
            ensure!(status == 400, "a batch with a broken event is refused: {status} {body}");
            ensure!(body.contains(&format!("\"index\":{n},\"field\":\"timestamp\"")), "{body}");
            refused += 1;
        }
        let (status, body) = post(&http, &url, "shop", &key, Value::Array(batch.to_vec()).to_string()).await?;
        ensure!(status == 200, "a valid batch is accepted: {status} {body}");
        ensure!(body == format!("{{\"accepted\":{n}}}"), "{body}");
        expected.extend(ids(batch));
        if rng.random_bool(0.1) {
            // A client retry of the same batch.
            let (status, _) = post(&http, &url, "shop", &key, Value::Array(batch.to_vec()).to_string()).await?;
            ensure!(status == 200);
        }
        if rng.random_bool(0.1) && i > 500 {
            // Events resent inside a later, different batch.
            let from = rng.random_range(0..i - 50);
            let dupes = events[from..from + rng.random_range(1..50)].to_vec();
            let (status, _) = post(&http, &url, "shop", &key, Value::Array(dupes).to_string()).await?;
            ensure!(status == 200);
        }
    }
    // Requests that never reach the log: malformed JSON is quarantined like any refused request
    // of an authenticated client; another client's key is not.
    let (status, _) = post(&http, &url, "shop", &key, "[{\"event_id\": ".into()).await?;
    ensure!(status == 400);
    refused += 1;
    let (status, _) = post(&http, &url, "shop", &other_key, Value::Array(events[..3].to_vec()).to_string()).await?;
    ensure!(status == 403, "another client's key is forbidden");

    let reader = lake(data_dir)?;
    let want = expected.len();
    eventually(Duration::from_secs(90), "every accepted event in the lake", || async {
        let n = reader.events("shop", None).await?.len();
        Ok((n >= want).then_some(()))
    })
    .await?;
    server.stop()?;

    let in_lake: Vec<String> = reader.events("shop", None).await?.into_iter().map(|e| e.event_id).collect();
    let unique: HashSet<String> = in_lake.iter().cloned().collect();
    ensure!(in_lake.len() == unique.len(), "{} duplicate rows in the lake", in_lake.len() - unique.len());
    ensure!(
        unique == expected,
        "lake differs: {} missing, {} extra",
        expected.difference(&unique).count(),
        unique.difference(&expected).count()
    );
    ensure!(reader.events("other", None).await?.is_empty(), "nothing of `other` was accepted");

    let quarantine = reader.quarantine("shop").await?;
    ensure!(
        quarantine.len() == refused,
        "quarantine holds {} records, {} requests were refused",
        quarantine.len(),
        refused
    );
    ensure!(quarantine.iter().all(|q| q.stage == "validation"));
    ensure!(
        quarantine.iter().filter(|q| q.reason.contains("timestamp: `yesterday` is not an RFC 3339 time")).count()
            == refused - 1
    );
    ensure!(quarantine.iter().any(|q| q.reason.starts_with("body: invalid JSON")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_lake_holds_exactly_the_unique_accepted_events() -> Result<()> {
    let dir = tempfile::tempdir()?;
    scenario(dir.path(), base_env()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_log_lake_holds_exactly_the_unique_accepted_events() -> Result<()> {
    let dir = tempfile::tempdir()?;
    NatsStream::around(base_env(), |env| scenario(dir.path(), env)).await
}
