//! The Redis backend (Redis or Valkey; `rediss://` for TLS), standalone, on multiplexed
//! connections that reconnect by themselves.
//!
//! # Layout
//!
//! One string per row, holding the row in the [`codec`] form:
//!
//! ```text
//! <key_prefix>{<client>:<entity>:<key>}:<view>      livora:online:{shop:user:u-123}:activity
//! ```
//!
//! `:` and `}` in the entity name and `}` in the entity key are written as `%3A` and `%7D` (and
//! `%` as `%25`), so that the parts can be told apart and two row keys never share a Redis key;
//! the client id cannot hold either. The prefix may not hold `{` or `}` (checked by
//! [`RedisConfig::validate`]).
//!
//! # Redis Cluster
//!
//! The part in braces is the key's hash tag: Redis Cluster places a key by its tag alone, so all
//! views of one entity of one client live in one slot. A serving read of one entity's views is
//! then a single-slot `MGET`, valid on a cluster, and different entities spread over the slots.
//! Every write touches one key per script call, so it is cluster-safe too. The price is that one
//! very hot entity loads one node. This module connects to one server; a cluster client would
//! group a batch's keys by slot and send one pipeline per node, with the same keys and script.
//!
//! # Consistency
//!
//! A write sends one pipeline of `EVALSHA` calls, one per row, in one round trip (batches over
//! [`WRITE_PIPELINE_ROWS`] rows are split). The Lua script ([`COMPARE_AND_SET`]) reads the
//! stored row's `(event_time, created)` from its header and replaces the row only when the new
//! one is strictly newer. A script runs atomically in Redis, so concurrent writers of one key
//! end with the newest row whatever their order. A pipeline is not a transaction: when a write
//! fails part-way some rows may be applied, and retrying the batch is safe (the applied rows are
//! skipped as not newer). After a Redis restart the script cache is empty; a `NOSCRIPT` answer
//! loads the script and sends the batch again. A stored value that is not a row is left alone
//! and reported as [`Error::Corrupt`]. The script uses Redis's built-in Lua `struct` library.
//!
//! A read is one `MGET` of all its keys. Durability is Redis's (AOF/RDB settings).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use livora_common::ClientId;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind};

use super::config::{RedisConfig, redact_url};
use super::{OnlineRow, OnlineStore, RowKey, codec, push_escaped};
use crate::error::{Error, Result};

const BACKEND: &str = "redis";

/// Rows per write pipeline: a larger batch is sent as several pipelines, one after another, so
/// that neither side buffers an unbounded request and Redis serves other clients in between.
pub const WRITE_PIPELINE_ROWS: usize = 1000;

/// The compare-and-set of one row: `KEYS[1]` the row's key, `ARGV[1]` the encoded row. Returns
/// 1 when the row was written, 0 when the stored row is as new or newer, and a `CORRUPT` error
/// when the stored value is not a row (it is left as it is).
///
/// The times are the little-endian `i64`s at bytes 2–9 and 10–17 of an encoded row. Lua numbers
/// are doubles, exact only to 2^53, so each time is read as its high (signed) and low
/// (unsigned) 32-bit halves, which doubles hold exactly, and compared half by half.
pub const COMPARE_AND_SET: &str = r"
local old = redis.call('GET', KEYS[1])
if old then
  if #old < 17 or string.byte(old, 1) ~= 1 then
    return redis.error_reply('CORRUPT ' .. KEYS[1] .. ' holds no version 1 online row')
  end
  local new_lo, new_hi, new_clo, new_chi = struct.unpack('<I4i4I4i4', ARGV[1], 2)
  local old_lo, old_hi, old_clo, old_chi = struct.unpack('<I4i4I4i4', old, 2)
  local newer
  if new_hi ~= old_hi then newer = new_hi > old_hi
  elseif new_lo ~= old_lo then newer = new_lo > old_lo
  elseif new_chi ~= old_chi then newer = new_chi > old_chi
  else newer = new_clo > old_clo end
  if not newer then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
