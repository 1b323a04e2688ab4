//! `livora simulate`: realistic shop traffic, sent through the real API or written to a file.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use livora_common::ClientId;
use livora_simulator::{SimConfig, Simulator};
use serde_json::Value;
use tokio::task::JoinSet;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Distinct people (customers and visitors).
    #[arg(long, default_value_t = 1000)]
    pub users: u32,
    /// Days of traffic.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Seed: the same seed and start give the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The client the events belong to.
    #[arg(long, default_value = "demo", env = "LIVORA_CLIENT_ID")]
    pub client: ClientId,
    /// First simulated instant (RFC 3339). Default: midnight UTC `days` days ago, so the
    /// traffic ends today.
    #[arg(long)]
    pub start: Option<DateTime<Utc>>,
    /// Send to this collector (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    pub target: Option<String>,
    /// The API key for --target.
    #[arg(long, env = "LIVORA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Events per second to send at most; 0 sends as fast as the collector takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Write the events as JSON lines to this file instead (`-` for stdout).
    #[arg(long, conflicts_with = "target")]
    pub out: Option<String>,
}

pub async fn run(args: SimulateArgs) -> Result<()> {
    let start = args.start.unwrap_or_else(|| default_start(args.days));
    let mut sim = Simulator::new(SimConfig {
        client_id: args.client.clone(),
        users: args.users,
        days: args.days,
        start,
        seed: args.seed,
    });
    match (&args.target, &args.out) {
        (Some(target), None) => {
            let key = args.api_key.clone().context("--target needs --api-key (or LIVORA_API_KEY)")?;
            let sender = Sender::new(target, &args.client, &key, args.rate, args.batch, args.concurrency)?;
            let summary = sender.send(sim.events()).await?;
            eprintln!("{summary}");
            if summary.rejected > 0 {
                bail!("{} events were refused", summary.rejected);
            }
        }
        (None, Some(out)) => {
            let mut w: Box<dyn Write> = if out == "-" {
                Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
            } else {
                Box::new(std::io::BufWriter::new(
                    std::fs::File::create(out).with_context(|| format!("cannot create {out}"))?,
                ))
            };
            let mut n = 0u64;
            for event in sim.events() {
                serde_json::to_writer(&mut w, &event)?;
                w.write_all(b"\n")?;
                n += 1;
            }
            w.flush()?;
            eprintln!("wrote {n} events");
        }
        _ => bail!("give --target URL (with --api-key) or --out FILE"),
    }
    Ok(())
}

/// Midnight UTC `days` days ago.
pub fn default_start(days: u32) -> DateTime<Utc> {
    let today = Utc::now().date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_else(Utc::now);
    today - chrono::Duration::days(i64::from(days)) + chrono::Duration::days(1)
}

/// What a send did.
#[derive(Debug, Default)]
pub struct Summary {
    pub accepted: u64,
    pub rejected: u64,
    pub requests: u64,
    pub retries: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "accepted {} events in {} requests ({} retried, {} events refused) in {:.1}s: {:.0} events/s",
            self.accepted,
            self.requests,
            self.retries,
            self.rejected,
            secs,
            self.accepted as f64 / secs
        )
    }
}

/// Posts events to a collector in batches, with bounded concurrency, an optional rate, and
/// retries that honour `Retry-After` (safe: the collector's consumers dedupe on `event_id`).
pub struct Sender {
    http: reqwest::Client,
    url: String,
    client: String,
    key: String,
    rate: f64,
    batch: usize,
    concurrency: usize,
}

impl Sender {
    pub fn new(
        target: &str,
        client: &ClientId,
        key: &str,
        rate: f64,
        batch: usize,
        concurrency: usize,
    ) -> Result<Self> {
        if batch == 0 || concurrency == 0 {
            bail!("--batch and --concurrency must be at least 1");
        }
        Ok(Self {
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            url: format!("{}/v1/events", target.trim_end_matches('/')),
            client: client.to_string(),
            key: key.to_owned(),
            rate,
            batch,
            concurrency,
        })
    }

    pub async fn send(&self, events: impl Iterator<Item = Value>) -> Result<Summary> {
        let started = Instant::now();
        let mut summary = Summary::default();
        let mut tasks = JoinSet::new();
        let mut sent = 0u64;
        let mut batch = Vec::with_capacity(self.batch);
        let mut events = events.peekable();
        while events.peek().is_some() || !batch.is_empty() {
            batch.extend(events.by_ref().take(self.batch - batch.len()));
            if tasks.len() >= self.concurrency
                && let Some(done) = tasks.join_next().await
            {
                absorb(&mut summary, done??);
            }
            if self.rate > 0.0 {
                let due = Duration::from_secs_f64(sent as f64 / self.rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            sent += batch.len() as u64;
            let body = serde_json::to_vec(&batch)?;
            let n = batch.len() as u64;
            batch.clear();
            let (http, url, client, key) = (self.http.clone(), self.url.clone(), self.client.clone(), self.key.clone());
            tasks.spawn(async move { post(&http, &url, &client, &key, body, n).await });
        }
        while let Some(done) = tasks.join_next().await {
            absorb(&mut summary, done??);
        }
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

struct Outcome {
    accepted: u64,
    rejected: u64,
    retries: u64,
}

fn absorb(summary: &mut Summary, o: Outcome) {
    summary.accepted += o.accepted;
    summary.rejected += o.rejected;
    summary.retries += o.retries;
    summary.requests += 1;
}

async fn post(http: &reqwest::Client, url: &str, client: &str, key: &str, body: Vec<u8>, n: u64) -> Result<Outcome> {
    let mut retries = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        let response = http
            .post(url)
            .bearer_auth(key)
            .header("x-client-id", client)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let retry_after = match response {
            Ok(r) if r.status().is_success() => return Ok(Outcome { accepted: n, rejected: 0, retries }),
            Ok(r) if r.status() == 429 || r.status().is_server_error() => r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs),
            Ok(r) if r.status() == 400 => {
                let text = r.text().await.unwrap_or_default();
                eprintln!("refused batch: {text}");
                return Ok(Outcome { accepted: 0, rejected: n, retries });
            }
            Ok(r) => {
                let status = r.status();
                bail!("{url} answered {status}: {}", r.text().await.unwrap_or_default())
            }
            Err(e) if retries >= 20 => bail!("{url}: {e}"),
            Err(_) => None,
        };
        retries += 1;
        if retries > 50 {
            bail!("{url}: gave up after {retries} retries");
        }
        tokio::time::sleep(retry_after.unwrap_or(backoff)).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
