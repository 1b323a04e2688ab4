//! Arrow Flight `DoGet` throughput: a ten-million-row dataset pulled over loopback by
//! arrow-flight's client, beside DuckDB reading the same Parquet files into Arrow
//! (`reference.py` beside this file).
//!
//! ```sh
//! cargo bench -p livora-feature-store --bench flight                    # 10M rows, both datasets
//! cargo bench -p livora-feature-store --bench flight -- --rows 1000000 --no-reference
//! ```
//!
//! Flags: `--rows N` (10,000,000), `--batch-rows N` (65,536, `features.flight.batch_rows`),
//! `--dataset events|history|both` (both), `--no-reference` (no DuckDB), `--no-pyarrow` (no
//! pyarrow client), `--dir PATH` (keep the data there).
//!
//! Two datasets, one per path through the server: `events` (the lake's raw events, read by
//! arrow-rs straight from Parquet) and `history` (a feature view's history, a polars scan whose
//! chunks cross to arrow-rs as Arrow IPC). For each, three pulls: the time to the first record
//! batch (from `GetFlightInfo`, so planning counts) and to the last, the rows, and the Arrow
//! bytes received (the batches' buffers, as `batch_bytes` counts them). The server and the
//! arrow-rs client run in this one process, on the same cores; then `pyarrow_client.py` pulls
//! the same dataset from that server with pyarrow.flight (a process of its own, the client a
//! Python analyst uses); DuckDB runs alone, after.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow_array::builder::{BooleanBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::StreamExt;
use livora_common::ClientId;
use livora_feature_store::definitions::parse_files;
use livora_feature_store::flight::budget::batch_bytes;
use livora_feature_store::flight::{Datasets, FlightConfig, FlightDatasetService, Uploads};
use livora_feature_store::metrics::Metrics;
use livora_feature_store::offline::{CREATED_TIMESTAMP, EVENT_TIMESTAMP};
use livora_feature_store::{LocalOfflineStore, OfflineStore, Registry};
use livora_ingest::ClientStore;
use livora_ingest::lake::config::LakeConfig;
use livora_ingest::lake::schema::EVENTS_SCHEMA;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use polars::prelude::{Column, DataFrame, Int64Chunked, IntoColumn, TimeUnit, TimeZone};

/// The allocator of the `livora` binary, whose Flight service this bench serves.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 3;
/// 2024-01-01T00:00:00Z.
const START_US: i64 = 1_704_067_200_000_000;
const ROWS_PER_FILE: usize = 1_000_000;
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

[[feature_view.feature]]
name = "orders"
aggregate = "count"
"#;

