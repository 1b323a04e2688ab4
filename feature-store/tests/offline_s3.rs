//! The offline store in S3 ([`ObjectOfflineStore`]), against moto in server mode at
//! `http://127.0.0.1:5000` (`LIVORA_TEST_S3_ENDPOINT` overrides). The tests fail, not skip, when
//! it is absent: start it with `moto_server -p 5000 &` (`pip install 'moto[server]'`).
//!
//! The same appends go to a local store and to S3; every read must agree, whatever the cache
//! holds: a fresh cache downloads, a damaged cached file is fetched again, a file another
//! process uploaded is seen by the next scan.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone as _, Utc};
use livora_common::ClientId;
use livora_feature_store::offline::{EVENT_TIMESTAMP, timestamp_dtype};
use livora_feature_store::{
    Error, LocalOfflineStore, ObjectOfflineStore, OfflineStore, PitOptions, TimeRange, ViewHistory,
    get_historical_features,
};
use livora_ingest::lake::LakeConfig;
use livora_ingest::lake::config::S3Config;
use object_store::ObjectStore;
use polars::prelude::*;

const MOTO_KEY: &str = "testing";

fn endpoint() -> String {
    std::env::var("LIVORA_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned())
}

/// A fresh bucket, deleted (emptied first) when dropped.
struct Bucket {
    name: String,
    store: Arc<dyn ObjectStore>,
}

impl Bucket {
    fn new() -> Self {
        let name = format!("livora-offline-{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{name}", endpoint());
        let created = block(reqwest::Client::new().put(&url).send()).unwrap_or_else(|e| {
            panic!(
                "moto must run at {}: start it with `moto_server -p 5000 &` (pip install 'moto[server]') or point \
                 LIVORA_TEST_S3_ENDPOINT at it ({e})",
                endpoint()
            )
        });
        assert!(created.status().is_success(), "creating bucket {name}: {}", created.status());
        let store = livora_ingest::lake::store::open(&format!("s3://{name}"), &lake()).unwrap();
        Self { name, store }
    }

    /// The store under `prefix` of this bucket, caching under `cache`.
    fn offline(&self, cache: &Path) -> ObjectOfflineStore {
        let url = format!("s3://{}/history", self.name);
        let store = livora_ingest::lake::store::open(&url, &lake()).unwrap();
        ObjectOfflineStore::new(store, url, cache).unwrap()
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = block(futures::TryStreamExt::try_collect::<Vec<_>>(self.store.list(None)))
            .unwrap()
            .into_iter()
            .map(|m| m.location.to_string())
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        for key in self.keys() {
            let _ = block(self.store.delete(&key.as_str().into()));
        }
        let _ = block(reqwest::Client::new().delete(format!("{}/{}", endpoint(), self.name)).send());
    }
}

/// Runs `future` to completion on a runtime of its own (the store under test has its own).
fn block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn lake() -> LakeConfig {
    LakeConfig {
        s3: S3Config {
            endpoint: Some(endpoint()),
            region: Some("us-east-1".into()),
            allow_http: true,
            access_key_id: Some(MOTO_KEY.into()),
            secret_access_key: Some(MOTO_KEY.into()),
        },
        ..LakeConfig::default()
    }
}

fn client(id: &str) -> ClientId {
    ClientId::new(id).unwrap()
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, day, hour, 0, 0).single().unwrap()
}

/// Rows of a `user_stats` view: (user, event time, score).
fn rows(data: &[(i64, DateTime<Utc>, f64)]) -> DataFrame {
    let micros: Vec<i64> = data.iter().map(|r| r.1.timestamp_micros()).collect();
    DataFrame::new_infer_height(vec![
        Column::new("user".into(), data.iter().map(|r| r.0).collect::<Vec<_>>()),
        Int64Chunked::from_vec(EVENT_TIMESTAMP.into(), micros)
            .into_datetime(TimeUnit::Microseconds, None)
            .into_column(),
        Column::new("score".into(), data.iter().map(|r| r.2).collect::<Vec<_>>()),
    ])
    .unwrap()
}

fn sample() -> Vec<(i64, DateTime<Utc>, f64)> {
    vec![(1, at(1, 10), 1.0), (2, at(1, 23), 2.0), (1, at(2, 0), 3.0), (3, at(3, 12), 4.0), (2, at(3, 13), 5.0)]
}

fn scan(store: &dyn OfflineStore, client: &ClientId, range: TimeRange) -> DataFrame {
    store.scan(client, "user_stats", range).unwrap().collect().unwrap()
}

