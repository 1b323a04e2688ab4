//! Load benchmark of the collector's `POST /v1/events`.
//!
//! Run it with `cargo bench -p livora --bench ingest_load -- --backend both` (`--help` lists the
//! flags). For each backend it:
//!
//! 1. starts the real `livora serve` binary on a fresh temporary data directory (the embedded
//!    log, or a NATS JetStream stream and subject prefix unique to the run), with the per-client
//!    rate limit disabled, and creates a client;
//! 2. phase 1, *max throughput*: a closed loop of `--connections` keep-alive connections posting
//!    100-event batches as fast as the collector answers, for `--seconds` after a warm-up;
//! 3. lets the server settle (the lake writer drains the backlog phase 1 left in the log);
//! 4. phase 2, *latency at half the rate*: an open loop, requests sent on a fixed schedule at
//!    `--latency-fraction` of the phase-1 throughput (or `--latency-rate`), each latency measured
//!    from the request's scheduled send time, so a slow answer is not hidden by the sender
//!    waiting for it (no coordinated omission);
//! 5. stops the server with SIGTERM, deletes the temporary directory and the NATS stream.
//!
//! The request bodies are serialized before the clock starts, from simulated shop traffic; each
//! request only copies one and writes fresh `event_id`s (and, by default, the send time as
//! `timestamp`, as live traffic has) into it, so every event sent is unique and the load
//! generator's own CPU cost stays small. The load generator and the server share the machine's
//! cores: the report gives the CPU each of them used (from `/proc`), and the collector's own
//! request and log-append histograms (from `/metrics`) over each phase.
//!
//! The results are printed as Markdown, ready for `BENCHMARKS.md`. Traffic only ever goes to
//! 127.0.0.1, and every loop is bounded in time and count.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use livora_common::ClientId;
use livora_simulator::{SimConfig, Simulator};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

/// Events per request: the collector's default (and maximum) `ingest.max_batch_events`.
const BATCH: usize = 100;
/// Length of a hyphenated UUID.
const UUID_LEN: usize = 36;
/// Length of the simulator's timestamps, RFC 3339 in milliseconds: `2026-01-05T10:11:12.345Z`.
const TIMESTAMP_LEN: usize = 24;
/// The client the benchmark creates and sends as.
const CLIENT: &str = "bench";
/// People in one simulated run (its events are drawn until the body pool is full).
const SIM_USERS: u32 = 2_000;
/// Days in one simulated run.
const SIM_DAYS: u32 = 7;
/// Most simulated runs drawn to fill the body pool.
const MAX_SIM_RUNS: u64 = 1_000;
/// How long the server may take to start or to stop.
const SERVER_DEADLINE: Duration = Duration::from_secs(120);
/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most requests in flight in the open loop (past it the schedule waits, and the wait counts
/// in the measured latency).
const MAX_IN_FLIGHT: usize = 4_096;
/// Longest wait for the server to go idle between the phases.
const SETTLE_DEADLINE: Duration = Duration::from_secs(90);
/// The server counts as idle below this share of one core.
const IDLE_CORES: f64 = 0.05;

/// Which event log backend(s) to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// The embedded, fsync'd segment log.
    Embedded,
    /// NATS JetStream at `--nats-url`.
    Nats,
    /// Both, one after the other.
    Both,
}

/// Which timestamps the events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Timestamps {
    /// The send time, as live traffic has: the lake writer fills one hourly partition.
    Live,
    /// The simulated week, as a backfill has: the lake writer spreads the events over up to
    /// 168 hourly partitions.
    Simulated,
}

/// An event log backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// The embedded log.
    Embedded,
    /// NATS JetStream.
    Nats,
}

impl Backend {
    /// The backend's name, as in `event_log.backend`.
    fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Nats => "nats",
        }
    }
}

/// Ingest load benchmark: `livora serve` under 100-event `POST /v1/events` batches.
#[derive(Debug, Parser)]
#[command(name = "ingest_load")]
struct Args {
    /// The event log backend(s) to measure.
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// Phase 1: concurrent keep-alive connections, each posting as fast as answered.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Phase 1: seconds measured (after the warm-up).
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    /// Phase 1: seconds of warm-up (same load, not measured).
    #[arg(long, default_value_t = 3.0)]
    warmup_seconds: f64,
    /// Hard cap on the requests of each phase.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Phase 2: seconds of the open-loop schedule.
    #[arg(long, default_value_t = 15.0)]
    latency_seconds: f64,
    /// Phase 2: the scheduled rate, as a share of the phase-1 throughput.
    #[arg(long, default_value_t = 0.5)]
    latency_fraction: f64,
    /// Phase 2: the scheduled rate in events/s (overrides --latency-fraction).
    #[arg(long)]
    latency_rate: Option<f64>,
    /// The events' timestamps: the send time (live traffic) or the simulated week (a backfill).
    #[arg(long, value_enum, default_value_t = Timestamps::Live)]
    timestamps: Timestamps,
    /// Distinct pre-serialized request bodies (100 simulated events each) cycled through.
    #[arg(long, default_value_t = 1_000)]
    bodies: usize,
    /// Threads of the load generator's async runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// The NATS server of the `nats` backend (loopback only).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Extra `KEY=VALUE` environment of the server, e.g. a `LIVORA__…` setting (repeatable).
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// Where the temporary data directories go (default: the system's temp directory).
    #[arg(long)]
    data_parent: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    #[allow(dead_code)]
    bench: bool,
}

