//! The pre-serialized request bodies, and the fresh event ids and timestamps written into them.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail, ensure};
use livora_common::ClientId;
use livora_simulator::{SimConfig, Simulator};
use serde_json::Value;
use uuid::Uuid;

use crate::{BATCH, Timestamps};

/// Length of a hyphenated UUID.
const UUID_LEN: usize = 36;
/// Length of the simulator's timestamps, RFC 3339 in milliseconds: `2026-01-05T10:11:12.345Z`.
const TIMESTAMP_LEN: usize = 24;
/// People in one simulated run (its events are drawn until the body pool is full).
const SIM_USERS: u32 = 2_000;
/// Days in one simulated run.
const SIM_DAYS: u32 = 7;
/// Most simulated runs drawn to fill the body pool.
const MAX_SIM_RUNS: u64 = 1_000;

/// One pre-serialized request body and where its `event_id` values are.
pub(crate) struct Template {
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
pub(crate) struct Bodies {
    /// The bodies, cycled through.
    pub(crate) templates: Vec<Template>,
    /// A random prefix making this run's event ids unique.
    id_prefix: [u8; 8],
    /// The next event id counter.
    next_id: AtomicU64,
    /// Whether each request restamps its events with the send time.
    live: bool,
}

impl Bodies {
    /// Draws `count` bodies of [`BATCH`] events from simulated runs of client `client`.
    pub(crate) fn generate(client: &ClientId, count: usize, timestamps: Timestamps) -> Result<Self> {
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
    pub(crate) fn fresh(&self, i: u64) -> Vec<u8> {
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
    pub(crate) fn mean_event_bytes(&self) -> f64 {
        self.mean_body_bytes() / BATCH as f64
    }

    /// The mean size of a request body, in bytes.
    pub(crate) fn mean_body_bytes(&self) -> f64 {
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
