//! The backfill end to end on the local offline store: simulated shop traffic is backfilled into
//! `user_activity`'s history on a daily grid, and a dataset built over a spine of the same grid
//! must read, at every (user, day), exactly what the batch engine computes from the events —
//! including after a second run, after a stream row at a grid time, and whatever the chunking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use livora_common::{ClientId, Event};
use livora_feature_store::backfill::{self, BackfillOptions};
use livora_feature_store::dataset::{self, DatasetRequest, Entities, Selection};
use livora_feature_store::definitions::{EXAMPLE_REPO, parse_files};
use livora_feature_store::offline::{EVENT_TIMESTAMP, timestamp_dtype};
use livora_feature_store::stream::feature_log::frame;
use livora_feature_store::stream::{CompiledView, FeatureRow, StateKey};
use livora_feature_store::{
    Error, LocalOfflineStore, OfflineStore, Repo, SpineOptions, TimeRange, Value, ValueType, batch,
};
use livora_simulator::{SimConfig, Simulator};
use polars::prelude::*;

const DAY: Duration = Duration::from_secs(86_400);

fn shop() -> ClientId {
    ClientId::new("shop").unwrap()
}

fn repo() -> Repo {
    let files: Vec<(PathBuf, String)> = EXAMPLE_REPO.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())).collect();
    parse_files(&files).unwrap()
}

fn sim_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
}

/// 300 people over 20 days, as events read back from the lake (times to the microsecond).
fn simulated() -> Vec<Event> {
    let config = SimConfig { client_id: shop(), users: 300, days: 20, start: sim_start(), seed: 7 };
    Simulator::new(config)
        .events()
        .map(|mut v| {
            v["received_at"] = v["timestamp"].clone();
            serde_json::from_value(v).unwrap()
        })
        .collect()
}

/// The grid: daily from the 4th day (so that earlier events fill the windows of the first rows)
/// to the day after the last event.
fn grid() -> BackfillOptions {
    let start = sim_start() + chrono::Duration::days(3);
    let end = sim_start() + chrono::Duration::days(21);
    BackfillOptions { chunk_rows: 500, ..BackfillOptions::new(start, end, DAY) }
}

fn activity(repo: &Repo) -> std::sync::Arc<CompiledView> {
    backfill::streaming_view(&shop(), repo, "user_activity").unwrap()
}

fn run(store: &LocalOfflineStore, repo: &Repo, events: &[Event], options: &BackfillOptions, created: i64) -> u64 {
    let done = backfill::backfill(store, &shop(), repo, "user_activity", events, options, created, &|_, _| {}).unwrap();
    eprintln!(
        "backfilled {}: {} rows for {} entities in {} files in {:.2?}",
        done.view, done.rows, done.entities, done.files, done.elapsed
    );
    done.rows
}

/// Every feature of `user_activity` over a spine of `options`' grid.
fn dataset(store: &LocalOfflineStore, root: &std::path::Path, repo: &Repo, options: &BackfillOptions) -> DataFrame {
    let spine = Entities::Spine {
        view: "user_activity".into(),
        options: SpineOptions::new(options.start, options.end, options.cadence),
    };
    try_dataset(store, root, repo, spine).unwrap()
}

/// Every feature of `user_activity` at `entities`, or the error of the build or of the query.
fn try_dataset(
    store: &LocalOfflineStore,
    root: &std::path::Path,
    repo: &Repo,
    entities: Entities,
) -> Result<DataFrame, String> {
    let request = DatasetRequest {
        selection: Selection::Refs(vec!["user_activity:*".into()]),
        entities,
        full_feature_names: false,
    };
    let query = dataset::build(repo, store, root, &shop(), request).map_err(|e| e.to_string())?;
    query.collect().map_err(|e| e.to_string())
}

/// The (user, time µs) of every dataset row, in order.
fn rows(frame: &DataFrame) -> Vec<(String, i64)> {
    let users = frame.column("user_id").unwrap().str().unwrap().clone();
    let times = frame.column(EVENT_TIMESTAMP).unwrap().to_physical_repr();
    let times = times.i64().unwrap().clone();
    users.iter().zip(times.iter()).map(|(u, t)| (u.unwrap().to_owned(), t.unwrap())).collect()
}

/// Asserts that every aggregation of every row equals the batch engine at the row's (user, time),
/// and that `days_since_last_seen` is computed at the row's time.
fn assert_equals_batch_engine(frame: &DataFrame, view: &CompiledView, events: &[Event]) {
    let queries = rows(frame);
    let expected = batch::values_at(view, events, &queries);
    for (i, agg) in view.aggs.iter().enumerate() {
        let column = frame.column(&agg.name).unwrap();
        for (row, want) in expected.iter().enumerate() {
            let got = Value::from_cell(column.get(row).unwrap(), agg.ty);
            assert_eq!(got, want[i], "{} of {} at {}", agg.name, queries[row].0, queries[row].1);
        }
    }
    let last_seen = view.aggs.iter().position(|a| a.name == "last_seen_at").unwrap();
    let days = frame.column("days_since_last_seen").unwrap();
    for (row, want) in expected.iter().enumerate() {
        let Value::Timestamp(seen) = want[last_seen] else { panic!("every spine row follows an event") };
        let Value::Float64(got) = Value::from_cell(days.get(row).unwrap(), ValueType::Float64) else {
            panic!("days_since is a float")
        };
        // Serving divides by the day in f64; the dataset's polars expression can land one ulp
        // off, so this derived feature is compared to a relative 1e-15, not exactly.
        let want = (queries[row].1 - seen) as f64 / 86_400_000_000.0;
        assert!((got - want).abs() <= want.abs() * 1e-15, "days_since_last_seen at row {row}: {got} vs {want}");
    }
}

