//! The load generator on tokio: an open loop at a fixed rate, and a closed loop for the highest
//! throughput. Both run on the bench's single-threaded tokio runtime, which also drives the
//! connections, so a request never hops between threads on the client side. The gRPC open loops
//! use the leaner `raw.rs` unless `--generators` names `h2`; the closed loops and the HTTP/1.1
//! loops use this one.
//!
//! The open loop sends request `i` at `start + i / rate` whatever the answers to earlier
//! requests, and counts its latency from that *scheduled* time, so a server that stalls cannot
//! hide it by slowing the sender down (no coordinated omission). Tokio's timer ticks in whole
//! milliseconds, too coarse for a request every 50 µs, so the last stretch before a send is
//! waited with the thread's own `nanosleep` ([`pace`]), in steps of at most [`FINE_STEP`], after
//! letting the runtime read the answers that have arrived. An answer that arrives during such a
//! step is read up to a step late; that, and the sleep's own lateness, count in the measured
//! latency, and the lateness of each send is reported apart as the *send lag*.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::targets::{Outcome, Target};

/// How long one request may take before it counts as failed.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most requests in flight in the open loop; past it the schedule waits (and the wait counts in
/// the latency).
pub(crate) const MAX_IN_FLIGHT: usize = 2_048;
/// The longest the open loop blocks the runtime's thread in one sleep.
pub(crate) const FINE_STEP: Duration = Duration::from_micros(50);
/// Waits longer than this use tokio's (millisecond) timer, which lets the thread park.
const COARSE: Duration = Duration::from_millis(2);
/// Not finished yet.
const PENDING: u32 = u32::MAX;

/// What the requests of one phase did.
#[derive(Default)]
pub(crate) struct Tally {
    /// Latency of each request, µs: from the scheduled send time (open loop) or the send
    /// (closed loop) to the end of the answer.
    pub(crate) latency_us: Vec<u32>,
    /// Send lag of each request, µs: how late the open loop sent it (0 in the closed loop).
    pub(crate) lag_us: Vec<u32>,
    /// Requests answered in full and correctly.
    pub(crate) ok: u64,
    /// Failed requests by kind.
    pub(crate) errors: BTreeMap<&'static str, u64>,
    /// The first failure's message, for the log.
    pub(crate) first_error: Option<String>,
    /// From the first scheduled send to the last answer.
    pub(crate) elapsed: Duration,
}

impl Tally {
    /// A loop that could not start: every one of its `count` requests failed for `why`.
    pub(crate) fn not_started(count: usize, why: String) -> Self {
        let mut tally = Tally::default();
        tally.error("not sent (no connection)", count as u64);
        tally.first_error = Some(why);
        tally
    }

    /// Requests made.
    pub(crate) fn requests(&self) -> u64 {
        self.latency_us.len() as u64
    }

    fn error(&mut self, kind: &'static str, n: u64) {
        *self.errors.entry(kind).or_default() += n;
    }
}

/// One slot per scheduled request of an open loop, written by whoever ends the request.
pub(crate) struct Slots {
    latency_us: Vec<AtomicU32>,
    lag_us: Vec<AtomicU32>,
    outcome: Vec<AtomicU8>,
    first_error: std::sync::Mutex<Option<String>>,
    /// Requests sent and not ended.
    pub(crate) in_flight: AtomicUsize,
    /// The latest end of an answer, ns after the first scheduled send.
    last_end_ns: AtomicU64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(PENDING - 1)
}

impl Slots {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            latency_us: (0..n).map(|_| AtomicU32::new(PENDING)).collect(),
            lag_us: (0..n).map(|_| AtomicU32::new(0)).collect(),
            outcome: (0..n).map(|_| AtomicU8::new(0)).collect(),
            first_error: std::sync::Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            last_end_ns: AtomicU64::new(0),
        }
    }

    /// Request `i` ended after `latency` (from its scheduled time), sent `lag` late.
    pub(crate) fn record(&self, i: usize, latency: Duration, lag: Duration, outcome: Outcome) {
        self.record_lag(i, lag);
        self.finish(i, latency, outcome);
    }

    /// Request `i` was sent `lag` late.
    pub(crate) fn record_lag(&self, i: usize, lag: Duration) {
        self.lag_us[i].store(micros(lag), Ordering::Relaxed);
    }

    /// Request `i` ended after `latency` (from its scheduled time).
    pub(crate) fn finish(&self, i: usize, latency: Duration, outcome: Outcome) {
        self.outcome[i].store(outcome.code(), Ordering::Relaxed);
        if let Outcome::Failed(_, message) = outcome
            && let Ok(mut first) = self.first_error.lock()
        {
            first.get_or_insert(message);
        }
        self.latency_us[i].store(micros(latency), Ordering::Release);
    }

    /// Notes that an answer ended at `end`, `start` being the first scheduled send.
    pub(crate) fn ended_at(&self, start: Instant, end: Instant) {
        let end = u64::try_from(end.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        self.last_end_ns.fetch_max(end, Ordering::Relaxed);
    }

    /// The tally of a loop that scheduled `count` requests over `seconds` and sent the first
    /// `sent`.
    pub(crate) fn tally(&self, sent: usize, count: usize, seconds: f64) -> Tally {
        let last_end = Duration::from_nanos(self.last_end_ns.load(Ordering::Relaxed));
        let mut tally = Tally { elapsed: last_end.max(Duration::from_secs_f64(seconds)), ..Tally::default() };
        tally.latency_us.reserve(sent);
        for i in 0..sent {
            let latency = self.latency_us[i].load(Ordering::Acquire);
            if latency == PENDING {
                tally.error("unfinished", 1);
                continue;
            }
            tally.latency_us.push(latency);
            tally.lag_us.push(self.lag_us[i].load(Ordering::Relaxed));
            match Outcome::kind(self.outcome[i].load(Ordering::Relaxed)) {
                None => tally.ok += 1,
                Some(kind) => tally.error(kind, 1),
            }
        }
        if sent < count {
            tally.error("not sent (too many in flight)", (count - sent) as u64);
        }
        tally.first_error = self.first_error.lock().ok().and_then(|mut f| f.take());
        tally
    }
}

