//! Shared fixtures of Livora's end-to-end tests.
//!
//! End-to-end tests drive the real `livora` binary as a user would: they live in the binary's
//! package (`cli/tests/`), where Cargo hands them the freshly built executable
//! (`CARGO_BIN_EXE_livora`), and use these fixtures to start and kill it, create clients, post
//! events, read the lake back and manage NATS streams. Every fixture fails loudly with a message
//! that says what is missing; none of them skips.

pub mod postgres;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use livora_ingest::lake::LakeReader;
use livora_ingest::lake::config::LakeConfig;

/// A running `livora serve` process.
pub struct Livora {
    bin: PathBuf,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// The address the collector listens on.
    pub addr: SocketAddr,
    /// The address of the gRPC API (feature serving), when it runs.
    pub grpc_addr: Option<SocketAddr>,
}

impl Livora {
    /// Starts `livora serve` on a free port with `data_dir` and extra `LIVORA__…` variables, and
    /// waits until it listens. Its log goes to `<data_dir>/serve.log`.
    pub fn start(bin: &Path, data_dir: &Path, env: &[(String, String)]) -> Result<Self> {
        let mut me = Self {
            bin: bin.to_owned(),
            data_dir: data_dir.to_owned(),
            env: env.to_vec(),
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: None,
        };
        me.spawn()?;
        Ok(me)
    }

