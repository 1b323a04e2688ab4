//! Online lookup and prediction benchmark: `livora serve` answering `GetOnlineFeatures` for 1 and
//! 100 entities × the 25 features of `user_activity`, over gRPC and the JSON twin, on the
//! embedded store (redb) and on Redis, side by side with Feast's Python feature server on the
//! same rows; and answering `InferenceService/Predict` of a `churn` model over 25 inputs of two
//! views (the features fetched online by the server, as a CRM app calls it) and KServe V2
//! `ModelInfer` (the caller sending the features).
//!
//! Run it with `cargo bench -p livora --bench feature_lookup` (`-- --help` lists the flags).
//! For each Livora online store it:
//!
//! 1. makes a temporary data directory, runs `livora clients create bench` and
//!    `livora apply feature-store/example-repo --client bench`;
//! 2. writes `--users` rows of `user_activity` (23 stored typed values, event times in the last
//!    minute, so every value is `PRESENT`), and of `customer_profile` (the model's second view),
//!    through `livora_feature_store::online::open`: into the
//!    redb file before the server opens it (the file admits one process), or into Redis under a
//!    key prefix unique to the run, which the server is then configured with;
//! 3. starts the `livora serve` binary cargo built for this bench (the bench profile, an
//!    optimised build) on loopback ports;
//! 4. measures, each phase after a warm-up at the same load: a closed loop for the highest
//!    throughput; an open loop at `--rate` (1 entity, gRPC); an open loop at `--batch-rate` with
//!    `--batch-entities` per request (gRPC); an open loop of the JSON twin at `--json-rate`;
//!    then for each `churn` version (`--models`, registered before the server starts, see
//!    `model.rs`): `Predict` of 1 entity at `--predict-rate` and of `--batch-entities` at
//!    `--batch-rate`, and `ModelInfer` of 1 row at `--predict-rate`;
//! 5. stops the server and deletes the directory (and the Redis keys).
//!
//! Then, for each Feast online store (`--feast sqlite,redis`), `feast_reference.py` builds a Feast
//! repository on the same rows (a Parquet FileSource, one entity `user_id`, one feature view of
//! the same 25 fields, materialized into the online store) and starts `feast serve`; the same
//! load generator finds its highest throughput (closed loop), then runs an open loop at
//! `--feast-fraction` of it, for 1 and for 100 entities. Last, Feast's in-process
//! `FeatureStore.get_online_features` is timed in Python, its best case.
//!
//! Open loops send each request at its scheduled time whatever the server does and count the
//! latency from that time (see `load.rs`), so there is no coordinated omission. The load
//! generator shares the machine's cores with the server; the report gives the CPU each used.
//! The gRPC open loops are sent by `raw.rs` unless `--generators` says otherwise: HTTP/2 frames
//! on one thread that wakes on a clock, every request encoded before the clock starts; it takes
//! a quarter to a half less CPU than the `h2` client on tokio (`load.rs`), which the closed loops
//! and the HTTP/1.1 loops use.
//! The results are printed as a Markdown table. Traffic only goes to loopback addresses, and
//! every loop is bounded in time and count.

mod data;
mod load;
mod model;
mod raw;
mod report;
mod servers;
mod targets;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use livora_common::ClientId;
use reqwest::header::HeaderMap;
use uuid::Uuid;

use crate::data::Rows;
use crate::load::{Tally, closed_loop, open_loop};
use crate::report::{CpuMeter, Line, Machine, print_table, thousands};
use crate::servers::{Livora, Server, apply, create_client, feast_script_run, free_port, start_feast};
use crate::targets::{Grpc, Health, Json, Kserve, Outcome, Predict, Target};

/// The load generator allocates for every request and answer; mimalloc, as in `livora` itself,
/// keeps its CPU (which the server shares) low.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The client the benchmark creates and reads as.
const CLIENT: &str = "bench";
/// With `--pin`: the load generator's CPU, and the servers'.
const CLIENT_CPU: &str = "0";
const SERVER_CPU: &str = "1";