#[test]
fn s3_history_reads_as_the_local_store_does_whatever_the_cache_holds() {
    let bucket = Bucket::new();
    let dir = tempfile::tempdir().unwrap();
    let shop = client("shop");
    let local = LocalOfflineStore::new(dir.path().join("local"));
    let s3 = bucket.offline(&dir.path().join("cache-a"));
    assert_eq!(s3.backend(), "s3");
    for batch in [&sample()[..3], &sample()[3..]] {
        local.append(&shop, "user_stats", rows(batch)).unwrap();
        let written = s3.append(&shop, "user_stats", rows(batch)).unwrap();
        assert!(written.iter().all(|p| p.to_string_lossy().starts_with(&format!("s3://{}/history/", bucket.name))));
    }
    // The local layout under the prefix: one file per append and day.
    let keys = bucket.keys();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("history/features/client_id=shop/view=user_stats/dt=2024-03-0")));

    let ranges = [
        TimeRange::all(),
        TimeRange::between(at(1, 12), at(2, 12)),
        TimeRange::between(at(5, 0), at(6, 0)),
        TimeRange { start: Some(at(3, 0)), end: None },
    ];
    for range in ranges {
        let expected = scan(&local, &shop, range);
        assert!(scan(&s3, &shop, range).equals_missing(&expected), "{range:?}");
        // Another process, with an empty cache: everything is downloaded.
        let fresh = bucket.offline(&dir.path().join(format!("cache-{}", uuid::Uuid::new_v4().simple())));
        assert!(scan(&fresh, &shop, range).equals_missing(&expected), "{range:?}");
    }
    assert_eq!(scan(&s3, &shop, TimeRange::between(at(5, 0), at(6, 0))).height(), 0);

    // A cached file cut short (a crash mid-download) is fetched again.
    let cache_b = dir.path().join("cache-b");
    let reader = bucket.offline(&cache_b);
    let all = scan(&local, &shop, TimeRange::all());
    assert!(scan(&reader, &shop, TimeRange::all()).equals_missing(&all));
    // The cache mirrors the keys under the store's prefix.
    let damaged = cache_b.join(keys[0].strip_prefix("history/").unwrap());
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    assert!(scan(&reader, &shop, TimeRange::all()).equals_missing(&all));

    // What another process appends is seen by the next scan of this one.
    let late = [(4, at(2, 6), 6.0)];
    s3.append(&shop, "user_stats", rows(&late)).unwrap();
    local.append(&shop, "user_stats", rows(&late)).unwrap();
    assert!(scan(&reader, &shop, TimeRange::all()).equals_missing(&scan(&local, &shop, TimeRange::all())));
}

#[test]
fn s3_history_is_scoped_by_client_and_refuses_what_the_local_store_refuses() {
    let bucket = Bucket::new();
    let dir = tempfile::tempdir().unwrap();
    let s3 = bucket.offline(dir.path());
    s3.append(&client("shop"), "user_stats", rows(&sample())).unwrap();
    let missing = s3.scan(&client("rival"), "user_stats", TimeRange::all()).err().unwrap();
    assert!(matches!(&missing, Error::NotFound(m) if m.contains("client `rival`")), "{missing}");
    let unknown = s3.scan(&client("shop"), "user_activity", TimeRange::all()).err().unwrap();
    assert!(matches!(unknown, Error::NotFound(_)), "{unknown}");
    let bad_name = s3.append(&client("shop"), "../escape", rows(&sample())).err().unwrap();
    assert!(matches!(&bad_name, Error::InvalidArgument(m) if m.contains("view name")), "{bad_name}");
    let no_time = DataFrame::new_infer_height(vec![Column::new("user".into(), [1i64])]).unwrap();
    let refused = s3.append(&client("shop"), "user_stats", no_time).err().unwrap();
    assert!(matches!(&refused, Error::InvalidArgument(m) if m.contains(EVENT_TIMESTAMP)), "{refused}");
    assert_eq!(bucket.keys().len(), 3, "only the valid append was uploaded");
}

#[test]
fn a_point_in_time_dataset_over_s3_history_equals_the_local_one() {
    let bucket = Bucket::new();
    let dir = tempfile::tempdir().unwrap();
    let shop = client("shop");
    let local = LocalOfflineStore::new(dir.path().join("local"));
    let s3 = bucket.offline(&dir.path().join("cache"));
    local.append(&shop, "user_stats", rows(&sample())).unwrap();
    s3.append(&shop, "user_stats", rows(&sample())).unwrap();
    let entities = || {
        DataFrame::new_infer_height(vec![
            Column::new("user".into(), [1i64, 2, 3, 1]),
            Int64Chunked::from_vec(
                "t".into(),
                [at(1, 12), at(3, 14), at(2, 0), at(4, 0)].iter().map(DateTime::timestamp_micros).collect(),
            )
            .into_datetime(TimeUnit::Microseconds, None)
            .into_column(),
        ])
        .unwrap()
        .lazy()
        .with_column(col("t").cast(timestamp_dtype()))
    };
    let view = |store: &dyn OfflineStore| ViewHistory {
        name: "user_stats".into(),
        join_keys: vec!["user".into()],
        features: vec!["score".into()],
        ttl: Some(std::time::Duration::from_secs(86_400)),
        history: store.scan(&shop, "user_stats", TimeRange::all()).unwrap(),
    };
    let result = |store: &dyn OfflineStore| {
        get_historical_features(entities(), "t", &[view(store)], &PitOptions::default()).unwrap().collect().unwrap()
    };
    let expected = result(&local);
    let scores: Vec<Option<f64>> = expected.column("score").unwrap().f64().unwrap().iter().collect();
    assert_eq!(scores, [Some(1.0), Some(5.0), None, None]);
    assert!(result(&s3).equals_missing(&expected));
}

