//! The lake writer's memory of what it has written: `event_id` dedupe and file intents.
//!
//! Exactly once in the lake rests on two tables in one redb file, changed in one transaction:
//! - `seen`: (client, event id) → the file that holds the event, remembered for the dedupe
//!   window, so redeliveries and resent duplicates are dropped;
//! - `intents`: a file about to be written, with the keys it claims.
//!
//! A flush first records the intent and claims its keys (one fsync'd transaction), then writes
//! the file, then clears the intent. After a crash, an intent whose file exists is simply
//! cleared; one whose file never appeared releases its keys, so the events — whose log positions
//! were not committed — are written when the log delivers them again.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const SEEN: TableDefinition<(&str, u128), u64> = TableDefinition::new("seen");
const BY_TIME: TableDefinition<(u64, &str, u128), ()> = TableDefinition::new("seen_by_time");
const INTENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("intents");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Why the dedupe store failed.
#[derive(Debug, thiserror::Error)]
#[error("dedupe store: {0}")]
pub struct DedupeError(String);

macro_rules! from_redb {
    ($($t:ty),*) => {$(impl From<$t> for DedupeError {
        fn from(e: $t) -> Self { Self(e.to_string()) }
    })*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

/// A file the writer is about to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The object path.
    pub path: String,
    /// The (client, event id) keys the file claims.
    pub keys: Vec<(String, u128)>,
}

/// The dedupe and intent store.
pub struct DedupeStore {
    db: Database,
}

impl DedupeStore {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<Self, DedupeError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DedupeError(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(SEEN)?;
        tx.open_table(BY_TIME)?;
        tx.open_table(INTENTS)?;
        tx.open_table(META)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Claims `keys` for the file at `path`: returns for each key whether it is new (not seen
    /// within the window, nor earlier in `keys`). Only new keys are recorded; the intent is
    /// durable when this returns. Returns the intent id to [`DedupeStore::complete`].
    pub fn claim(&self, path: &str, keys: &[(&str, u128)]) -> Result<(u64, Vec<bool>), DedupeError> {
        let now = now_secs();
        let tx = self.db.begin_write()?;
        let mut fresh = Vec::with_capacity(keys.len());
        let mut claimed = Vec::new();
        let id;
        {
            let mut meta = tx.open_table(META)?;
            id = meta.get("next_intent")?.map_or(1, |v| v.value());
            meta.insert("next_intent", id + 1)?;
            let mut seen = tx.open_table(SEEN)?;
            let mut by_time = tx.open_table(BY_TIME)?;
            for &(client, event_id) in keys {
                let new = seen.get((client, event_id))?.is_none();
                if new {
                    seen.insert((client, event_id), id)?;
                    by_time.insert((now, client, event_id), ())?;
                    claimed.push((client.to_owned(), event_id));
                }
                fresh.push(new);
            }
            let intent = serde_json::to_vec(&Intent { path: path.to_owned(), keys: claimed })?;
            tx.open_table(INTENTS)?.insert(id, intent.as_slice())?;
        }
        tx.commit()?;
        Ok((id, fresh))
    }

    /// Clears an intent once its file is written.
    pub fn complete(&self, id: u64) -> Result<(), DedupeError> {
        let tx = self.db.begin_write()?;
        tx.open_table(INTENTS)?.remove(id)?;
        tx.commit()?;
        Ok(())
    }

    /// Abandons an intent whose file was not written: its keys are released.
    pub fn abandon(&self, id: u64) -> Result<(), DedupeError> {
        let tx = self.db.begin_write()?;
        {
            let mut intents = tx.open_table(INTENTS)?;
            let Some(raw) = intents.remove(id)? else { return Ok(()) };
            let intent: Intent = serde_json::from_slice(raw.value())?;
            drop(raw);
            let mut seen = tx.open_table(SEEN)?;
            for (client, event_id) in &intent.keys {
                seen.remove((client.as_str(), *event_id))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The intents left by a crash, to resolve at start-up.
    pub fn pending(&self) -> Result<Vec<(u64, Intent)>, DedupeError> {
        let tx = self.db.begin_read()?;
        let intents = tx.open_table(INTENTS)?;
        let mut out = Vec::new();
        for entry in intents.iter()? {
            let (id, raw) = entry?;
            out.push((id.value(), serde_json::from_slice(raw.value())?));
        }
        Ok(out)
    }

    /// Forgets keys first seen longer than `window` ago; returns how many.
    pub fn expire(&self, window: Duration) -> Result<usize, DedupeError> {
        let cutoff = now_secs().saturating_sub(window.as_secs());
        let tx = self.db.begin_write()?;
        let mut expired = 0;
        {
            let mut by_time = tx.open_table(BY_TIME)?;
            let mut seen = tx.open_table(SEEN)?;
            let old: Vec<(u64, String, u128)> = by_time
                .range::<(u64, &str, u128)>(..(cutoff, "", 0))?
                .take(100_000)
                .map(|e| {
                    e.map(|(k, _)| {
                        let (t, c, id) = k.value();
                        (t, c.to_owned(), id)
                    })
                })
                .collect::<Result<_, _>>()?;
            for (t, client, id) in &old {
                by_time.remove((*t, client.as_str(), *id))?;
                seen.remove((client.as_str(), *id))?;
                expired += 1;
            }
        }
        tx.commit()?;
        Ok(expired)
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_claimed_once_even_within_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = DedupeStore::open(&dir.path().join("d.redb")).unwrap();
        let (id, fresh) = store.claim("f1", &[("a", 1), ("a", 2), ("a", 1), ("b", 1)]).unwrap();
        assert_eq!(fresh, vec![true, true, false, true]);
        store.complete(id).unwrap();
        let (_, fresh) = store.claim("f2", &[("a", 2), ("a", 3)]).unwrap();
        assert_eq!(fresh, vec![false, true]);
    }

    #[test]
    fn an_abandoned_intent_releases_its_keys_and_pending_ones_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.redb");
        {
            let store = DedupeStore::open(&path).unwrap();
            store.claim("f1", &[("a", 1), ("a", 2)]).unwrap();
        }
        let store = DedupeStore::open(&path).unwrap();
        let pending = store.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1, Intent { path: "f1".into(), keys: vec![("a".into(), 1), ("a".into(), 2)] });
        store.abandon(pending[0].0).unwrap();
        assert!(store.pending().unwrap().is_empty());
        let (_, fresh) = store.claim("f2", &[("a", 1)]).unwrap();
        assert_eq!(fresh, vec![true]);
    }

    #[test]
    fn keys_expire_after_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = DedupeStore::open(&dir.path().join("d.redb")).unwrap();
        store.claim("f1", &[("a", 1)]).unwrap();
        assert_eq!(store.expire(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(store.claim("f2", &[("a", 1)]).unwrap().1, vec![false]);
        // A zero window (cut-off = now + 1 s) forgets everything seen so far.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(store.expire(Duration::ZERO).unwrap(), 1);
        assert_eq!(store.claim("f3", &[("a", 1)]).unwrap().1, vec![true]);
    }
}