impl Args {
    /// Refuses values that would make the run unbounded or meaningless.
    fn check(&self) -> Result<()> {
        ensure!((1..=1024).contains(&self.connections), "--connections must be 1 to 1024");
        for (name, v) in [("--seconds", self.seconds), ("--latency-seconds", self.latency_seconds)] {
            ensure!(v > 0.0 && v <= 600.0, "{name} must be in (0, 600]");
        }
        ensure!((0.0..=600.0).contains(&self.warmup_seconds), "--warmup-seconds must be in [0, 600]");
        ensure!(self.max_requests >= 1, "--max-requests must be at least 1");
        ensure!(self.latency_fraction > 0.0 && self.latency_fraction <= 1.0, "--latency-fraction must be in (0, 1]");
        if let Some(rate) = self.latency_rate {
            ensure!((1.0..=10_000_000.0).contains(&rate), "--latency-rate must be in [1, 10000000] events/s");
        }
        ensure!((1..=100_000).contains(&self.bodies), "--bodies must be 1 to 100000");
        ensure!((1..=64).contains(&self.client_threads), "--client-threads must be 1 to 64");
        nats_addr(&self.nats_url)?;
        for kv in &self.server_env {
            ensure!(kv.split_once('=').is_some_and(|(k, _)| !k.is_empty()), "--server-env `{kv}`: expected KEY=VALUE");
        }
        Ok(())
    }

    /// The backends to measure, in order.
    fn backends(&self) -> Vec<Backend> {
        match self.backend {
            BackendArg::Embedded => vec![Backend::Embedded],
            BackendArg::Nats => vec![Backend::Nats],
            BackendArg::Both => vec![Backend::Embedded, Backend::Nats],
        }
    }
}

/// The loopback address of a `nats://127.0.0.1:4222` URL; anything else is refused.
fn nats_addr(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("nats://").context("--nats-url must be nats://127.0.0.1:PORT")?;
    let hostport = rest.rsplit('@').next().unwrap_or(rest).trim_end_matches('/');
    let hostport = hostport.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = hostport.parse().with_context(|| format!("--nats-url `{url}`: expected host:port"))?;
    ensure!(addr.ip().is_loopback(), "--nats-url must point at a loopback address, not {}", addr.ip());
    Ok(addr)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest_load: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every backend asked for and prints the report.
fn run(args: &Args) -> Result<()> {
    args.check()?;
    let parent = args.data_parent.clone().unwrap_or_else(std::env::temp_dir);
    let machine = Machine::probe(&parent);
    eprintln!("ingest_load: {} cores, {}, load average {}", machine.cores, machine.cpu, machine.loadavg);
    let runtime = if args.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.client_threads).enable_all().build()
    }
    .context("cannot start the load generator's runtime")?;

    let client = ClientId::new(CLIENT).map_err(anyhow::Error::msg)?;
    let started = std::time::Instant::now();
    let bodies = Arc::new(Bodies::generate(&client, args.bodies, args.timestamps)?);
    eprintln!(
        "ingest_load: {} bodies of {BATCH} simulated events ({:.0} bytes/event on average) in {:.1}s",
        bodies.templates.len(),
        bodies.mean_event_bytes(),
        started.elapsed().as_secs_f64()
    );

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for backend in args.backends() {
        eprintln!("ingest_load: === backend {} ===", backend.name());
        match run_backend(&runtime, args, &parent, backend, &bodies) {
            Ok(report) => reports.push(report),
            Err(e) => {
                eprintln!("ingest_load: backend {} failed: {e:#}", backend.name());
                failures.push(format!("{}: {e:#}", backend.name()));
            }
        }
    }
    print_report(args, &machine, &bodies, &reports);
    if !failures.is_empty() {
        bail!("{} backend(s) failed: {}", failures.len(), failures.join("; "));
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Request bodies
// ----------------------------------------------------------------------------------------------

/// One pre-serialized request body and where its `event_id` values are.
struct Template {
    /// `[event, event, …]`, exactly as sent.
    body: Vec<u8>,
    /// Byte offsets of the 36 characters of each event's `event_id` value.
    id_offsets: Vec<usize>,
    /// Byte offsets of the 24 characters of each event's `timestamp` value.
    ts_offsets: Vec<usize>,
}

impl Template {
    /// An empty body.
    fn empty() -> Self {
        Self { body: vec![b'['], id_offsets: Vec::with_capacity(BATCH), ts_offsets: Vec::with_capacity(BATCH) }
    }
}

/// The pool of request bodies and the source of fresh event ids.
struct Bodies {
    /// The bodies, cycled through.
    templates: Vec<Template>,
    /// A random prefix making this run's event ids unique.
    id_prefix: [u8; 8],
    /// The next event id counter.
    next_id: AtomicU64,
    /// Whether each request restamps its events with the send time.
    live: bool,
}

impl Bodies {
    /// Draws `count` bodies of [`BATCH`] events from simulated runs of client `client`.
    fn generate(client: &ClientId, count: usize, timestamps: Timestamps) -> Result<Self> {
        let start = default_start(SIM_DAYS);
        let mut templates = Vec::with_capacity(count);
        let mut current = Template::empty();
        for seed in 1..=MAX_SIM_RUNS {
            let config = SimConfig { client_id: client.clone(), users: SIM_USERS, days: SIM_DAYS, start, seed };
            let mut sim = Simulator::new(config);
            for mut event in sim.events() {
                let Value::Object(fields) = &mut event else { bail!("the simulator yielded a non-object event") };
                // Unique markers in place of the id and the timestamp, to find where they sit in
                // the text; the timestamp marker goes only where it can be restamped.
                let id_marker = Uuid::new_v4().hyphenated().to_string();
                fields.insert("event_id".to_owned(), Value::String(id_marker.clone()));
                let ts_marker = Uuid::new_v4().simple().to_string()[..TIMESTAMP_LEN].to_owned();
                let live = timestamps == Timestamps::Live;
                if live {
                    let simulated = fields.get("timestamp").and_then(Value::as_str).map_or(0, str::len);
                    ensure!(simulated == TIMESTAMP_LEN, "a simulated timestamp is not {TIMESTAMP_LEN} characters long");
                    fields.insert("timestamp".to_owned(), Value::String(ts_marker.clone()));
                }
                let text = serde_json::to_vec(&event).context("cannot serialize a simulated event")?;
                let id_at = find(&text, id_marker.as_bytes()).context("the event_id marker is missing")?;
                if !current.id_offsets.is_empty() {
                    current.body.push(b',');
                }
                current.id_offsets.push(current.body.len() + id_at);
                if live {
                    let ts_at = find(&text, ts_marker.as_bytes()).context("the timestamp marker is missing")?;
                    current.ts_offsets.push(current.body.len() + ts_at);
                }
                current.body.extend_from_slice(&text);
                if current.id_offsets.len() == BATCH {
                    current.body.push(b']');
                    let full = std::mem::replace(&mut current, Template::empty());
                    templates.push(full);
                    if templates.len() == count {
                        let mut id_prefix = [0u8; 8];
                        id_prefix.copy_from_slice(&Uuid::new_v4().as_bytes()[..8]);
                        return Ok(Self {
                            templates,
                            id_prefix,
                            next_id: AtomicU64::new(1),
                            live: timestamps == Timestamps::Live,
                        });
                    }
                }
            }
        }
        bail!("{MAX_SIM_RUNS} simulated runs gave fewer than {count} bodies")
    }

    /// A copy of body `i` (modulo the pool) with a fresh, never sent `event_id` in each event,
    /// and with live timestamps, stamped now.
    fn fresh(&self, i: u64) -> Vec<u8> {
        let template = &self.templates[(i % self.templates.len() as u64) as usize];
        let mut body = template.body.clone();
        let first = self.next_id.fetch_add(template.id_offsets.len() as u64, Ordering::Relaxed);
        for (k, &offset) in template.id_offsets.iter().enumerate() {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&self.id_prefix);
            bytes[8..].copy_from_slice(&(first + k as u64).to_be_bytes());
            // A valid v4 UUID: the version and variant bits overwrite only prefix bits and the
            // counter's two top bits, which a bounded run never reaches.
            let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
            id.hyphenated().encode_lower(&mut body[offset..offset + UUID_LEN]);
        }
        if self.live {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            if now.len() == TIMESTAMP_LEN {
                for &offset in &template.ts_offsets {
                    body[offset..offset + TIMESTAMP_LEN].copy_from_slice(now.as_bytes());
                }
            }
        }
        body
    }

    /// The mean size of an event as sent, in bytes.
    fn mean_event_bytes(&self) -> f64 {
        self.mean_body_bytes() / BATCH as f64
    }

    /// The mean size of a request body, in bytes.
    fn mean_body_bytes(&self) -> f64 {
        let total: usize = self.templates.iter().map(|t| t.body.len()).sum();
        total as f64 / self.templates.len().max(1) as f64
    }
}

