//! The lake writer's memory of what it has written: `event_id` dedupe and file intents.
//!
//! Exactly once in the lake rests on one LSM store (fjall) holding, changed together in one
//! atomic, fsync'd batch:
//! - the *seen* keys — (client, event id) of every event written, for the dedupe window — so
//!   redeliveries and resent duplicates are dropped;
//! - the *intent* of a file about to be written: its path and the keys it claims.
//!
//! A flush claims its keys and records the intent, writes the file, then clears the intent.
//! After a crash, an intent whose file exists is cleared; one whose file never appeared releases
//! its keys, so the events — whose log positions were not committed — are written when the log
//! delivers them again.
//!
//! Seen keys live in one keyspace per window-long time bucket (`seen_<n>`, n = first-seen time
//! ÷ window). A key is looked up in the current and the previous bucket, and buckets older than
//! that are dropped whole: a key is remembered for at least one window and at most two, and
//! expiry costs no per-key work. An LSM store takes the random keys of a busy shop (UUIDs) as
//! sequential writes, where a B-tree rewrites a page per key.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::Deserialize;

const INTENTS: &str = "intents";
const SEEN_PREFIX: &str = "seen_";
/// The first byte of an intent in binary: `[0][bucket u64 LE][path length u32 LE][path]`, then
/// each claimed key as [`encode_key`] writes it. The first versions wrote intents as JSON,
/// which starts with `{`; those are still read.
const INTENT_BINARY: u8 = 0;

/// Why the dedupe store failed.
#[derive(Debug, thiserror::Error)]
#[error("dedupe store: {0}")]
pub struct DedupeError(String);

impl From<fjall::Error> for DedupeError {
    fn from(e: fjall::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<serde_json::Error> for DedupeError {
    fn from(e: serde_json::Error) -> Self {
        Self(format!("corrupt intent: {e}"))
    }
}

/// A file the writer is about to write.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Intent {
    /// The object path.
    pub path: String,
    /// The time bucket its keys were recorded in.
    pub bucket: u64,
    /// The (client, event id) keys the file claims.
    pub keys: Vec<(String, u128)>,
}

/// The dedupe and intent store.
pub struct DedupeStore {
    db: Database,
    intents: Keyspace,
    window_secs: u64,
    /// Open seen buckets by number.
    buckets: Mutex<BTreeMap<u64, Keyspace>>,
    next_intent: AtomicU64,
}

impl DedupeStore {
    /// Opens or creates the store in the directory `path`, remembering keys for `window`.
    pub fn open(path: &Path, window: Duration) -> Result<Self, DedupeError> {
        std::fs::create_dir_all(path).map_err(|e| DedupeError(format!("{}: {e}", path.display())))?;
        // Compaction of a dedupe set is light work: one background thread is plenty and leaves
        // the cores to the collector.
        let db = Database::builder(path).worker_threads(1).open()?;
        let intents = db.keyspace(INTENTS, KeyspaceCreateOptions::default)?;
        let mut buckets = BTreeMap::new();
        for name in db.list_keyspace_names() {
            if let Some(n) = name.strip_prefix(SEEN_PREFIX).and_then(|n| n.parse::<u64>().ok()) {
                buckets.insert(n, db.keyspace(&name, KeyspaceCreateOptions::default)?);
            }
        }
        let store = Self {
            db,
            intents,
            window_secs: window.as_secs().max(1),
            buckets: Mutex::new(buckets),
            next_intent: AtomicU64::new(1),
        };
        let next = store.pending()?.iter().map(|(id, _)| id + 1).max().unwrap_or(1);
        store.next_intent.store(next, Ordering::Relaxed);
        Ok(store)
    }

    /// Claims `keys` for the file at `path`: returns for each key whether it is new (not seen
    /// within the window, nor earlier in `keys`). Only new keys are recorded; the claim and the
    /// intent are durable when this returns. Returns the intent id to complete or abandon.
    pub fn claim(&self, path: &str, keys: &[(&str, u128)]) -> Result<(u64, Vec<bool>), DedupeError> {
        self.claim_at(now_secs(), path, keys)
    }

