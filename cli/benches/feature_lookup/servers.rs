//! The processes under test: `livora serve` (the release binary cargo built for this bench) and
//! Feast's `feast serve`, started through `feast_reference.py`. Both listen on loopback only and
//! are stopped with SIGTERM (killed if they linger, or when dropped).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Longest wait for a server to listen, or to stop.
const SERVER_DEADLINE: Duration = Duration::from_secs(60);

/// The `livora` binary built by cargo for this package (the bench profile's, under `cargo bench`).
pub(crate) fn livora_bin() -> &'static str {
    env!("CARGO_BIN_EXE_livora")
}

/// The Feast side's script, beside this file.
pub(crate) fn feast_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/feature_lookup/feast_reference.py")
}

/// The example feature repository, whose `user_activity` view is read.
pub(crate) fn example_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo")
}

/// `program`, run on the CPUs `pin` lists (`taskset -c`) when given.
fn pinned(program: &str, pin: Option<&str>) -> Command {
    match pin {
        Some(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", cpus, program]);
            cmd
        }
        None => Command::new(program),
    }
}

/// Pins this process (every thread it has and will start) to the CPUs `cpus` lists.
pub(crate) fn pin_self(cpus: &str) -> Result<()> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-a", "-p", "-c", cpus, &std::process::id().to_string()]);
    run(cmd, "`taskset`").map(drop)
}

/// A `livora` command on `data` with a clean environment (no inherited `LIVORA…` settings or
/// `RUST_LOG`), warnings only, and `env`; on the CPUs `pin` lists when given.
fn livora(data: &Path, env: &[(String, String)]) -> Command {
    livora_on(data, env, None)
}

fn livora_on(data: &Path, env: &[(String, String)], pin: Option<&str>) -> Command {
    let mut cmd = pinned(livora_bin(), pin);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("LIVORA") || name == "RUST_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("--data-dir").arg(data).env("LIVORA__TELEMETRY__LOG_LEVEL", "warn");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a command to completion; its stdout, or an error with its stderr.
fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    ensure!(out.status.success(), "{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `livora clients create <client>`; returns the API key.
pub(crate) fn create_client(data: &Path, env: &[(String, String)], client: &str) -> Result<String> {
    let mut cmd = livora(data, env);
    cmd.args(["clients", "create", client]);
    run(cmd, "`livora clients create`")?
        .lines()
        .find_map(|l| l.strip_prefix("api key:").map(|k| k.trim().to_owned()))
        .context("`livora clients create` printed no `api key:` line")
}

/// `livora apply <example repo> --client <client>`.
pub(crate) fn apply(data: &Path, env: &[(String, String)], client: &str) -> Result<()> {
    let mut cmd = livora(data, env);
    cmd.arg("apply").arg(example_repo()).args(["--client", client]);
    run(cmd, "`livora apply`").map(drop)
}

/// A running server process.
pub(crate) struct Server {
    child: Child,
    /// Its stderr (and for Feast, stdout).
    log: PathBuf,
}

impl Server {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process with SIGTERM and waits (bounded) for it to exit.
    pub(crate) fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let status =
            Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().context("cannot run `kill`")?;
        ensure!(status.success(), "`kill -TERM {}` failed", self.pid());
        let started = Instant::now();
        while started.elapsed() < SERVER_DEADLINE {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the server did not stop within {SERVER_DEADLINE:?} of SIGTERM and was killed")
    }

    /// The last lines of the log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A running `livora serve`, with its two addresses.
pub(crate) struct Livora {
    /// The process.
    pub(crate) server: Server,
    /// The collector's HTTP address (the JSON twin).
    pub(crate) http: SocketAddr,
    /// The gRPC address.
    pub(crate) grpc: SocketAddr,
}

impl Livora {
    /// Starts `livora serve` on free loopback ports (on the CPUs `pin` lists, when given);
    /// returns once both listen.
    pub(crate) fn start(data: &Path, env: &[(String, String)], log: &Path, pin: Option<&str>) -> Result<Self> {
        let stderr = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = livora_on(data, env, pin)
            .args(["serve", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("cannot start `livora serve`")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let server = Server { child, log: log.to_owned() };
        let (tx, rx) = mpsc::channel();
        // Reads the addresses, then drains stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let line = line.trim();
                if let Some(a) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(("http", a.to_owned()));
                } else if let Some(a) = line.strip_prefix("serving features over gRPC on ") {
                    let _ = tx.send(("grpc", a.to_owned()));
                }
            }
        });
        let (mut http, mut grpc) = (None, None);
        let deadline = Instant::now() + SERVER_DEADLINE;
        loop {
            if let (Some(http), Some(grpc)) = (http, grpc) {
                return Ok(Self { server, http, grpc });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((which, addr)) = rx.recv_timeout(left) else {
                bail!("`livora serve` did not start listening; its log:\n{}", server.log_tail());
            };
            let addr: SocketAddr = addr.parse().with_context(|| format!("bad address `{addr}`"))?;
            ensure!(addr.ip().is_loopback(), "the server listens on {addr}, not on loopback");
            if which == "http" {
                http = Some(addr);
            } else {
                grpc = Some(addr);
            }
        }
    }
}

/// A free loopback port (bound, then released: another process could take it in between, in
/// which case Feast fails to start and the run says so).
pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// `python3 feast_reference.py <args>`; its last stdout line (JSON).
pub(crate) fn feast_script_run(python: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(python);
    cmd.arg(feast_script()).args(args).stdin(Stdio::null());
    let out = run(cmd, &format!("`feast_reference.py {}`", args.first().copied().unwrap_or_default()))?;
    out.lines().rev().find(|l| l.trim_start().starts_with('{')).map(str::to_owned).context("no JSON line printed")
}

/// Starts `feast serve` on `repo` at 127.0.0.1:`port` with `workers` processes (on the CPUs
/// `pin` lists, when given); returns once `/health` answers.
pub(crate) async fn start_feast(
    python: &str,
    repo: &Path,
    (port, workers): (u16, usize),
    log: &Path,
    pin: Option<&str>,
) -> Result<Server> {
    let out = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = pinned(python, pin)
        .arg(feast_script())
        .arg("serve")
        .arg("--dir")
        .arg(repo)
        .args(["--port", &port.to_string(), "--workers", &workers.to_string()])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("cannot start `feast serve`")?;
    let mut server = Server { child, log: log.to_owned() };
    let url = format!("http://127.0.0.1:{port}/health");
    let http = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + SERVER_DEADLINE;
    loop {
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        if Instant::now() > deadline || server.child.try_wait()?.is_some() {
            bail!("`feast serve` did not become healthy; its log:\n{}", server.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
