//! Feature serving against real parts: the embedded online store (redb), the feature registry
//! and the client registry (SQLite), all in a temporary directory; the gRPC and HTTP APIs over
//! real sockets with real clients.
//!
//! - `core`: the serving core (statuses, ttl, days_since, services, names, errors, tenancy);
//! - `grpc`: tonic client → `livora.v1.FeatureService`, health, reflection;
//! - `http`: reqwest → `POST /v1/features/online`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod core;
mod grpc;
mod http;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use livora_common::{ClientId, ErrorCode};
use livora_feature_store::definitions::parse_files;
use livora_feature_store::online::{RedbConfig, RedbStore};
use livora_feature_store::serving::{EntityColumn, FeatureServer, KeyValue, OnlineFeatures, Selection, ServingConfig};
use livora_feature_store::{Error, OnlineRow, OnlineStore, Registry, Repo, RowKey, Value};
use livora_ingest::ClientStore;

pub(crate) const DEFINITIONS: &str = r#"
[[entity]]
name = "user"
join_keys = ["user_id"]
value_type = "string"

[[entity]]
name = "store_product"
join_keys = ["store_id", "product_id"]
value_type = "string"

[[entity]]
name = "account"
join_keys = ["account_id"]
value_type = "int64"

[[source]]
name = "events"
kind = "event_log"

[[source]]
name = "tables"
kind = "parquet"
path = "tables/profiles"

[[feature_view]]
name = "activity"
entity = "user"
source = "events"
ttl = "1h"

[[feature_view.feature]]
name = "orders_30d"
aggregate = "count"
event_types = ["purchase"]
window = "30d"

[[feature_view.feature]]
name = "last_seen_at"
aggregate = "last"
field = "timestamp"

[[feature_view.feature]]
name = "days_since_last_seen"
days_since = "last_seen_at"

[[feature_view.feature]]
name = "last_category"
aggregate = "last"
field = "props.category"

[[feature_view]]
name = "profile"
entity = "user"
source = "tables"

[[feature_view.feature]]
name = "country"
type = "string"

[[feature_view.feature]]
name = "signed_up_at"
type = "timestamp"

[[feature_view.feature]]
name = "account_age_days"
days_since = "signed_up_at"

[[feature_view.feature]]
name = "orders_30d"
type = "int64"

[[feature_view]]
name = "archive"
entity = "user"
source = "tables"
online = false

[[feature_view.feature]]
name = "old_score"
type = "float64"

[[feature_view]]
name = "stock"
entity = "store_product"
source = "tables"

[[feature_view.feature]]
name = "units"
type = "int64"

[[feature_view]]
name = "balance"
entity = "account"
source = "tables"

[[feature_view.feature]]
name = "amount"
type = "float64"

[[feature_service]]
name = "churn"
features = ["activity:*", "profile:country"]

[[feature_service]]
name = "archived"
features = ["activity:orders_30d", "archive:old_score"]
"#;

pub(crate) const HOUR: i64 = 3_600_000_000;
pub(crate) const DAY: i64 = 24 * HOUR;

pub(crate) fn repo(extra: &str) -> Repo {
    parse_files(&[(PathBuf::from("repo.toml"), format!("{DEFINITIONS}\n{extra}"))]).unwrap_or_else(|e| panic!("{e:?}"))
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub(crate) fn client(id: &str) -> ClientId {
    ClientId::new(id).unwrap()
}

/// The real embedded store, counting the calls made to it (to check that a request reads once).
pub(crate) struct Counted {
    inner: RedbStore,
    pub(crate) reads: AtomicUsize,
}

#[async_trait]
impl OnlineStore for Counted {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn write(&self, client: &ClientId, rows: &[(RowKey, OnlineRow)]) -> livora_feature_store::Result<usize> {
        self.inner.write(client, rows).await
    }
    async fn read(&self, client: &ClientId, keys: &[RowKey]) -> livora_feature_store::Result<Vec<Option<OnlineRow>>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read(client, keys).await
    }
    async fn ping(&self) -> livora_feature_store::Result<()> {
        self.inner.ping().await
    }
}

pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) registry: Registry,
    pub(crate) store: Arc<Counted>,
    pub(crate) server: FeatureServer,
}

impl Fixture {
    pub(crate) async fn new(config: ServingConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::connect(&sqlite_url(dir.path())).await.unwrap();
        let redb = RedbConfig { fsync: false, ..RedbConfig::default() };
        let inner = RedbStore::open(&redb, dir.path()).await.unwrap();
        let store = Arc::new(Counted { inner, reads: AtomicUsize::new(0) });
        let server = FeatureServer::new(registry.clone(), store.clone(), &config);
        Self { dir, registry, store, server }
    }

    pub(crate) async fn with_shop() -> Self {
        let f = Self::new(ServingConfig::default()).await;
        f.registry.apply(&client("shop"), &repo(""), false, false).await.unwrap();
        f
    }

    pub(crate) async fn write(
        &self,
        client_id: &str,
        entity: &str,
        key: &str,
        view: &str,
        event_time: i64,
        values: Vec<(&str, Value)>,
    ) {
        let row = OnlineRow {
            event_time,
            created: event_time,
            values: values.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
        };
        let written = self.store.write(&client(client_id), &[(RowKey::new(entity, key, view), row)]).await.unwrap();
        assert_eq!(written, 1);
    }

    pub(crate) async fn get(
        &self,
        client_id: &str,
        selection: Selection<'_>,
        entities: &[(&str, Vec<KeyValue<'_>>)],
        full_names: bool,
    ) -> Result<OnlineFeatures, Error> {
        let columns: Vec<EntityColumn<'_>> =
            entities.iter().map(|(k, v)| EntityColumn { join_key: k, values: v.clone() }).collect();
        let mut answer = OnlineFeatures::default();
        self.server.get_online_features(&client(client_id), selection, &columns, full_names, &mut answer).await?;
        Ok(answer)
    }

    pub(crate) async fn features(&self, refs: &[&str], users: &[&str]) -> Result<OnlineFeatures, Error> {
        let refs: Vec<String> = refs.iter().map(|s| (*s).to_owned()).collect();
        let users = users.iter().map(|u| KeyValue::String(u)).collect();
        self.get("shop", Selection::Features(&refs), &[("user_id", users)], false).await
    }
}

/// Entity columns: join key → values.
pub(crate) type Entities<'a> = Vec<(&'a str, Vec<KeyValue<'a>>)>;

/// The API keys of the clients `shop` and `rival`.
pub(crate) struct Keys {
    pub(crate) shop: String,
    pub(crate) rival: String,
}

/// A client registry in `dir` with the clients `shop` and `rival`.
pub(crate) async fn clients(dir: &Path) -> (Arc<ClientStore>, Keys) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("clients.db").display());
    let store = ClientStore::connect(&url, Duration::from_secs(5)).await.unwrap();
    let shop = store.create_client(&client("shop")).await.unwrap().secret;
    let rival = store.create_client(&client("rival")).await.unwrap().secret;
    (Arc::new(store), Keys { shop, rival })
}

pub(crate) fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("registry.db").display())
}

pub(crate) fn strings(refs: &[&str]) -> Vec<String> {
    refs.iter().map(|s| (*s).to_owned()).collect()
}

/// The error's class and message.
pub(crate) fn failure(result: Result<OnlineFeatures, Error>) -> (ErrorCode, String) {
    match result {
        Ok(answer) => panic!("expected an error, got {answer:?}"),
        Err(e) => (e.code(), e.to_string()),
    }
}
