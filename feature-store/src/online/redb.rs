//! The embedded backend: one redb database file in the data directory.
//!
//! # Layout
//!
//! One table, `online_rows`, from a binary key to the row in the [`codec`] form:
//!
//! ```text
//! key: u8 client length | client | u16 entity length | entity | u16 key length | key | view
//! ```
//!
//! Lengths are big-endian. The length prefixes make the encoding injective without escaping, and
//! the order (client, entity, key, view) keeps all views of one entity next to each other, so a
//! serving read of one entity's views touches one or two pages; all rows of a client form one
//! key range.
//!
//! # Consistency
//!
//! A write is one write transaction: every row of the batch is compared with the stored row (by
//! the times in its header, [`codec::times`]) and inserted only if it
//! [supersedes](OnlineRow::supersedes) it, then the transaction commits; redb admits one write
//! transaction at a time, so concurrent writers are serialised and the newest row wins. With
//! `fsync = true` (the default) a write returns once the batch is on disk. A read is one read
//! transaction: a consistent snapshot of every key it asks for.
//!
//! # Threads
//!
//! Writes run on tokio's blocking pool (they wait for the write lock and for fsync). A read of at
//! most [`RedbConfig::inline_read_keys`] keys runs directly on the calling task: the serving
//! path reads a handful of keys whose pages are in redb's cache, which takes microseconds, less
//! than a hop to the blocking pool and back (a thread wake-up each way). Larger reads, or reads
//! that would go to disk often (a cache smaller than the hot rows), belong on the pool: lower
//! `inline_read_keys`, down to `0` for every read.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use livora_common::ClientId;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::config::RedbConfig;
use super::{OnlineRow, OnlineStore, RowKey, codec};
use crate::error::{Error, Result};

const BACKEND: &str = "redb";

/// The table of rows: [`encode_key`] → [`codec`] bytes.
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("online_rows");

/// The online store in an embedded redb file. Cheap to share: clone the `Arc` it lives in.
pub struct RedbStore {
    db: Arc<Database>,
    fsync: bool,
    inline_read_keys: usize,
}

impl RedbStore {
    /// Opens (creating when missing) the database of `config` under `data_dir`.
    pub async fn open(config: &RedbConfig, data_dir: &Path) -> Result<Self> {
        let path = config.path(data_dir);
        let cache_size = config.cache_size.as_usize();
        let db = tokio::task::spawn_blocking(move || open_database(&path, cache_size))
            .await
            .map_err(|e| Error::online(BACKEND, format!("opening the database failed: {e}")))??;
        Ok(Self { db: Arc::new(db), fsync: config.fsync, inline_read_keys: config.inline_read_keys })
    }
}

fn open_database(path: &Path, cache_size: usize) -> Result<Database> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::online(BACKEND, format!("cannot create directory {}: {e}", dir.display())))?;
    }
    let db = Database::builder()
        .set_cache_size(cache_size)
        .create(path)
        .map_err(|e| Error::online(BACKEND, format!("cannot open {}: {e}", path.display())))?;
    // Create the table now, so that reads never meet a missing table.
    let txn = db.begin_write().map_err(db_error)?;
    txn.open_table(ROWS).map_err(db_error)?;
    txn.commit().map_err(db_error)?;
    Ok(db)
}

fn db_error(e: impl Into<redb::Error>) -> Error {
    Error::online(BACKEND, e.into())
}

/// Appends the key of `key` for `client` to `out` (see the module docs).
pub fn encode_key(out: &mut Vec<u8>, client: &ClientId, key: &RowKey) -> Result<()> {
    let client = client.as_str().as_bytes();
    // A client id is at most 64 bytes (`MAX_CLIENT_ID_LEN`).
    let client_len = u8::try_from(client.len()).map_err(|_| Error::InvalidArgument("client id too long".into()))?;
    out.push(client_len);
    out.extend_from_slice(client);
    for (what, part) in [("entity name", &key.entity), ("entity key", &key.key)] {
        let len = u16::try_from(part.len())
            .map_err(|_| Error::InvalidArgument(format!("{what} of {} bytes; at most 65535", part.len())))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(key.view.as_bytes());
    Ok(())
}

/// Reads `keys` of `client` in one read transaction.
fn read_rows(db: &Database, client: &ClientId, keys: &[RowKey]) -> Result<Vec<Option<OnlineRow>>> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(ROWS).map_err(db_error)?;
    let mut buf = Vec::with_capacity(128);
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        buf.clear();
        encode_key(&mut buf, client, key)?;
        let row = match table.get(buf.as_slice()).map_err(db_error)? {
            Some(guard) => Some(codec::decode(guard.value())?),
            None => None,
        };
        out.push(row);
    }
    Ok(out)
}