/// The first position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Midnight UTC `days - 1` days ago: the simulated traffic ends at the end of today, within the
/// collector's `max_future`.
fn default_start(days: u32) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    let today = now.date_naive().and_hms_opt(0, 0, 0).map_or(now, |t| t.and_utc());
    today - chrono::Duration::days(i64::from(days) - 1)
}

// ----------------------------------------------------------------------------------------------
// The server under test
// ----------------------------------------------------------------------------------------------

/// A NATS stream and subject prefix owned by one benchmark run.
struct NatsTarget {
    /// The server URL.
    url: String,
    /// The stream name.
    stream: String,
    /// The subject prefix.
    prefix: String,
}

/// A running `livora serve` child process.
struct Server {
    /// The process.
    child: Child,
    /// Where it listens.
    addr: SocketAddr,
    /// Its stderr.
    log: PathBuf,
}

/// The `livora` binary built by cargo for this package.
fn livora_bin() -> &'static str {
    env!("CARGO_BIN_EXE_livora")
}

/// A `livora` command with a clean, reproducible environment: no inherited `LIVORA…` settings
/// or `RUST_LOG`, warnings only, the rate limit off, and the backend's settings.
fn livora_command(data: &Path, nats: Option<&NatsTarget>, extra: &[String]) -> Command {
    let mut cmd = Command::new(livora_bin());
    for (key, _) in std::env::vars_os() {
        let inherited = key.to_string_lossy().into_owned();
        if inherited.starts_with("LIVORA") || inherited == "RUST_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("--data-dir").arg(data);
    cmd.env("LIVORA__TELEMETRY__LOG_LEVEL", "warn");
    cmd.env("LIVORA__INGEST__RATE_LIMIT__EVENTS_PER_SECOND", "0");
    if let Some(nats) = nats {
        cmd.env("LIVORA__EVENT_LOG__BACKEND", "nats");
        cmd.env("LIVORA__EVENT_LOG__NATS__URL", &nats.url);
        cmd.env("LIVORA__EVENT_LOG__NATS__STREAM", &nats.stream);
        cmd.env("LIVORA__EVENT_LOG__NATS__SUBJECT_PREFIX", &nats.prefix);
        cmd.env("LIVORA__EVENT_LOG__NATS__MAX_AGE", "1h");
    }
    for (key, value) in extra.iter().filter_map(|kv| kv.split_once('=')) {
        cmd.env(key, value);
    }
    cmd
}

/// Creates the benchmark's client and returns its API key.
fn create_client(data: &Path, nats: Option<&NatsTarget>, extra: &[String]) -> Result<String> {
    let out = livora_command(data, nats, extra)
        .args(["clients", "create", CLIENT])
        .stdin(Stdio::null())
        .output()
        .context("cannot run `livora clients create`")?;
    ensure!(
        out.status.success(),
        "`livora clients create` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("api key:").map(|k| k.trim().to_owned()))
        .context("`livora clients create` printed no `api key:` line")
}

impl Server {
    /// Starts `livora serve` on a free loopback port and waits until it listens.
    fn start(data: &Path, log: &Path, nats: Option<&NatsTarget>, extra: &[String]) -> Result<Self> {
        let stderr = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = livora_command(data, nats, extra)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("cannot start `livora serve`")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        // Reads the address, then drains stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let mut server = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), log: log.to_owned() };
        let addr = match rx.recv_timeout(SERVER_DEADLINE) {
            Ok(addr) => addr,
            Err(_) => bail!("`livora serve` did not start listening; its log:\n{}", server.log_tail()),
        };
        server.addr = addr.parse().with_context(|| format!("bad listen address `{addr}`"))?;
        ensure!(server.addr.ip().is_loopback(), "the server listens on {}, not on loopback", server.addr);
        Ok(server)
    }

    /// The process id.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns how long it took.
    fn stop(&mut self) -> Result<Duration> {
        let started = std::time::Instant::now();
        let status =
            Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().context("cannot run `kill`")?;
        ensure!(status.success(), "`kill -TERM {}` failed", self.pid());
        while started.elapsed() < SERVER_DEADLINE {
            if let Some(exit) = self.child.try_wait().context("cannot wait for the server")? {
                ensure!(exit.success(), "the server exited with {exit}; its log:\n{}", self.log_tail());
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the server did not stop within {SERVER_DEADLINE:?} of SIGTERM and was killed")
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    /// Kills a server that is still running (after an error or a panic).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Deletes the NATS stream of a run.
async fn delete_stream(nats: &NatsTarget) -> Result<()> {
    let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(&nats.url))
        .await
        .context("timed out connecting to NATS")?
        .context("cannot connect to NATS")?;
    let js = async_nats::jetstream::new(client);
    tokio::time::timeout(Duration::from_secs(10), js.delete_stream(&nats.stream))
        .await
        .context("timed out deleting the stream")?
        .with_context(|| format!("cannot delete the NATS stream {}", nats.stream))?;
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// One backend
// ----------------------------------------------------------------------------------------------

/// The results of one backend.
struct BackendReport {
    /// The backend.
    backend: Backend,
    /// Phase 1.
    throughput: PhaseReport,
    /// Phase 2.
    latency: PhaseReport,
    /// Phase 2's scheduled rate, events/s.
    scheduled_rate: f64,
    /// How long the server took to go idle after phase 1, if it did.
    settle: Option<Duration>,
    /// How long the server took to stop.
    shutdown: Duration,
}

/// Starts a server for `backend`, runs both phases, stops it and cleans up.
fn run_backend(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    parent: &Path,
    backend: Backend,
    bodies: &Arc<Bodies>,
) -> Result<BackendReport> {
    let dir = tempfile::Builder::new()
        .prefix("livora-bench-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a temporary directory in {}", parent.display()))?;
    let data = dir.path().join("data");
    let nats = match backend {
        Backend::Embedded => None,
        Backend::Nats => {
            let addr = nats_addr(&args.nats_url)?;
            TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .with_context(|| format!("no NATS server at {addr}"))?;
            let id = Uuid::new_v4().simple().to_string();
            Some(NatsTarget {
                url: args.nats_url.clone(),
                stream: format!("LIVORA_BENCH_{id}"),
                prefix: format!("livora.bench.{id}"),
            })
        }
    };
    let key = create_client(&data, nats.as_ref(), &args.server_env)?;
    let mut server = Server::start(&data, &dir.path().join("server.log"), nats.as_ref(), &args.server_env)?;
    eprintln!("ingest_load: {} backend serving on {} (pid {})", backend.name(), server.addr, server.pid());

    let measured = runtime.block_on(measure(args, &server, &key, bodies));
    let stopped = server.stop();
    let deleted = match &nats {
        Some(nats) => runtime.block_on(delete_stream(nats)).map(|()| eprintln!("ingest_load: deleted {}", nats.stream)),
        None => Ok(()),
    };
    let log = server.log_tail();
    drop(server);
    let removed = dir.close().context("cannot remove the temporary directory");
    let (throughput, latency, scheduled_rate, settle) = measured.with_context(|| format!("server log:\n{log}"))?;
    let shutdown = stopped?;
    deleted?;
    removed?;
    Ok(BackendReport { backend, throughput, latency, scheduled_rate, settle, shutdown })
}

/// The collector's address and the request headers.
struct Target {
    /// `http://ADDR/v1/events`.
    url: String,
    /// `Authorization: Bearer …`.
    auth: HeaderValue,
    /// `X-Client-Id`.
    client: HeaderValue,
    /// `Content-Type: application/json`.
    json: HeaderValue,
}

/// Runs both phases against a started server.
async fn measure(
    args: &Args,
    server: &Server,
    key: &str,
    bodies: &Arc<Bodies>,
) -> Result<(PhaseReport, PhaseReport, f64, Option<Duration>)> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {key}")).context("bad api key")?;
    auth.set_sensitive(true);
    let target = Arc::new(Target {
        url: format!("http://{}/v1/events", server.addr),
        auth,
        client: HeaderValue::from_static(CLIENT),
        json: HeaderValue::from_static("application/json"),
    });
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    wait_ready(&http, server.addr).await?;

    let pid = server.pid();
    if args.warmup_seconds > 0.0 {
        eprintln!("ingest_load: warm-up {:.0}s", args.warmup_seconds);
        let warm = closed_loop(&http, &target, bodies, args.connections, args.warmup_seconds, args.max_requests).await;
        ensure!(warm.accepted_events > 0, "no request was accepted during the warm-up: {:?}", warm.errors);
    }
    eprintln!("ingest_load: phase 1, {} connections, {:.0}s", args.connections, args.seconds);
    let before = scrape(&http, server.addr).await;
    let cpu = CpuMeter::start(pid);
    let started = Instant::now();
    let tally = closed_loop(&http, &target, bodies, args.connections, args.seconds, args.max_requests).await;
    let (elapsed, cpu) = (started.elapsed(), cpu.stop());
    let after = scrape(&http, server.addr).await;
    let histograms = before.zip(after).and_then(|(b, a)| ServerHistograms::between(&b, &a));
    let throughput = PhaseReport::new(tally, elapsed, cpu, histograms);
    eprintln!(
        "ingest_load: phase 1: {:.0} events/s, p99 {:.1} ms",
        throughput.events_per_sec(),
        throughput.latency.pct(0.99)
    );
    ensure!(throughput.tally.accepted_events > 0, "no request was accepted: {:?}", throughput.tally.errors);

    let settle = settle(pid).await;
    match settle {
        Some(d) => eprintln!("ingest_load: server idle {:.1}s after phase 1", d.as_secs_f64()),
        None => eprintln!("ingest_load: server still busy {SETTLE_DEADLINE:?} after phase 1; going on"),
    }

    let rate = args.latency_rate.unwrap_or(throughput.events_per_sec() * args.latency_fraction);
    eprintln!("ingest_load: phase 2, open loop at {rate:.0} events/s, {:.0}s", args.latency_seconds);
    let before = scrape(&http, server.addr).await;
    let cpu = CpuMeter::start(pid);
    let started = Instant::now();
    let tally = open_loop(&http, &target, bodies, rate, args.latency_seconds, args.max_requests).await;
    let (elapsed, cpu) = (started.elapsed(), cpu.stop());
    let after = scrape(&http, server.addr).await;
    let histograms = before.zip(after).and_then(|(b, a)| ServerHistograms::between(&b, &a));
    let latency = PhaseReport::new(tally, elapsed, cpu, histograms);
    eprintln!(
        "ingest_load: phase 2: {:.0} events/s, p99 {:.1} ms from schedule",
        latency.events_per_sec(),
        latency.latency.pct(0.99)
    );
    // Close the keep-alive connections before the server's graceful shutdown waits on them.
    drop(http);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok((throughput, latency, rate, settle))
}

/// Waits (bounded) until `/readyz` answers 200.
async fn wait_ready(http: &reqwest::Client, addr: SocketAddr) -> Result<()> {
    let url = format!("http://{addr}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            other if Instant::now() >= deadline => bail!("{url} is not ready: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until the server's CPU use drops below [`IDLE_CORES`] over half a second (the lake
/// writer has drained the log); returns how long that took, or `None` past [`SETTLE_DEADLINE`].
async fn settle(pid: u32) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < SETTLE_DEADLINE {
        let cpu = CpuMeter::start(pid);
        tokio::time::sleep(Duration::from_millis(500)).await;
        if cpu.stop().server < IDLE_CORES {
            return Some(started.elapsed());
        }
    }
    None
}

// ----------------------------------------------------------------------------------------------
// Load generation
// ----------------------------------------------------------------------------------------------

/// The answer to one request.
enum Outcome {
    /// 200: this many events accepted.
    Accepted(u64),
    /// Another status.
    Status(u16),
    /// No answer.
    Failed(&'static str),
}

/// The body of a 200 answer.
#[derive(Deserialize)]
struct Accepted {
    /// Events accepted.
    accepted: u64,
}

/// Posts one body and reads the whole answer (so the connection can be reused).
async fn post(http: &reqwest::Client, target: &Target, body: Vec<u8>) -> Outcome {
    let sent = http
        .post(&target.url)
        .header(AUTHORIZATION, target.auth.clone())
        .header("x-client-id", target.client.clone())
        .header(CONTENT_TYPE, target.json.clone())
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Outcome::Failed("timeout"),
        Err(e) if e.is_connect() => return Outcome::Failed("connect"),
        Err(_) => return Outcome::Failed("transport"),
    };
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(text) if status == 200 => match serde_json::from_slice::<Accepted>(&text) {
            Ok(a) => Outcome::Accepted(a.accepted),
            Err(_) => Outcome::Failed("bad 200 body"),
        },
        Ok(_) => Outcome::Status(status),
        Err(e) if e.is_timeout() => Outcome::Failed("timeout"),
        Err(_) => Outcome::Failed("transport"),
    }
}

/// What a phase's requests did.
#[derive(Default)]
struct Tally {
    /// Latency of each request, µs (from the scheduled send time in the open loop).
    latency_us: Vec<u32>,
    /// Service time of each request, µs: from the actual send to the end of the answer.
    service_us: Vec<u32>,
    /// Events accepted (sum of the 200 answers' `accepted`).
    accepted_events: u64,
    /// Requests answered 200.
    ok_requests: u64,
    /// Failed requests by status or failure.
    errors: BTreeMap<String, u64>,
}

impl Tally {
    /// Records one request.
    fn record(&mut self, latency: Duration, service: Duration, outcome: Outcome) {
        let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        self.latency_us.push(us(latency));
        self.service_us.push(us(service));
        match outcome {
            Outcome::Accepted(n) => {
                self.accepted_events += n;
                self.ok_requests += 1;
            }
            Outcome::Status(s) => *self.errors.entry(s.to_string()).or_default() += 1,
            Outcome::Failed(why) => *self.errors.entry(why.to_owned()).or_default() += 1,
        }
    }

    /// Adds another tally's requests.
    fn merge(&mut self, other: Tally) {
        self.latency_us.extend(other.latency_us);
        self.service_us.extend(other.service_us);
        self.accepted_events += other.accepted_events;
        self.ok_requests += other.ok_requests;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    /// Requests made.
    fn requests(&self) -> u64 {
        self.latency_us.len() as u64
    }
}

/// Phase 1: `connections` loops, each posting the next body as soon as the previous one was
/// answered, until `seconds` passed or `max_requests` were started.
async fn closed_loop(
    http: &reqwest::Client,
    target: &Arc<Target>,
    bodies: &Arc<Bodies>,
    connections: usize,
    seconds: f64,
    max_requests: u64,
) -> Tally {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        let (http, target, bodies, started) = (http.clone(), target.clone(), bodies.clone(), started.clone());
        workers.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let n = started.fetch_add(1, Ordering::Relaxed);
                if n >= max_requests {
                    break;
                }
                let body = bodies.fresh(n);
                let sent = Instant::now();
                let outcome = post(&http, &target, body).await;
                let took = sent.elapsed();
                tally.record(took, took, outcome);
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(tally) => total.merge(tally),
            Err(_) => *total.errors.entry("worker panicked".into()).or_default() += 1,
        }
    }
    total
}

/// Records one finished open-loop request.
fn absorb(total: &mut Tally, done: Result<(Duration, Duration, Outcome), tokio::task::JoinError>) {
    match done {
        Ok((latency, service, outcome)) => total.record(latency, service, outcome),
        Err(_) => *total.errors.entry("task panicked".into()).or_default() += 1,
    }
}

/// Phase 2: requests started on a fixed schedule at `rate` events/s for `seconds`, whatever
/// the answers; each latency is measured from the request's scheduled time.
async fn open_loop(
    http: &reqwest::Client,
    target: &Arc<Target>,
    bodies: &Arc<Bodies>,
    rate: f64,
    seconds: f64,
    max_requests: u64,
) -> Tally {
    let interval = BATCH as f64 / rate;
    let count = ((seconds / interval).ceil() as u64).clamp(1, max_requests);
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = JoinSet::new();
    let mut total = Tally::default();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 * interval);
        tokio::time::sleep_until(due).await;
        while let Some(done) = tasks.try_join_next() {
            absorb(&mut total, done);
        }
        if tasks.len() >= MAX_IN_FLIGHT
            && let Some(done) = tasks.join_next().await
        {
            absorb(&mut total, done);
        }
        let (http, target, bodies) = (http.clone(), target.clone(), bodies.clone());
        tasks.spawn(async move {
            let body = bodies.fresh(i);
            let sent = Instant::now();
            let outcome = post(&http, &target, body).await;
            let end = Instant::now();
            (end.duration_since(due), end.duration_since(sent), outcome)
        });
    }
    // Every request has REQUEST_TIMEOUT; this bound only guards against a hang.
    let drain = tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(5), async {
        while let Some(done) = tasks.join_next().await {
            absorb(&mut total, done);
        }
    })
    .await;
    if drain.is_err() {
        *total.errors.entry("unfinished".into()).or_default() += tasks.len() as u64;
        tasks.abort_all();
    }
    total
}

