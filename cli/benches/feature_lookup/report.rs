//! Figures: percentiles of a tally, CPU use from `/proc`, the machine, and the Markdown table.

use std::process::Command;
use std::time::Instant;

use crate::load::Tally;

/// Percentiles and rates of one measured phase, ready to print.
pub(crate) struct Line {
    /// `Livora` or `Feast`.
    pub(crate) system: &'static str,
    /// `redb`, `Redis`, `SQLite`.
    pub(crate) store: &'static str,
    /// `gRPC`, `JSON (HTTP/1.1)`, `in-process Python`.
    pub(crate) api: &'static str,
    /// Entity rows per request.
    pub(crate) entities: usize,
    /// The load: `open loop 20,000/s`, `closed loop ×32`.
    pub(crate) load: String,
    /// Answered requests per second (all answers, over the phase's duration).
    pub(crate) achieved: f64,
    /// Latency percentiles, µs: p50, p90, p99, p99.9, max.
    pub(crate) pct_us: [u32; 5],
    /// The open loop's send lag p99, µs (how late the pacer sent).
    pub(crate) lag_p99_us: Option<u32>,
    /// Failed requests, by kind.
    pub(crate) errors: String,
    /// CPU (cores) of the server, the load generator, and the whole machine.
    pub(crate) cpu: Option<CpuUse>,
    /// A compiler ran on the machine at the start or the end of the phase.
    pub(crate) disturbed: bool,
}

