//! The online store: the latest row of every feature view per entity, for serving.
//!
//! A row is written whole, with the event time from which its values hold and the time it was
//! created. Writes are ordered by `(event_time, created)`: a row replaces the stored one only when
//! it is strictly newer, so replaying a write is a no-op and an older row never overwrites a newer
//! one, whatever order writers arrive in. Every key is scoped by the client.
//!
//! The store knows nothing of ttl or statuses; the serving layer derives those from the row's
//! event time and the view's definition.
//!
//! Backends, chosen by [`OnlineConfig`] and opened with [`open`]:
//! - [`redb`]: an embedded database file in the data directory (the default);
//! - [`redis`]: Redis or Valkey, the compare-and-set done server-side by a Lua script;
//! - [`dynamodb`]: a DynamoDB table, the compare-and-set done by conditional writes.
//!
//! Each module documents its key layout. The shared conformance suite in
//! `feature-store/tests/online/` runs every case against every backend.

pub mod codec;
pub mod config;
pub mod dynamodb;
pub mod redb;
pub mod redis;

pub use config::{DynamoDbConfig, OnlineConfig, RedbConfig, RedisConfig, open};
pub use dynamodb::DynamoDbStore;
pub use redb::RedbStore;
pub use redis::RedisStore;

use async_trait::async_trait;
use livora_common::ClientId;

use crate::error::Result;
use crate::value::Value;

/// Which row: the feature view, and the entity it describes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    /// The entity's name (`user`, `product`).
    pub entity: String,
    /// The entity key in its canonical text form (`u-123`; composite keys joined by the registry).
    pub key: String,
    /// The feature view, with its version when not the first (`user_activity`, `user_activity@v2`).
    pub view: String,
}

impl RowKey {
    /// A key for `view` of the entity `entity` with key `key`.
    pub fn new(entity: impl Into<String>, key: impl Into<String>, view: impl Into<String>) -> Self {
        Self { entity: entity.into(), key: key.into(), view: view.into() }
    }
}

/// One feature view's values for one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineRow {
    /// The event time from which these values hold, in microseconds since the epoch (UTC).
    pub event_time: i64,
    /// When the row was computed, in microseconds since the epoch (UTC); breaks event-time ties.
    pub created: i64,
    /// The values by feature name, in the view's field order.
    pub values: Vec<(String, Value)>,
}

impl OnlineRow {
    /// Whether this row should replace `stored`: strictly newer by `(event_time, created)`.
    pub fn supersedes(&self, stored: &OnlineRow) -> bool {
        (self.event_time, self.created) > (stored.event_time, stored.created)
    }

    /// Whether this row should replace a stored row with the given times.
    pub fn supersedes_times(&self, event_time: i64, created: i64) -> bool {
        (self.event_time, self.created) > (event_time, created)
    }

    /// The value of the feature `name`, if the row has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A backend of the online store: embedded (redb), Redis or DynamoDB.
#[async_trait]
pub trait OnlineStore: Send + Sync + 'static {
    /// The backend's name, for logs and metrics (`redb`, `redis`, `dynamodb`).
    fn backend(&self) -> &'static str;

    /// Writes rows for `client`. Each row replaces the stored row of its key only if it
    /// [supersedes](OnlineRow::supersedes) it. Returns how many rows were applied; rows that were
    /// not newer are skipped without error. When the same key appears twice in `rows`, the newer
    /// row wins, as if they had been written one after the other.
    async fn write(&self, client: &ClientId, rows: &[(RowKey, OnlineRow)]) -> Result<usize>;

    /// Reads the rows of `keys` for `client`, in the order of `keys`; `None` where there is none.
    async fn read(&self, client: &ClientId, keys: &[RowKey]) -> Result<Vec<Option<OnlineRow>>>;

    /// Checks that the backend is reachable (for `/readyz`).
    async fn ping(&self) -> Result<()>;
}

/// Appends `part` to `out`, writing each byte of `special` (and `%` itself) as `%XX`.
///
/// Backends that join the parts of a key with separators escape the separators this way, so
/// that two different keys never map to the same stored key. Parts without those bytes are
/// copied as they are, which keeps the usual keys readable.
pub(crate) fn push_escaped(out: &mut String, part: &str, special: &[u8]) {
    debug_assert!(special.iter().all(u8::is_ascii));
    let mut rest = part;
    while let Some(at) = rest.bytes().position(|b| b == b'%' || special.contains(&b)) {
        out.push_str(&rest[..at]);
        let b = rest.as_bytes()[at];
        out.push('%');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(part: &str, special: &[u8]) -> String {
        let mut out = String::new();
        push_escaped(&mut out, part, special);
        out
    }

    #[test]
    fn escapes_only_separators_and_percent() {
        assert_eq!(escaped("u-123", b":}"), "u-123");
        assert_eq!(escaped("a:b}c%d", b":}"), "a%3Ab%7Dc%25d");
        assert_eq!(escaped("ünï:", b":"), "ünï%3A");
        assert_eq!(escaped("", b":"), "");
    }

    #[test]
    fn escaping_is_injective() {
        // `%` is escaped too, so an escape sequence in the input cannot pass for an escaped
        // separator.
        assert_ne!(escaped("a%3Ab", b":"), escaped("a:b", b":"));
    }
}
