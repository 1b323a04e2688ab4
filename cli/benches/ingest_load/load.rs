//! Load generation: posting one body, the closed loop of phase 1, the open loop of phase 2, and
//! the tally of what the requests did.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bodies::Bodies;
use crate::{BATCH, MAX_IN_FLIGHT, REQUEST_TIMEOUT};

/// The collector's address and the request headers.
pub(crate) struct Target {
    /// `http://ADDR/v1/events`.
    pub(crate) url: String,
    /// `Authorization: Bearer …`.
    pub(crate) auth: HeaderValue,
    /// `X-Client-Id`.
    pub(crate) client: HeaderValue,
    /// `Content-Type: application/json`.
    pub(crate) json: HeaderValue,
}

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
pub(crate) struct Tally {
    /// Latency of each request, µs (from the scheduled send time in the open loop).
    pub(crate) latency_us: Vec<u32>,
    /// Service time of each request, µs: from the actual send to the end of the answer.
    pub(crate) service_us: Vec<u32>,
    /// Events accepted (sum of the 200 answers' `accepted`).
    pub(crate) accepted_events: u64,
    /// Requests answered 200.
    ok_requests: u64,
    /// Failed requests by status or failure.
    pub(crate) errors: BTreeMap<String, u64>,
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
    pub(crate) fn requests(&self) -> u64 {
        self.latency_us.len() as u64
    }
}

/// Phase 1: `connections` loops, each posting the next body as soon as the previous one was
/// answered, until `seconds` passed or `max_requests` were started.
pub(crate) async fn closed_loop(
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
pub(crate) async fn open_loop(
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
