//! Integration tests of the client registry ([`ClientStore`]) against the local PostgreSQL at
//! `postgres://postgres@127.0.0.1:5432/test` (`LIVORA_TEST_POSTGRES_URL` overrides), and the same
//! conformance checks against SQLite. They fail, not skip, when PostgreSQL is absent.
//!
//! Each PostgreSQL test works in a database of its own (`livora_test_<uuid>`), created through
//! the `test` database and dropped at the end, so runs in parallel do not collide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use livora_common::ClientId;
use livora_ingest::auth::{ClientStore, ClientsError};
use livora_tests::postgres::with_database_of_its_own;

/// No caching: every verify asks the database.
const NO_CACHE: Duration = Duration::ZERO;
/// Longer than any test: whatever is cached stays cached.
const LONG_CACHE: Duration = Duration::from_secs(3600);

fn client(id: &str) -> ClientId {
    ClientId::new(id).unwrap()
}

/// What every registry backend must do. `url` names an empty database.
async fn conformance(url: &str) {
    let store = ClientStore::connect(url, NO_CACHE).await.unwrap();
    store.ping().await.unwrap();
    let shop = client("shop");
    let other = client("other-shop");
    assert!(!store.exists(&shop).await.unwrap());

    let first = store.create_client(&shop).await.unwrap();
    assert!(store.exists(&shop).await.unwrap());
    assert!(first.secret.starts_with("lvk_") && first.secret.len() == 4 + 64, "{}", first.secret);
    assert!(matches!(store.create_client(&shop).await, Err(ClientsError::Exists(c)) if c == shop));
    let theirs = store.create_client(&other).await.unwrap();

    assert_eq!(store.verify(&first.secret).await.unwrap(), Some(shop.clone()));
    assert_eq!(store.verify(&theirs.secret).await.unwrap(), Some(other.clone()));
    let wrong = format!("lvk_{}", "0".repeat(64));
    assert_eq!(store.verify(&wrong).await.unwrap(), None);
    assert_eq!(store.verify("").await.unwrap(), None);
    // One character off is another key.
    let mut tampered = first.secret.clone();
    let last = if tampered.ends_with('0') { "1" } else { "0" };
    tampered.replace_range(tampered.len() - 1.., last);
    assert_eq!(store.verify(&tampered).await.unwrap(), None);

    // Rotation: a second key, both valid until the first is revoked.
    let second = store.create_key(&shop).await.unwrap();
    assert_ne!((&second.key_id, &second.secret), (&first.key_id, &first.secret));
    assert_eq!(store.verify(&second.secret).await.unwrap(), Some(shop.clone()));
    assert_eq!(store.verify(&first.secret).await.unwrap(), Some(shop.clone()));
    assert!(matches!(store.create_key(&client("nobody")).await, Err(ClientsError::NotFound(_))));

    let keys = store.list_keys(Some(&shop)).await.unwrap();
    let mut ids: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![first.key_id.as_str(), second.key_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(keys.windows(2).all(|w| w[0].created_at >= w[1].created_at), "newest first: {keys:?}");
    for key in &keys {
        let secret = if key.key_id == first.key_id { &first.secret } else { &second.secret };
        assert_eq!(key.client_id, "shop");
        assert_eq!(key.prefix, secret[..12], "`lvk_` and 8 characters");
        assert_eq!(key.revoked_at, None);
        let listed = serde_json::to_string(key).unwrap();
        assert!(!listed.contains(&secret[4..]), "a listing shows the secret: {listed}");
    }
    assert_eq!(store.list_keys(None).await.unwrap().len(), 3);
    let theirs_listed = store.list_keys(Some(&other)).await.unwrap();
    assert_eq!(theirs_listed.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), [theirs.key_id.as_str()]);

    store.revoke(&first.key_id).await.unwrap();
    assert_eq!(store.verify(&first.secret).await.unwrap(), None);
    assert_eq!(store.verify(&second.secret).await.unwrap(), Some(shop.clone()));
    assert!(matches!(store.revoke(&first.key_id).await, Err(ClientsError::NotFound(_))), "revoked twice");
    assert!(matches!(store.revoke("key_0000000000000000").await, Err(ClientsError::NotFound(_))));
    let keys = store.list_keys(Some(&shop)).await.unwrap();
    let revoked = keys.iter().find(|k| k.key_id == first.key_id).unwrap();
    assert!(revoked.revoked_at.is_some(), "{revoked:?}");
    assert!(keys.iter().find(|k| k.key_id == second.key_id).unwrap().revoked_at.is_none());

    // Another collector on the same registry: with a cache it keeps accepting a key revoked
    // elsewhere until `cache_ttl` runs out; without one it refuses it at once. Its own
    // revocations clear its cache.
    let cached = ClientStore::connect(url, LONG_CACHE).await.unwrap();
    let uncached = ClientStore::connect(url, NO_CACHE).await.unwrap();
    assert_eq!(cached.verify(&second.secret).await.unwrap(), Some(shop.clone()));
    assert_eq!(uncached.verify(&second.secret).await.unwrap(), Some(shop.clone()));
    store.revoke(&second.key_id).await.unwrap();
    assert_eq!(uncached.verify(&second.secret).await.unwrap(), None);
    assert_eq!(cached.verify(&second.secret).await.unwrap(), Some(shop.clone()), "served from the cache");
    assert_eq!(cached.verify(&theirs.secret).await.unwrap(), Some(other.clone()));
    cached.revoke(&theirs.key_id).await.unwrap();
    assert_eq!(cached.verify(&second.secret).await.unwrap(), None);
    assert_eq!(cached.verify(&theirs.secret).await.unwrap(), None);

    // Everything is in the database: a new connection sees the same registry.
    drop((store, cached, uncached));
    let reopened = ClientStore::connect(url, NO_CACHE).await.unwrap();
    assert!(reopened.exists(&shop).await.unwrap());
    assert!(matches!(reopened.create_client(&other).await, Err(ClientsError::Exists(_))));
    let third = reopened.create_key(&shop).await.unwrap();
    assert_eq!(reopened.verify(&third.secret).await.unwrap(), Some(shop.clone()));
    let all = reopened.list_keys(None).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all.iter().filter(|k| k.revoked_at.is_none()).count(), 1);
}

#[tokio::test]
async fn the_registry_on_postgres_creates_verifies_rotates_and_revokes_keys() {
    with_database_of_its_own(|url| async move { conformance(&url).await }).await;
}

#[tokio::test]
async fn the_registry_on_sqlite_behaves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&format!("sqlite://{}/c.db?mode=rwc", dir.path().display())).await;
}
