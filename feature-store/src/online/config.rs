//! Configuration of the online store (`[online_store]`) and [`open`], which builds the backend
//! it names.
//!
//! ```toml
//! [online_store]
//! backend = "redis"                 # "redb" (default), "redis" or "dynamodb"
//! url = "redis://127.0.0.1:6379"
//! key_prefix = "livora:online:"
//! ```
//!
//! When the section is absent the store is embedded ([`RedbConfig`] defaults). `backend` may be
//! left out (`redb`), so that one override such as `LIVORA__ONLINE_STORE__CACHE_SIZE=4GiB` needs
//! no other; only the keys of the chosen backend are accepted, so a Redis key without
//! `backend = "redis"` is refused, with a hint, rather than ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use livora_common::{ByteSize, ConfigError};
use serde::{Deserialize, Deserializer, Serialize};

use super::OnlineStore;
use super::dynamodb::DynamoDbStore;
use super::redb::RedbStore;
use super::redis::RedisStore;
use crate::error::Result;

/// The configuration section, for the keys named in validation errors.
const SECTION: &str = "online_store";

fn key(name: &str) -> String {
    format!("{SECTION}.{name}")
}

/// Which backend holds the online store, with its settings (`[online_store]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", remote = "Self")]
pub enum OnlineConfig {
    /// An embedded redb database file in the data directory.
    #[serde(alias = "embedded")]
    Redb(RedbConfig),
    /// Redis (or Valkey), standalone. The key layout is ready for Redis Cluster.
    Redis(RedisConfig),
    /// An Amazon DynamoDB table (or a compatible endpoint such as moto or DynamoDB Local).
    #[serde(rename = "dynamodb")]
    DynamoDb(DynamoDbConfig),
}

impl Default for OnlineConfig {
    fn default() -> Self {
        Self::Redb(RedbConfig::default())
    }
}

/// The backend a section without `backend` names.
const DEFAULT_BACKEND: &str = "redb";

impl<'de> Deserialize<'de> for OnlineConfig {
    /// The tagged form, with `backend` defaulting to `redb`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = toml::Table::deserialize(deserializer)?;
        let defaulted = !table.contains_key("backend");
        if defaulted {
            table.insert("backend".into(), DEFAULT_BACKEND.into());
        }
        OnlineConfig::deserialize(toml::Value::Table(table)).map_err(|e| {
            let reason = e.to_string();
            let reason = reason.trim();
            if defaulted {
                D::Error::custom(format!(
                    "{reason} (no `backend` is set, so the embedded `{DEFAULT_BACKEND}` backend's keys apply; set \
                     backend = \"redis\" or \"dynamodb\" for theirs)"
                ))
            } else {
                D::Error::custom(reason)
            }
        })
    }
}

impl Serialize for OnlineConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        OnlineConfig::serialize(self, serializer)
    }
}

impl OnlineConfig {
    /// The backend's name (`redb`, `redis`, `dynamodb`).
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Redb(_) => "redb",
            Self::Redis(_) => "redis",
            Self::DynamoDb(_) => "dynamodb",
        }
    }

    /// Checks the values beyond their types, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Redb(c) => c.validate(),
            Self::Redis(c) => c.validate(),
            Self::DynamoDb(c) => c.validate(),
        }
    }
}

/// Validates `config` and opens the backend it names. `data_dir` holds the embedded database
/// unless [`RedbConfig::path`] says otherwise.
///
/// Fails when the backend cannot be reached (Redis down, DynamoDB table missing and not to be
/// created), so that a misconfigured service does not start.
pub async fn open(config: &OnlineConfig, data_dir: &Path) -> Result<Arc<dyn OnlineStore>> {
    config.validate()?;
    let store: Arc<dyn OnlineStore> = match config {
        OnlineConfig::Redb(c) => Arc::new(RedbStore::open(c, data_dir).await?),
        OnlineConfig::Redis(c) => Arc::new(RedisStore::connect(c).await?),
        OnlineConfig::DynamoDb(c) => Arc::new(DynamoDbStore::connect(c).await?),
    };
    tracing::info!(backend = store.backend(), "online store open");
    Ok(store)
}

/// The embedded backend (`backend = "redb"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedbConfig {
    /// The database file. Default: `<data_dir>/online.redb`. Its directory is created when
    /// missing. One process at a time may open it.
    pub path: Option<PathBuf>,
    /// Memory for redb's page cache. Reads served from the cache touch no disk; size it to hold
    /// the rows that are read often. Default `1GiB` (an upper bound, not allocated up front).
    pub cache_size: ByteSize,
    /// Whether a write returns only once its batch is on disk (fsync). `false` is much faster
    /// for many small batches; a crash may then lose the latest batches, never corrupt the
    /// file, and replaying the stream restores them. Default `true`.
    pub fsync: bool,
    /// Reads of at most this many keys run directly on the calling task (they take a few
    /// microseconds when the pages are cached); larger reads run on tokio's blocking pool so
    /// that a long read does not hold up a worker thread. `0` sends every read to the pool.
    /// Default `64`.
    pub inline_read_keys: usize,
}

