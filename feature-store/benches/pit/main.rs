//! Point-in-time retrieval benchmark: Livora against Feast's local offline store and DuckDB.
//!
//! Generates (seeded) entity rows and three feature-view histories as Parquet files, times
//! Livora's [`get_historical_features`] over them, then runs `reference.py` beside this file on the
//! same files for Feast and DuckDB, and prints one table. Each measurement runs in a child process
//! of its own so that its peak RSS is its own.
//!
//! ```sh
//! cargo bench -p livora-feature-store --bench pit                       # 1M rows, Feast on 100k
//! cargo bench -p livora-feature-store --bench pit -- --entity-rows 200000 --no-reference
//! ```
//!
//! Flags: `--entity-rows N` (1,000,000), `--entities N` (100,000 users), `--feast-rows N` (Feast
//! runs on the first N entity rows, 100,000 by default: it is too slow for the full set; its
//! rate is reported for that sample, the time for the full set extrapolated linearly, and Livora
//! is timed on the same sample too), `--no-reference` (Livora only), `--dir PATH` (keep the data
//! there instead of a temporary directory).
//!
//! Rows per second count the entity rows asked for. Feast's file offline store drops an entity
//! row that has no match within a view's ttl, where Livora and DuckDB keep it with nulls (the
//! rule of design §4), so Feast returns fewer rows and its checksum differs; DuckDB's must equal
//! Livora's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use livora_feature_store::offline::timestamp_dtype;
use livora_feature_store::{PitOptions, ViewHistory, get_historical_features};
use polars::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The allocator of the `livora` binary, in which `livora dataset build` and Flight's datasets
/// run the same query.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 0x11_70_7a;
const DAY_US: i64 = 86_400_000_000;
/// 2024-01-01T00:00:00Z.
const START_US: i64 = 1_704_067_200_000_000;
const HISTORY_DAYS: i64 = 90;
const FEATURES_PER_VIEW: usize = 25;
const RUNS: usize = 3;

/// One generated view: name, join key, entity count, rows per entity, ttl in days (0: none),
/// feature-name prefix.
struct Spec {
    name: &'static str,
    key: &'static str,
    entities: usize,
    rows_per_entity: usize,
    ttl_days: u64,
    prefix: &'static str,
}

struct Args {
    entity_rows: usize,
    entities: usize,
    feast_rows: usize,
    reference: bool,
    dir: Option<PathBuf>,
    measure: Option<(PathBuf, String, usize, usize)>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        entity_rows: 1_000_000,
        entities: 100_000,
        feast_rows: 100_000,
        reference: true,
        dir: None,
        measure: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--entity-rows" => args.entity_rows = value()?.parse()?,
            "--entities" => args.entities = value()?.parse()?,
            "--feast-rows" => args.feast_rows = value()?.parse()?,
            "--no-reference" => args.reference = false,
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            // Internal: run one measurement in this (child) process.
            "--measure" => {
                let dir = PathBuf::from(value()?);
                let engine = value()?;
                let head = value()?.parse()?;
                let limit = value()?.parse()?;
                args.measure = Some((dir, engine, head, limit));
            }
            // cargo bench passes `--bench`; ignore it and other harness flags.
            "--bench" => {}
            other if other.starts_with("--") => bail!("unknown flag {other}"),
            _ => {}
        }
    }
    Ok(args)
}

fn specs(entities: usize) -> [Spec; 3] {
    let items = (entities / 5).max(1);
    [
        Spec { name: "user_profile", key: "user_id", entities, rows_per_entity: 10, ttl_days: 0, prefix: "up" },
        Spec { name: "user_activity", key: "user_id", entities, rows_per_entity: 10, ttl_days: 30, prefix: "ua" },
        Spec { name: "item_stats", key: "item_id", entities: items, rows_per_entity: 50, ttl_days: 7, prefix: "it" },
    ]
}

fn feature_names(spec: &Spec) -> Vec<String> {
    (0..FEATURES_PER_VIEW).map(|i| format!("{}_f{i:02}", spec.prefix)).collect()
}