/// Writes encoded `(key, row)` pairs in one write transaction; returns how many were applied.
fn write_rows(db: &Database, fsync: bool, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<usize> {
    let mut txn = db.begin_write().map_err(db_error)?;
    if !fsync {
        txn.set_durability(Durability::None).map_err(db_error)?;
    }
    let mut applied = 0;
    {
        let mut table = txn.open_table(ROWS).map_err(db_error)?;
        for (key, row) in rows {
            let (event_time, created) = codec::times(row)?;
            let stored = match table.get(key.as_slice()).map_err(db_error)? {
                Some(guard) => Some(codec::times(guard.value())?),
                None => None,
            };
            if stored.is_some_and(|stored| (event_time, created) <= stored) {
                continue;
            }
            table.insert(key.as_slice(), row.as_slice()).map_err(db_error)?;
            applied += 1;
        }
    }
    // A batch that changed nothing need not wait for fsync.
    if applied == 0 {
        txn.abort().map_err(db_error)?;
    } else {
        txn.commit().map_err(db_error)?;
    }
    Ok(applied)
}

#[async_trait]
impl OnlineStore for RedbStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn write(&self, client: &ClientId, rows: &[(RowKey, OnlineRow)]) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut encoded = Vec::with_capacity(rows.len());
        for (key, row) in rows {
            // Three length prefixes (5 bytes) and the parts.
            let mut k =
                Vec::with_capacity(5 + client.as_str().len() + key.entity.len() + key.key.len() + key.view.len());
            encode_key(&mut k, client, key)?;
            encoded.push((k, codec::encode(row)?));
        }
        let db = Arc::clone(&self.db);
        let fsync = self.fsync;
        tokio::task::spawn_blocking(move || write_rows(&db, fsync, &encoded))
            .await
            .map_err(|e| Error::online(BACKEND, format!("a write task failed: {e}")))?
    }

    async fn read(&self, client: &ClientId, keys: &[RowKey]) -> Result<Vec<Option<OnlineRow>>> {
        if keys.len() <= self.inline_read_keys {
            return read_rows(&self.db, client, keys);
        }
        let db = Arc::clone(&self.db);
        let (client, keys) = (client.clone(), keys.to_vec());
        tokio::task::spawn_blocking(move || read_rows(&db, &client, &keys))
            .await
            .map_err(|e| Error::online(BACKEND, format!("a read task failed: {e}")))?
    }

    async fn ping(&self) -> Result<()> {
        let txn = self.db.begin_read().map_err(db_error)?;
        txn.open_table(ROWS).map_err(db_error)?;
        Ok(())
    }
}

impl Drop for RedbStore {
    /// Without fsync, the last batches may live in memory only: one durable (empty) commit
    /// puts them on disk before the file is closed.
    fn drop(&mut self) {
        if self.fsync {
            return;
        }
        let flushed = self.db.begin_write().map_err(db_error).and_then(|txn| txn.commit().map_err(db_error));
        if let Err(e) = flushed {
            tracing::warn!(error = %e, "the online store's last writes may not be on disk");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(client: &str, entity: &str, key: &str, view: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(&mut out, &ClientId::new(client).unwrap(), &RowKey::new(entity, key, view)).unwrap();
        out
    }

    #[test]
    fn key_layout() {
        let k = key_of("shop", "user", "u-1", "activity");
        let mut expected = vec![4];
        expected.extend_from_slice(b"shop");
        expected.extend_from_slice(&[0, 4]);
        expected.extend_from_slice(b"user");
        expected.extend_from_slice(&[0, 3]);
        expected.extend_from_slice(b"u-1");
        expected.extend_from_slice(b"activity");
        assert_eq!(k, expected);
    }

    #[test]
    fn keys_do_not_collide_across_parts() {
        let keys = [
            key_of("shop", "user", "u-1", "v"),
            key_of("shop", "use", "ru-1", "v"),
            key_of("shop", "user", "u-1v", ""),
            key_of("shop", "user", "u-", "1v"),
            key_of("shopu", "ser", "u-1", "v"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn views_of_an_entity_share_a_prefix() {
        let a = key_of("shop", "user", "u-1", "activity");
        let b = key_of("shop", "user", "u-1", "profile@v2");
        let prefix = key_of("shop", "user", "u-1", "");
        assert!(a.starts_with(&prefix) && b.starts_with(&prefix));
    }

    #[test]
    fn refuses_overlong_parts() {
        let mut out = Vec::new();
        let err = encode_key(&mut out, &ClientId::new("c").unwrap(), &RowKey::new("u", "k".repeat(70_000), "v"));
        assert!(err.unwrap_err().to_string().contains("entity key of 70000 bytes"));
    }
}