// ----------------------------------------------------------------------------------------------
// Measurements
// ----------------------------------------------------------------------------------------------

/// Sorted latencies, µs.
struct Latencies(Vec<u32>);

impl Latencies {
    /// Sorts `us`.
    fn new(mut us: Vec<u32>) -> Self {
        us.sort_unstable();
        Self(us)
    }

    /// The `p` quantile (nearest rank), ms.
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        f64::from(self.0[rank - 1]) / 1000.0
    }

    /// The largest, ms.
    fn max(&self) -> f64 {
        self.pct(1.0)
    }
}

/// CPU used during a phase, in cores (CPU seconds per wall second).
#[derive(Debug, Clone, Copy)]
struct CpuUse {
    /// By the `livora serve` process.
    server: f64,
    /// By this load generator.
    loadgen: f64,
    /// By the whole machine (everything not idle nor waiting for I/O).
    machine: f64,
    /// Waiting for I/O, machine-wide.
    iowait: f64,
}

/// CPU counters at the start of a phase.
struct CpuMeter {
    /// The server's pid.
    pid: u32,
    /// When.
    at: Instant,
    /// The server's CPU ticks.
    server: u64,
    /// This process's CPU ticks.
    own: u64,
    /// Machine-wide (busy, iowait, total) ticks.
    machine: (u64, u64, u64),
}

