//! The aggregator's durable state: entity states, the event ids seen, and the log position they
//! account for, changed together in one fsync'd batch (fjall).
//!
//! Exactly-once effect rests on that batch. After a crash the aggregator restores the states and
//! resumes the log after the consumer's committed position; records at or before the
//! checkpointed position are skipped (their effect is in the states), later ones are applied, and
//! an event id seen before (a client resending a batch) is dropped. The consumer commits a
//! position only after the checkpoint holding it is durable.
//!
//! Seen ids are kept in keyspaces per `dedupe_window` of processing time (`seen_<n>`); a lookup
//! checks the current and the previous one, and older ones are dropped whole.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::engine::{Aggregator, EntityState, StateKey};
use super::kernel::AggState;
use crate::error::{Error, Result};

const STATES: &str = "states";
const META: &str = "meta";
const SEEN_PREFIX: &str = "seen_";
const POSITION: &[u8] = b"position";
const LATEST_PREFIX: &[u8] = b"latest\0";
const LAYOUT_PREFIX: &[u8] = b"layout\0";

/// The checkpoint store.
pub struct Checkpoints {
    db: Database,
    states: Keyspace,
    meta: Keyspace,
    window_secs: u64,
    seen: Mutex<BTreeMap<u64, Keyspace>>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Stream(format!("checkpoint store: {e}"))
}

fn state_key(k: &StateKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(k.client.len() + k.view.len() + k.key.len() + 2);
    out.extend_from_slice(k.client.as_bytes());
    out.push(0);
    out.extend_from_slice(k.view.as_bytes());
    out.push(0);
    out.extend_from_slice(k.key.as_bytes());
    out
}

fn parse_state_key(bytes: &[u8]) -> Option<StateKey> {
    let mut parts = bytes.splitn(3, |b| *b == 0);
    let client = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let view = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let key = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    Some(StateKey { client, view, key })
}

fn seen_key(client: &str, id: u128) -> Vec<u8> {
    let mut out = Vec::with_capacity(client.len() + 17);
    out.extend_from_slice(client.as_bytes());
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a checkpoint records.
pub struct Checkpoint<'a> {
    /// States changed since the last checkpoint (`None`: dropped).
    pub states: Vec<(StateKey, Option<EntityState>)>,
    /// Event ids first seen since the last checkpoint, by client.
    pub seen: &'a [(String, u128)],
    /// The latest event time per client.
    pub latest: &'a HashMap<String, i64>,
    /// The log position everything up to which is accounted for.
    pub position: u64,
}