/// A Livora online store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Store {
    /// The embedded redb file (the default backend).
    Redb,
    /// Redis at `--redis-url`.
    Redis,
}

/// A Feast online store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FeastStore {
    /// Feast's SQLite online store (its local default).
    Sqlite,
    /// Feast's Redis online store, at `--redis-url`.
    Redis,
    /// No Feast reference.
    None,
}

/// What to measure on each Livora store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Closed loops: the highest throughput (gRPC, and JSON on redb).
    Max,
    /// gRPC, 1 entity, open loop at `--rate`.
    Grpc,
    /// gRPC, `--batch-entities` entities, open loop at `--batch-rate`.
    Batch,
    /// The JSON twin, 1 entity, open loop at `--json-rate` (redb only).
    Json,
    /// `InferenceService/Predict` of each `--models` version: 1 entity at `--predict-rate`, and
    /// `--batch-entities` at `--batch-rate` (the server fetches the features online itself).
    Predict,
    /// KServe V2 `ModelInfer` of each `--models` version, the caller sending the features: 1 row
    /// at `--predict-rate`.
    Kserve,
    /// The floor: gRPC `grpc.health.v1.Health/Check`, which the server does no work for, open
    /// loop at `--rate` and at `--predict-rate` — the least any gRPC call takes here at those
    /// rates, with this load generator on the same machine.
    Floor,
}

/// A model algorithm of the prediction phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModelAlgorithm {
    /// Logistic regression (the interpretable baseline).
    Logistic,
    /// Gradient-boosted trees.
    Gbdt,
}

impl ModelAlgorithm {
    fn algorithm(self) -> livora_models::Algorithm {
        match self {
            ModelAlgorithm::Logistic => livora_models::Algorithm::Logistic,
            ModelAlgorithm::Gbdt => livora_models::Algorithm::Gbdt,
        }
    }
}

/// Online lookup benchmark: Livora (gRPC, JSON; redb, Redis) and Feast on the same rows.
#[derive(Debug, Parser)]
#[command(name = "feature_lookup")]
struct Args {
    /// Users (entity rows) in the online store; each request reads random ones.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Livora's online stores to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "redb,redis")]
    store: Vec<Store>,
    /// What to measure on each Livora store.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "max,grpc,batch,json,predict,kserve")]
    modes: Vec<Mode>,
    /// The `churn` versions the prediction phases score, one per algorithm (version 1, 2, ...).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "logistic,gbdt")]
    models: Vec<ModelAlgorithm>,
    /// Open loop of `Predict` and `ModelInfer`, 1 entity: requests/s.
    #[arg(long, default_value_t = 10_000.0)]
    predict_rate: f64,
    /// `Predict`: the feature contributions asked for per entity (linear and tree models).
    #[arg(long, default_value_t = 0)]
    contributions: u32,
    /// Feast's online stores to compare with (`none` for none).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sqlite,redis")]
    feast: Vec<FeastStore>,
    /// Open loop, 1 entity over gRPC: requests/s.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Entity rows per request of the batch phase.
    #[arg(long, default_value_t = 100)]
    batch_entities: usize,
    /// Open loop of the batch phase: requests/s.
    #[arg(long, default_value_t = 1_000.0)]
    batch_rate: f64,
    /// Open loop of the JSON twin, 1 entity: requests/s.
    #[arg(long, default_value_t = 10_000.0)]
    json_rate: f64,
    /// Seconds measured of each open loop.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    /// Seconds of warm-up before each phase (same load, not measured).
    #[arg(long, default_value_t = 3.0)]
    warmup_seconds: f64,
    /// Seconds measured of each closed loop.
    #[arg(long, default_value_t = 10.0)]
    max_seconds: f64,
    /// Requests in flight in the closed loops.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections of the gRPC client (requests go round-robin).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// The load generators of the gRPC open loops, each measured in turn: `raw` writes and
    /// reads HTTP/2 frames on one thread that wakes on a clock (`raw.rs`), `h2` runs the `h2`
    /// client on the bench's tokio runtime (`load.rs`). The closed loops and HTTP/1.1 use the
    /// tokio runtime.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "raw")]
    generators: Vec<Generator>,
    /// The `raw` generator wakes at most once per this many µs, and sends every request due by
    /// then (each one's latency still counts from its own scheduled time).
    #[arg(long, default_value_t = 50)]
    pace_us: u64,
    /// Feast: worker processes of `feast serve`.
    #[arg(long, default_value_t = 2)]
    feast_workers: usize,
    /// Feast: the open loops' rate, as a share of the closed loop's throughput.
    #[arg(long, default_value_t = 0.5)]
    feast_fraction: f64,
    /// Redis, for `--store redis` and `--feast redis` (loopback only).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The Python with Feast installed (`pip install "feast[redis]"`).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Pin the servers (`livora serve`, `feast serve`) to CPU 1 and the load generator to CPU 0
    /// (`taskset`), instead of letting them share both cores. Livora's runtime then has one
    /// worker thread (tokio sizes it by the CPUs it may use).
    #[arg(long)]
    pin: bool,
    /// Extra `KEY=VALUE` environment of `livora serve`, e.g. a `LIVORA__…` setting (repeatable).
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// Where the temporary directories go (default: the system's temp directory).
    #[arg(long)]
    data_parent: Option<PathBuf>,
    /// Passed by `cargo bench`. Without it (e.g. `cargo test --benches`) nothing is run.
    #[arg(long)]
    bench: bool,
}