    fn spawn(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.data_dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.join("serve.log"))?;
        let mut child = Command::new(&self.bin)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
            .envs(self.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut grpc_addr = None;
        let addr = loop {
            let Some(line) = lines.next() else {
                let _ = child.wait();
                bail!("livora serve exited before listening; its log:\n{}", self.log_tail());
            };
            let line = line?;
            if let Some(addr) = line.strip_prefix("serving features over gRPC on ") {
                grpc_addr = Some(addr.parse()?);
            }
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.parse()?;
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.addr = addr;
        self.grpc_addr = grpc_addr;
        self.child = Some(child);
        Ok(())
    }

    /// The collector's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the process with SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the process with SIGTERM and waits for it to flush and exit; fails if it exits
    /// with an error.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("livora serve exited with {status}; its log:\n{}", self.log_tail());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                child.kill()?;
                bail!("livora serve did not stop within 60 s of SIGTERM; its log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the process again on the same data directory (a new port).
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the process is still running");
        }
        self.spawn()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir.join("serve.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Livora {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The workspace's root directory (where `feature-store/`, `notebooks/` and `tests/python/` are).
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Runs `livora --data-dir <data_dir> <args>` and returns what it printed on stdout; a failure
/// carries its stderr.
pub fn run_livora(bin: &Path, data_dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin).arg("--data-dir").arg(data_dir).args(args).output()?;
    if !out.status.success() {
        bail!("livora {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs `livora clients create <client>` and returns the API key it prints.
pub fn create_client(bin: &Path, data_dir: &Path, env: &[(String, String)], client: &str) -> Result<String> {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["clients", "create", client])
        .envs(env.iter().cloned())
        .output()?;
    if !out.status.success() {
        bail!("livora clients create failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout)?
        .lines()
        .find_map(|l| l.strip_prefix("api key: ").map(str::to_owned))
        .context("no api key printed")
}

/// Posts a body to `/v1/events`; returns the status and the body of the answer.
pub async fn post(http: &reqwest::Client, url: &str, client: &str, key: &str, body: String) -> Result<(u16, String)> {
    let r = http
        .post(format!("{url}/v1/events"))
        .bearer_auth(key)
        .header("x-client-id", client)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// A reader of the lake of an embedded data directory.
pub fn lake(data_dir: &Path) -> Result<LakeReader> {
    let root = data_dir.join("lake");
    Ok(LakeReader::new(livora_ingest::lake::store::open(&root.display().to_string(), &LakeConfig::default())?))
}

/// Writes `events` into the lake of an embedded data directory, one file per client and hour
/// partition, in the layout the lake writer uses: for tests that start from a filled lake (an
/// import of past events) without running the collector. Returns the files written.
pub fn write_lake(data_dir: &Path, events: &[livora_common::Event]) -> Result<usize> {
    use std::collections::BTreeMap;

    use chrono::Timelike as _;
    use livora_ingest::lake::{events_partition, schema::events_batch};
    let mut partitions: BTreeMap<String, Vec<&livora_common::Event>> = BTreeMap::new();
    for e in events {
        let dir = events_partition(e.client_id.as_str(), e.timestamp.date_naive(), e.timestamp.hour());
        partitions.entry(dir).or_default().push(e);
    }
    let root = data_dir.join("lake");
    for (dir, events) in &partitions {
        let batch = events_batch(events.iter().copied())?;
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("part-{}.parquet", uuid::Uuid::now_v7()));
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
        writer.write(&batch)?;
        writer.close()?;
    }
    Ok(partitions.len())
}

/// Writes the example repository's `customer_profile` table for `events`, as a shop's back
/// office would export it: one row per sign-up (`user_id`, `event_timestamp` and
/// `created_timestamp` = `signed_up_at` = the sign-up time, `signup_method`, `country` from the
/// locale, `newsletter_opt_in` when the sign-up came from the newsletter), under
/// `<offline_root>/tables/customer_profile/client_id=<client>/`. Returns the rows written.
pub fn write_customer_profiles(offline_root: &Path, client: &str, events: &[livora_common::Event]) -> Result<usize> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
    let signups: Vec<&livora_common::Event> =
        events.iter().filter(|e| e.event_type == "signup" && e.user_id.is_some()).collect();
    let prop =
        |e: &livora_common::Event, name: &str| e.props.to_map().get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let times = || {
        Arc::new(
            TimestampMicrosecondArray::from(signups.iter().map(|e| e.timestamp.timestamp_micros()).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ) as ArrayRef
    };
    let batch = RecordBatch::try_from_iter([
        ("user_id", Arc::new(StringArray::from_iter(signups.iter().map(|e| e.user_id.clone()))) as ArrayRef),
        ("event_timestamp", times()),
        ("created_timestamp", times()),
        ("signed_up_at", times()),
        ("signup_method", Arc::new(StringArray::from_iter(signups.iter().map(|e| prop(e, "method"))))),
        (
            "country",
            Arc::new(StringArray::from_iter(signups.iter().map(|e| {
                e.context
                    .to_map()
                    .get("locale")
                    .and_then(|l| l.as_str())
                    .and_then(|l| l.split('-').nth(1))
                    .map(str::to_owned)
            }))),
        ),
        (
            "newsletter_opt_in",
            Arc::new(BooleanArray::from(
                signups.iter().map(|e| prop(e, "source").as_deref() == Some("newsletter")).collect::<Vec<_>>(),
            )),
        ),
    ])?;
    let dir = offline_root.join("tables/customer_profile").join(format!("client_id={client}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("snapshot.parquet");
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(signups.len())
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A JetStream stream of its own for one test: unique stream name and subject prefix.
pub struct NatsStream {
    /// The stream name.
    pub name: String,
    /// The subject prefix.
    pub prefix: String,
}

/// The NATS server the tests use.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

impl NatsStream {
    /// Names a fresh stream and checks that NATS with JetStream answers.
    pub async fn new() -> Result<Self> {
        let client = async_nats::connect(NATS_URL).await.with_context(|| {
            format!("NATS is not reachable at {NATS_URL}; start it with `nats-server -js` (see DEVELOPERS.md)")
        })?;
        drop(client);
        let id = uuid::Uuid::new_v4().simple().to_string();
        Ok(Self { name: format!("LIVORA_TEST_{id}"), prefix: format!("livora-test.{id}") })
    }

    /// The `LIVORA__…` variables that point `livora serve` at this stream.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LIVORA__EVENT_LOG__BACKEND".into(), "nats".into()),
            ("LIVORA__EVENT_LOG__NATS__URL".into(), NATS_URL.into()),
            ("LIVORA__EVENT_LOG__NATS__STREAM".into(), self.name.clone()),
            ("LIVORA__EVENT_LOG__NATS__SUBJECT_PREFIX".into(), self.prefix.clone()),
        ]
    }

    /// Runs `test` with `env` pointed at a fresh stream, then deletes the stream whatever the
    /// outcome; returns the test's result.
    pub async fn around<F, Fut>(mut env: Vec<(String, String)>, test: F) -> Result<()>
    where
        F: FnOnce(Vec<(String, String)>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let stream = Self::new().await?;
        env.extend(stream.env());
        let result = test(env).await;
        stream.delete().await?;
        result
    }

    /// Deletes the stream.
    pub async fn delete(self) -> Result<()> {
        let js = async_nats::jetstream::new(async_nats::connect(NATS_URL).await?);
        js.delete_stream(&self.name).await.map_err(|e| anyhow::anyhow!("deleting {}: {e}", self.name))?;
        Ok(())
    }
}

/// `per_hour` events of `client` in each of `hours` hours from `start`, one a second, by four
/// users (`<client>-u0` … `<client>-u3`); every fifth is a `purchase`, the others `page_view`s;
/// `props` carries `props_bytes` bytes of padding, so that tests can make the lake as large as
/// they need.
pub fn synthetic_events(
    client: &str,
    start: chrono::DateTime<chrono::Utc>,
    hours: u32,
    per_hour: usize,
    props_bytes: usize,
) -> Result<Vec<livora_common::Event>> {
    use livora_common::{ClientId, Enrichment, Event, JsonObject};
    let client_id = ClientId::new(client).map_err(anyhow::Error::msg)?;
    let padding = serde_json::json!({"page": "x".repeat(props_bytes)}).to_string();
    let props = JsonObject::new(serde_json::value::RawValue::from_string(padding)?)?;
    let mut out = Vec::with_capacity(hours as usize * per_hour);
    for hour in 0..hours {
        for i in 0..per_hour {
            let timestamp = start + chrono::Duration::hours(i64::from(hour)) + chrono::Duration::seconds(i as i64);
            out.push(Event {
                event_id: uuid::Uuid::new_v4(),
                timestamp,
                client_id: client_id.clone(),
                user_id: Some(format!("{client}-u{}", i % 4)),
                anon_id: None,
                session_id: None,
                event_type: if i % 5 == 0 { "purchase" } else { "page_view" }.into(),
                props: props.clone(),
                context: JsonObject::default(),
                received_at: timestamp,
                enrichment: Enrichment::default(),
            });
        }
    }
    Ok(out)
}
