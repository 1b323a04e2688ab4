//! The Redis backend: the conformance suite, the documented layout, and recovery from a
//! forgotten script.

use std::future::Future;
use std::sync::Arc;

use livora_feature_store::online::{self, OnlineConfig, RedisConfig, RedisStore, codec};
use livora_feature_store::{Error, OnlineStore};
use uuid::Uuid;

use crate::conformance::{Store, client, key, row};

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

fn url() -> String {
    std::env::var("LIVORA_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A configuration with a key prefix of its own.
fn unique_config() -> RedisConfig {
    RedisConfig {
        url: url(),
        key_prefix: format!("livora-test:{}:", Uuid::new_v4().simple()),
        ..RedisConfig::default()
    }
}

async fn connect(config: &RedisConfig) -> RedisStore {
    RedisStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("redis must run at {} (or set LIVORA_TEST_REDIS_URL): {e}", config.url))
}

/// A plain connection, to look behind the store.
async fn raw(config: &RedisConfig) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(config.url.as_str()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Deletes every key under the configuration's prefix.
async fn delete_keys(config: &RedisConfig) {
    let mut conn = raw(config).await;
    let pattern = format!("{}*", config.key_prefix);
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// Runs `case` on a store with a fresh key prefix, then deletes its keys.
async fn fixture<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let config = unique_config();
    let store: Store = Arc::new(connect(&config).await);
    crate::with_cleanup(case(store), delete_keys(&config)).await;
}

conformance_suite!(fixture);

#[tokio::test]
async fn open_reads_the_config_and_connects() {
    let config = unique_config();
    let store = online::open(&OnlineConfig::Redis(config.clone()), std::path::Path::new("unused")).await.unwrap();
    assert_eq!(store.backend(), "redis");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn rows_live_under_the_documented_key() {
    let config = unique_config();
    let body = {
        let config = config.clone();
        async move {
            let store = connect(&config).await;
            let r = row(7, 8, "x");
            store.write(&client("shop"), &[(key("user", "u-123", "activity"), r.clone())]).await.unwrap();
            let expected_key = format!("{}{{shop:user:u-123}}:activity", config.key_prefix);
            let stored: Option<Vec<u8>> =
                redis::cmd("GET").arg(&expected_key).query_async(&mut raw(&config).await).await.unwrap();
            assert_eq!(stored.as_deref().map(codec::decode).transpose().unwrap(), Some(r));
        }
    };
    crate::with_cleanup(body, delete_keys(&config)).await;
}

#[tokio::test]
async fn a_forgotten_script_is_loaded_again() {
    let config = unique_config();
    let body = {
        let config = config.clone();
        async move {
            let store = connect(&config).await;
            let (c, k) = (client("shop"), key("user", "u-1", "activity"));
            assert_eq!(store.write(&c, &[(k.clone(), row(1, 0, "before"))]).await.unwrap(), 1);
            // What a Redis restart does to the script cache. Other tests running now meet
            // NOSCRIPT too, and must recover the same way.
            let _: String = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw(&config).await).await.unwrap();
            let batch = [(k.clone(), row(2, 0, "after")), (k.clone(), row(1, 5, "older"))];
            assert_eq!(store.write(&c, &batch).await.unwrap(), 1);
            assert_eq!(store.read(&c, &[k]).await.unwrap(), vec![Some(row(2, 0, "after"))]);
        }
    };
    crate::with_cleanup(body, delete_keys(&config)).await;
}

#[tokio::test]
async fn a_corrupt_stored_row_is_reported_not_overwritten() {
    let config = unique_config();
    let body = {
        let config = config.clone();
        async move {
            let store = connect(&config).await;
            let (c, k) = (client("shop"), key("user", "u-1", "activity"));
            let raw_key = format!("{}{{shop:user:u-1}}:activity", config.key_prefix);
            let _: () =
                redis::cmd("SET").arg(&raw_key).arg("garbage").query_async(&mut raw(&config).await).await.unwrap();

            let err = store.write(&c, &[(k.clone(), row(1, 0, "new"))]).await.unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains(&format!("{raw_key} holds no version 1 online row")), "{err}");
            let kept: String = redis::cmd("GET").arg(&raw_key).query_async(&mut raw(&config).await).await.unwrap();
            assert_eq!(kept, "garbage");
            let err = store.read(&c, &[k]).await.unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        }
    };
    crate::with_cleanup(body, delete_keys(&config)).await;
}

#[tokio::test]
async fn an_unreachable_server_fails_to_open() {
    // Port 1 is reserved and closed.
    let config = RedisConfig { url: "redis://127.0.0.1:1".into(), ..RedisConfig::default() };
    let err = RedisStore::connect(&config).await.err().expect("nothing listens on port 1");
    assert!(err.to_string().starts_with("online store `redis`: cannot connect to redis://127.0.0.1:1"), "{err}");
}