fn datetime(name: &str, micros: Vec<i64>) -> Column {
    Int64Chunked::from_vec(name.into(), micros).into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)).into_column()
}

fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    ParquetWriter::new(file).with_compression(ParquetCompression::Snappy).finish(df)?;
    Ok(())
}

/// Writes `entities.parquet`, one `<view>.parquet` per view and `views.json` (the specs, for
/// reference.py).
fn generate(dir: &Path, args: &Args) -> Result<()> {
    let mut rng = SmallRng::seed_from_u64(SEED);
    for spec in specs(args.entities) {
        let n = spec.entities * spec.rows_per_entity;
        let mut keys = Vec::with_capacity(n);
        let mut events = Vec::with_capacity(n);
        let mut created = Vec::with_capacity(n);
        for entity in 0..spec.entities {
            for _ in 0..spec.rows_per_entity {
                keys.push(entity as i64);
                // Whole seconds, so that some rows of an entity share an event time.
                let event = START_US + rng.random_range(0..HISTORY_DAYS * 86_400) * 1_000_000;
                events.push(event);
                created.push(event + rng.random_range(0..3_600) * 1_000_000);
            }
        }
        let mut columns = vec![
            Column::new(spec.key.into(), keys),
            datetime("event_timestamp", events),
            datetime("created_timestamp", created),
        ];
        for (i, name) in feature_names(&spec).into_iter().enumerate() {
            columns.push(if i % 2 == 0 {
                Column::new(name.into(), (0..n).map(|_| rng.random::<f64>()).collect::<Vec<_>>())
            } else {
                Column::new(name.into(), (0..n).map(|_| rng.random_range(0..1_000i64)).collect::<Vec<_>>())
            });
        }
        let mut df = DataFrame::new_infer_height(columns)?;
        write_parquet(&dir.join(format!("{}.parquet", spec.name)), &mut df)?;
    }
    let items = (args.entities / 5).max(1);
    let n = args.entity_rows;
    let users: Vec<i64> = (0..n).map(|_| rng.random_range(0..args.entities as i64)).collect();
    let item_ids: Vec<i64> = (0..n).map(|_| rng.random_range(0..items as i64)).collect();
    let times: Vec<i64> =
        (0..n).map(|_| START_US + 7 * DAY_US + rng.random_range(0..(HISTORY_DAYS - 7) * 86_400) * 1_000_000).collect();
    let mut entities = DataFrame::new_infer_height(vec![
        Column::new("user_id".into(), users),
        Column::new("item_id".into(), item_ids),
        datetime("event_timestamp", times),
    ])?;
    write_parquet(&dir.join("entities.parquet"), &mut entities)?;

    let views: Vec<String> = specs(args.entities)
        .iter()
        .map(|s| {
            let features: Vec<String> = feature_names(s).iter().map(|f| format!("\"{f}\"")).collect();
            format!(
                "{{\"name\":\"{}\",\"key\":\"{}\",\"ttl_days\":{},\"features\":[{}]}}",
                s.name,
                s.key,
                s.ttl_days,
                features.join(",")
            )
        })
        .collect();
    std::fs::write(dir.join("views.json"), format!("[{}]\n", views.join(",")))?;
    Ok(())
}

fn scan(path: &Path) -> Result<LazyFrame> {
    // rechunk: contiguous columns, as the offline store scans them (the gather is faster).
    let args = ScanArgsParquet { rechunk: true, ..Default::default() };
    Ok(LazyFrame::scan_parquet(PlRefPath::new(path.to_string_lossy().as_ref()), args)?)
}

/// Counts and sums of the first feature (a float) of each view, over the first `head` rows: the
/// same figures reference.py prints, to check that the engines agree.
fn checksum(df: &DataFrame, head: usize, entities: usize) -> Result<String> {
    let df = df.head(Some(head));
    let mut parts = Vec::new();
    for spec in specs(entities) {
        let name = format!("{}_f00", spec.prefix);
        let column = df.column(&name)?.f64()?;
        parts.push(format!("{}:{}/{:.2}", spec.name, column.len() - column.null_count(), column.sum().unwrap_or(0.0)));
    }
    Ok(parts.join(" "))
}