impl Args {
    /// Refuses values that would make the run unbounded or meaningless.
    fn check(&self) -> Result<()> {
        ensure!((1..=10_000_000).contains(&self.users), "--users must be 1 to 10000000");
        for (name, rate) in [
            ("--rate", self.rate),
            ("--batch-rate", self.batch_rate),
            ("--json-rate", self.json_rate),
            ("--predict-rate", self.predict_rate),
        ] {
            ensure!((1.0..=200_000.0).contains(&rate), "{name} must be in [1, 200000] requests/s");
        }
        ensure!((1..=1_000).contains(&self.batch_entities), "--batch-entities must be 1 to 1000");
        for (name, v) in [("--seconds", self.seconds), ("--max-seconds", self.max_seconds)] {
            ensure!(v > 0.0 && v <= 300.0, "{name} must be in (0, 300]");
        }
        ensure!((0.0..=60.0).contains(&self.warmup_seconds), "--warmup-seconds must be in [0, 60]");
        ensure!((1..=1_024).contains(&self.concurrency), "--concurrency must be 1 to 1024");
        ensure!(self.contributions <= 25, "--contributions must be 0 to 25 (the model has 25 inputs)");
        ensure!(!self.models.is_empty(), "--models needs at least one algorithm");
        ensure!((1..=64).contains(&self.connections), "--connections must be 1 to 64");
        ensure!(!self.generators.is_empty(), "--generators needs at least one of raw, h2");
        ensure!((1..=10_000).contains(&self.pace_us), "--pace-us must be 1 to 10000");
        ensure!((1..=16).contains(&self.feast_workers), "--feast-workers must be 1 to 16");
        ensure!(self.feast_fraction > 0.0 && self.feast_fraction <= 1.0, "--feast-fraction must be in (0, 1]");
        redis_hostport(&self.redis_url)?;
        for kv in &self.server_env {
            ensure!(kv.split_once('=').is_some_and(|(k, _)| !k.is_empty()), "--server-env `{kv}`: expected KEY=VALUE");
        }
        Ok(())
    }
}

