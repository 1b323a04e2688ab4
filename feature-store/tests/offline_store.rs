//! The local offline store: round trips, day partitions and their pruning, tenancy, atomicity,
//! and datasets written from point-in-time results.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use livora_common::ClientId;
use livora_feature_store::offline::{EVENT_TIMESTAMP, timestamp_dtype};
use livora_feature_store::{
    Error, LocalOfflineStore, OfflineStore, PitOptions, TimeRange, ViewHistory, get_historical_features, write_dataset,
};
use polars::prelude::*;

fn client(id: &str) -> ClientId {
    ClientId::new(id).expect("valid client id")
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, day, hour, 0, 0).single().expect("valid time")
}

/// Rows of a `user_stats` view, event times given in nanoseconds (naive) to check the cast.
fn rows(data: &[(i64, DateTime<Utc>, f64)]) -> DataFrame {
    let nanos: Vec<i64> = data.iter().map(|r| r.1.timestamp_micros() * 1_000).collect();
    DataFrame::new_infer_height(vec![
        Column::new("user".into(), data.iter().map(|r| r.0).collect::<Vec<_>>()),
        Int64Chunked::from_vec(EVENT_TIMESTAMP.into(), nanos).into_datetime(TimeUnit::Nanoseconds, None).into_column(),
        Column::new("score".into(), data.iter().map(|r| r.2).collect::<Vec<_>>()),
    ])
    .expect("frame")
}

/// (user, event µs, score) sorted, for order-insensitive comparisons.
fn contents(df: &DataFrame) -> Vec<(i64, i64, f64)> {
    let users = df.column("user").expect("user").i64().expect("i64").clone();
    let times = df.column(EVENT_TIMESTAMP).expect("time").to_physical_repr();
    let times = times.i64().expect("i64").clone();
    let scores = df.column("score").expect("score").f64().expect("f64").clone();
    let mut out: Vec<(i64, i64, f64)> = users
        .iter()
        .zip(times.iter())
        .zip(scores.iter())
        .map(|((u, t), s)| (u.expect("user"), t.expect("time"), s.expect("score")))
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    out
}

fn collect(store: &LocalOfflineStore, client: &ClientId, range: TimeRange) -> DataFrame {
    store.scan(client, "user_stats", range).expect("scan").collect().expect("collect")
}

fn partitions(root: &Path, client: &str) -> Vec<String> {
    let dir = root.join("features").join(format!("client_id={client}")).join("view=user_stats");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("view dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sample() -> Vec<(i64, DateTime<Utc>, f64)> {
    vec![(1, at(1, 10), 1.0), (2, at(1, 23), 2.0), (1, at(2, 0), 3.0), (2, at(4, 12), 4.0)]
}

#[test]
fn append_partitions_by_day_and_scan_reads_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalOfflineStore::new(dir.path());
    let acme = client("acme");
    let written = store.append(&acme, "user_stats", rows(&sample())).expect("append");
    assert_eq!(written.len(), 3, "three days, three files");
    assert!(written.iter().all(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("part-"))));
    assert_eq!(partitions(dir.path(), "acme"), ["dt=2024-03-01", "dt=2024-03-02", "dt=2024-03-04"]);

    let all = collect(&store, &acme, TimeRange::all());
    assert_eq!(all.schema().get(EVENT_TIMESTAMP), Some(&timestamp_dtype()), "stored as µs UTC");
    let expected: Vec<(i64, i64, f64)> = sample().iter().map(|r| (r.0, r.1.timestamp_micros(), r.2)).collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    assert_eq!(contents(&all), expected_sorted);

    // Both ends included, to the microsecond.
    let some = collect(&store, &acme, TimeRange::between(at(1, 23), at(2, 0)));
    assert_eq!(contents(&some), [(1, at(2, 0).timestamp_micros(), 3.0), (2, at(1, 23).timestamp_micros(), 2.0)]);
    let open_start = collect(&store, &acme, TimeRange { start: None, end: Some(at(1, 10)) });
    assert_eq!(contents(&open_start), [(1, at(1, 10).timestamp_micros(), 1.0)]);

    // A second append adds files beside the first ones.
    store.append(&acme, "user_stats", rows(&[(3, at(2, 5), 5.0)])).expect("append");
    assert_eq!(collect(&store, &acme, TimeRange::all()).height(), 5);
}

#[test]
fn days_outside_the_range_are_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalOfflineStore::new(dir.path());
    let acme = client("acme");
    store.append(&acme, "user_stats", rows(&sample())).expect("append");
    // Corrupt the day-4 partition: a scan that prunes it still works, one that reads it fails.
    let day4 = dir.path().join("features/client_id=acme/view=user_stats/dt=2024-03-04");
    for entry in std::fs::read_dir(&day4).expect("day 4") {
        std::fs::write(entry.expect("entry").path(), b"not parquet").expect("corrupt");
    }
    let pruned = collect(&store, &acme, TimeRange::between(at(1, 0), at(2, 23)));
    assert_eq!(pruned.height(), 3);
    let unpruned = store.scan(&acme, "user_stats", TimeRange::all()).expect("scan").collect();
    assert!(unpruned.is_err(), "the corrupt day is read when in range");
}