impl Checkpoints {
    /// Opens or creates the store in `path`, remembering event ids for `dedupe_window`.
    pub fn open(path: &Path, dedupe_window: Duration) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let db = Database::builder(path).worker_threads(1).open().map_err(err)?;
        let states = db.keyspace(STATES, KeyspaceCreateOptions::default).map_err(err)?;
        let meta = db.keyspace(META, KeyspaceCreateOptions::default).map_err(err)?;
        let mut seen = BTreeMap::new();
        for name in db.list_keyspace_names() {
            if let Some(n) = name.strip_prefix(SEEN_PREFIX).and_then(|n| n.parse::<u64>().ok()) {
                seen.insert(n, db.keyspace(&name, KeyspaceCreateOptions::default).map_err(err)?);
            }
        }
        Ok(Self { db, states, meta, window_secs: dedupe_window.as_secs().max(1), seen: Mutex::new(seen) })
    }

    /// Loads every state into `agg` (whose views must be set), remapping states whose view
    /// gained or lost aggregations since they were written. Returns the checkpointed position.
    pub fn restore(&self, agg: &mut Aggregator) -> Result<Option<u64>> {
        let mut layouts: HashMap<(String, String), Vec<String>> = HashMap::new();
        for entry in self.meta.prefix(LAYOUT_PREFIX) {
            let (k, v) = entry.into_inner().map_err(err)?;
            if let Some(sk) = parse_state_key(&k[LAYOUT_PREFIX.len()..]) {
                let names = String::from_utf8_lossy(&v).split('\n').map(str::to_owned).collect();
                layouts.insert((sk.client, sk.view), names);
            }
        }
        for entry in self.meta.prefix(LATEST_PREFIX) {
            let (k, v) = entry.into_inner().map_err(err)?;
            let client = String::from_utf8_lossy(&k[LATEST_PREFIX.len()..]).into_owned();
            let latest = <[u8; 8]>::try_from(&*v).map(i64::from_be_bytes).map_err(|_| err("bad latest value"))?;
            agg.restore_latest(&client, latest);
        }
        for entry in self.states.iter() {
            let (k, v) = entry.into_inner().map_err(err)?;
            let Some(key) = parse_state_key(&k) else { return Err(err("bad state key")) };
            let mut state: EntityState = postcard::from_bytes(&v).map_err(err)?;
            let Some(view) = agg.view(&key.client, &key.view).cloned() else {
                continue; // The view is no longer defined: its state lies dormant.
            };
            let now = view.layout();
            if let Some(then) = layouts.get(&(key.client.clone(), key.view.clone()))
                && *then != now
            {
                let mut old: HashMap<&str, AggState> =
                    then.iter().map(String::as_str).zip(std::mem::take(&mut state.aggs)).collect();
                state.aggs = view
                    .aggs
                    .iter()
                    .map(|a| old.remove(a.name.as_str()).unwrap_or_else(|| AggState::new(&a.agg)))
                    .collect();
            }
            agg.restore(key, state);
        }
        let position = self
            .meta
            .get(POSITION)
            .map_err(err)?
            .map(|v| <[u8; 8]>::try_from(&*v).map(u64::from_be_bytes).map_err(|_| err("bad position")))
            .transpose()?;
        Ok(position)
    }

    /// Records the layouts of the views (which aggregation each state slot holds).
    pub fn record_layouts(&self, agg: &Aggregator, views: &[(String, String)]) -> Result<()> {
        let mut batch = self.db.batch();
        for (client, view) in views {
            if let Some(v) = agg.view(client, view) {
                let key = [LAYOUT_PREFIX, client.as_bytes(), &[0], view.as_bytes()].concat();
                batch.insert(&self.meta, key, v.layout().join("\n"));
            }
        }
        batch.commit().map_err(err)
    }

    /// Whether `id` of `client` was seen within the dedupe window.
    pub fn seen(&self, client: &str, id: u128) -> Result<bool> {
        let key = seen_key(client, id);
        let bucket = now_secs() / self.window_secs;
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for b in [bucket, bucket.saturating_sub(1)] {
            if let Some(ks) = seen.get(&b)
                && ks.contains_key(&key).map_err(err)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Writes a checkpoint durably (fsync) in one atomic batch.
    pub fn write(&self, c: Checkpoint<'_>) -> Result<()> {
        let bucket = now_secs() / self.window_secs;
        let current = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match seen.get(&bucket) {
                Some(ks) => ks.clone(),
                None => {
                    let ks = self
                        .db
                        .keyspace(&format!("{SEEN_PREFIX}{bucket}"), KeyspaceCreateOptions::default)
                        .map_err(err)?;
                    seen.insert(bucket, ks.clone());
                    ks
                }
            }
        };
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for (key, state) in c.states {
            match state {
                Some(s) => batch.insert(&self.states, state_key(&key), postcard::to_allocvec(&s).map_err(err)?),
                None => batch.remove(&self.states, state_key(&key)),
            }
        }
        for (client, id) in c.seen {
            batch.insert(&current, seen_key(client, *id), []);
        }
        for (client, latest) in c.latest {
            batch.insert(&self.meta, [LATEST_PREFIX, client.as_bytes()].concat(), latest.to_be_bytes());
        }
        batch.insert(&self.meta, POSITION, c.position.to_be_bytes());
        batch.commit().map_err(err)?;
        self.expire(bucket)
    }

    fn expire(&self, bucket: u64) -> Result<()> {
        let old: Vec<(u64, Keyspace)> = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let keep = seen.split_off(&bucket.saturating_sub(1));
            std::mem::replace(&mut *seen, keep).into_iter().collect()
        };
        for (_, ks) in old {
            self.db.delete_keyspace(ks).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{HashMap, HashSet, VecDeque};

    use super::*;
    use crate::stream::fsum::ExactSum;
    use crate::stream::kernel::Partial;
    use crate::value::Value;

    #[test]
    fn every_kind_of_state_survives_a_checkpoint() {
        let mut sum = ExactSum::default();
        sum.add(0.1);
        let state = EntityState {
            tau: 42,
            timer: Some(99),
            aggs: vec![
                AggState::Lifetime(Some(Partial::Last(1, 2, Value::String("x".into())))),
                AggState::Lifetime(Some(Partial::Last(1, 2, Value::Timestamp(7)))),
                AggState::Lifetime(Some(Partial::Avg(sum.clone(), 3))),
                AggState::Lifetime(None),
                AggState::Windowed {
                    hop: 60,
                    buckets: 24,
                    parts: VecDeque::from([(5, Partial::Distinct(HashSet::from([1, 2]))), (6, Partial::SumF(sum))]),
                    multiplicity: HashMap::from([(1, 1), (2, 1)]),
                },
            ],
        };
        let bytes = postcard::to_allocvec(&state).unwrap();
        assert_eq!(postcard::from_bytes::<EntityState>(&bytes).unwrap(), state);
    }
}