/// `127.0.0.1:6379` of a `redis://127.0.0.1:6379` URL; anything but loopback is refused.
fn redis_hostport(url: &str) -> Result<String> {
    let rest = url.strip_prefix("redis://").context("--redis-url must be redis://127.0.0.1:PORT")?;
    let hostport = rest.trim_end_matches('/').replace("localhost", "127.0.0.1");
    let addr: std::net::SocketAddr =
        hostport.parse().with_context(|| format!("--redis-url `{url}`: expected host:port"))?;
    ensure!(addr.ip().is_loopback(), "--redis-url must point at a loopback address, not {}", addr.ip());
    Ok(hostport)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.bench {
        eprintln!("feature_lookup: nothing run; start it with `cargo bench -p livora --bench feature_lookup`");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feature_lookup: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A load generator of the gRPC open loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Generator {
    /// HTTP/2 frames written and read by one thread that wakes on a clock, every request
    /// encoded up front.
    Raw,
    /// The `h2` client on a single-threaded tokio runtime, a task per request.
    H2,
}

impl Generator {
    /// What a line's description says of it when several are measured.
    fn suffix(self) -> &'static str {
        match self {
            Generator::Raw => " (raw frames)",
            Generator::H2 => " (h2 client)",
        }
    }

    /// The generator in the report's header.
    fn describe(self) -> &'static str {
        match self {
            Generator::Raw => "raw HTTP/2 frames on one clock-paced thread (raw.rs)",
            Generator::H2 => "the h2 client on tokio (load.rs)",
        }
    }
}

/// One phase: a load against a target.
#[derive(Clone, Copy)]
enum Load {
    /// A fixed schedule of this many requests/s.
    Open(f64),
    /// This many loops, each sending when answered.
    Closed(usize),
}

/// The bench's shared state.
struct Bench<'a> {
    args: &'a Args,
    runtime: tokio::runtime::Runtime,
    lines: Vec<Line>,
    /// Seeds the users of each phase differently.
    phase: u64,
}