/// The child process: times the retrieval of the first `limit` entity rows over the files in
/// `dir`, prints one `RESULT` line.
fn measure(dir: &Path, engine: &str, head: usize, limit: usize, entities: usize) -> Result<()> {
    let mut best = Duration::MAX;
    let mut last = DataFrame::empty();
    for _ in 0..RUNS {
        let started = Instant::now();
        let views: Vec<ViewHistory> = specs(entities)
            .iter()
            .map(|s| -> Result<ViewHistory> {
                Ok(ViewHistory {
                    name: s.name.into(),
                    join_keys: vec![s.key.into()],
                    features: feature_names(s),
                    ttl: (s.ttl_days > 0).then(|| Duration::from_secs(s.ttl_days * 86_400)),
                    history: scan(&dir.join(format!("{}.parquet", s.name)))?,
                })
            })
            .collect::<Result<_>>()?;
        let entity_rows = scan(&dir.join("entities.parquet"))?.limit(limit as IdxSize);
        let plan = get_historical_features(entity_rows, "event_timestamp", &views, &PitOptions::default())?;
        last = match engine {
            "streaming" => plan.collect_with_engine(Engine::Streaming)?.unwrap_single(),
            // Only read the four files: the floor under any engine reading them.
            "scan-only" => {
                let mut frames = vec![scan(&dir.join("entities.parquet"))?.limit(limit as IdxSize).collect()?];
                for view in &views {
                    frames.push(view.history.clone().collect()?);
                }
                frames.swap_remove(0)
            }
            _ => plan.collect()?,
        };
        best = best.min(started.elapsed());
    }
    anyhow::ensure!(last.schema().get("event_timestamp") == Some(&timestamp_dtype()), "unexpected timestamp type");
    if engine == "scan-only" {
        println!("RESULT rows={} seconds={:.3} rss_mb={:.0}", last.height(), best.as_secs_f64(), peak_rss_mb());
        return Ok(());
    }
    println!(
        "RESULT rows={} seconds={:.3} rss_mb={:.0} checksum_all={} checksum_head={}",
        last.height(),
        best.as_secs_f64(),
        peak_rss_mb(),
        checksum(&last, last.height(), entities)?.replace(' ', ","),
        checksum(&last, head, entities)?.replace(' ', ","),
    );
    Ok(())
}

/// The peak resident set of this process (Linux), in MiB; 0 where unknown.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One row of the final table.
struct Row {
    engine: String,
    rows: usize,
    returned: usize,
    seconds: f64,
    rss_mb: f64,
    checksum: String,
    note: String,
}

