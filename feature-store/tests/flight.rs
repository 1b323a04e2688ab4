//! The Arrow Flight service over a real socket, with arrow-flight's own client: authentication
//! (bearer, basic, handshake), tenancy (one client can neither list nor read another's data),
//! every dataset kind, `DoPut` of entity rows for a point-in-time query, the errors, and a pull
//! much larger than the memory budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo};
use base64::Engine as _;
use chrono::{DateTime, TimeZone as _, Utc};
use futures::{StreamExt, TryStreamExt};
use livora_common::{ByteSize, ClientId, Event};
use livora_feature_store::definitions::parse_files;
use livora_feature_store::flight::{Datasets, FlightConfig, FlightDatasetService, Uploads};
use livora_feature_store::metrics::Metrics;
use livora_feature_store::offline::{CREATED_TIMESTAMP, EVENT_TIMESTAMP};
use livora_feature_store::{LocalOfflineStore, OfflineStore, Registry};
use livora_ingest::ClientStore;
use livora_ingest::lake::config::LakeConfig;
use polars::prelude::{Column, DataFrame, Int64Chunked, IntoColumn, TimeUnit, TimeZone};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::server::TcpIncoming;

const DEFINITIONS: &str = r#"
[[entity]]
name = "user"
join_keys = ["user_id"]
value_type = "string"

[[source]]
name = "events"
kind = "event_log"

[[feature_view]]
name = "activity"
entity = "user"
source = "events"
ttl = "30d"

[[feature_view.feature]]
name = "orders_30d"
aggregate = "count"
event_types = ["purchase"]
window = "30d"

[[feature_view]]
name = "never_computed"
entity = "user"
source = "events"

[[feature_view.feature]]
name = "views"
aggregate = "count"

[[feature_service]]
name = "churn"
features = ["activity:orders_30d"]
"#;

/// Events per client and hour in the lake.
const PER_HOUR: usize = 40;
/// Hours of events.
const HOURS: u32 = 3;

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, day, hour, 0, 0).single().unwrap()
}

fn client(id: &str) -> ClientId {
    ClientId::new(id).unwrap()
}

/// `count` events of `client` in each of `hours` hours of 2024-03-01, every fifth a purchase.
fn events(client_id: &str, hours: u32, count: usize, props_bytes: usize) -> Vec<Event> {
    livora_tests::synthetic_events(client_id, at(1, 0), hours, count, props_bytes).unwrap()
}

fn times(name: &str, micros: Vec<i64>) -> Column {
    Int64Chunked::from_vec(name.into(), micros).into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)).into_column()
}

/// The history of `activity` for shop: u0 has 1 order from day 1, 3 from day 3.
fn history(store: &LocalOfflineStore) {
    let rows = DataFrame::new_infer_height(vec![
        Column::new("user_id".into(), ["shop-u0", "shop-u0", "shop-u1"]),
        times(
            EVENT_TIMESTAMP,
            vec![at(1, 0).timestamp_micros(), at(3, 0).timestamp_micros(), at(2, 0).timestamp_micros()],
        ),
        times(
            CREATED_TIMESTAMP,
            vec![at(1, 0).timestamp_micros(), at(3, 0).timestamp_micros(), at(2, 0).timestamp_micros()],
        ),
        Column::new("orders_30d".into(), [1i64, 3, 7]),
    ])
    .unwrap();
    store.append(&client("shop"), "activity", rows).unwrap();
}

/// Shop's churn prediction log: two scores.
fn predictions(root: &Path) {
    let dir = root.join("predictions/churn/client_id=shop/dt=2024-03-02");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rows = DataFrame::new_infer_height(vec![
        Column::new("user_id".into(), ["shop-u0", "shop-u1"]),
        times(EVENT_TIMESTAMP, vec![at(2, 0).timestamp_micros(), at(2, 1).timestamp_micros()]),
        times(CREATED_TIMESTAMP, vec![at(2, 0).timestamp_micros(), at(2, 1).timestamp_micros()]),
        Column::new("churn_probability".into(), [0.25, 0.75]),
    ])
    .unwrap();
    let file = std::fs::File::create(dir.join("part-1.parquet")).unwrap();
    polars::prelude::ParquetWriter::new(file).finish(&mut rows).unwrap();
}