impl CpuMeter {
    /// Reads the counters now.
    fn start(pid: u32) -> Self {
        Self {
            pid,
            at: Instant::now(),
            server: process_ticks(pid).unwrap_or(0),
            own: process_ticks(std::process::id()).unwrap_or(0),
            machine: machine_ticks().unwrap_or((0, 0, 0)),
        }
    }

    /// The use since [`CpuMeter::start`].
    fn stop(&self) -> CpuUse {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let hz = clock_ticks_per_sec();
        let server = process_ticks(self.pid).unwrap_or(self.server).saturating_sub(self.server);
        let own = process_ticks(std::process::id()).unwrap_or(self.own).saturating_sub(self.own);
        let (busy, iowait, total) = machine_ticks().unwrap_or(self.machine);
        let (dbusy, diowait, dtotal) = (
            busy.saturating_sub(self.machine.0),
            iowait.saturating_sub(self.machine.1),
            total.saturating_sub(self.machine.2).max(1),
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        CpuUse {
            server: server as f64 / hz / wall,
            loadgen: own as f64 / hz / wall,
            machine: dbusy as f64 / dtotal as f64 * cores,
            iowait: diowait as f64 / dtotal as f64 * cores,
        }
    }
}

/// User + system CPU ticks of a process (all its threads), from `/proc/PID/stat`.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Machine-wide (busy, iowait, total) CPU ticks, from `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], v[4], total))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks_per_sec() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
            .filter(|&hz| hz > 0.0)
            .unwrap_or(100.0)
    })
}