/// Uploads every file under `root` to `bucket` under its path relative to `root`.
fn upload_tree(bucket: &Bucket, root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let key = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            block(bucket.store.put(&key.as_str().into(), bytes.into())).unwrap();
        }
    }
}

#[test]
fn events_of_a_lake_in_s3_are_read_by_do_get_and_by_sql_through_a_local_mirror() {
    use arrow_array::cast::AsArray as _;
    use futures::TryStreamExt as _;
    use livora_feature_store::Registry;
    use livora_feature_store::flight::budget::StreamBudget;
    use livora_feature_store::flight::command::{EventsCommand, SqlCommand};
    use livora_feature_store::flight::{Command, Datasets, Uploads};
    use livora_feature_store::metrics::Metrics;

    let bucket = Bucket::new();
    let dir = tempfile::tempdir().unwrap();
    let start = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
    let mut events = livora_tests::synthetic_events("shop", start, 3, 20, 10).unwrap();
    events.extend(livora_tests::synthetic_events("rival", start, 1, 7, 10).unwrap());
    livora_tests::write_lake(&dir.path().join("first"), &events).unwrap();
    upload_tree(&bucket, &dir.path().join("first/lake"));

    let registry =
        block(Registry::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("registry.db").display()))).unwrap();
    let cache = dir.path().join("lake-cache");
    let datasets = Datasets {
        lake: bucket.store.clone(),
        lake_dir: None,
        lake_cache: Some(cache.clone()),
        offline: Arc::new(LocalOfflineStore::new(dir.path().join("offline"))),
        offline_root: dir.path().join("offline"),
        registry,
        uploads: Uploads::new(dir.path().join("uploads"), std::time::Duration::from_secs(3600), 1 << 20),
    };
    // The event ids `command` answers for `client`, sorted.
    let read = |client: &str, command: Command| -> Vec<String> {
        block(async {
            let client = ClientId::new(client).unwrap();
            let dataset = datasets.open(&client, &command).await.unwrap();
            let budget = StreamBudget::new(1 << 20, Metrics::unregistered());
            let batches: Vec<arrow_array::RecordBatch> =
                datasets.stream(&client, dataset, 1024, budget).map_ok(|(batch, _)| batch).try_collect().await.unwrap();
            let mut rows = Vec::new();
            for batch in batches {
                // polars' strings cross to arrow-rs as `large_utf8`; the lake's are `utf8`.
                let ids = batch.column_by_name("event_id").unwrap();
                match ids.as_string_opt::<i64>() {
                    Some(ids) => rows.extend(ids.iter().map(|id| id.unwrap().to_owned())),
                    None => rows.extend(ids.as_string::<i32>().iter().map(|id| id.unwrap().to_owned())),
                }
            }
            rows.sort();
            rows
        })
    };
    let select = |client: &str| read(client, Command::Sql(SqlCommand { query: "SELECT event_id FROM events".into() }));
    let expected = |client: &str, events: &[livora_common::Event]| -> Vec<String> {
        let mut rows: Vec<String> =
            events.iter().filter(|e| e.client_id.as_str() == client).map(|e| e.event_id.to_string()).collect();
        rows.sort();
        rows
    };

    // Every event of the client, and only its own, read from the bucket through the mirror.
    assert_eq!(select("shop"), expected("shop", &events));
    assert_eq!(select("rival"), expected("rival", &events));
    // The `events` dataset (DoGet) reads the bucket with the async reader, whole or by time.
    assert_eq!(read("shop", Command::Events(EventsCommand::default())), expected("shop", &events));
    let second_hour = EventsCommand {
        start: Some(start + chrono::Duration::hours(1)),
        end: Some(start + chrono::Duration::hours(2) - chrono::Duration::microseconds(1)),
        event_types: Vec::new(),
    };
    let in_second_hour: Vec<livora_common::Event> = events
        .iter()
        .filter(|e| e.timestamp >= second_hour.start.unwrap() && e.timestamp <= second_hour.end.unwrap())
        .cloned()
        .collect();
    assert!(!in_second_hour.is_empty());
    assert_eq!(read("shop", Command::Events(second_hour)), expected("shop", &in_second_hour));
    let mirrored = cache.join("raw/events/client_id=shop");
    assert!(mirrored.is_dir(), "the lake's files are mirrored under {}", cache.display());

    // A file the lake gained since is fetched by the next query; a cached file cut short (a
    // crash mid-download) is fetched again.
    let later = livora_tests::synthetic_events("shop", start + chrono::Duration::hours(5), 1, 4, 10).unwrap();
    livora_tests::write_lake(&dir.path().join("second"), &later).unwrap();
    upload_tree(&bucket, &dir.path().join("second/lake"));
    let damaged = std::fs::read_dir(mirrored.join("dt=2024-03-01/hour=00")).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&damaged, b"PAR1").unwrap();
    events.extend(later);
    assert_eq!(select("shop"), expected("shop", &events));
}