#[test]
fn a_dataset_over_the_backfilled_grid_reads_exactly_the_batch_engine() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalOfflineStore::new(dir.path());
    let repo = repo();
    let view = activity(&repo);
    let events = simulated();
    let options = grid();
    let written = run(&store, &repo, &events, &options, 1_000);

    // The spine is every user from their first event rounded up to the grid, computed here from
    // the events alone: the backfill wrote exactly those rows.
    let (start, end) = (options.start.timestamp_micros(), options.end.timestamp_micros());
    let mut expected_rows: BTreeSet<(String, i64)> = BTreeSet::new();
    for (user, first) in batch::events_by_entity(&view, &events)
        .into_iter()
        .map(|(u, e)| (u, e.iter().map(|e| e.timestamp.timestamp_micros()).min().unwrap()))
    {
        let mut t = start;
        while t <= end {
            if t >= first {
                expected_rows.insert((user.clone(), t));
            }
            t += 86_400_000_000;
        }
    }
    assert!(expected_rows.len() > 1_000, "the simulation must yield users; got {} rows", expected_rows.len());
    assert_eq!(written, expected_rows.len() as u64);
    let first = dataset(&store, dir.path(), &repo, &options);
    assert_eq!(rows(&first).into_iter().collect::<BTreeSet<_>>(), expected_rows);
    assert_equals_batch_engine(&first, &view, &events);

    // The rows sit in one partition per day, as the stream writes them.
    let days: BTreeSet<String> = std::fs::read_dir(dir.path().join("features/client_id=shop/view=user_activity"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(days.len(), 19, "{days:?}");
    assert!(days.contains("dt=2026-03-05") && days.contains("dt=2026-03-23"), "{days:?}");

    // A second run over the same events, later and chunked otherwise: both runs are in the
    // history, and the dataset is unchanged (equal rows, the later created wins the tie).
    let again = BackfillOptions { chunk_rows: 100_000, ..grid() };
    assert_eq!(run(&store, &repo, &events, &again, 2_000), written);
    let history = store.scan(&shop(), "user_activity", TimeRange::all()).unwrap().collect().unwrap();
    assert_eq!(history.height() as u64, 2 * written);
    let second = dataset(&store, dir.path(), &repo, &options);
    assert!(first.equals_missing(&second), "a second backfill changed the dataset");

    // A stream row at a grid time, computed earlier (e.g. during a fast replay whose timers
    // fired early): the backfill's later created_timestamp wins the tie.
    let (user, at) = rows(&first)[0].clone();
    let wrong = FeatureRow {
        key: StateKey { client: "shop".into(), view: "user_activity".into(), key: user },
        entity: "user".into(),
        event_time: at,
        values: view.aggs.iter().map(|a| (a.name.clone(), Value::Null)).collect(),
    };
    store.append(&shop(), "user_activity", frame(&view, &view.key_column, &[wrong], 1_500).unwrap()).unwrap();
    let third = dataset(&store, dir.path(), &repo, &options);
    assert!(first.equals_missing(&third), "an older stream row at a grid time won over the backfill");
}

#[test]
fn only_registered_streaming_views_are_backfilled_and_the_grid_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalOfflineStore::new(dir.path());
    let repo = repo();
    let events = simulated();
    let options = grid();
    let go = |view: &str, options: &BackfillOptions| {
        backfill::backfill(&store, &shop(), &repo, view, &events[..200], options, 1, &|_, _| {})
    };
    let err = go("customer_profile", &options).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("`customer_profile` is a batch view"), "{err}");
    assert!(err.to_string().contains("streaming views: product_activity, user_activity, user_interests"), "{err}");
    let err = go("user_activty", &options).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(err.to_string().contains("`user_activty` is not registered"), "{err}");
    assert!(err.to_string().contains("streaming views: product_activity, user_activity, user_interests"), "{err}");

    let reversed = BackfillOptions { start: options.end, end: options.start, ..options.clone() };
    assert!(go("user_activity", &reversed).unwrap_err().to_string().contains("is before start"));
    let zero = BackfillOptions { cadence: Duration::ZERO, ..options.clone() };
    assert!(go("user_activity", &zero).unwrap_err().to_string().contains("cadence"));
    let too_fine = BackfillOptions { cadence: Duration::from_micros(1), ..options.clone() };
    assert!(go("user_activity", &too_fine).unwrap_err().to_string().contains("use a coarser cadence"));
    assert!(!dir.path().join("features").exists(), "nothing is written on a refused backfill");

    // Progress is reported per chunk, up to every entity.
    let seen = std::cell::RefCell::new(Vec::new());
    let done = backfill::backfill(&store, &shop(), &repo, "user_activity", &events, &options, 1, &|d, t| {
        seen.borrow_mut().push((d, t))
    })
    .unwrap();
    let seen = seen.into_inner();
    assert!(seen.len() > 2, "{seen:?}");
    assert_eq!(seen.first(), Some(&(0, done.entities)));
    assert_eq!(seen.last(), Some(&(done.entities, done.entities)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
}

/// A dataset reads only the days of history its entity rows can match: up to the latest row's
/// time, and from the earliest row's time less the view's ttl (90 days for `user_activity`). A
/// file that cannot be read, put in a day outside that range, is never opened; inside it, it
/// fails the build — which shows the pruning is what keeps it out.
#[test]
fn a_dataset_reads_only_the_days_of_history_its_entity_rows_can_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalOfflineStore::new(dir.path());
    let repo = repo();
    let events = simulated();
    let options = grid();
    run(&store, &repo, &events, &options, 1_000);
    let full = dataset(&store, dir.path(), &repo, &options);
    let partitions = dir.path().join("features/client_id=shop/view=user_activity");
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0).unwrap();
    let spine = |start: DateTime<Utc>, end: DateTime<Utc>| Entities::Spine {
        view: "user_activity".into(),
        options: SpineOptions::new(start, end, DAY),
    };

    // A spine over 8–14 March does not read 20 March; the same dataset is every row of the full
    // grid's dataset in that window.
    let corrupt = partitions.join("dt=2026-03-20/part-zzzz.parquet");
    std::fs::write(&corrupt, b"not a parquet file").unwrap();
    let window = try_dataset(&store, dir.path(), &repo, spine(day(8), day(14))).unwrap();
    let in_window = full
        .clone()
        .lazy()
        .filter(
            col(EVENT_TIMESTAMP)
                .gt_eq(lit(day(8).timestamp_micros()).cast(timestamp_dtype()))
                .and(col(EVENT_TIMESTAMP).lt_eq(lit(day(14).timestamp_micros()).cast(timestamp_dtype()))),
        )
        .collect()
        .unwrap();
    assert!(window.height() > 500, "{} rows", window.height());
    assert!(window.equals_missing(&in_window), "the window's dataset differs from the full one's rows");
    let err = try_dataset(&store, dir.path(), &repo, spine(day(8), day(20))).unwrap_err();
    assert!(err.contains("expected parquet magic bytes"), "{err}");
    std::fs::remove_file(&corrupt).unwrap();

    // Entity rows on 10 June read from 12 March on (90 days before), so 5 March is never read,
    // and each user gets their last row (23 March), still within the ttl.
    std::fs::write(partitions.join("dt=2026-03-05/part-zzzz.parquet"), b"not a parquet file").unwrap();
    let last = full
        .clone()
        .lazy()
        .filter(col(EVENT_TIMESTAMP).eq(lit(day(23).timestamp_micros()).cast(timestamp_dtype())))
        .sort(["user_id"], SortMultipleOptions::default())
        .limit(25)
        .collect()
        .unwrap();
    assert_eq!(last.height(), 25);
    let at = |t: DateTime<Utc>| {
        let users = last.column("user_id").unwrap().clone();
        let times = Int64Chunked::full(EVENT_TIMESTAMP.into(), t.timestamp_micros(), users.len())
            .into_series()
            .cast(&timestamp_dtype())
            .unwrap()
            .into_column();
        let rows = DataFrame::new_infer_height(vec![users, times]).unwrap().lazy();
        Entities::Rows { frame: Box::new(rows), timestamp_column: EVENT_TIMESTAMP.into() }
    };
    let june = Utc.with_ymd_and_hms(2026, 6, 10, 0, 0, 0).unwrap();
    let later = try_dataset(&store, dir.path(), &repo, at(june)).unwrap();
    // All but the time and the `days_since_*` features, which are computed at the row's time.
    let unchanged = |f: &DataFrame| {
        let names: Vec<String> = f.get_column_names().into_iter().map(|n| n.to_string()).collect();
        f.drop_many(names.into_iter().filter(|n| n == EVENT_TIMESTAMP || n.starts_with("days_since_")))
    };
    let (later, last) = (unchanged(&later), unchanged(&last));
    let differ: Vec<String> = later
        .columns()
        .iter()
        .zip(last.columns())
        .filter(|(a, b)| a.name() != b.name() || !a.as_materialized_series().equals_missing(b.as_materialized_series()))
        .map(|(a, b)| format!("{}: {:?} vs {:?}", a.name(), a.get(0), b.get(0)))
        .collect();
    assert!(differ.is_empty(), "{differ:?}");
    let earlier = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let err = try_dataset(&store, dir.path(), &repo, at(earlier)).unwrap_err();
    assert!(err.contains("expected parquet magic bytes"), "{err}");
}