";

/// The online store in Redis. Cheap to share: clone the `Arc` it lives in.
pub struct RedisStore {
    connections: Vec<ConnectionManager>,
    next: AtomicUsize,
    key_prefix: String,
    script: Script,
}

impl RedisStore {
    /// Connects `config.connections` connections and loads the compare-and-set script. Fails
    /// when the server cannot be reached within the connect timeout.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let url = redact_url(&config.url);
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error::online(BACKEND, format!("invalid url {url}: {e}")))?;
        // One plain attempt first: a connection manager retries a failed connect with backoff
        // for seconds, and a service whose Redis is unreachable should say so at once.
        let probe_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout));
        let script = Script::new(COMPARE_AND_SET);
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&probe_config)
            .await
            .map_err(|e| Error::online(BACKEND, format!("cannot connect to {url}: {e}")))?;
        script.load_async(&mut probe).await.map_err(script_error)?;
        drop(probe);

        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout));
        let mut connections = Vec::with_capacity(config.connections);
        for _ in 0..config.connections {
            let connection = ConnectionManager::new_with_config(client.clone(), manager_config.clone())
                .await
                .map_err(|e| Error::online(BACKEND, format!("cannot connect to {url}: {e}")))?;
            connections.push(connection);
        }
        Ok(Self { connections, next: AtomicUsize::new(0), key_prefix: config.key_prefix.clone(), script })
    }

    /// The next connection, round-robin. A clone is a handle on the same connection.
    fn connection(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }

    async fn load_script(&self) -> Result<()> {
        self.script.load_async(&mut self.connection()).await.map_err(script_error)?;
        Ok(())
    }

    /// Appends the Redis key of `key` for `client` to `out` (see the module docs).
    pub fn push_key(&self, out: &mut String, client: &ClientId, key: &RowKey) {
        push_key(out, &self.key_prefix, client, key);
    }

    /// Sends one pipeline of compare-and-set calls; returns how many rows were applied.
    async fn write_chunk(&self, client: &ClientId, rows: &[(RowKey, OnlineRow)]) -> Result<usize> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut key = String::with_capacity(self.key_prefix.len() + 64);
        for (row_key, row) in rows {
            key.clear();
            self.push_key(&mut key, client, row_key);
            pipe.cmd("EVALSHA").arg(self.script.get_hash()).arg(1).arg(key.as_str()).arg(codec::encode(row)?);
        }
        let mut replies = self.send(&pipe, rows.len()).await?;
        if replies.iter().any(|r| r.as_ref().is_err_and(is_noscript)) {
            // Redis restarted (or failed over) and forgot the script. Every row is sent again:
            // those applied the first time are now skipped as not newer.
            self.load_script().await?;
            let again = self.send(&pipe, rows.len()).await?;
            for (first, second) in replies.iter_mut().zip(again) {
                if first.as_ref().is_err_and(is_noscript) {
                    *first = second;
                }
            }
        }
        let mut applied = 0;
        for reply in replies {
            applied += usize::from(reply.map_err(write_error)? == 1);
        }
        Ok(applied)
    }

    async fn send(&self, pipe: &redis::Pipeline, count: usize) -> Result<Vec<RedisResult<i64>>> {
        let replies: Vec<RedisResult<i64>> = pipe
            .query_async(&mut self.connection())
            .await
            .map_err(|e| Error::online(BACKEND, format!("writing {count} rows failed: {e}")))?;
        if replies.len() != count {
            return Err(Error::online(BACKEND, format!("{} answers to {count} writes", replies.len())));
        }
        Ok(replies)
    }
}

fn script_error(e: RedisError) -> Error {
    Error::online(BACKEND, format!("cannot load the compare-and-set script: {e}"))
}

fn write_error(e: RedisError) -> Error {
    if e.code() == Some("CORRUPT") {
        let reason = e.detail().unwrap_or("a stored value is not a row").to_owned();
        return Error::Corrupt { what: "redis".into(), reason };
    }
    Error::online(BACKEND, format!("writing a row failed: {e}"))
}

fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Appends `<prefix>{<client>:<entity>:<key>}:<view>` to `out`.
fn push_key(out: &mut String, prefix: &str, client: &ClientId, key: &RowKey) {
    out.push_str(prefix);
    out.push('{');
    out.push_str(client.as_str());
    out.push(':');
    push_escaped(out, &key.entity, b":}");
    out.push(':');
    push_escaped(out, &key.key, b"}");
    out.push_str("}:");
    out.push_str(&key.view);
}

#[async_trait]
impl OnlineStore for RedisStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn write(&self, client: &ClientId, rows: &[(RowKey, OnlineRow)]) -> Result<usize> {
        let mut applied = 0;
        for chunk in rows.chunks(WRITE_PIPELINE_ROWS) {
            applied += self.write_chunk(client, chunk).await?;
        }
        Ok(applied)
    }

    async fn read(&self, client: &ClientId, keys: &[RowKey]) -> Result<Vec<Option<OnlineRow>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        let mut key = String::with_capacity(self.key_prefix.len() + 64);
        for row_key in keys {
            key.clear();
            self.push_key(&mut key, client, row_key);
            cmd.arg(key.as_str());
        }
        let values: Vec<Option<Vec<u8>>> = cmd
            .query_async(&mut self.connection())
            .await
            .map_err(|e| Error::online(BACKEND, format!("reading {} rows failed: {e}", keys.len())))?;
        if values.len() != keys.len() {
            return Err(Error::online(BACKEND, format!("{} answers to {} reads", values.len(), keys.len())));
        }
        values.into_iter().map(|v| v.as_deref().map(codec::decode).transpose()).collect()
    }

    async fn ping(&self) -> Result<()> {
        let pong: String = redis::cmd("PING")
            .query_async(&mut self.connection())
            .await
            .map_err(|e| Error::online(BACKEND, format!("ping failed: {e}")))?;
        if pong != "PONG" {
            return Err(Error::online(BACKEND, format!("ping answered `{pong}`")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(entity: &str, key: &str, view: &str) -> String {
        let mut out = String::new();
        push_key(&mut out, "livora:online:", &ClientId::new("shop").unwrap(), &RowKey::new(entity, key, view));
        out
    }

    /// The hash tag as Redis Cluster computes it: between the first `{` and the next `}`.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = open + 1 + key[open + 1..].find('}').unwrap();
        &key[open + 1..close]
    }

    #[test]
    fn key_layout() {
        assert_eq!(key("user", "u-123", "activity"), "livora:online:{shop:user:u-123}:activity");
        assert_eq!(key("user", "a:b", "v@v2"), "livora:online:{shop:user:a:b}:v@v2");
        assert_eq!(key("a:b", "c}d{", "x}:y"), "livora:online:{shop:a%3Ab:c%7Dd{}:x}:y");
    }

    #[test]
    fn all_views_of_an_entity_share_a_hash_tag() {
        for (entity, k) in [("user", "u-1"), ("us}er", "k}{ey"), ("product", "{p}"), ("a:b", "")] {
            let tags: Vec<String> =
                ["activity", "profile@v2", "}x{", ""].iter().map(|v| hash_tag(&key(entity, k, v)).to_owned()).collect();
            assert!(tags.windows(2).all(|w| w[0] == w[1]), "{tags:?}");
            assert!(tags[0].starts_with("shop:"));
        }
        assert_ne!(hash_tag(&key("user", "u-1", "v")), hash_tag(&key("user", "u-2", "v")));
    }

    #[test]
    fn keys_do_not_collide_across_parts() {
        let keys = [
            key("a", "b:c", "v"),
            key("a:b", "c", "v"),
            key("a", "b}:c", "v"),
            key("a", "b", "c}:v"),
            key("a", "b%3Ac", "v"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