impl Bench<'_> {
    /// Warms up, then measures `load` on `target` for `seconds`, and adds the line; an open
    /// loop of a gRPC target once with each load generator of `--generators`. Returns the
    /// answered requests/s (of the last).
    fn measure(
        &mut self,
        label: (&'static str, &'static str, &'static str),
        target: &Arc<Target>,
        load: Load,
        seconds: f64,
        server: u32,
    ) -> f64 {
        let generators = match (load, target.grpc()) {
            (Load::Open(_), Some(_)) => self.args.generators.clone(),
            // HTTP/1.1 and the closed loops have one load generator.
            _ => vec![Generator::H2],
        };
        // The line names its generator when there are several.
        let named = generators.len() > 1;
        let mut achieved = 0.0;
        for generator in generators {
            let suffix = if named { generator.suffix() } else { "" };
            achieved = self.measure_with((generator, suffix), label, target, load, seconds, server);
        }
        achieved
    }

    fn measure_with(
        &mut self,
        (generator, suffix): (Generator, &str),
        label: (&'static str, &'static str, &'static str),
        target: &Arc<Target>,
        load: Load,
        seconds: f64,
        server: u32,
    ) -> f64 {
        self.phase += 1;
        let seed = self.phase * 1_000_000_000;
        let (connections, pace) = (self.args.connections, Duration::from_micros(self.args.pace_us));
        let go = |seconds: f64, seed: u64| match (load, generator, target.grpc()) {
            (Load::Open(rate), Generator::Raw, Some(call)) => {
                let count = ((rate * seconds).ceil() as usize).max(1);
                raw::open_loop(call, (connections, pace), rate, seconds, seed)
                    .unwrap_or_else(|e| Tally::not_started(count, format!("{e:#}")))
            }
            (Load::Open(rate), ..) => self.runtime.block_on(open_loop(target, rate, seconds, seed)),
            (Load::Closed(n), ..) => self.runtime.block_on(closed_loop(target, n, seconds, seed)),
        };
        let description = match load {
            Load::Open(rate) => format!("open loop {}/s{suffix}", thousands(rate)),
            Load::Closed(n) => format!("closed loop, {n} in flight{suffix}"),
        };
        eprintln!("feature_lookup: {} {} {}, {} entities: {description}", label.0, label.1, label.2, target.entities());
        if self.args.warmup_seconds > 0.0 {
            go(self.args.warmup_seconds, seed + 500_000_000);
        }
        let compiler_before = Machine::compiler_running();
        let cpu = CpuMeter::start(server);
        let tally = go(seconds, seed);
        let cpu = cpu.stop();
        let mut line =
            Line::new(label, target.entities(), description, &tally, Some(cpu), matches!(load, Load::Open(_)));
        line.disturbed = compiler_before || Machine::compiler_running();
        eprintln!(
            "feature_lookup:   {} req/s, p50 {:.3} ms, p99 {:.3} ms, errors: {}{}",
            thousands(line.achieved),
            f64::from(line.pct_us[0]) / 1000.0,
            line.p99_ms(),
            line.errors,
            tally.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
        );
        let achieved = line.achieved;
        self.lines.push(line);
        achieved
    }

    /// One request that must succeed before any timing.
    fn probe(&self, target: &Target) -> Result<()> {
        match self.runtime.block_on(target.call(1)) {
            Outcome::Ok => Ok(()),
            Outcome::Failed(kind, message) => bail!("the first request failed ({kind}): {message}"),
        }
    }
}

fn run(args: &Args) -> Result<()> {
    args.check()?;
    let parent = args.data_parent.clone().unwrap_or_else(std::env::temp_dir);
    let machine = Machine::probe();
    eprintln!("feature_lookup: {} cores, {}, load average {}", machine.cores, machine.cpu, machine.loadavg);
    if args.pin {
        ensure!(machine.cores >= 2, "--pin needs 2 CPUs");
        servers::pin_self(CLIENT_CPU)?;
    }
    // The open loops pace with this thread's own sleeps; a sleep should end when asked.
    if let Err(e) = load::fine_timer_slack() {
        eprintln!("feature_lookup: the sleeps keep the kernel's default timer slack (50 µs): {e:#}");
    }
    // One thread: the open loop paces with the thread's own sleeps (see load.rs), and requests
    // and connections never hop between threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the load generator's runtime")?;
    let now = chrono::Utc::now().timestamp_micros();
    let rows = Rows::generate(args.users, now, 42);
    let profiles = model::profile_rows(args.users, now, 43);
    let inputs = Arc::new(model::Inputs::of(&rows, &profiles, now)?);
    let data = Data { rows: &rows, profiles: &profiles, inputs };
    let mut bench = Bench { args, runtime, lines: Vec::new(), phase: 0 };
    let mut failures = Vec::new();
    for &store in &args.store {
        if let Err(e) = livora(&mut bench, &parent, store, &data) {
            eprintln!("feature_lookup: Livora on {store:?} failed: {e:#}");
            failures.push(format!("Livora {store:?}: {e:#}"));
        }
    }
    for &store in args.feast.iter().filter(|&&s| s != FeastStore::None) {
        if let Err(e) = feast(&mut bench, &parent, store, &rows, now) {
            eprintln!("feature_lookup: Feast on {store:?} failed: {e:#}");
            failures.push(format!("Feast {store:?}: {e:#}"));
        }
    }
    println!(
        "\nMachine: {} cores, {}; load average at start {}. {} users; {}; gRPC open loops by {}.\n",
        machine.cores,
        machine.cpu,
        machine.loadavg,
        args.users,
        if args.pin {
            "servers pinned to CPU 1, the load generator to CPU 0"
        } else {
            "the load generator and the servers share the cores"
        },
        args.generators.iter().map(|g| g.describe()).collect::<Vec<_>>().join(" and ")
    );
    print_table(&bench.lines);
    verdicts(args, &bench.lines);
    if !failures.is_empty() {
        bail!("{} part(s) failed: {}", failures.len(), failures.join("; "));
    }
    Ok(())
}

/// What the Livora phases read: the rows of the two views, and the model's inputs.
struct Data<'a> {
    rows: &'a Rows,
    profiles: &'a [(livora_feature_store::RowKey, livora_feature_store::OnlineRow)],
    inputs: Arc<model::Inputs>,
}