/// Parses `RESULT key=value …` from a child's output.
fn parse_result(output: &str) -> Option<std::collections::HashMap<String, String>> {
    let line = output.lines().rev().find(|l| l.starts_with("RESULT "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
    )
}

fn run_child(mut command: Command, what: &str) -> Result<std::collections::HashMap<String, String>> {
    let output = command.output().with_context(|| format!("starting {what}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{what} failed ({}):\n{stdout}\n{stderr}", output.status);
    }
    parse_result(&stdout).with_context(|| format!("{what} printed no RESULT line:\n{stdout}\n{stderr}"))
}

fn field(result: &std::collections::HashMap<String, String>, key: &str) -> Result<f64> {
    let value = result.get(key).with_context(|| format!("no `{key}` in result"))?;
    value.parse().map_err(|err| anyhow::anyhow!("`{key}` = `{value}` is no number: {err}"))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if let Some((dir, engine, head, limit)) = &args.measure {
        return measure(dir, engine, *head, *limit, args.entities);
    }

    let temporary = tempfile::tempdir()?;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => temporary.path().to_path_buf(),
    };
    let started = Instant::now();
    generate(&dir, &args)?;
    let history_rows: usize = specs(args.entities).iter().map(|s| s.entities * s.rows_per_entity).sum();
    println!(
        "generated {} entity rows, 3 views x {FEATURES_PER_VIEW} features, {history_rows} history rows in {:.1}s ({})",
        args.entity_rows,
        started.elapsed().as_secs_f64(),
        dir.display()
    );

    let feast_rows = args.feast_rows.min(args.entity_rows);
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    let mut livora_head = String::new();
    let mut runs =
        vec![("in-memory", args.entity_rows), ("streaming", args.entity_rows), ("scan-only", args.entity_rows)];
    if args.reference && feast_rows < args.entity_rows {
        runs.push(("in-memory", feast_rows));
    }
    for (engine, limit) in runs {
        let mut child = Command::new(&exe);
        child.args(["--measure", &dir.to_string_lossy(), engine, &feast_rows.to_string(), &limit.to_string()]);
        child.args(["--entities", &args.entities.to_string()]);
        let result = run_child(child, &format!("livora ({engine})"))?;
        if limit == args.entity_rows && engine != "scan-only" {
            livora_head = result.get("checksum_head").cloned().unwrap_or_default();
        }
        rows.push(Row {
            engine: format!("livora ({engine})"),
            rows: field(&result, "rows")? as usize,
            returned: field(&result, "rows")? as usize,
            seconds: field(&result, "seconds")?,
            rss_mb: field(&result, "rss_mb")?,
            checksum: result.get("checksum_all").cloned().unwrap_or_default(),
            note: if limit < args.entity_rows {
                format!("best of {RUNS}; Feast's sample (first {limit} rows)")
            } else {
                format!("best of {RUNS}")
            },
        });
    }

    if args.reference {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pit/reference.py");
        for (engine, limit) in [("duckdb", args.entity_rows), ("feast", feast_rows)] {
            let mut child = Command::new("python3");
            child.arg(&script).args([
                "--dir",
                &dir.to_string_lossy(),
                "--engine",
                engine,
                "--rows",
                &limit.to_string(),
            ]);
            let result = run_child(child, &format!("reference.py --engine {engine}"))?;
            let n = field(&result, "rows")? as usize;
            let returned = field(&result, "returned")? as usize;
            let mut note = result.get("note").cloned().unwrap_or_default().replace('_', " ");
            if n < args.entity_rows {
                let full = field(&result, "seconds")? * args.entity_rows as f64 / n as f64;
                note = format!(
                    "{note}; first {n} entity rows only; {} rows extrapolated linearly: ~{full:.0}s",
                    args.entity_rows
                );
            }
            if engine == "feast" {
                let agrees = result.get("checksum").is_some_and(|c| *c == livora_head);
                note.push_str(if agrees { "; same answer as livora" } else { "; answer differs from livora's" });
            }
            rows.push(Row {
                engine: engine.to_string(),
                rows: n,
                returned,
                seconds: field(&result, "seconds")?,
                rss_mb: field(&result, "rss_mb")?,
                checksum: result.get("checksum").cloned().unwrap_or_default(),
                note,
            });
        }
    }

    println!();
    println!("| engine | entity rows | rows returned | seconds | entity rows/s | peak RSS MiB | vs Feast | note |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let feast_rate = rows.iter().find(|r| r.engine == "feast").map(|r| r.rows as f64 / r.seconds);
    for row in &rows {
        let rate = row.rows as f64 / row.seconds;
        let speedup = feast_rate.map_or("-".to_string(), |f| format!("{:.0}x", rate / f));
        println!(
            "| {} | {} | {} | {:.3} | {:.0} | {:.0} | {} | {} |",
            row.engine, row.rows, row.returned, row.seconds, rate, row.rss_mb, speedup, row.note
        );
    }
    println!();
    for row in &rows {
        println!("checksum {} ({} rows): {}", row.engine, row.rows, row.checksum);
    }
    println!("checksum livora (first {feast_rows} rows): {livora_head}");
    if let Some(duck) = rows.iter().find(|r| r.engine == "duckdb")
        && rows.first().is_some_and(|l| l.checksum != duck.checksum)
    {
        println!("WARNING: livora and duckdb disagree on the full set");
    }
    Ok(())
}