struct Server {
    addr: SocketAddr,
    keys: (String, String),
    metrics: Metrics,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

/// A Flight server over a lake with shop's and rival's events, shop's definitions, history and
/// predictions.
async fn start(config: FlightConfig, shop_events: Vec<Event>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().join("lake");
    let mut all = shop_events;
    all.extend(events("rival", 1, 10, 10));
    livora_tests::write_lake(dir.path(), &all).unwrap();
    let offline = LocalOfflineStore::new(&root);
    history(&offline);
    predictions(&root);

    let clients = ClientStore::connect(
        &format!("sqlite://{}?mode=rwc", dir.path().join("clients.db").display()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let shop = clients.create_client(&client("shop")).await.unwrap().secret;
    let rival = clients.create_client(&client("rival")).await.unwrap().secret;
    let registry =
        Registry::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("registry.db").display())).await.unwrap();
    let repo = parse_files(&[(PathBuf::from("repo.toml"), DEFINITIONS.to_owned())]).unwrap();
    registry.apply(&client("shop"), &repo, false, false).await.unwrap();

    let metrics = Metrics::unregistered();
    let datasets = Datasets {
        lake: livora_ingest::lake::store::open(&root.display().to_string(), &LakeConfig::default()).unwrap(),
        lake_dir: Some(root.clone()),
        lake_cache: None,
        offline: Arc::new(offline),
        offline_root: root,
        registry,
        uploads: Uploads::new(dir.path().join("uploads"), config.upload_ttl, config.max_upload.0),
    };
    let service = FlightDatasetService::new(Arc::new(clients), datasets, config, metrics.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    Server { addr, keys: (shop, rival), metrics, root: dir.path().join("lake"), _dir: dir }
}

async fn connect(addr: SocketAddr, headers: &[(&str, &str)]) -> FlightClient {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = FlightClient::new(channel);
    for (k, v) in headers {
        client.add_header(k, v).unwrap();
    }
    client
}

async fn as_shop(server: &Server) -> FlightClient {
    connect(server.addr, &[("authorization", &format!("Bearer {}", server.keys.0))]).await
}

async fn as_rival(server: &Server) -> FlightClient {
    connect(server.addr, &[("authorization", &format!("Bearer {}", server.keys.1))]).await
}

fn cmd(command: Json) -> FlightDescriptor {
    FlightDescriptor::new_cmd(command.to_string())
}

fn path(parts: &[&str]) -> FlightDescriptor {
    FlightDescriptor::new_path(parts.iter().map(|s| (*s).to_owned()).collect())
}

/// The code and message of a failed call.
fn failure<T: std::fmt::Debug>(result: Result<T, FlightError>) -> (Code, String) {
    match result {
        Err(FlightError::Tonic(status)) => (status.code(), status.message().to_owned()),
        other => panic!("expected a gRPC error, got {other:?}"),
    }
}

/// Every batch of the info's first endpoint.
async fn fetch(client: &mut FlightClient, info: &FlightInfo) -> Result<Vec<RecordBatch>, FlightError> {
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    client.do_get(ticket).await?.try_collect().await
}

async fn get(client: &mut FlightClient, descriptor: FlightDescriptor) -> Result<Vec<RecordBatch>, FlightError> {
    let info = client.get_flight_info(descriptor).await?;
    fetch(client, &info).await
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = b.column_by_name(column).unwrap();
        match c.as_string_opt::<i32>() {
            Some(s) => out.extend(s.iter().map(|v| v.unwrap_or_default().to_owned())),
            None => out.extend(c.as_string::<i64>().iter().map(|v| v.unwrap_or_default().to_owned())),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_checked_on_every_call_and_the_handshake_gives_a_token() {
    let server = start(FlightConfig::default(), events("shop", HOURS, PER_HOUR, 10)).await;

    let mut anonymous = connect(server.addr, &[]).await;
    let (code, message) = failure(anonymous.get_flight_info(path(&["events"])).await);
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("Bearer"), "{message}");
    let (code, _) = failure(anonymous.list_flights("").await.map(|_| ()));
    assert_eq!(code, Code::Unauthenticated);

    let mut wrong = connect(server.addr, &[("authorization", "Bearer lvk_nope")]).await;
    assert_eq!(failure(wrong.get_flight_info(path(&["events"])).await).0, Code::Unauthenticated);

    let bearer = format!("Bearer {}", server.keys.0);
    let mut pretending = connect(server.addr, &[("authorization", &bearer), ("x-client-id", "rival")]).await;
    let (code, message) = failure(pretending.get_flight_info(path(&["events"])).await);
    assert_eq!(code, Code::PermissionDenied, "{message}");

    // Basic credentials, on a call and through the handshake.
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("shop:{}", server.keys.0)));
    let mut with_basic = connect(server.addr, &[("authorization", &basic)]).await;
    assert!(with_basic.get_flight_info(path(&["events"])).await.is_ok());
    let token = with_basic.handshake("").await.unwrap();
    assert_eq!(token, server.keys.0.as_bytes());
    let mut with_token =
        connect(server.addr, &[("authorization", &format!("Bearer {}", String::from_utf8_lossy(&token)))]).await;
    assert_eq!(rows(&get(&mut with_token, path(&["events"])).await.unwrap()), HOURS as usize * PER_HOUR);
    let rival_as_shop =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("shop:{}", server.keys.1)));
    let mut mixed = connect(server.addr, &[("authorization", &rival_as_shop)]).await;
    assert_eq!(failure(mixed.handshake("").await).0, Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_lists_and_reads_only_its_own_datasets() {
    let server = start(FlightConfig::default(), events("shop", HOURS, PER_HOUR, 10)).await;
    let mut shop = as_shop(&server).await;
    let mut rival = as_rival(&server).await;

    let listed: Vec<FlightInfo> = shop.list_flights("").await.unwrap().try_collect().await.unwrap();
    let paths: Vec<Vec<String>> = listed.iter().map(|i| i.flight_descriptor.clone().unwrap().path).collect();
    assert_eq!(paths, [vec!["events"], vec!["feature_view", "activity"], vec!["predictions", "churn"]], "{paths:?}");
    // Each listed entry is fetched by its own ticket, with the schema it announced.
    for info in &listed {
        let schema = info.clone().try_decode_schema().unwrap();
        let batches = fetch(&mut shop, info).await.unwrap();
        assert!(!batches.is_empty(), "{:?}", info.flight_descriptor);
        assert_eq!(*batches[0].schema(), schema);
    }

    let rival_listed: Vec<FlightInfo> = rival.list_flights("").await.unwrap().try_collect().await.unwrap();
    let rival_paths: Vec<Vec<String>> =
        rival_listed.iter().map(|i| i.flight_descriptor.clone().unwrap().path).collect();
    assert_eq!(rival_paths, [vec!["events"]]);
    let theirs = get(&mut rival, path(&["events"])).await.unwrap();
    assert_eq!(rows(&theirs), 10);
    assert!(strings(&theirs, "user_id").iter().all(|u| u.starts_with("rival-")));

    // Shop's ticket is refused to rival; shop's views and logs do not exist for rival.
    let (code, message) = failure(fetch(&mut rival, &listed[0]).await);
    assert_eq!(code, Code::PermissionDenied, "{message}");
    let (code, message) = failure(rival.get_flight_info(path(&["feature_view", "activity"])).await);
    assert_eq!(code, Code::NotFound, "{message}");
    let (code, message) = failure(rival.get_flight_info(path(&["predictions", "churn"])).await);
    assert_eq!(code, Code::NotFound, "{message}");
    assert!(message.contains("churn"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_dataset_reads_what_its_command_selects() {
    let server = start(FlightConfig::default(), events("shop", HOURS, PER_HOUR, 10)).await;
    let mut shop = as_shop(&server).await;

    // Events: a time range (one hour of three) and a type.
    let hour = get(
        &mut shop,
        cmd(json!({"dataset": "events", "start": "2024-03-01T01:00:00Z", "end": "2024-03-01T01:59:59Z"})),
    )
    .await
    .unwrap();
    assert_eq!(rows(&hour), PER_HOUR);
    let purchases = get(&mut shop, cmd(json!({"dataset": "events", "event_types": ["purchase"]}))).await.unwrap();
    assert_eq!(rows(&purchases), HOURS as usize * PER_HOUR / 5);
    assert!(strings(&purchases, "event_type").iter().all(|t| t == "purchase"));

    // A view's history in a range.
    let history =
        get(&mut shop, cmd(json!({"dataset": "feature_view", "view": "activity", "start": "2024-03-02T00:00:00Z"})))
            .await
            .unwrap();
    assert_eq!(rows(&history), 2);
    let mut users = strings(&history, "user_id");
    users.sort();
    assert_eq!(users, ["shop-u0", "shop-u1"]);

    // The prediction log.
    let scores = get(&mut shop, path(&["predictions", "churn"])).await.unwrap();
    let probabilities: Vec<f64> = scores
        .iter()
        .flat_map(|b| b.column_by_name("churn_probability").unwrap().as_primitive::<Float64Type>().values().to_vec())
        .collect();
    assert_eq!(probabilities, [0.25, 0.75]);

    // A training set on a spine: u0 and u1 every day from day 2 to day 3.
    let spine = json!({"dataset": "training", "feature_service": "churn", "full_feature_names": true,
                       "spine": {"view": "activity", "start": "2024-03-02T00:00:00Z", "end": "2024-03-03T00:00:00Z", "cadence": "1d"}});
    let training = get(&mut shop, cmd(spine)).await.unwrap();
    assert_eq!(rows(&training), 4);
    let mut values: Vec<(String, i64, Option<i64>)> = Vec::new();
    for b in &training {
        let users = b.column_by_name("user_id").unwrap().as_string::<i64>();
        let times =
            b.column_by_name(EVENT_TIMESTAMP).unwrap().as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        let orders = b.column_by_name("activity__orders_30d").unwrap().as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            values.push((users.value(i).to_owned(), times.value(i), orders.is_valid(i).then(|| orders.value(i))));
        }
    }
    values.sort();
    let (d2, d3) = (at(2, 0).timestamp_micros(), at(3, 0).timestamp_micros());
    assert_eq!(
        values,
        [
            ("shop-u0".into(), d2, Some(1)),
            ("shop-u0".into(), d3, Some(3)),
            ("shop-u1".into(), d2, Some(7)),
            ("shop-u1".into(), d3, Some(7))
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entity_rows_uploaded_with_do_put_drive_a_point_in_time_query() {
    let server = start(FlightConfig::default(), events("shop", 1, 5, 10)).await;
    let mut shop = as_shop(&server).await;
    let entities = RecordBatch::try_from_iter([
        ("user_id", Arc::new(StringArray::from(vec!["shop-u0", "shop-u0", "shop-u9"])) as ArrayRef),
        (
            "ts",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    at(2, 12).timestamp_micros(),
                    at(4, 0).timestamp_micros(),
                    at(4, 0).timestamp_micros(),
                ])
                .with_timezone("UTC"),
            ),
        ),
    ])
    .unwrap();
    let upload = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(path(&["entities"])))
        .build(futures::stream::iter([Ok(entities)]));
    let results: Vec<_> = shop.do_put(upload).await.unwrap().try_collect().await.unwrap();
    let answer: Json = serde_json::from_slice(&results[0].app_metadata).unwrap();
    assert_eq!(answer["rows"], 3);
    let id = answer["entities"].as_str().unwrap().to_owned();

    let query =
        json!({"dataset": "training", "features": ["activity:orders_30d"], "entities": id, "timestamp_column": "ts"});
    let batches = get(&mut shop, cmd(query.clone())).await.unwrap();
    let orders: Vec<Option<i64>> = batches
        .iter()
        .flat_map(|b| b.column_by_name("orders_30d").unwrap().as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
        .collect();
    // Entity rows keep their order: day 2 sees day 1's row, day 4 sees day 3's, u9 has none.
    assert_eq!(orders, [Some(1), Some(3), None]);

    // Another client cannot use the upload.
    let mut rival = as_rival(&server).await;
    let (code, message) = failure(rival.get_flight_info(cmd(query)).await);
    assert_eq!(code, Code::NotFound, "{message}");

    // An upload needs a timestamp column, and the right descriptor.
    let bad = RecordBatch::try_from_iter([("user_id", Arc::new(StringArray::from(vec!["u"])) as ArrayRef)]).unwrap();
    let upload = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(path(&["entities"])))
        .build(futures::stream::iter([Ok(bad.clone())]));
    let (code, message) = failure(async { shop.do_put(upload).await?.try_collect::<Vec<_>>().await }.await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("timestamp"), "{message}");
    let upload = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(path(&["events"])))
        .build(futures::stream::iter([Ok(bad)]));
    let (code, message) = failure(async { shop.do_put(upload).await?.try_collect::<Vec<_>>().await }.await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("[\"entities\"]"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_what_is_wrong() {
    let server = start(FlightConfig::default(), events("shop", 1, 5, 10)).await;
    let mut shop = as_shop(&server).await;
    let cases = [
        (cmd(json!({"dataset": "sales"})), Code::NotFound, "dataset `sales`"),
        (path(&["sales"]), Code::NotFound, "dataset `sales`"),
        (cmd(json!({"dataset": "feature_view", "view": "nope"})), Code::NotFound, "feature view `nope`"),
        (cmd(json!({"dataset": "feature_view", "view": "never_computed"})), Code::NotFound, "never_computed"),
        (cmd(json!({"dataset": "predictions", "model": "nope"})), Code::NotFound, "model `nope`"),
        (
            cmd(
                json!({"dataset": "training", "feature_service": "nope", "spine": {"view": "activity", "start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z", "cadence": "1d"}}),
            ),
            Code::NotFound,
            "feature service `nope`",
        ),
        (
            cmd(
                json!({"dataset": "training", "features": ["activity:orders_30d"], "entities": uuid::Uuid::new_v4().to_string()}),
            ),
            Code::NotFound,
            "no upload",
        ),
        (
            cmd(json!({"dataset": "events", "start": "2024-03-02T00:00:00Z", "end": "2024-03-01T00:00:00Z"})),
            Code::InvalidArgument,
            "end: 2024-03-01",
        ),
        (cmd(json!({"dataset": "events", "start": "last week"})), Code::InvalidArgument, "start:"),
        (cmd(json!({"dataset": "events", "colour": "red"})), Code::InvalidArgument, "unknown field `colour`"),
        (FlightDescriptor::new_cmd("{not json"), Code::InvalidArgument, "command: not JSON"),
        (cmd(json!({"view": "activity"})), Code::InvalidArgument, "dataset: missing"),
        (cmd(json!({"dataset": "predictions", "model": "../x"})), Code::InvalidArgument, "model:"),
    ];
    for (descriptor, code, needle) in cases {
        let what = descriptor.to_string();
        let (got, message) = failure(shop.get_flight_info(descriptor).await);
        assert_eq!(got, code, "{what}: {message}");
        assert!(message.contains(needle), "{what}: `{message}` should name `{needle}`");
    }
    let (code, message) = failure(shop.do_get(arrow_flight::Ticket::new("garbage")).await.map(|_| ()));
    assert_eq!(code, Code::InvalidArgument, "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dataset_larger_than_the_memory_budget_streams_within_it() {
    let budget = ByteSize::kib(256);
    let config = FlightConfig { batch_rows: 50, memory_budget: budget, ..FlightConfig::default() };
    // 12 hours × 1,000 events with 1 KB of props: about 12 MB of Arrow data, read by arrow-rs.
    let server = start(config, events("shop", 12, 1_000, 1_000)).await;
    // And a prediction log of 12,000 rows with 1 KB of features each, read by polars.
    let dir = server.root.join("predictions/big/client_id=shop/dt=2024-03-01");
    std::fs::create_dir_all(&dir).unwrap();
    let n = 12_000;
    let mut log = DataFrame::new_infer_height(vec![
        Column::new("user_id".into(), (0..n).map(|i| format!("u{i}")).collect::<Vec<_>>()),
        times(EVENT_TIMESTAMP, (0..n).map(|i| at(1, 0).timestamp_micros() + i).collect()),
        Column::new("features".into(), (0..n).map(|i| format!("{i:01000}")).collect::<Vec<_>>()),
    ])
    .unwrap();
    polars::prelude::ParquetWriter::new(std::fs::File::create(dir.join("part-1.parquet")).unwrap())
        .finish(&mut log)
        .unwrap();

    let mut shop = as_shop(&server).await;
    for (i, dataset) in [path(&["events"]), path(&["predictions", "big"])].into_iter().enumerate() {
        let what = dataset.to_string();
        let info = shop.get_flight_info(dataset).await.unwrap();
        let mut stream = shop.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap();
        let (mut batches, mut rows, mut bytes) = (0usize, 0usize, 0usize);
        // The lake's files (one per hour here) are read ahead in parallel but must arrive in
        // path order: the hour of the events never goes back.
        let mut hours_seen: Vec<i64> = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            batches += 1;
            rows += batch.num_rows();
            bytes += livora_feature_store::flight::budget::batch_bytes(&batch);
            assert!(batch.num_rows() <= 50, "{what}: a batch of {} rows", batch.num_rows());
            if let Some(times) = batch.column_by_name("timestamp") {
                let times = times.as_primitive::<arrow_array::types::TimestampMicrosecondType>();
                hours_seen.extend(times.iter().flatten().map(|t| t / 3_600_000_000));
            }
        }
        if i == 0 {
            assert_eq!(hours_seen.len(), 12_000, "{what}");
            assert!(hours_seen.is_sorted(), "{what}: the hours of the events go back; files came out of order");
            assert_eq!(hours_seen.first().map(|h| hours_seen.last().unwrap() - h), Some(11), "{what}");
        }
        assert_eq!(rows, 12_000, "{what}");
        assert!(bytes > 40 * budget.as_usize(), "{what}: the dataset ({bytes} bytes) is far larger than the budget");
        assert!(batches >= 240, "{what}: {batches} batches");
        let peak = server.metrics.flight_stream_buffered_bytes_max.get();
        assert!(peak > 0 && peak as usize <= budget.as_usize(), "{what}: a stream held {peak} bytes, budget {budget}");
    }
    assert_eq!(server.metrics.flight_rows_sent.get(), 24_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn flight_sql_answers_queries_and_metadata_over_the_clients_tables() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use arrow_flight::sql::{CommandGetTables, CommandStatementQuery, ProstMessageExt, SqlInfo};
    use prost::Message as _;

    let server = start(FlightConfig::default(), events("shop", HOURS, PER_HOUR, 10)).await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut sql = FlightSqlServiceClient::new(channel);
    // The handshake with basic credentials sets the bearer token.
    sql.handshake("shop", &server.keys.0).await.unwrap();
    let run = async |sql: &mut FlightSqlServiceClient<tonic::transport::Channel>, info: FlightInfo| {
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        sql.do_get(ticket).await.unwrap().try_collect::<Vec<RecordBatch>>().await.unwrap()
    };

    let info = sql
        .execute("SELECT event_type, COUNT(*) AS n FROM events GROUP BY event_type ORDER BY event_type".into(), None)
        .await
        .unwrap();
    let counts = run(&mut sql, info).await;
    assert_eq!(strings(&counts, "event_type"), ["page_view", "purchase"]);
    let n: Vec<i64> = counts.iter().flat_map(|b| arrow_cast_u32_or_i64(b.column_by_name("n").unwrap())).collect();
    assert_eq!(n, [HOURS as i64 * PER_HOUR as i64 * 4 / 5, HOURS as i64 * PER_HOUR as i64 / 5]);
    let info = sql
        .execute("SELECT user_id, orders_30d FROM activity WHERE orders_30d > 2 ORDER BY orders_30d".into(), None)
        .await
        .unwrap();
    assert_eq!(strings(&run(&mut sql, info).await, "user_id"), ["shop-u0", "shop-u1"]);

    let info = sql.get_tables(CommandGetTables { include_schema: true, ..Default::default() }).await.unwrap();
    let tables = run(&mut sql, info).await;
    assert_eq!(strings(&tables, "table_name"), ["activity", "churn_predictions", "events"]);
    assert_eq!(strings(&tables, "catalog_name"), ["livora"; 3]);
    let info = sql.get_catalogs().await.unwrap();
    assert_eq!(strings(&run(&mut sql, info).await, "catalog_name"), ["livora"]);
    let info = sql.get_sql_info(vec![SqlInfo::FlightSqlServerName]).await.unwrap();
    assert_eq!(rows(&run(&mut sql, info).await), 1);

    // A prepared statement (the JDBC driver prepares every query): its schema, then its rows.
    let mut prepared =
        sql.prepare("SELECT user_id FROM events WHERE event_type = 'purchase'".into(), None).await.unwrap();
    assert_eq!(prepared.dataset_schema().unwrap().field(0).name(), "user_id");
    let info = prepared.execute().await.unwrap();
    assert_eq!(rows(&run(&mut sql, info).await), HOURS as usize * PER_HOUR / 5);
    prepared.close().await.unwrap();
    assert!(sql.prepare("SELECT nope FROM events".into(), None).await.is_err());

    // Errors, with their codes: a syntax error says where, an unknown table names it.
    let mut shop = as_shop(&server).await;
    let query = |q: &str| {
        FlightDescriptor::new_cmd(
            CommandStatementQuery { query: q.into(), transaction_id: None }.as_any().encode_to_vec(),
        )
    };
    let (code, message) = failure(shop.get_flight_info(query("SELECT event_type FORM events")).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("Line: 1, Column"), "{message}");
    let (code, message) = failure(shop.get_flight_info(query("SELECT * FROM sales")).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("sales"), "{message}");
    let update = arrow_flight::sql::CommandStatementUpdate { query: "DELETE FROM events".into(), transaction_id: None };
    let (code, message) =
        failure(shop.get_flight_info(FlightDescriptor::new_cmd(update.as_any().encode_to_vec())).await);
    assert_eq!(code, Code::Unimplemented, "{message}");

    // The same SQL as a JSON command, for plain Flight clients.
    let json_sql =
        get(&mut shop, cmd(json!({"dataset": "sql", "query": "SELECT COUNT(*) AS n FROM events"}))).await.unwrap();
    assert_eq!(rows(&json_sql), 1);

    // Another client's tables are its own.
    let mut rival = as_rival(&server).await;
    let theirs = get(&mut rival, query("SELECT user_id FROM events")).await.unwrap();
    assert_eq!(rows(&theirs), 10);
    assert!(strings(&theirs, "user_id").iter().all(|u| u.starts_with("rival-")));
    let (code, message) = failure(rival.get_flight_info(query("SELECT * FROM activity")).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    // Nor can it read shop's files by path.
    let path = format!("{}/raw/events/client_id=shop/*/*/*.parquet", server.root.display());
    let (code, message) = failure(rival.get_flight_info(query(&format!("SELECT * FROM read_parquet('{path}')"))).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("read_parquet"), "{message}");
}

/// An integer column's values (polars counts in `u32`).
fn arrow_cast_u32_or_i64(column: &ArrayRef) -> Vec<i64> {
    match column.as_primitive_opt::<Int64Type>() {
        Some(values) => values.values().to_vec(),
        None => {
            column.as_primitive::<arrow_array::types::UInt32Type>().values().iter().map(|v| i64::from(*v)).collect()
        }
    }
}
