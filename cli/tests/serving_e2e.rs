//! End to end: `livora serve` serves features on embedded defaults. The example repository is
//! applied with `livora apply`, rows are put in the embedded online store (before the server
//! opens it: redb admits one process at a time), and the same features are read back over gRPC
//! with tonic's client, over the JSON twin on the collector's port, and from Python with grpcio
//! through reflection only (the interop check; `.ci/services` installs grpcio).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use livora_common::ClientId;
use livora_feature_store::online::{RedbConfig, RedbStore};
use livora_feature_store::{OnlineRow, OnlineStore, RowKey, Value};
use livora_proto::livora::v1 as pb;
use livora_tests::{Livora, create_client};
use pb::get_online_features_request::Kind;
use pb::value::Val;
use serde_json::{Value as Json, json};

const BIN: &str = env!("CARGO_BIN_EXE_livora");
const DAY: i64 = 86_400_000_000;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

async fn put_rows(data_dir: &Path, now: i64) -> Result<()> {
    let store = RedbStore::open(&RedbConfig::default(), data_dir).await?;
    let shop = ClientId::new("shop").map_err(anyhow::Error::msg)?;
    let row = |event_time: i64, values: Vec<(&str, Value)>| OnlineRow {
        event_time,
        created: event_time,
        values: values.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
    };
    let rows = [
        (
            RowKey::new("user", "u-1", "user_activity"),
            row(
                now - 60_000_000,
                vec![
                    ("last_seen_at", Value::Timestamp(now - 3 * DAY)),
                    ("orders_30d", Value::Int64(2)),
                    ("last_touch_channel", Value::String("email".into())),
                ],
            ),
        ),
        (
            RowKey::new("user", "u-1", "customer_profile"),
            row(
                now - DAY,
                vec![("newsletter_opt_in", Value::Bool(true)), ("signed_up_at", Value::Timestamp(now - 100 * DAY))],
            ),
        ),
    ];
    ensure!(store.write(&shop, &rows).await? == 2, "both rows written");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_features_over_grpc_json_and_to_grpcio() -> Result<()> {
    let data = tempfile::tempdir()?;
    let env = vec![("RUST_LOG".to_owned(), "info".to_owned())];
    let key = create_client(Path::new(BIN), data.path(), &env, "shop")?;
    let applied = Command::new(BIN)
        .arg("--data-dir")
        .arg(data.path())
        .args(["apply"])
        .arg(repo_root().join("feature-store/example-repo"))
        .args(["--client", "shop"])
        .output()?;
    ensure!(applied.status.success(), "livora apply failed: {}", String::from_utf8_lossy(&applied.stderr));
    let now = chrono::Utc::now().timestamp_micros();
    put_rows(data.path(), now).await?;

    let mut server = Livora::start(Path::new(BIN), data.path(), &env)?;
    let grpc_addr = server.grpc_addr.context("livora serve printed no gRPC address")?;

    // gRPC, with tonic's client.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))?.connect().await?;
    let mut features = pb::feature_service_client::FeatureServiceClient::new(channel);
    let users = ["u-1", "u-2"].map(|u| pb::Value { val: Some(Val::StringVal(u.into())) });
    let mut request = tonic::Request::new(pb::GetOnlineFeaturesRequest {
        kind: Some(Kind::FeatureService("churn".into())),
        entities: [("user_id".to_owned(), pb::RepeatedValue { val: users.to_vec() })].into(),
        full_feature_names: false,
    });
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse()?);
    request.metadata_mut().insert("x-client-id", "shop".parse()?);
    let answer = features.get_online_features(request).await?.into_inner();
    let column = |name: &str| {
        let i = answer.feature_names.iter().position(|n| n == name).with_context(|| format!("no `{name}`"))?;
        anyhow::Ok(&answer.results[i])
    };
    let orders = column("orders_30d")?;
    ensure!(orders.values[0].val == Some(Val::Int64Val(2)) && orders.values[1].val.is_none(), "{orders:?}");
    let present = pb::FeatureStatus::Present as i32;
    ensure!(orders.statuses == [present, pb::FeatureStatus::Missing as i32], "{orders:?}");
    let Some(Val::DoubleVal(days)) = column("days_since_last_seen")?.values[0].val else {
        anyhow::bail!("days_since_last_seen is not a double: {answer:?}")
    };
    ensure!((days - 3.0).abs() < 0.01, "days_since_last_seen = {days}");
    ensure!(column("newsletter_opt_in")?.values[0].val == Some(Val::BoolVal(true)), "{answer:?}");

    // The JSON twin, on the collector's port.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/features/online", server.url()))
        .bearer_auth(&key)
        .header("x-client-id", "shop")
        .json(&json!({"features": ["user_activity:orders_30d", "user_activity:last_touch_channel"],
                      "entities": {"user_id": ["u-1", "u-2"]}}))
        .send()
        .await?;
    ensure!(response.status().as_u16() == 200, "HTTP {}", response.status());
    let answer: Json = response.json().await?;
    ensure!(answer["results"][0]["values"] == json!([2, null]), "{answer}");
    ensure!(answer["results"][1]["values"] == json!(["email", null]), "{answer}");
    ensure!(answer["results"][1]["statuses"] == json!(["PRESENT", "MISSING"]), "{answer}");

    // Python's grpcio, knowing nothing but what reflection tells it.
    let script = repo_root().join("tests/python/feature_serving_grpcio.py");
    let python =
        Command::new("python3").arg(&script).arg(grpc_addr.to_string()).args([&key, "shop", "u-1"]).output()?;
    ensure!(
        python.status.success(),
        "the grpcio client failed (run .ci/services to install grpcio): {}",
        String::from_utf8_lossy(&python.stderr)
    );
    let answer: Json = serde_json::from_slice(&python.stdout)?;
    let names = answer["feature_names"].as_array().context("feature_names")?;
    let orders = names.iter().position(|n| n == "user_activity__orders_30d").context("full names")?;
    ensure!(answer["results"][orders]["values"][0] == json!({"int64_val": "2"}), "{answer}");
    ensure!(answer["results"][orders]["statuses"][0] == "FEATURE_STATUS_PRESENT", "{answer}");

    server.stop()?;
    Ok(())
}