struct Args {
    rows: usize,
    batch_rows: usize,
    datasets: Vec<&'static str>,
    reference: bool,
    pyarrow: bool,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        rows: 10_000_000,
        batch_rows: 65_536,
        datasets: vec!["events", "history"],
        reference: true,
        pyarrow: true,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => args.rows = value()?.parse()?,
            "--batch-rows" => args.batch_rows = value()?.parse()?,
            "--dataset" => {
                args.datasets = match value()?.as_str() {
                    "events" => vec!["events"],
                    "history" => vec!["history"],
                    "both" => vec!["events", "history"],
                    other => bail!("--dataset {other}: events, history or both"),
                }
            }
            "--no-reference" => args.reference = false,
            "--no-pyarrow" => args.pyarrow = false,
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            // cargo bench passes --bench.
            "--bench" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

/// `rows` events in the lake layout, one file of up to a million rows per hour, compressed as
/// the lake writer does (zstd 3). Returns the files' glob.
fn write_events(root: &Path, rows: usize) -> Result<String> {
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?)).build();
    let types = ["page_view", "product_view", "add_to_cart", "checkout", "purchase"];
    for (file, first) in (0..rows).step_by(ROWS_PER_FILE).enumerate() {
        let n = ROWS_PER_FILE.min(rows - first);
        let hour_start = START_US + file as i64 * 3_600_000_000;
        let dir = root.join(format!(
            "raw/events/client_id=bench/dt={}/hour={:02}",
            chrono::DateTime::from_timestamp_micros(hour_start).context("time")?.format("%Y-%m-%d"),
            file % 24
        ));
        std::fs::create_dir_all(&dir)?;
        let text = |f: &dyn Fn(usize) -> Option<String>| {
            let mut b = StringBuilder::new();
            (first..first + n).for_each(|i| b.append_option(f(i)));
            Arc::new(b.finish()) as ArrayRef
        };
        let time = || {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            (first..first + n).for_each(|i| b.append_value(hour_start + (i - first) as i64 * 3_600_000_000 / n as i64));
            Arc::new(b.finish()) as ArrayRef
        };
        let (timestamp, received) = (time(), time());
        let mut columns: Vec<ArrayRef> = vec![
            text(&|i| Some(format!("00000000-0000-4000-8000-{i:012}"))),
            timestamp,
            received,
            text(&|i| Some(format!("u_{:07}", i % 100_000))),
            text(&|_| None),
            text(&|i| Some(format!("s_{:08}", i / 20))),
            text(&|i| Some(types[i % types.len()].to_owned())),
            text(&|i| Some(format!(r#"{{"product_id":"p_{:05}","price":{}.99}}"#, i % 5_000, i % 200))),
            text(&|_| Some("{}".to_owned())),
        ];
        for _ in 0..6 {
            columns.push(text(&|_| None));
        }
        let mut bot = BooleanBuilder::new();
        (0..n).for_each(|_| bot.append_value(false));
        columns.push(Arc::new(bot.finish()));
        for _ in 0..3 {
            columns.push(text(&|_| None));
        }
        let batch = RecordBatch::try_new(EVENTS_SCHEMA.clone(), columns)?;
        let mut writer = ArrowWriter::try_new(
            std::fs::File::create(dir.join("part-0.parquet"))?,
            batch.schema(),
            Some(props.clone()),
        )?;
        writer.write(&batch)?;
        writer.close()?;
    }
    Ok(format!("{}/raw/events/client_id=bench/*/*/*.parquet", root.display()))
}

/// `rows` rows of the `activity` view's history (100,000 users, three numeric features).
fn write_history(root: &Path, rows: usize) -> Result<String> {
    // Appends add parts: start from none, so that a kept `--dir` holds `rows` rows, not twice.
    let view = root.join("features/client_id=bench/view=activity");
    if view.exists() {
        std::fs::remove_dir_all(&view)?;
    }
    let store = LocalOfflineStore::new(root);
    let client = ClientId::new("bench").map_err(anyhow::Error::msg)?;
    for first in (0..rows).step_by(ROWS_PER_FILE) {
        let n = ROWS_PER_FILE.min(rows - first) as i64;
        let first = first as i64;
        let times: Vec<i64> = (first..first + n).map(|i| START_US + i * 60_000_000).collect();
        let time = |name: &str| {
            Int64Chunked::from_vec(name.into(), times.clone())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column()
        };
        let frame = DataFrame::new_infer_height(vec![
            Column::new(
                "user_id".into(),
                (first..first + n).map(|i| format!("u_{:07}", i % 100_000)).collect::<Vec<_>>(),
            ),
            time(EVENT_TIMESTAMP),
            time(CREATED_TIMESTAMP),
            Column::new("orders".into(), (first..first + n).map(|i| i % 17).collect::<Vec<_>>()),
            Column::new("revenue".into(), (first..first + n).map(|i| (i % 1000) as f64 * 1.5).collect::<Vec<_>>()),
            Column::new("sessions".into(), (first..first + n).map(|i| i % 31).collect::<Vec<_>>()),
        ])?;
        store.append(&client, "activity", frame)?;
    }
    Ok(format!("{}/features/client_id=bench/view=activity/*/*.parquet", root.display()))
}

struct Pull {
    first_batch: Duration,
    total: Duration,
    rows: usize,
    bytes: usize,
    batches: usize,
}

/// Runs `name` (beside this file) with `args`; its pulls, one JSON line each.
fn script(name: &str, args: &[String]) -> Result<Vec<Pull>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/flight").join(name);
    let out = Command::new("python3").arg(&script).args(args).output()?;
    if !out.status.success() {
        bail!("{name} failed (pip install duckdb pyarrow): {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut pulls = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let seconds = |k: &str| Duration::from_secs_f64(v[k].as_f64().unwrap_or_default());
        let count = |k: &str| v[k].as_u64().unwrap_or_default() as usize;
        pulls.push(Pull {
            first_batch: seconds("first_batch"),
            total: seconds("total"),
            rows: count("rows"),
            bytes: count("bytes"),
            batches: count("batches"),
        });
    }
    Ok(pulls)
}

async fn pull(client: &mut FlightClient, descriptor: FlightDescriptor) -> Result<Pull> {
    let started = Instant::now();
    let info = client.get_flight_info(descriptor).await?;
    let ticket = info.endpoint.first().and_then(|e| e.ticket.clone()).context("no ticket")?;
    let mut stream = client.do_get(ticket).await?;
    let (mut first_batch, mut rows, mut bytes, mut batches) = (None, 0, 0, 0);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        first_batch.get_or_insert_with(|| started.elapsed());
        rows += batch.num_rows();
        bytes += batch_bytes(&batch);
        batches += 1;
    }
    Ok(Pull { first_batch: first_batch.unwrap_or_default(), total: started.elapsed(), rows, bytes, batches })
}

fn report(engine: &str, dataset: &str, p: &Pull) {
    let gb_s = p.bytes as f64 / p.total.as_secs_f64() / 1e9;
    let rows_s = p.rows as f64 / p.total.as_secs_f64() / 1e6;
    println!(
        "{engine:<8} {dataset:<8} rows={:>10} arrow={:>7.1} MB batches={:>5} first batch={:>8.1} ms total={:>7.2} s  {gb_s:.2} GB/s  {rows_s:.1} M rows/s",
        p.rows,
        p.bytes as f64 / 1e6,
        p.batches,
        p.first_batch.as_secs_f64() * 1e3,
        p.total.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let temporary = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temporary.path().to_owned());
    let root = dir.join("lake");
    println!("generating {} rows per dataset under {}", args.rows, dir.display());
    let mut globs = Vec::new();
    for dataset in &args.datasets {
        let (root, rows) = (root.clone(), args.rows);
        let glob = match *dataset {
            "events" => tokio::task::spawn_blocking(move || write_events(&root, rows)).await??,
            _ => tokio::task::spawn_blocking(move || write_history(&root, rows)).await??,
        };
        globs.push((*dataset, glob));
    }

    let clients = ClientStore::connect(
        &format!("sqlite://{}?mode=rwc", dir.join("clients.db").display()),
        Duration::from_secs(60),
    )
    .await?;
    let client = ClientId::new("bench").map_err(anyhow::Error::msg)?;
    let key = match clients.create_client(&client).await {
        Ok(key) => key.secret,
        Err(_) => clients.create_key(&client).await?.secret,
    };
    let registry = Registry::connect(&format!("sqlite://{}?mode=rwc", dir.join("registry.db").display())).await?;
    let repo =
        parse_files(&[(PathBuf::from("bench.toml"), DEFINITIONS.to_owned())]).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    registry.apply(&client, &repo, false, false).await?;
    let config = FlightConfig { batch_rows: args.batch_rows, ..FlightConfig::default() };
    let datasets = Datasets {
        lake: livora_ingest::lake::store::open(&root.display().to_string(), &LakeConfig::default())?,
        lake_dir: Some(root.clone()),
        lake_cache: None,
        offline: Arc::new(LocalOfflineStore::new(&root)),
        offline_root: root.clone(),
        registry,
        uploads: Uploads::new(dir.join("uploads"), config.upload_ttl, config.max_upload.0),
    };
    let service = FlightDatasetService::new(Arc::new(clients), datasets, config, Metrics::unregistered());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut flight = FlightClient::new(channel);
    flight.add_header("authorization", &format!("Bearer {key}"))?;

    println!("{} cores; server and client in this process; {RUNS} pulls each", std::thread::available_parallelism()?);
    for (dataset, glob) in &globs {
        let descriptor = match *dataset {
            "events" => FlightDescriptor::new_path(vec!["events".into()]),
            _ => FlightDescriptor::new_path(vec!["feature_view".into(), "activity".into()]),
        };
        for _ in 0..RUNS {
            report("livora", dataset, &pull(&mut flight, descriptor.clone()).await?);
        }
        if args.pyarrow {
            let client_args =
                [addr.to_string(), key.clone(), serde_json::to_string(&descriptor.path)?, RUNS.to_string()];
            // The child pulls from this process's server: wait for it off the runtime's workers.
            let pulls = tokio::task::spawn_blocking(move || script("pyarrow_client.py", &client_args)).await??;
            pulls.iter().for_each(|p| report("pyarrow", dataset, p));
        }
        if args.reference {
            let reference_args = [glob.clone(), args.batch_rows.to_string(), RUNS.to_string()];
            script("reference.py", &reference_args)?.iter().for_each(|p| report("duckdb", dataset, p));
        }
    }
    Ok(())
}
