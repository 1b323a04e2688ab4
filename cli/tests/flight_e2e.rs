//! End to end: `livora serve` answers Arrow Flight and Flight SQL on its gRPC port, to clients
//! no one here wrote (`.ci/services` installs them). pyarrow.flight lists the client's datasets,
//! pulls events, uploads entity rows with DoPut and pulls the point-in-time dataset they drive
//! (`tests/python/flight_pyarrow.py`); another client sees none of it. The ADBC Flight SQL driver
//! runs SQL and reads the catalog (`tests/python/flight_sql_adbc.py`). grpcio, knowing the
//! service from gRPC reflection alone, lists the flights and reads one's info
//! (`tests/python/flight_grpcio_reflection.py`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use chrono::{TimeZone as _, Utc};
use livora_common::ClientId;
use livora_feature_store::offline::{CREATED_TIMESTAMP, EVENT_TIMESTAMP};
use livora_feature_store::{LocalOfflineStore, OfflineStore};
use livora_tests::{Livora, create_client, synthetic_events, write_lake};
use polars::prelude::{Column, DataFrame, Int64Chunked, IntoColumn, TimeUnit, TimeZone};
use serde_json::{Value as Json, json};

const BIN: &str = env!("CARGO_BIN_EXE_livora");

fn repo_root() -> &'static Path {
    livora_tests::workspace_root()
}

fn livora(data: &Path, args: &[&str]) -> Result<String> {
    livora_tests::run_livora(Path::new(BIN), data, args)
}

/// `user_activity` history of u-1: 2 orders from March 1st, 5 from March 3rd.
fn history(data: &Path) -> Result<()> {
    let micros = |day: u32| Utc.with_ymd_and_hms(2024, 3, day, 0, 0, 0).single().map(|t| t.timestamp_micros());
    let times: Vec<i64> = [micros(1), micros(3)].into_iter().collect::<Option<_>>().context("time")?;
    let column = |name: &str| {
        Int64Chunked::from_vec(name.into(), times.clone())
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column()
    };
    let rows = DataFrame::new_infer_height(vec![
        Column::new("user_id".into(), ["u-1", "u-1"]),
        column(EVENT_TIMESTAMP),
        column(CREATED_TIMESTAMP),
        Column::new("orders_30d".into(), [2i64, 5]),
    ])?;
    let shop = ClientId::new("shop").map_err(anyhow::Error::msg)?;
    LocalOfflineStore::new(data.join("lake")).append(&shop, "user_activity", rows)?;
    Ok(())
}