/// Prints whether the targets of issue 3 §6 and issue 4 §4 are met.
fn verdicts(args: &Args, lines: &[Line]) {
    println!();
    for l in lines.iter().filter(|l| l.system == "Livora" && l.api.starts_with("Predict") && l.entities == 1) {
        if !l.load.starts_with("open") {
            continue;
        }
        let met = l.achieved >= args.predict_rate * 0.99 && l.p99_ms() < 2.0 && l.errors == "0";
        println!(
            "Target {} {}: Predict of 1 entity over gRPC, p99 < 2 ms at {} req/s: {} (p99 {:.3} ms at {} req/s answered)",
            l.store,
            l.api,
            thousands(args.predict_rate),
            if met { "met" } else { "NOT met" },
            l.p99_ms(),
            thousands(l.achieved)
        );
    }
    for (store, bound) in [("redb", 1.0), ("Redis", 2.0)] {
        let line = lines.iter().find(|l| {
            l.system == "Livora" && l.store == store && l.api == "gRPC" && l.entities == 1 && l.load.starts_with("open")
        });
        if let Some(l) = line {
            let rate_met = l.achieved >= args.rate * 0.99;
            let met = rate_met && l.p99_ms() < bound && l.errors == "0";
            println!(
                "Target {store}: 1 × 25 over gRPC, p99 < {bound} ms at {} req/s: {} (p99 {:.3} ms at {} req/s answered)",
                thousands(args.rate),
                if met { "met" } else { "NOT met" },
                l.p99_ms(),
                thousands(l.achieved)
            );
        }
    }
}

/// Measures Livora on one online store.
fn livora(bench: &mut Bench<'_>, parent: &Path, store: Store, data_set: &Data<'_>) -> Result<()> {
    let args = bench.args;
    let dir = tempfile::Builder::new().prefix("livora-lookup-").tempdir_in(parent)?;
    let data = dir.path().join("data");
    let client = ClientId::new(CLIENT).map_err(anyhow::Error::msg)?;
    let (name, config, mut env, prefix) = match store {
        Store::Redb => ("redb", data::redb_config(), Vec::new(), None),
        Store::Redis => {
            let prefix = format!("livora:bench:{}:", Uuid::new_v4().simple());
            let env = vec![
                ("LIVORA__ONLINE_STORE__BACKEND".to_owned(), "redis".to_owned()),
                ("LIVORA__ONLINE_STORE__URL".to_owned(), args.redis_url.clone()),
                ("LIVORA__ONLINE_STORE__KEY_PREFIX".to_owned(), prefix.clone()),
            ];
            ("Redis", data::redis_config(&args.redis_url, &prefix), env, Some(prefix))
        }
    };
    env.extend(args.server_env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())));
    let key = create_client(&data, &env, CLIENT)?;
    apply(&data, &env, CLIENT)?;
    let started = std::time::Instant::now();
    let rows = data_set.rows;
    bench.runtime.block_on(rows.populate(&config, &data, &client, data_set.profiles))?;
    eprintln!(
        "feature_lookup: {} rows written to {name} in {:.1}s",
        rows.rows.len() + data_set.profiles.len(),
        started.elapsed().as_secs_f64()
    );
    let models = if args.modes.iter().any(|m| matches!(m, Mode::Predict | Mode::Kserve)) {
        let algorithms: Vec<_> = args.models.iter().map(|m| m.algorithm()).collect();
        bench.runtime.block_on(model::register(&data, &client, &data_set.inputs, &algorithms))?
    } else {
        Vec::new()
    };

    let measured =
        livora_phases(bench, &dir.path().join("server.log"), (&data, &env, &key, name), (&models, &data_set.inputs));
    let cleaned = match &prefix {
        Some(prefix) => bench.runtime.block_on(data::delete_redis_prefix(&args.redis_url, prefix)).map(|n| {
            eprintln!("feature_lookup: deleted {n} redis keys");
        }),
        None => Ok(()),
    };
    measured?;
    cleaned
}

