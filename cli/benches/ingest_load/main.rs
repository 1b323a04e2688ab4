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

mod bodies;
mod load;
mod report;
mod server;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use livora_common::ClientId;
use reqwest::header::HeaderValue;
use tokio::time::Instant;
use uuid::Uuid;

use crate::bodies::Bodies;
use crate::load::{Target, closed_loop, open_loop};
use crate::report::{CpuMeter, Machine, PhaseReport, ServerHistograms, print_report, scrape};
use crate::server::{NatsTarget, Server, create_client, delete_stream, settle, wait_ready};

/// Events per request: the collector's default (and maximum) `ingest.max_batch_events`.
/// The warning of `livora serve` for an embedded log group commit of 50 ms or more.
const SLOW_COMMIT: &str = "slow event log commit";
const BATCH: usize = 100;
/// The client the benchmark creates and sends as.
const CLIENT: &str = "bench";
/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most requests in flight in the open loop (past it the schedule waits, and the wait counts
/// in the measured latency).
const MAX_IN_FLIGHT: usize = 4_096;
/// Longest wait for the server to go idle between the phases.
const SETTLE_DEADLINE: Duration = Duration::from_secs(90);

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
    let slow_before = server.log_count(SLOW_COMMIT);
    let before = scrape(&http, server.addr).await;
    let cpu = CpuMeter::start(pid);
    let started = Instant::now();
    let tally = open_loop(&http, &target, bodies, rate, args.latency_seconds, args.max_requests).await;
    let (elapsed, cpu) = (started.elapsed(), cpu.stop());
    let after = scrape(&http, server.addr).await;
    let histograms = before.zip(after).and_then(|(b, a)| ServerHistograms::between(&b, &a));
    let latency = PhaseReport::new(tally, elapsed, cpu, histograms);
    eprintln!(
        "ingest_load: phase 2: {:.0} events/s, p99 {:.1} ms from schedule; {} embedded log commits of 50 ms or more \
         (the server's warnings)",
        latency.events_per_sec(),
        latency.latency.pct(0.99),
        server.log_count(SLOW_COMMIT) - slow_before
    );
    // Close the keep-alive connections before the server's graceful shutdown waits on them.
    drop(http);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok((throughput, latency, rate, settle))
}