impl Default for RedbConfig {
    fn default() -> Self {
        Self { path: None, cache_size: ByteSize::mib(1024), fsync: true, inline_read_keys: 64 }
    }
}

impl RedbConfig {
    /// The database file, given the data directory.
    pub fn path(&self, data_dir: &Path) -> PathBuf {
        self.path.clone().unwrap_or_else(|| data_dir.join("online.redb"))
    }

    /// Checks the values beyond their types, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(ConfigError::invalid(key("path"), "must not be empty"));
        }
        if self.cache_size < ByteSize::mib(1) {
            return Err(ConfigError::invalid(key("cache_size"), "must be at least 1MiB"));
        }
        Ok(())
    }
}

/// The Redis backend (`backend = "redis"`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// The server: `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. The
    /// password is never logged. Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// Prepended to every key, so that several deployments (or tests) can share one server.
    /// Must not contain `{` or `}`, which would change the Redis Cluster hash tag.
    /// Default `livora:online:`.
    pub key_prefix: String,
    /// How many connections to open. Each is multiplexed (many requests in flight, pipelined);
    /// calls are spread over them round-robin. Default `2`.
    pub connections: usize,
    /// How long connecting (and reconnecting) may take. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a call may wait for the server's answer before it fails. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: "livora:online:".to_owned(),
            connections: 2,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
        }
    }
}