/// Runs one request and times it; `due` is when it should have been sent. Returns the latency
/// (from `due`), the send lag and the outcome.
async fn timed(target: &Target, n: u64, due: Instant) -> (Duration, Duration, Outcome) {
    let sent = Instant::now();
    let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, target.call(n)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failed("timeout", "no answer within the request timeout".into()),
    };
    let end = Instant::now();
    (end.duration_since(due), sent.duration_since(due), outcome)
}

/// Asks the kernel to end this thread's sleeps within 1 µs of the time asked, instead of its
/// default timer slack of 50 µs (`/proc/<tid>/timerslack_ns`, Linux 4.6+). At 20,000 requests/s a
/// request is due every 50 µs; with the default slack each sleep ends up to 50 µs late, and the
/// open loops count that lateness in every latency.
pub(crate) fn fine_timer_slack() -> anyhow::Result<()> {
    use anyhow::Context;
    let stat = std::fs::read_to_string("/proc/thread-self/stat").context("reading /proc/thread-self/stat")?;
    let tid = stat.split_whitespace().next().context("an empty /proc/thread-self/stat")?;
    let path = format!("/proc/{tid}/timerslack_ns");
    std::fs::write(&path, "1000").with_context(|| format!("writing {path}"))
}

/// Waits (part of) the time until `due`, the next send: with tokio's timer when it is long; otherwise
/// it lets the runtime run (send what was spawned, read the answers that arrived), then sleeps
/// the thread for what is left, at most [`FINE_STEP`].
async fn pace(due: Instant) {
    let wait = due.saturating_duration_since(Instant::now());
    if wait > COARSE {
        tokio::time::sleep(wait - COARSE / 2).await;
        return;
    }
    tokio::task::yield_now().await;
    let left = due.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        std::thread::sleep(left.min(FINE_STEP));
    }
}

/// Sends `rate` requests/s for `seconds` on a fixed schedule, each request a task of its own;
/// waits for the answers (bounded) and returns the tally. Request `i` reads the users drawn
/// from `seed + i`. Runs on a single-threaded runtime.
pub(crate) async fn open_loop(target: &Arc<Target>, rate: f64, seconds: f64, seed: u64) -> Tally {
    let count = ((rate * seconds).ceil() as usize).max(1);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let slots = Arc::new(Slots::new(count));
    let start = Instant::now() + Duration::from_millis(20);
    // A stalled server must not keep the schedule waiting forever for room in flight.
    let give_up = start + Duration::from_secs_f64(seconds) + REQUEST_TIMEOUT * 2;
    let mut sent = 0;
    while sent < count {
        let due = start + interval.mul_f64(sent as f64);
        if due > Instant::now() {
            pace(due).await;
            continue;
        }
        if slots.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
            if Instant::now() > give_up {
                break;
            }
            pace(Instant::now() + FINE_STEP).await;
            continue;
        }
        slots.in_flight.fetch_add(1, Ordering::AcqRel);
        let (target, slots, i) = (target.clone(), slots.clone(), sent);
        tokio::spawn(async move {
            let (latency, lag, outcome) = timed(&target, seed.wrapping_add(i as u64), due).await;
            slots.record(i, latency, lag, outcome);
            slots.ended_at(start, Instant::now());
            slots.in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        sent += 1;
    }
    // Every request has REQUEST_TIMEOUT; this bound only guards against a hang.
    let drain_until = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(5);
    while slots.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    slots.tally(sent, count, seconds)
}

/// `concurrency` loops, each sending the next request as soon as the previous one was
/// answered, for `seconds`; returns the tally.
pub(crate) async fn closed_loop(target: &Arc<Target>, concurrency: usize, seconds: f64, seed: u64) -> Tally {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (target, next) = (target.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed) as u64;
                    let (latency, _, outcome) = timed(&target, seed.wrapping_add(n), Instant::now()).await;
                    tally.latency_us.push(micros(latency));
                    tally.lag_us.push(0);
                    match outcome {
                        Outcome::Ok => tally.ok += 1,
                        Outcome::Failed(kind, message) => {
                            tally.error(kind, 1);
                            tally.first_error.get_or_insert(message);
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        match worker.await {
            Ok(t) => {
                total.latency_us.extend(t.latency_us);
                total.lag_us.extend(t.lag_us);
                total.ok += t.ok;
                for (k, v) in t.errors {
                    total.error(k, v);
                }
                if total.first_error.is_none() {
                    total.first_error = t.first_error;
                }
            }
            Err(_) => total.error("worker panicked", 1),
        }
    }
    total.elapsed = started.elapsed();
    total
}