/// Starts `livora serve` and runs every mode asked for.
fn livora_phases(
    bench: &mut Bench<'_>,
    log: &Path,
    (data, env, key, name): (&Path, &[(String, String)], &str, &'static str),
    (models, inputs): (&[(&'static str, String)], &Arc<model::Inputs>),
) -> Result<()> {
    let args = bench.args;
    let mut server = Livora::start(data, env, log, args.pin.then_some(SERVER_CPU))?;
    let pid = server.server.pid();
    let connect = |entities| Grpc::connect(server.grpc, args.connections, CLIENT, key, args.users, entities);
    let one = Arc::new(Target::Grpc(bench.runtime.block_on(connect(1))?));
    bench.probe(&one).with_context(|| format!("server log:\n{}", server.server.log_tail()))?;
    let json_url = format!("http://{}/v1/features/online", server.http);
    let json = Arc::new(Target::Json(Json::new(json_url, Json::livora_headers(CLIENT, key)?, args.users, 1)?));
    bench.probe(&json)?;
    let grpc = ("Livora", name, "gRPC");
    let http = ("Livora", name, "JSON (HTTP/1.1)");
    if args.modes.contains(&Mode::Max) {
        bench.measure(grpc, &one, Load::Closed(args.concurrency), args.max_seconds, pid);
        if name == "redb" {
            bench.measure(http, &json, Load::Closed(args.concurrency), args.max_seconds, pid);
        }
    }
    if args.modes.contains(&Mode::Floor) {
        let connect = Health::connect(server.grpc, args.connections, (CLIENT, key));
        let health = Arc::new(Target::Health(bench.runtime.block_on(connect)?));
        for rate in [args.rate, args.predict_rate] {
            bench.measure(
                ("Livora", name, "gRPC health check (no work)"),
                &health,
                Load::Open(rate),
                args.seconds,
                pid,
            );
        }
    }
    if args.modes.contains(&Mode::Grpc) {
        bench.measure(grpc, &one, Load::Open(args.rate), args.seconds, pid);
    }
    if args.modes.contains(&Mode::Batch) {
        let batch = Arc::new(Target::Grpc(bench.runtime.block_on(connect(args.batch_entities))?));
        bench.probe(&batch)?;
        bench.measure(grpc, &batch, Load::Open(args.batch_rate), args.seconds, pid);
    }
    if args.modes.contains(&Mode::Json) && name == "redb" {
        bench.measure(http, &json, Load::Open(args.json_rate), args.seconds, pid);
    }
    for (algorithm, reference) in models {
        let credentials = (CLIENT, key);
        if args.modes.contains(&Mode::Predict) {
            let api = predict_api(algorithm, false);
            for (entities, rate) in [(1, args.predict_rate), (args.batch_entities, args.batch_rate)] {
                let model = (reference.as_str(), args.contributions);
                let connect = Predict::connect(server.grpc, args.connections, credentials, model, args.users, entities);
                let target = Arc::new(Target::Predict(bench.runtime.block_on(connect)?));
                bench.probe(&target).with_context(|| format!("server log:\n{}", server.server.log_tail()))?;
                bench.measure(("Livora", name, api), &target, Load::Open(rate), args.seconds, pid);
            }
        }
        if args.modes.contains(&Mode::Kserve) {
            let (model, version) = reference.split_once('@').context("a model reference without a version")?;
            let connect =
                Kserve::connect(server.grpc, args.connections, credentials, (model, version), inputs.clone(), 1);
            let target = Arc::new(Target::Kserve(bench.runtime.block_on(connect)?));
            bench.probe(&target)?;
            let api = predict_api(algorithm, true);
            bench.measure(("Livora", name, api), &target, Load::Open(args.predict_rate), args.seconds, pid);
        }
    }
    // The connections close once the runtime runs again after their last handle is gone; the
    // server's graceful shutdown waits for them.
    drop((one, json));
    bench.runtime.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    server.server.stop()
}

/// The API column of a prediction phase: the method and the model's algorithm.
fn predict_api(algorithm: &str, kserve: bool) -> &'static str {
    match (algorithm, kserve) {
        ("logistic", false) => "Predict (gRPC), logistic",
        ("logistic", true) => "KServe ModelInfer (gRPC), logistic",
        (_, false) => "Predict (gRPC), gbdt",
        (_, true) => "KServe ModelInfer (gRPC), gbdt",
    }
}

/// Measures Feast's feature server on one of its online stores, and its in-process reads.
fn feast(bench: &mut Bench<'_>, parent: &Path, store: FeastStore, rows: &Rows, now: i64) -> Result<()> {
    let args = bench.args;
    let dir = tempfile::Builder::new().prefix("livora-lookup-feast-").tempdir_in(parent)?;
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo)?;
    let repo_arg = repo.to_string_lossy().into_owned();
    let csv = dir.path().join("rows.csv");
    rows.write_csv(&csv, now)?;
    let (online, name) = match store {
        FeastStore::Redis => ("redis", "Redis"),
        _ => ("sqlite", "SQLite"),
    };
    let redis = redis_hostport(&args.redis_url)?;
    let csv_arg = csv.to_string_lossy().into_owned();
    eprintln!("feature_lookup: Feast: apply and materialize {} rows into {name}", rows.rows.len());
    let setup = feast_script_run(
        &args.python,
        &["setup", "--dir", &repo_arg, "--csv", &csv_arg, "--online", online, "--redis", &redis],
    )?;
    eprintln!("feature_lookup: Feast setup: {setup}");

    let served = feast_phases(bench, &repo, &dir.path().join("feast.log"), name);
    let users = args.users.to_string();
    let mut inprocess = Ok(());
    if served.is_ok() {
        for entities in [1, args.batch_entities] {
            let ran = feast_script_run(
                &args.python,
                &["inprocess", "--dir", &repo_arg, "--users", &users, "--entities", &entities.to_string()],
            )
            .and_then(|out| Ok(serde_json::from_str::<serde_json::Value>(&out)?));
            match ran {
                Ok(json) => {
                    eprintln!("feature_lookup: Feast in-process, {entities} entities: {json}");
                    bench.lines.push(Line::inprocess(name, entities, &json));
                }
                Err(e) => inprocess = Err(e),
            }
        }
    }
    let teardown = if store == FeastStore::Redis {
        feast_script_run(&args.python, &["teardown", "--dir", &repo_arg]).map(drop).or_else(|e| {
            // teardown prints nothing on success: only a failed run is an error.
            if e.to_string().contains("no JSON line") { Ok(()) } else { Err(e) }
        })
    } else {
        Ok(())
    };
    served?;
    inprocess?;
    teardown
}

/// Starts `feast serve` and measures it: highest throughput, then an open loop at a share of it,
/// for 1 and for `--batch-entities` entities.
fn feast_phases(bench: &mut Bench<'_>, repo: &Path, log: &Path, name: &'static str) -> Result<()> {
    let args = bench.args;
    let port = free_port()?;
    let pin = args.pin.then_some(SERVER_CPU);
    let mut server: Server =
        bench.runtime.block_on(start_feast(&args.python, repo, (port, args.feast_workers), log, pin))?;
    let pid = server.pid();
    let url = format!("http://127.0.0.1:{port}/get-online-features");
    let label = ("Feast", name, "HTTP JSON (feast serve)");
    for (entities, open_cap) in [(1, args.rate), (args.batch_entities, args.batch_rate)] {
        let target = Arc::new(Target::Json(Json::new(url.clone(), HeaderMap::new(), args.users, entities)?));
        bench.probe(&target).with_context(|| format!("feast log:\n{}", server.log_tail()))?;
        let max = bench.measure(label, &target, Load::Closed(args.concurrency), args.max_seconds, pid);
        let rate = (max * args.feast_fraction).min(open_cap).max(1.0);
        if entities == 1 && max < args.rate {
            eprintln!(
                "feature_lookup: Feast ({name}) answers at most {} req/s: it cannot sustain {} req/s",
                thousands(max),
                thousands(args.rate)
            );
        }
        bench.measure(label, &target, Load::Open(rate), args.seconds, pid);
    }
    bench.runtime.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    server.stop()
}