    fn claim_at(&self, now: u64, path: &str, keys: &[(&str, u128)]) -> Result<(u64, Vec<bool>), DedupeError> {
        let bucket = now / self.window_secs;
        let (current, previous) = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let current = match buckets.get(&bucket) {
                Some(ks) => ks.clone(),
                None => {
                    let ks = self.db.keyspace(&format!("{SEEN_PREFIX}{bucket}"), KeyspaceCreateOptions::default)?;
                    buckets.insert(bucket, ks.clone());
                    ks
                }
            };
            (current, bucket.checked_sub(1).and_then(|b| buckets.get(&b).cloned()))
        };
        let mut fresh = Vec::with_capacity(keys.len());
        let mut in_batch = HashSet::with_capacity(keys.len());
        // The intent is written as the keys are claimed, each key's bytes copied as they are.
        let mut intent = Vec::with_capacity(13 + path.len() + keys.len() * 24);
        intent.push(INTENT_BINARY);
        intent.extend_from_slice(&bucket.to_le_bytes());
        intent.extend_from_slice(&u32::try_from(path.len()).unwrap_or(u32::MAX).to_le_bytes());
        intent.extend_from_slice(path.as_bytes());
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for &(client, id) in keys {
            let key = encode_key(client, id);
            let seen = !in_batch.insert((client, id))
                || current.contains_key(&key)?
                || previous.as_ref().map(|p| p.contains_key(&key)).transpose()?.unwrap_or(false);
            if !seen {
                intent.extend_from_slice(&key);
                batch.insert(&current, key, []);
            }
            fresh.push(!seen);
        }
        let id = self.next_intent.fetch_add(1, Ordering::Relaxed);
        batch.insert(&self.intents, id.to_be_bytes(), intent);
        batch.commit()?;
        Ok((id, fresh))
    }

    /// Clears an intent once its file is written. Needs no fsync: after a crash the intent is
    /// found again, its file exists, and it is cleared then.
    pub fn complete(&self, id: u64) -> Result<(), DedupeError> {
        self.intents.remove(id.to_be_bytes())?;
        Ok(())
    }

    /// Abandons an intent whose file was not written: its keys are released.
    pub fn abandon(&self, id: u64) -> Result<(), DedupeError> {
        let Some(raw) = self.intents.get(id.to_be_bytes())? else { return Ok(()) };
        let intent = decode_intent(&raw)?;
        let bucket = self.buckets.lock().unwrap_or_else(|p| p.into_inner()).get(&intent.bucket).cloned();
        let mut batch = self.db.batch();
        if let Some(bucket) = bucket {
            for (client, event_id) in &intent.keys {
                batch.remove(&bucket, encode_key(client, *event_id));
            }
        }
        batch.remove(&self.intents, id.to_be_bytes());
        batch.commit()?;
        Ok(())
    }

    /// The intents left by a crash, to resolve at start-up.
    pub fn pending(&self) -> Result<Vec<(u64, Intent)>, DedupeError> {
        let mut out = Vec::new();
        for entry in self.intents.iter() {
            let (key, value) = entry.into_inner()?;
            let id =
                <[u8; 8]>::try_from(&*key).map(u64::from_be_bytes).map_err(|_| DedupeError("bad intent key".into()))?;
            out.push((id, decode_intent(&value)?));
        }
        Ok(out)
    }

    /// Drops the time buckets no key lookup reaches any more; returns how many.
    pub fn expire(&self) -> Result<usize, DedupeError> {
        self.expire_at(now_secs())
    }

    fn expire_at(&self, now: u64) -> Result<usize, DedupeError> {
        let oldest_kept = (now / self.window_secs).saturating_sub(1);
        let old: Vec<(u64, Keyspace)> = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let keep = buckets.split_off(&oldest_kept);
            std::mem::replace(&mut *buckets, keep).into_iter().collect()
        };
        let dropped = old.len();
        for (_, keyspace) in old {
            self.db.delete_keyspace(keyspace)?;
        }
        Ok(dropped)
    }
}

/// `[client length][client][event id, big endian]`: no client id is a prefix of another's keys.
fn encode_key(client: &str, id: u128) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + client.len() + 16);
    key.push(u8::try_from(client.len()).unwrap_or(u8::MAX));
    key.extend_from_slice(client.as_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// An intent as [`DedupeStore::claim`] writes it, or in the JSON of the first versions.
fn decode_intent(raw: &[u8]) -> Result<Intent, DedupeError> {
    match raw.split_first() {
        Some((b'{', _)) => Ok(serde_json::from_slice(raw)?),
        Some((&INTENT_BINARY, mut rest)) => {
            let bucket = u64::from_le_bytes(take(&mut rest)?);
            let path_len = u32::from_le_bytes(take(&mut rest)?) as usize;
            let path = text(take_n(&mut rest, path_len)?)?;
            let mut keys = Vec::new();
            while !rest.is_empty() {
                let [client_len] = take(&mut rest)?;
                let client = text(take_n(&mut rest, usize::from(client_len))?)?;
                keys.push((client, u128::from_be_bytes(take(&mut rest)?)));
            }
            Ok(Intent { path, bucket, keys })
        }
        _ => Err(DedupeError("corrupt intent: neither binary nor JSON".into())),
    }
}

fn take_n<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], DedupeError> {
    if rest.len() < n {
        return Err(DedupeError("corrupt intent: truncated".into()));
    }
    let (part, tail) = rest.split_at(n);
    *rest = tail;
    Ok(part)
}

fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], DedupeError> {
    take_n(rest, N)?.try_into().map_err(|_| DedupeError("corrupt intent: truncated".into()))
}

fn text(bytes: &[u8]) -> Result<String, DedupeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DedupeError("corrupt intent: not UTF-8".into()))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn keys_are_claimed_once_even_within_one_batch_and_per_client() {
        let dir = tempfile::tempdir().unwrap();
        let store = DedupeStore::open(dir.path(), DAY).unwrap();
        let (id, fresh) = store.claim("f1", &[("a", 1), ("a", 2), ("a", 1), ("b", 1), ("ab", 1)]).unwrap();
        assert_eq!(fresh, vec![true, true, false, true, true]);
        store.complete(id).unwrap();
        let (_, fresh) = store.claim("f2", &[("a", 2), ("a", 3)]).unwrap();
        assert_eq!(fresh, vec![false, true]);
    }

    #[test]
    fn an_abandoned_intent_releases_its_keys_and_pending_ones_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = DedupeStore::open(dir.path(), DAY).unwrap();
            store.claim("f1", &[("a", 1), ("a", 2)]).unwrap();
        }
        let store = DedupeStore::open(dir.path(), DAY).unwrap();
        let pending = store.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1.path, "f1");
        assert_eq!(pending[0].1.keys, vec![("a".to_owned(), 1), ("a".to_owned(), 2)]);
        let (id, _) = store.claim("f2", &[("a", 9)]).unwrap();
        assert!(id > pending[0].0, "intent ids never repeat a pending one");
        store.abandon(pending[0].0).unwrap();
        assert_eq!(store.pending().unwrap().len(), 1);
        let (_, fresh) = store.claim("f3", &[("a", 1), ("a", 9)]).unwrap();
        assert_eq!(fresh, vec![true, false]);
    }

    #[test]
    fn intents_of_the_first_versions_in_json_are_still_read_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = DedupeStore::open(dir.path(), DAY).unwrap();
        let (_, fresh) = store.claim("f0", &[("a", 1)]).unwrap();
        assert_eq!(fresh, vec![true]);
        // An intent as the first versions wrote it, left by a crash, claiming ("a", 1).
        let bucket = now_secs() / DAY.as_secs();
        let json = format!(r#"{{"path":"f1","bucket":{bucket},"keys":[["a",1],["a",2]]}}"#);
        store.intents.insert(7u64.to_be_bytes(), json.as_bytes()).unwrap();
        let pending = store.pending().unwrap();
        let old = pending.iter().find(|(id, _)| *id == 7).unwrap();
        assert_eq!(old.1, Intent { path: "f1".into(), bucket, keys: vec![("a".into(), 1), ("a".into(), 2)] });
        store.abandon(7).unwrap();
        assert_eq!(store.claim("f2", &[("a", 1)]).unwrap().1, vec![true]);
        // Garbage is an error, not a panic.
        for raw in [&[0u8, 1, 2][..], &[9, 9], &[]] {
            assert!(decode_intent(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn keys_are_remembered_for_one_to_two_windows() {
        let dir = tempfile::tempdir().unwrap();
        let store = DedupeStore::open(dir.path(), DAY).unwrap();
        let day = DAY.as_secs();
        let t0 = 1000 * day + 10;
        store.claim_at(t0, "f1", &[("a", 1)]).unwrap();
        // The next day it is still known...
        assert_eq!(store.expire_at(t0 + day).unwrap(), 0);
        assert_eq!(store.claim_at(t0 + day, "f2", &[("a", 1)]).unwrap().1, vec![false]);
        // ...two days later its bucket is dropped and the key is new again.
        assert_eq!(store.expire_at(t0 + 2 * day).unwrap(), 1);
        assert_eq!(store.claim_at(t0 + 2 * day, "f3", &[("a", 1)]).unwrap().1, vec![true]);
        // Dropped buckets stay dropped across a reopen.
        drop(store);
        let store = DedupeStore::open(dir.path(), DAY).unwrap();
        assert_eq!(store.buckets.lock().unwrap().keys().copied().collect::<Vec<_>>(), vec![1001, 1002]);
    }
}