/// One phase's figures.
struct PhaseReport {
    /// The requests' outcomes (latencies moved to the fields below).
    tally: Tally,
    /// Requests made.
    requests: u64,
    /// Latencies (from the schedule in the open loop).
    latency: Latencies,
    /// Service times.
    service: Latencies,
    /// Wall time of the phase.
    elapsed: Duration,
    /// CPU used.
    cpu: CpuUse,
    /// The collector's own latency histograms over the phase, if `/metrics` could be read.
    server: Option<ServerHistograms>,
}

impl PhaseReport {
    /// Sorts the latencies of `tally`.
    fn new(mut tally: Tally, elapsed: Duration, cpu: CpuUse, server: Option<ServerHistograms>) -> Self {
        let requests = tally.requests();
        let latency = Latencies::new(std::mem::take(&mut tally.latency_us));
        let service = Latencies::new(std::mem::take(&mut tally.service_us));
        Self { tally, requests, latency, service, elapsed, cpu, server }
    }

    /// The collector's view, as `handler p50/p99 ≤ …, log append p50/p99 ≤ …`.
    fn server_view(&self) -> String {
        let Some(h) = &self.server else { return "server histograms unavailable".into() };
        let q = |b: &[(f64, u64)], p: f64| match quantile_bound(b, p) {
            Some(le) if le.is_finite() => format!("≤ {}", trim_ms(le * 1000.0)),
            Some(_) => format!("> {}", trim_ms(b.iter().rev().nth(1).map_or(0.0, |x| x.0) * 1000.0)),
            None => "n/a".into(),
        };
        format!(
            "handler p50 {} / p99 {} ms, log append p50 {} / p99 {} ms",
            q(&h.request, 0.5),
            q(&h.request, 0.99),
            q(&h.append, 0.5),
            q(&h.append, 0.99)
        )
    }

