//! Measurements and the report: latencies, the CPU meter, the collector's own histograms, the
//! machine's facts, and the Markdown printed at the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use crate::bodies::Bodies;
use crate::load::Tally;
use crate::{Args, BATCH, BackendReport, Timestamps};

/// Sorted latencies, µs.
pub(crate) struct Latencies(Vec<u32>);

impl Latencies {
    /// Sorts `us`.
    fn new(mut us: Vec<u32>) -> Self {
        us.sort_unstable();
        Self(us)
    }

    /// The `p` quantile (nearest rank), ms.
    pub(crate) fn pct(&self, p: f64) -> f64 {
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
pub(crate) struct CpuUse {
    /// By the `livora serve` process.
    pub(crate) server: f64,
    /// By this load generator.
    loadgen: f64,
    /// By the whole machine (everything not idle nor waiting for I/O).
    machine: f64,
    /// Waiting for I/O, machine-wide.
    iowait: f64,
}

/// CPU counters at the start of a phase.
pub(crate) struct CpuMeter {
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
    pub(crate) fn start(pid: u32) -> Self {
        Self {
            pid,
            at: Instant::now(),
            server: process_ticks(pid).unwrap_or(0),
            own: process_ticks(std::process::id()).unwrap_or(0),
            machine: machine_ticks().unwrap_or((0, 0, 0)),
        }
    }

    /// The use since [`CpuMeter::start`].
    pub(crate) fn stop(&self) -> CpuUse {
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
pub(crate) struct PhaseReport {
    /// The requests' outcomes (latencies moved to the fields below).
    pub(crate) tally: Tally,
    /// Requests made.
    requests: u64,
    /// Latencies (from the schedule in the open loop).
    pub(crate) latency: Latencies,
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
    pub(crate) fn new(mut tally: Tally, elapsed: Duration, cpu: CpuUse, server: Option<ServerHistograms>) -> Self {
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
    pub(crate) fn events_per_sec(&self) -> f64 {
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
pub(crate) struct ServerHistograms {
    /// `livora_ingest_request_duration_seconds`: the handler, from the request to the answer.
    request: Vec<(f64, u64)>,
    /// `livora_ingest_append_duration_seconds`: the log append (the group commit's fsync, or
    /// the JetStream acknowledgement).
    append: Vec<(f64, u64)>,
}

/// The cumulative buckets of every histogram in a Prometheus text exposition, by metric name.
pub(crate) type Buckets = BTreeMap<String, Vec<(f64, u64)>>;

/// Reads `/metrics`; `None` if it cannot be read.
pub(crate) async fn scrape(http: &reqwest::Client, addr: SocketAddr) -> Option<Buckets> {
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
    pub(crate) fn between(before: &Buckets, after: &Buckets) -> Option<Self> {
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

/// Facts about the machine, for the report.
pub(crate) struct Machine {
    /// Logical CPUs available.
    pub(crate) cores: usize,
    /// The CPU model.
    pub(crate) cpu: String,
    /// Memory, GiB.
    ram_gib: f64,
    /// The kernel release.
    kernel: String,
    /// The filesystem type of the data directory's parent.
    fs: String,
    /// The load average at start.
    pub(crate) loadavg: String,
    /// When the run started.
    date: String,
}

impl Machine {
    /// Reads `/proc` and asks `stat` for the filesystem of `data_parent`.
    pub(crate) fn probe(data_parent: &Path) -> Self {
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
pub(crate) fn print_report(args: &Args, machine: &Machine, bodies: &Bodies, reports: &[BackendReport]) {
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
