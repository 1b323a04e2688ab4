//! Materialization of a batch view from Parquet into the embedded online store: latest row per
//! entity, idempotent, and incremental runs watermarked on created time, so a row that arrives
//! late (an old event time, written after the last run) is still loaded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use livora_common::ClientId;
use livora_feature_store::definitions::{EXAMPLE_REPO, parse_files};
use livora_feature_store::materialize::{Mode, materialize};
use livora_feature_store::online::{self, OnlineConfig};
use livora_feature_store::{OnlineStore, Registry, RowKey, Value};
use polars::prelude::*;

const HOUR: i64 = 3_600_000_000;
const T0: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

fn shop() -> ClientId {
    ClientId::new("shop").unwrap()
}

/// Writes one file of the `customer_profile` table: (user, event time, created, country).
fn write_table(root: &Path, name: &str, rows: &[(&str, i64, i64, &str)]) {
    let dir = root.join("tables/customer_profile/client_id=shop");
    std::fs::create_dir_all(&dir).unwrap();
    let ts = |name: &str, v: Vec<i64>| {
        Int64Chunked::from_vec(name.into(), v).into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)).into_column()
    };
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            Column::new("user_id".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            ts("event_timestamp", rows.iter().map(|r| r.1).collect()),
            ts("created_timestamp", rows.iter().map(|r| r.2).collect()),
            Column::new("signup_method".into(), rows.iter().map(|_| "email").collect::<Vec<_>>()),
            Column::new("country".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
            Column::new("newsletter_opt_in".into(), rows.iter().map(|_| true).collect::<Vec<_>>()),
            ts("signed_up_at", rows.iter().map(|r| r.1 - 100 * HOUR).collect()),
        ],
    )
    .unwrap();
    let mut file = std::fs::File::create(dir.join(format!("{name}.parquet"))).unwrap();
    ParquetWriter::new(&mut file).finish(&mut df).unwrap();
}

async fn country(online: &dyn OnlineStore, user: &str) -> Option<(i64, Value)> {
    let row = online.read(&shop(), &[RowKey::new("user", user, "customer_profile")]).await.unwrap().remove(0)?;
    Some((row.event_time, row.get("country").cloned().unwrap()))
}

#[tokio::test]
async fn batch_views_materialize_latest_rows_and_late_arrivals() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("offline");
    let registry = Registry::connect(&format!("sqlite://{}/registry.db?mode=rwc", dir.path().display())).await.unwrap();
    let files: Vec<(PathBuf, String)> = EXAMPLE_REPO.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())).collect();
    let repo = parse_files(&files).unwrap();
    registry.apply(&shop(), &repo, false, false).await.unwrap();
    let online = online::open(&OnlineConfig::default(), dir.path()).await.unwrap();
    let quiet = |_: &str, _: u64, _: u64| {};

    write_table(&root, "a", &[("u1", T0, T0 + 1, "FR"), ("u1", T0 + HOUR, T0 + HOUR, "DE"), ("u2", T0, T0, "IT")]);
    let first =
        materialize(&repo, &root, &shop(), online.as_ref(), &registry, Mode::Incremental, None, &quiet).await.unwrap();
    assert_eq!((first[0].view.as_str(), first[0].entities, first[0].applied), ("customer_profile", 2, 2));
    assert_eq!(first[0].watermark, Some(T0 + HOUR));
    assert_eq!(country(online.as_ref(), "u1").await, Some((T0 + HOUR, Value::String("DE".into()))));

    // Nothing new: nothing loaded, the watermark stays.
    let again =
        materialize(&repo, &root, &shop(), online.as_ref(), &registry, Mode::Incremental, None, &quiet).await.unwrap();
    assert_eq!((again[0].entities, again[0].watermark), (0, Some(T0 + HOUR)));

    // A late row: an event time long before the watermark, created after it. Watermarked on
    // event time it would be missed; on created time it is loaded.
    write_table(&root, "b", &[("u3", T0 - 10 * HOUR, T0 + 2 * HOUR, "ES"), ("u2", T0 - HOUR, T0 + 2 * HOUR, "NL")]);
    let late =
        materialize(&repo, &root, &shop(), online.as_ref(), &registry, Mode::Incremental, None, &quiet).await.unwrap();
    assert_eq!((late[0].entities, late[0].applied), (2, 1), "u3 is new; u2's late row is older than what is online");
    assert_eq!(country(online.as_ref(), "u3").await, Some((T0 - 10 * HOUR, Value::String("ES".into()))));
    assert_eq!(country(online.as_ref(), "u2").await, Some((T0, Value::String("IT".into()))));

    // A range run over the past changes nothing that is newer online.
    let range = Mode::Range {
        start: chrono::DateTime::from_timestamp_micros(T0 - 20 * HOUR).unwrap(),
        end: chrono::DateTime::from_timestamp_micros(T0).unwrap(),
    };
    let past = materialize(&repo, &root, &shop(), online.as_ref(), &registry, range, None, &quiet).await.unwrap();
    assert_eq!((past[0].entities, past[0].applied), (3, 0));
    assert_eq!(country(online.as_ref(), "u1").await, Some((T0 + HOUR, Value::String("DE".into()))));

    // Another client sees none of it.
    let other = online.read(&ClientId::new("other").unwrap(), &[RowKey::new("user", "u1", "customer_profile")]).await;
    assert_eq!(other.unwrap(), vec![None]);
}