    /// Accepted events per second.
    fn events_per_sec(&self) -> f64 {
        self.tally.accepted_events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Answered requests per second (any status).
    fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Failed requests, as `status×count`.
    fn errors(&self) -> String {
        if self.tally.errors.is_empty() {
            return "0".into();
        }
        self.tally.errors.iter().map(|(k, v)| format!("{k}×{v}")).collect::<Vec<_>>().join(", ")
    }
}

/// The collector's latency histograms (`/metrics`) over one phase: cumulative counts by upper
/// bound in seconds, as deltas between two scrapes.
struct ServerHistograms {
    /// `livora_ingest_request_duration_seconds`: the handler, from the request to the answer.
    request: Vec<(f64, u64)>,
    /// `livora_ingest_append_duration_seconds`: the log append (the group commit's fsync, or
    /// the JetStream acknowledgement).
    append: Vec<(f64, u64)>,
}

/// The cumulative buckets of every histogram in a Prometheus text exposition, by metric name.
type Buckets = BTreeMap<String, Vec<(f64, u64)>>;

/// Reads `/metrics`; `None` if it cannot be read.
async fn scrape(http: &reqwest::Client, addr: SocketAddr) -> Option<Buckets> {
    let text = http.get(format!("http://{addr}/metrics")).send().await.ok()?.text().await.ok()?;
    let mut out = Buckets::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Some((name, labels)) = series.split_once("_bucket{") else { continue };
        let Some(le) = labels.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
        out.entry(name.to_owned()).or_default().push((le, value.parse::<f64>().ok()? as u64));
    }
    Some(out)
}

impl ServerHistograms {
    /// The change between two scrapes.
    fn between(before: &Buckets, after: &Buckets) -> Option<Self> {
        let delta = |name: &str| -> Option<Vec<(f64, u64)>> {
            let (b, a) = (before.get(name)?, after.get(name)?);
            (a.len() == b.len()).then(|| a.iter().zip(b).map(|(a, b)| (a.0, a.1.saturating_sub(b.1))).collect())
        };
        Some(Self {
            request: delta("livora_ingest_request_duration_seconds")?,
            append: delta("livora_ingest_append_duration_seconds")?,
        })
    }
}

