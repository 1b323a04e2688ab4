//! The embedded backend: the conformance suite, and what only a file can show.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use livora_feature_store::online::{self, OnlineConfig, RedbConfig, RedbStore};
use livora_feature_store::{OnlineStore, Value};

use crate::conformance::{Store, client, key, row};

fn config(dir: &Path) -> RedbConfig {
    RedbConfig { path: Some(dir.join("nested").join("online.redb")), ..RedbConfig::default() }
}

/// Runs `case` on a store in a fresh temporary directory.
async fn fixture<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let store = online::open(&OnlineConfig::Redb(config(dir.path())), dir.path()).await.unwrap();
    assert_eq!(store.backend(), "redb");
    crate::with_cleanup(case(store), async {}).await;
}

/// The same, with every read on the blocking pool and writes without fsync.
async fn pooled_fixture<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let config = RedbConfig { inline_read_keys: 0, fsync: false, ..config(dir.path()) };
    let store: Store = Arc::new(RedbStore::open(&config, dir.path()).await.unwrap());
    crate::with_cleanup(case(store), async {}).await;
}

conformance_suite!(fixture);

mod pooled_reads_without_fsync {
    use super::pooled_fixture;
    conformance_suite!(pooled_fixture);
}

#[tokio::test]
async fn defaults_to_a_file_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = online::open(&OnlineConfig::default(), dir.path()).await.unwrap();
    store.ping().await.unwrap();
    assert!(dir.path().join("online.redb").is_file());
}

#[tokio::test]
async fn rows_survive_a_reopen_with_and_without_fsync() {
    for fsync in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let config = RedbConfig { fsync, ..config(dir.path()) };
        let (c, k) = (client("shop"), key("user", "u-1", "activity"));
        {
            let store = RedbStore::open(&config, dir.path()).await.unwrap();
            assert_eq!(store.write(&c, &[(k.clone(), row(2, 0, "kept"))]).await.unwrap(), 1);
        }
        let store = RedbStore::open(&config, dir.path()).await.unwrap();
        let back = store.read(&c, std::slice::from_ref(&k)).await.unwrap();
        assert_eq!(back, vec![Some(row(2, 0, "kept"))], "fsync = {fsync}");
        assert_eq!(back[0].as_ref().unwrap().get("tag"), Some(&Value::String("kept".into())));
        // Ordering holds across the reopen.
        assert_eq!(store.write(&c, &[(k.clone(), row(1, 0, "older"))]).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn a_second_open_of_the_same_file_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let _first = RedbStore::open(&config, dir.path()).await.unwrap();
    let err = RedbStore::open(&config, dir.path()).await.err().expect("the file is locked");
    let message = err.to_string();
    assert!(message.starts_with("online store `redb`: cannot open "), "{message}");
    assert!(message.contains("online.redb"), "{message}");
}

#[tokio::test]
async fn an_unwritable_path_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"not a directory").unwrap();
    let config = RedbConfig { path: Some(dir.path().join("file").join("online.redb")), ..RedbConfig::default() };
    let err = RedbStore::open(&config, dir.path()).await.err().expect("a file is in the way");
    assert!(err.to_string().contains("cannot create directory"), "{err}");
}