/// Runs `tests/python/<script>` with `args` and reads the JSON it prints; a failure says which
/// package `.ci/services` installs for it.
fn python(server: &Livora, script: &str, args: &[&str], package: &str) -> Result<Json> {
    let out = Command::new("python3").arg(repo_root().join("tests/python").join(script)).args(args).output()?;
    ensure!(
        out.status.success(),
        "{script} failed (run .ci/services to install {package}): {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn pyarrow_flight_and_adbc_flight_sql_read_the_clients_data() -> Result<()> {
    let data = tempfile::tempdir()?;
    let shop_key = create_client(Path::new(BIN), data.path(), &[], "shop")?;
    let rival_key = create_client(Path::new(BIN), data.path(), &[], "rival")?;
    let example = repo_root().join("feature-store/example-repo");
    livora(data.path(), &["apply", &example.to_string_lossy(), "--client", "shop"])?;
    let start = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).single().context("time")?;
    let mut events = synthetic_events("shop", start, 2, 50, 10)?;
    events.extend(synthetic_events("rival", start, 1, 7, 10)?);
    write_lake(data.path(), &events)?;
    history(data.path())?;

    let mut server = Livora::start(Path::new(BIN), data.path(), &[])?;
    let grpc = server.grpc_addr.context("no gRPC address printed")?;
    let addr = grpc.to_string();
    let out = python(&server, "flight_pyarrow.py", &[&addr, "shop", &shop_key, &rival_key], "pyarrow")?;

    ensure!(out["token_header"] == "authorization", "{out}");
    ensure!(out["listed"] == json!([["events"], ["feature_view", "user_activity"]]), "{}", out["listed"]);
    ensure!(
        out["listed_schemas"]["feature_view/user_activity"]
            == json!(["user_id", "event_timestamp", "created_timestamp", "orders_30d"]),
        "{out}"
    );
    ensure!(out["events_rows"] == 100, "{out}");
    ensure!(out["events_columns"][0] == "event_id", "{out}");
    ensure!(out["purchase_rows"] == 20 && out["purchase_types"] == json!(["purchase"]), "{out}");
    ensure!(out["upload_rows"] == 3, "{out}");
    ensure!(
        out["training"]
            == json!([
                {"user_id": "u-1", "orders_30d": 2},
                {"user_id": "u-1", "orders_30d": 5},
                {"user_id": "u-404", "orders_30d": null}
            ]),
        "{}",
        out["training"]
    );
    // pyarrow's exception classes follow the gRPC codes.
    ensure!(out["unknown_dataset"]["message"].as_str().is_some_and(|m| m.contains("dataset `sales`")), "{out}");
    ensure!(out["bad_range"]["type"] == "ArrowInvalid", "{out}");
    ensure!(out["bad_range"]["message"].as_str().is_some_and(|m| m.contains("end: 2024-03-01")), "{out}");
    ensure!(out["no_credentials"]["type"] == "FlightUnauthenticatedError", "{out}");
    ensure!(out["other_listed"] == json!([["events"]]), "{out}");
    ensure!(out["other_with_my_ticket"]["type"] == "FlightUnauthorizedError", "{out}");

    // The same service through gRPC reflection alone (what `grpcurl` sees).
    let reflected = python(&server, "flight_grpcio_reflection.py", &[&addr, "shop", &shop_key], "grpcio-reflection")?;
    let services = reflected["services"].as_array().context("services")?;
    ensure!(services.contains(&json!("arrow.flight.protocol.FlightService")), "{reflected}");
    ensure!(services.contains(&json!("livora.v1.FeatureService")), "{reflected}");
    ensure!(reflected["methods"].as_array().is_some_and(|m| m.len() == 10), "{reflected}");
    ensure!(
        reflected["get_flight_info"]
            == json!(["arrow.flight.protocol.FlightDescriptor", "arrow.flight.protocol.FlightInfo"]),
        "{reflected}"
    );
    ensure!(reflected["listed"] == out["listed"], "{reflected}");
    ensure!(reflected["descriptor"] == json!({"type": "PATH", "path": ["events"]}), "{reflected}");
    // The events are not counted before they are read: -1, "unknown" in Flight's terms.
    ensure!(reflected["total_records"] == -1 && reflected["endpoints"] == 1, "{reflected}");
    ensure!(reflected["ticket_bytes"].as_u64().is_some_and(|n| n > 0), "{reflected}");
    ensure!(reflected["schema_bytes"].as_u64().is_some_and(|n| n > 0), "{reflected}");

    // ADBC's Flight SQL driver, with basic credentials.
    let out = python(&server, "flight_sql_adbc.py", &[&addr, "shop", &shop_key], "adbc-driver-flightsql")?;
    ensure!(out["counts"] == json!([["page_view", 80], ["purchase", 20]]), "{out}");
    ensure!(out["prepared"] == 20, "{out}");
    ensure!(out["parameters"] == 20 && out["parameters_again"] == 80, "{out}");
    ensure!(out["parameters_numbered"] == 20, "{out}");
    ensure!(
        out["parameters_miscounted"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 values bound") && m.contains("2 placeholder")),
        "{out}"
    );
    ensure!(
        out["history"] == json!([{"user_id": "u-1", "orders_30d": 2}, {"user_id": "u-1", "orders_30d": 5}]),
        "{out}"
    );
    ensure!(out["syntax_error"]["message"].as_str().is_some_and(|m| m.contains("Line: 1, Column")), "{out}");
    ensure!(out["catalogs"] == json!(["livora"]), "{out}");
    ensure!(out["tables"] == json!(["events", "user_activity"]), "{out}");
    ensure!(out["events_columns"] == json!(["event_id", "timestamp", "received_at"]), "{out}");
    ensure!(out["table_types"] == json!(["TABLE"]), "{out}");

    server.stop()?;
    Ok(())
}