/// The upper bound (seconds) of the bucket holding the `p` quantile of cumulative `buckets`.
fn quantile_bound(buckets: &[(f64, u64)], p: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = (p * total as f64).ceil() as u64;
    buckets.iter().find(|(_, count)| *count >= rank).map(|(le, _)| *le)
}

/// Milliseconds with the precision a bucket bound deserves.
fn trim_ms(ms: f64) -> String {
    if ms < 100.0 { format!("{ms:.1}") } else { format!("{ms:.0}") }
}

// ----------------------------------------------------------------------------------------------
// Report
// ----------------------------------------------------------------------------------------------

/// Facts about the machine, for the report.
struct Machine {
    /// Logical CPUs available.
    cores: usize,
    /// The CPU model.
    cpu: String,
    /// Memory, GiB.
    ram_gib: f64,
    /// The kernel release.
    kernel: String,
    /// The filesystem type of the data directory's parent.
    fs: String,
    /// The load average at start.
    loadavg: String,
    /// When the run started.
    date: String,
}

impl Machine {
    /// Reads `/proc` and asks `stat` for the filesystem of `data_parent`.
    fn probe(data_parent: &Path) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let ram_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        let ask = |cmd: &mut Command| {
            cmd.output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        // `findmnt` names ext4 as such; `stat -f` only knows "ext2/ext3".
        let fs = ask(Command::new("findmnt").args(["-n", "-o", "FSTYPE,SOURCE", "--target"]).arg(data_parent))
            .or_else(|| ask(Command::new("stat").args(["-f", "-c", "%T"]).arg(data_parent)))
            .map_or_else(|| "unknown".into(), |s| s.split_whitespace().collect::<Vec<_>>().join(" on "));
        let loadavg = read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            ram_gib: ram_kib / (1024.0 * 1024.0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            fs,
            loadavg,
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

/// Formats `n` with thousands separators.
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Prints the Markdown report on stdout.
fn print_report(args: &Args, machine: &Machine, bodies: &Bodies, reports: &[BackendReport]) {
    println!();
    println!("#### Ingest load, {}", machine.date);
    println!();
    println!(
        "- machine: {} cores (`nproc`), {}, {:.1} GiB RAM, Linux {}, data directory on {}; load average at start {}",
        machine.cores, machine.cpu, machine.ram_gib, machine.kernel, machine.fs, machine.loadavg
    );
    println!(
        "- load: {BATCH}-event batches of simulated shop traffic ({:.0} bytes/event, {:.1} KiB/request), \
         every event_id fresh, timestamps {}; reqwest over HTTP/1.1 keep-alive, {} client thread(s), \
         on the same cores as the server{}",
        bodies.mean_event_bytes(),
        bodies.mean_body_bytes() / 1024.0,
        match args.timestamps {
            Timestamps::Live => "stamped at send time (live traffic)",
            Timestamps::Simulated => "of the simulated week (a backfill)",
        },
        args.client_threads,
        if args.server_env.is_empty() {
            String::new()
        } else {
            format!("; server environment {}", args.server_env.join(" "))
        }
    );
    println!(
        "- phase 1: {} connections, closed loop, {:.0} s measured after {:.0} s warm-up; \
         phase 2: open loop (fixed schedule) for {:.0} s, latency measured from each request's scheduled send time",
        args.connections, args.seconds, args.warmup_seconds, args.latency_seconds
    );
    println!();
    println!(
        "| backend | phase | load | events/s accepted | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | \
         CPU: server | load gen | other | iowait |"
    );
    println!("|---|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|");
    for r in reports {
        let row = |phase: &str, load: String, p: &PhaseReport| {
            println!(
                "| {} | {phase} | {load} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                r.backend.name(),
                thousands(p.events_per_sec()),
                thousands(p.requests_per_sec()),
                p.latency.pct(0.50),
                p.latency.pct(0.90),
                p.latency.pct(0.99),
                p.latency.max(),
                p.errors(),
                p.cpu.server,
                p.cpu.loadgen,
                (p.cpu.machine - p.cpu.server - p.cpu.loadgen).max(0.0),
                p.cpu.iowait,
            );
        };
        row("1 max throughput", format!("{} conns, closed loop", args.connections), &r.throughput);
        row("2 latency (open loop)", format!("{} events/s scheduled", thousands(r.scheduled_rate)), &r.latency);
    }
    println!();
    println!(
        "CPU columns are in cores (CPU-seconds per second) over the phase: `livora serve`, this load generator, \
         everything else busy on the machine (NATS server, kernel, other jobs), and time waiting for I/O."
    );
    println!();
    for r in reports {
        println!(
            "- {}: phase 1: {} requests; collector's own histograms: {}. Server idle {} after phase 1 \
             (the lake writer's backlog).",
            r.backend.name(),
            thousands(r.throughput.requests as f64),
            r.throughput.server_view(),
            r.settle.map_or_else(|| "not reached".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
        );
        println!(
            "- {}: phase 2: service time (from the actual send) p50 {:.1} ms, p99 {:.1} ms; \
             collector's own histograms: {}. SIGTERM to exit {:.1} s.",
            r.backend.name(),
            r.latency.service.pct(0.50),
            r.latency.service.pct(0.99),
            r.latency.server_view(),
            r.shutdown.as_secs_f64()
        );
    }
}