impl RedisConfig {
    /// Checks the values beyond their types, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://")) {
            return Err(ConfigError::invalid(key("url"), "must start with redis:// or rediss://"));
        }
        if self.key_prefix.contains(['{', '}']) {
            return Err(ConfigError::invalid(
                key("key_prefix"),
                "must not contain '{' or '}': they would change the redis cluster hash tag",
            ));
        }
        if !(1..=64).contains(&self.connections) {
            return Err(ConfigError::invalid(key("connections"), "must be between 1 and 64"));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(key("connect_timeout"), "must be more than 0s"));
        }
        if self.response_timeout.is_zero() {
            return Err(ConfigError::invalid(key("response_timeout"), "must be more than 0s"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("connections", &self.connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// `url` with the user-info part (credentials) replaced, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The DynamoDB backend (`backend = "dynamodb"`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoDbConfig {
    /// The table. Its key schema must be `PK` (string, partition key) and `SK` (string, sort
    /// key). Default `livora_online`.
    pub table: String,
    /// The AWS region. Default: the standard chain (`AWS_REGION`, the profile), and an error
    /// at start-up when none is found.
    pub region: Option<String>,
    /// A custom endpoint (`http://127.0.0.1:5000` for moto, `http://localhost:8000` for
    /// DynamoDB Local). Default: the region's AWS endpoint.
    pub endpoint_url: Option<String>,
    /// Whether to create the table (on-demand capacity) when it does not exist. Default
    /// `false`: production tables are usually provisioned outside the service.
    pub create_table_if_missing: bool,
    /// Whether reads are strongly consistent (they see every write acknowledged before) rather
    /// than eventually consistent (usually within a second, at half the read cost).
    /// Default `false`.
    pub consistent_read: bool,
    /// Most requests one call keeps in flight (conditional puts of a write, BatchGetItem
    /// chunks of 100 keys of a read). Default `32`.
    pub max_concurrent_requests: usize,
    /// How long connecting may take. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long one attempt of a request may take before it is retried. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Attempts per request, including the first, for throttling and transient errors (the
    /// SDK's standard retry with backoff). Default `3`.
    pub max_attempts: u32,
    /// A static access key id. Default: the standard chain (`AWS_ACCESS_KEY_ID`, the profile,
    /// web identity, the instance's role). Prefer the environment
    /// (`LIVORA__ONLINE_STORE__ACCESS_KEY_ID`) to a file for secrets.
    pub access_key_id: Option<String>,
    /// The secret access key, given with `access_key_id`.
    pub secret_access_key: Option<String>,
}

impl Default for DynamoDbConfig {
    fn default() -> Self {
        Self {
            table: "livora_online".to_owned(),
            region: None,
            endpoint_url: None,
            create_table_if_missing: false,
            consistent_read: false,
            max_concurrent_requests: 32,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_attempts: 3,
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

impl DynamoDbConfig {
    /// Checks the values beyond their types, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let table_ok = (3..=255).contains(&self.table.len())
            && self.table.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !table_ok {
            return Err(ConfigError::invalid(
                key("table"),
                "must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-', '.'",
            ));
        }
        if self.region.as_ref().is_some_and(|r| r.trim().is_empty()) {
            return Err(ConfigError::invalid(key("region"), "must not be empty"));
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(key("endpoint_url"), "must start with http:// or https://"));
        }
        if !(1..=1024).contains(&self.max_concurrent_requests) {
            return Err(ConfigError::invalid(key("max_concurrent_requests"), "must be between 1 and 1024"));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(key("connect_timeout"), "must be more than 0s"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::invalid(key("request_timeout"), "must be more than 0s"));
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(ConfigError::invalid(key("max_attempts"), "must be between 1 and 10"));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(ConfigError::invalid(
                key("secret_access_key"),
                "access_key_id and secret_access_key are given together or not at all",
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for DynamoDbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbConfig")
            .field("table", &self.table)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("create_table_if_missing", &self.create_table_if_missing)
            .field("consistent_read", &self.consistent_read)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OnlineConfig, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[serde(default)]
            online_store: OnlineConfig,
        }
        let table: toml::Table = text.parse().map_err(|e| ConfigError::invalid("toml", format!("{e}")))?;
        let doc: Doc = livora_common::config::from_table(table)?;
        doc.online_store.validate()?;
        Ok(doc.online_store)
    }

    #[test]
    fn defaults_to_redb_in_the_data_dir() {
        let config = parse("").unwrap();
        assert_eq!(config, OnlineConfig::Redb(RedbConfig::default()));
        let OnlineConfig::Redb(redb) = config else { unreachable!() };
        assert_eq!(redb.path(Path::new("/data")), Path::new("/data/online.redb"));
    }

    #[test]
    fn reads_each_backend() {
        let redb = parse(
            "[online_store]\nbackend = \"embedded\"\npath = \"/x/o.redb\"\nfsync = false\ncache_size = \"64MiB\"",
        )
        .unwrap();
        let expected = RedbConfig {
            path: Some("/x/o.redb".into()),
            fsync: false,
            cache_size: ByteSize::mib(64),
            ..RedbConfig::default()
        };
        assert_eq!(redb, OnlineConfig::Redb(expected));

        let redis = parse(
            "[online_store]\nbackend = \"redis\"\nurl = \"redis://:pw@cache:6379/2\"\nresponse_timeout = \"250ms\"",
        )
        .unwrap();
        let OnlineConfig::Redis(redis) = redis else { panic!("{redis:?}") };
        assert_eq!(redis.response_timeout, Duration::from_millis(250));
        assert_eq!(redis.key_prefix, "livora:online:");
        assert!(!format!("{redis:?}").contains("pw"), "the password is redacted");

        let dynamo = parse(
            "[online_store]\nbackend = \"dynamodb\"\ntable = \"features\"\nregion = \"eu-west-1\"\n\
             endpoint_url = \"http://127.0.0.1:5000\"\naccess_key_id = \"testing\"\nsecret_access_key = \"s3cr3t\"",
        )
        .unwrap();
        assert_eq!(dynamo.backend(), "dynamodb");
        let OnlineConfig::DynamoDb(dynamo) = dynamo else { panic!("{dynamo:?}") };
        assert_eq!(dynamo.table, "features");
        assert!(!format!("{dynamo:?}").contains("s3cr3t"));
    }

    #[test]
    fn backend_defaults_to_redb_so_one_key_can_be_overridden() {
        let config = parse("[online_store]\nfsync = false").unwrap();
        assert_eq!(config, OnlineConfig::Redb(RedbConfig { fsync: false, ..RedbConfig::default() }));
        let env = [("LIVORA__ONLINE_STORE__CACHE_SIZE".to_owned(), "64MiB".to_owned())];
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            online_store: OnlineConfig,
        }
        let doc: Doc = livora_common::config::load(None, env).unwrap();
        assert_eq!(
            doc.online_store,
            OnlineConfig::Redb(RedbConfig { cache_size: ByteSize::mib(64), ..RedbConfig::default() })
        );
        let err = parse("[online_store]\nurl = \"redis://127.0.0.1:6379\"").unwrap_err().to_string();
        assert!(err.contains("url") && err.contains("backend = \"redis\""), "{err}");
    }

    #[test]
    fn refuses_unknown_keys_and_keys_of_another_backend() {
        let err = parse("[online_store]\nbackend = \"redis\"\npath = \"/x\"").unwrap_err().to_string();
        assert!(err.contains("path"), "{err}");
        let err = parse("[online_store]\nbackend = \"memcached\"").unwrap_err().to_string();
        assert!(err.contains("memcached"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            ("backend = \"redis\"\nurl = \"http://x\"", "online_store.url"),
            ("backend = \"redis\"\nkey_prefix = \"a{b}\"", "online_store.key_prefix"),
            ("backend = \"redis\"\nconnections = 0", "online_store.connections"),
            ("backend = \"redb\"\ncache_size = \"1KiB\"", "online_store.cache_size"),
            ("backend = \"dynamodb\"\ntable = \"a b\"", "online_store.table"),
            ("backend = \"dynamodb\"\naccess_key_id = \"k\"", "online_store.secret_access_key"),
            ("backend = \"dynamodb\"\nendpoint_url = \"localhost:5000\"", "online_store.endpoint_url"),
        ];
        for (body, key) in cases {
            let err = parse(&format!("[online_store]\n{body}")).unwrap_err().to_string();
            assert!(err.contains(key), "{body}: {err}");
        }
    }

    #[test]
    fn redacts_credentials_in_urls() {
        assert_eq!(redact_url("redis://user:pw@host:6379/0"), "redis://<redacted>@host:6379/0");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("rediss://:p@ss@host"), "rediss://<redacted>@host");
    }
}
