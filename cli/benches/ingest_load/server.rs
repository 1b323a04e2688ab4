//! The server under test: starting and stopping `livora serve`, creating its client, waiting
//! for it, and deleting a run's NATS stream.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::time::Instant;

use crate::report::CpuMeter;
use crate::{CLIENT, SETTLE_DEADLINE};

/// How long the server may take to start or to stop.
const SERVER_DEADLINE: Duration = Duration::from_secs(120);
/// The server counts as idle below this share of one core.
const IDLE_CORES: f64 = 0.05;

/// A NATS stream and subject prefix owned by one benchmark run.
pub(crate) struct NatsTarget {
    /// The server URL.
    pub(crate) url: String,
    /// The stream name.
    pub(crate) stream: String,
    /// The subject prefix.
    pub(crate) prefix: String,
}

/// A running `livora serve` child process.
pub(crate) struct Server {
    /// The process.
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
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
pub(crate) fn create_client(data: &Path, nats: Option<&NatsTarget>, extra: &[String]) -> Result<String> {
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
    pub(crate) fn start(data: &Path, log: &Path, nats: Option<&NatsTarget>, extra: &[String]) -> Result<Self> {
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
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns how long it took.
    pub(crate) fn stop(&mut self) -> Result<Duration> {
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

    /// How many lines of the server's log so far contain `needle`.
    pub(crate) fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().filter(|l| l.contains(needle)).count()
    }

    /// The last lines of the server's log.
    pub(crate) fn log_tail(&self) -> String {
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
pub(crate) async fn delete_stream(nats: &NatsTarget) -> Result<()> {
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

/// Waits (bounded) until `/readyz` answers 200.
pub(crate) async fn wait_ready(http: &reqwest::Client, addr: SocketAddr) -> Result<()> {
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
pub(crate) async fn settle(pid: u32) -> Option<Duration> {
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
