//! End to end, as a shop uses Livora: the example feature repository is applied, simulated
//! traffic is posted to `/v1/events`, and the streaming features appear online — read back over
//! the JSON twin, they equal what the batch engine computes from the same events.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use livora_common::{ClientId, Event};
use livora_feature_store::definitions::{FeatureKind, parse_files};
use livora_feature_store::online::{RedbConfig, RedbStore};
use livora_feature_store::stream::CompiledView;
use livora_feature_store::{OnlineStore, RowKey, Value, batch};
use livora_simulator::{SimConfig, Simulator};
use livora_tests::{Livora, create_client, post};
use polars::prelude::SerReader as _;
use serde_json::{Value as Json, json};

const BIN: &str = env!("CARGO_BIN_EXE_livora");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo")
}

/// The JSON form the JSON twin gives a value.
fn json_of(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int64(i) => json!(i),
        Value::Float64(f) => json!(f),
        Value::String(s) => json!(s),
        Value::Timestamp(t) => json!(
            DateTime::<Utc>::from_timestamp_micros(*t).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Micros, true)
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn posted_events_become_online_features_equal_to_the_batch_engine() -> Result<()> {
    let data = tempfile::tempdir()?;
    let env = vec![
        ("RUST_LOG".to_owned(), "info".to_owned()),
        ("LIVORA__INGEST__RATE_LIMIT__EVENTS_PER_SECOND".to_owned(), "0".to_owned()),
    ];
    let key = create_client(Path::new(BIN), data.path(), &env, "shop")?;
    let applied = Command::new(BIN)
        .arg("--data-dir")
        .arg(data.path())
        .arg("apply")
        .arg(repo_root())
        .args(["--client", "shop"])
        .output()?;
    ensure!(applied.status.success(), "livora apply failed: {}", String::from_utf8_lossy(&applied.stderr));
    let mut server = Livora::start(Path::new(BIN), data.path(), &env)?;

    // Three recent days of a small shop, so that every window still holds events.
    let shop = ClientId::new("shop").map_err(anyhow::Error::msg)?;
    let start = (Utc::now() - chrono::Duration::days(3)).duration_trunc(chrono::Duration::days(1))?;
    let wire: Vec<Json> = Simulator::new(SimConfig { client_id: shop.clone(), users: 400, days: 3, start, seed: 11 })
        .events()
        .filter(|e| e["timestamp"].as_str().is_some_and(|t| t < Utc::now().to_rfc3339().as_str()))
        .collect();
    ensure!(wire.len() > 1_500, "the simulation yields {} events", wire.len());
    let http = reqwest::Client::new();
    for batch in wire.chunks(100) {
        let (status, body) = post(&http, &server.url(), "shop", &key, Json::from(batch.to_vec()).to_string()).await?;
        ensure!(status == 200, "POST /v1/events answered {status}: {body}");
    }
    // A resent batch must not count twice.
    let (status, _) =
        post(&http, &server.url(), "shop", &key, Json::from(wire[wire.len() - 100..].to_vec()).to_string()).await?;
    ensure!(status == 200);

    let events: Vec<Event> = wire
        .iter()
        .map(|w| {
            let mut w = w.clone();
            w["received_at"] = w["timestamp"].clone();
            serde_json::from_value(w)
        })
        .collect::<Result<_, _>>()?;
    let files: Vec<(PathBuf, String)> = std::fs::read_dir(repo_root())?
        .map(|e| {
            let p = e?.path();
            Ok((PathBuf::from(p.file_name().unwrap_or_default()), std::fs::read_to_string(&p)?))
        })
        .filter(|f: &std::io::Result<(PathBuf, String)>| {
            f.as_ref().map_or(true, |(p, _)| p.extension().is_some_and(|e| e == "toml"))
        })
        .collect::<std::io::Result<_>>()?;
    let repo = parse_files(&files).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let views = CompiledView::all(&shop, &repo);
    let activity = views.iter().find(|v| v.view.name == "user_activity").context("user_activity")?;
    let names: Vec<String> = repo.views["user_activity"]
        .features
        .iter()
        .filter(|f| matches!(f.kind, FeatureKind::Aggregation(_)))
        .map(|f| f.name.clone())
        .collect();
    let mut users: Vec<String> = batch::entities(activity, &events).into_iter().map(|(k, _)| k).collect();
    users.truncate(40);
    ensure!(users.len() >= 20, "only {} identified users", users.len());
    let request = json!({
        "features": names.iter().map(|n| format!("user_activity:{n}")).collect::<Vec<_>>(),
        "entities": {"user_id": users},
    });

    let mut last = String::new();
    let mut matched = false;
    for _ in 0..150 {
        match compare(&http, &server.url(), &key, &request, activity, &events, &users, &names).await? {
            None => {
                matched = true;
                break;
            }
            Some(difference) => last = difference,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(matched, "online features never equalled the batch engine; last difference: {last}\n{}", server.log_tail());
    let metrics = http.get(format!("{}/metrics", server.url())).send().await?.text().await?;
    ensure!(metrics.contains("livora_features_stream_duplicates_total 100"), "the resent batch is dropped: {metrics}");
    let unique: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    ensure!(unique.len() == events.len());
    // A clean stop appends the last feature rows to the offline feature log; the online rows
    // are then read from the store itself (the server no longer holds it).
    server.stop()?;
    let store = RedbStore::open(&RedbConfig::default(), data.path()).await?;
    let keys: Vec<RowKey> = users.iter().map(|u| RowKey::new("user", u.clone(), "user_activity")).collect();
    let rows = store.read(&shop, &keys).await?;

    // The same features as a point-in-time dataset over a spine of every user, sampled hourly
    // until after every row's time: at the last sample each user's values are the online ones.
    let out = data.path().join("dataset.parquet");
    let end = Utc::now() + chrono::Duration::hours(2);
    let built = Command::new(BIN)
        .arg("--data-dir")
        .arg(data.path())
        .args(["dataset", "build", "--client", "shop", "--spine", "user_activity", "--cadence", "1h"])
        .args(["--start", &start.to_rfc3339(), "--end", &end.to_rfc3339()])
        .arg("--features")
        .arg(names.iter().map(|n| format!("user_activity:{n}")).collect::<Vec<_>>().join(","))
        .arg("--out")
        .arg(&out)
        .output()?;
    ensure!(built.status.success(), "livora dataset build failed: {}", String::from_utf8_lossy(&built.stderr));
    let dataset = polars::prelude::ParquetReader::new(std::fs::File::open(&out)?).finish()?;
    let last_sample =
        dataset.column("event_timestamp")?.as_materialized_series().cast(&polars::prelude::DataType::Int64)?;
    let times = last_sample.i64()?;
    let last = (0..times.len()).filter_map(|i| times.get(i)).max().context("an empty dataset")?;
    let user_col = dataset.column("user_id")?.as_materialized_series().clone();
    let users_in = user_col.str()?;
    for (u, user) in users.iter().enumerate() {
        let row = (0..dataset.height())
            .find(|&i| {
                users_in.get(i) == Some(user.as_str()) && last_sample.i64().ok().and_then(|c| c.get(i)) == Some(last)
            })
            .with_context(|| format!("{user} has no row at the last sample of the spine"))?;
        for (f, name) in names.iter().enumerate() {
            let cell = dataset.column(name)?.get(row)?;
            let online_row = rows[u].as_ref().with_context(|| format!("{user} has no online row"))?;
            let served = &json_of(&online_row.values[f].1);
            let same = match (cell.clone(), served) {
                (polars::prelude::AnyValue::Null, Json::Null) => true,
                (polars::prelude::AnyValue::Int64(x), Json::Number(n)) => n.as_i64() == Some(x),
                (polars::prelude::AnyValue::Float64(x), Json::Number(n)) => n.as_f64() == Some(x),
                (polars::prelude::AnyValue::String(x), Json::String(s)) => x == s.as_str(),
                (polars::prelude::AnyValue::StringOwned(x), Json::String(s)) => x.as_str() == s,
                (polars::prelude::AnyValue::Datetime(x, _, _), Json::String(s)) => {
                    s.parse::<DateTime<Utc>>().map(|t| t.timestamp_micros()) == Ok(x)
                }
                _ => false,
            };
            ensure!(same, "{user}.{name}: dataset {cell:?}, online {served}");
        }
    }
    Ok(())
}

/// Reads the users' features over the JSON twin and compares them with the batch engine at the
/// rows' event times; returns the first difference.
#[allow(clippy::too_many_arguments)]
async fn compare(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    request: &Json,
    view: &CompiledView,
    events: &[Event],
    users: &[String],
    names: &[String],
) -> Result<Option<String>> {
    let answer: Json = http
        .post(format!("{url}/v1/features/online"))
        .bearer_auth(key)
        .header("x-client-id", "shop")
        .json(request)
        .send()
        .await?
        .json()
        .await?;
    let results = answer["results"].as_array().with_context(|| format!("no results in {answer}"))?;
    // Every feature of a row shares its event time; take the first feature's.
    let times: Vec<Option<i64>> = results[0]["event_timestamps"]
        .as_array()
        .context("event_timestamps")?
        .iter()
        .map(|t| t.as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).map(|t| t.timestamp_micros()))
        .collect();
    if times.iter().any(Option::is_none) {
        return Ok(Some(format!("not every user is online yet: {times:?}")));
    }
    let queries: Vec<(String, i64)> = users.iter().cloned().zip(times.iter().map(|t| t.unwrap_or_default())).collect();
    let expected = batch::values_at(view, events, &queries);
    for (u, want) in expected.iter().enumerate() {
        for (f, value) in want.iter().enumerate() {
            let got = &results[f]["values"][u];
            if *got != json_of(value) {
                return Ok(Some(format!("{}.{}: online {got}, batch {}", users[u], names[f], json_of(value))));
            }
        }
    }
    Ok(None)
}