#[test]
fn temporary_files_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalOfflineStore::new(dir.path());
    let acme = client("acme");
    store.append(&acme, "user_stats", rows(&sample())).expect("append");
    // What a crash in the middle of an append leaves behind.
    let day1 = dir.path().join("features/client_id=acme/view=user_stats/dt=2024-03-01");
    std::fs::write(day1.join(".part-0190c0de-0000-7000-8000-000000000000.parquet.tmp"), b"half a file").expect("tmp");
    assert_eq!(collect(&store, &acme, TimeRange::all()).height(), 4);
}

#[test]
fn a_client_never_sees_another_clients_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalOfflineStore::new(dir.path());
    let (a, b) = (client("shop-a"), client("shop-b"));
    store.append(&a, "user_stats", rows(&sample())).expect("append a");
    let err = store.scan(&b, "user_stats", TimeRange::all()).err().expect("b has nothing yet");
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(err.to_string().contains("shop-b"), "{err}");

    store.append(&b, "user_stats", rows(&[(99, at(1, 12), 99.0)])).expect("append b");
    let seen_by_a = contents(&collect(&store, &a, TimeRange::all()));
    let seen_by_b = contents(&collect(&store, &b, TimeRange::all()));
    assert_eq!(seen_by_a.len(), 4);
    assert!(seen_by_a.iter().all(|r| r.0 != 99), "a sees none of b's rows");
    assert_eq!(seen_by_b, [(99, at(1, 12).timestamp_micros(), 99.0)]);
}

#[test]
fn bad_appends_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalOfflineStore::new(dir.path());
    let acme = client("acme");
    for view in ["../escape", "", ".hidden", "a/b"] {
        let err = store.append(&acme, view, rows(&sample())).expect_err("bad view name");
        assert!(matches!(err, Error::InvalidArgument(_)), "{view}: {err}");
    }
    let no_time = DataFrame::new_infer_height(vec![Column::new("user".into(), [1i64])]).expect("frame");
    let err = store.append(&acme, "user_stats", no_time).expect_err("no event time");
    assert!(err.to_string().contains(EVENT_TIMESTAMP), "{err}");
    let text_time =
        DataFrame::new_infer_height(vec![Column::new(EVENT_TIMESTAMP.into(), ["2024-03-01"])]).expect("frame");
    let err = store.append(&acme, "user_stats", text_time).expect_err("text event time");
    assert!(err.to_string().contains("expected a datetime"), "{err}");
    assert!(store.append(&acme, "user_stats", rows(&[])).expect("empty append").is_empty());
    assert!(!dir.path().join("features").exists(), "nothing written");
}

#[test]
fn a_point_in_time_dataset_from_store_scans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalOfflineStore::new(dir.path().join("data"));
    let acme = client("acme");
    store.append(&acme, "user_stats", rows(&sample())).expect("append");
    let entity_rows = DataFrame::new_infer_height(vec![
        Column::new("user".into(), [2i64, 1, 1, 3]),
        Int64Chunked::from_vec(
            "ts".into(),
            [at(2, 0), at(1, 12), at(3, 0), at(3, 0)].iter().map(|t| t.timestamp_micros()).collect(),
        )
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column(),
    ])
    .expect("frame");
    let view = ViewHistory {
        name: "user_stats".into(),
        join_keys: vec!["user".into()],
        features: vec!["score".into()],
        ttl: Some(Duration::from_secs(24 * 3600)),
        history: store.scan(&acme, "user_stats", TimeRange::between(at(1, 0), at(3, 0))).expect("scan"),
    };
    let plan = get_historical_features(entity_rows.lazy(), "ts", &[view], &PitOptions::default()).expect("plan");
    let in_memory = plan.clone().collect().expect("collect");
    let scores: Vec<Option<f64>> = in_memory.column("score").expect("score").f64().expect("f64").iter().collect();
    // User 1 at day 3 00:00: last row day 2 00:00, exactly one ttl old: included.
    assert_eq!(scores, [Some(2.0), Some(1.0), Some(3.0), None]);

    let path = dir.path().join("datasets/train.parquet");
    write_dataset(plan, &path).expect("write dataset");
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary left: {leftovers:?}");
    let read = LazyFrame::scan_parquet(PlRefPath::new(path.to_string_lossy().as_ref()), ScanArgsParquet::default())
        .expect("scan")
        .collect()
        .expect("read");
    assert!(read.equals_missing(&in_memory), "{read}\n{in_memory}");
}