impl Line {
    /// The line of a tally.
    pub(crate) fn new(
        (system, store, api): (&'static str, &'static str, &'static str),
        entities: usize,
        load: String,
        tally: &Tally,
        cpu: Option<CpuUse>,
        open: bool,
    ) -> Self {
        let mut latency = tally.latency_us.clone();
        latency.sort_unstable();
        let mut lag = tally.lag_us.clone();
        lag.sort_unstable();
        let errors = if tally.errors.is_empty() {
            "0".to_owned()
        } else {
            tally.errors.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
        };
        Self {
            system,
            store,
            api,
            entities,
            load,
            achieved: tally.requests() as f64 / tally.elapsed.as_secs_f64().max(1e-9),
            pct_us: [
                pct(&latency, 0.50),
                pct(&latency, 0.90),
                pct(&latency, 0.99),
                pct(&latency, 0.999),
                pct(&latency, 1.0),
            ],
            lag_p99_us: open.then(|| pct(&lag, 0.99)),
            errors,
            cpu,
            disturbed: false,
        }
    }

    /// The line of Feast's in-process timing (`feast_reference.py inprocess`).
    pub(crate) fn inprocess(store: &'static str, entities: usize, json: &serde_json::Value) -> Self {
        let us = |k: &str| json[k].as_f64().unwrap_or(f64::NAN) as u32;
        Self {
            system: "Feast",
            store,
            api: "in-process Python",
            entities,
            load: "1 caller, back to back".into(),
            achieved: json["per_second"].as_f64().unwrap_or(f64::NAN),
            pct_us: [us("p50_us"), us("p90_us"), us("p99_us"), us("p999_us"), us("max_us")],
            lag_p99_us: None,
            errors: "0".into(),
            cpu: None,
            disturbed: false,
        }
    }

    /// The p99, ms.
    pub(crate) fn p99_ms(&self) -> f64 {
        f64::from(self.pct_us[2]) / 1000.0
    }
}

/// The `q` quantile of sorted samples (nearest rank); 0 when there are none.
pub(crate) fn pct(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Prints the table of every line, as Markdown.
pub(crate) fn print_table(lines: &[Line]) {
    println!(
        "| system | store | API | entities × features | load | answered req/s | entity rows/s | p50 ms | p90 ms | \
         p99 ms | p99.9 ms | max ms | send lag p99 ms | errors | CPU server | CPU load gen | CPU other |"
    );
    println!("|---|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|");
    let ms = |us: u32| format!("{:.3}", f64::from(us) / 1000.0);
    for l in lines {
        let (server, loadgen, machine) = match l.cpu {
            Some(c) => (
                format!("{:.2}", c.server),
                format!("{:.2}", c.loadgen),
                format!(
                    "{:.2}{}",
                    (c.machine - c.server - c.loadgen).max(0.0),
                    if l.disturbed { " (compiler ran)" } else { "" }
                ),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        println!(
            "| {} | {} | {} | {} × 25 | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {server} | {loadgen} | {machine} |",
            l.system,
            l.store,
            l.api,
            l.entities,
            l.load,
            thousands(l.achieved),
            thousands(l.achieved * l.entities as f64),
            ms(l.pct_us[0]),
            ms(l.pct_us[1]),
            ms(l.pct_us[2]),
            ms(l.pct_us[3]),
            ms(l.pct_us[4]),
            l.lag_p99_us.map_or("–".into(), ms),
            l.errors,
        );
    }
}

/// `12345.6` → `12,346`.
pub(crate) fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPU use over a phase, in cores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuUse {
    /// The server's processes (Feast: the gunicorn master and its workers).
    pub(crate) server: f64,
    /// This process (the load generator).
    pub(crate) loadgen: f64,
    /// The whole machine (busy, not idle or iowait).
    pub(crate) machine: f64,
}

/// Counters at the start of a phase.
pub(crate) struct CpuMeter {
    pid: u32,
    at: Instant,
    server: u64,
    own: u64,
    machine: (u64, u64),
}

impl CpuMeter {
    /// Reads the counters now; `pid` is the server's (its descendants are counted too).
    pub(crate) fn start(pid: u32) -> Self {
        Self {
            pid,
            at: Instant::now(),
            server: tree_ticks(pid),
            own: process_ticks(std::process::id()).unwrap_or(0),
            machine: machine_ticks().unwrap_or((0, 0)),
        }
    }

    /// The use since [`CpuMeter::start`].
    pub(crate) fn stop(&self) -> CpuUse {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let hz = clock_ticks_per_sec();
        let server = tree_ticks(self.pid).saturating_sub(self.server);
        let own = process_ticks(std::process::id()).unwrap_or(self.own).saturating_sub(self.own);
        let (busy, total) = machine_ticks().unwrap_or(self.machine);
        let (busy, total) = (busy.saturating_sub(self.machine.0), total.saturating_sub(self.machine.1).max(1));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        CpuUse {
            server: server as f64 / hz / wall,
            loadgen: own as f64 / hz / wall,
            machine: busy as f64 / total as f64 * cores,
        }
    }
}

/// CPU ticks of `pid` and its descendants (a worker that exited during the phase is lost).
fn tree_ticks(pid: u32) -> u64 {
    let mut total = process_ticks(pid).unwrap_or(0);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    for task in tasks {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            total += tree_ticks(child);
        }
    }
    total
}

/// User + system CPU ticks of a process (all its threads), from `/proc/PID/stat`.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the command name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Machine-wide (busy, total) CPU ticks, from `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
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

/// What the report says of the machine.
pub(crate) struct Machine {
    /// `nproc`.
    pub(crate) cores: usize,
    /// The CPU model.
    pub(crate) cpu: String,
    /// The load average when the run started.
    pub(crate) loadavg: String,
}

impl Machine {
    /// Reads `/proc`.
    pub(crate) fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Self { cores: std::thread::available_parallelism().map_or(1, |n| n.get()), cpu, loadavg }
    }

    /// Whether a compiler (`rustc`, `cargo`, a linker) runs on the machine now, other than the
    /// `cargo bench` that started this process: another user building disturbs the figures.
    pub(crate) fn compiler_running() -> bool {
        let ancestors = ancestors();
        let Ok(dir) = std::fs::read_dir("/proc") else { return false };
        dir.flatten().any(|e| {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { return false };
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            matches!(comm.trim(), "rustc" | "cargo" | "cc" | "ld" | "cc1" | "rust-lld") && !ancestors.contains(&pid)
        })
    }
}

/// This process and its ancestors.
fn ancestors() -> Vec<u32> {
    let mut out = vec![std::process::id()];
    while let Some(&pid) = out.last() {
        let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.get(s.rfind(')')? + 2..)?.split_whitespace().nth(1)?.parse::<u32>().ok());
        match parent {
            Some(p) if p > 1 && !out.contains(&p) => out.push(p),
            _ => break,
        }
    }
    out
}
