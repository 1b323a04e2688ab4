//! The cases every online store backend must pass, whatever it stores rows in.
//!
//! Each case is an `async fn` taking a fresh, empty store; a backend module runs them all with
//! [`conformance_suite!`], giving a fixture that opens the store and cleans up after it.

use std::collections::BTreeMap;
use std::sync::Arc;

use livora_common::ClientId;
use livora_feature_store::online::codec;
use livora_feature_store::{OnlineRow, OnlineStore, RowKey, Value};

/// A store under test.
pub type Store = Arc<dyn OnlineStore>;

/// Declares one `#[tokio::test]` per conformance case, each run as `$fixture(case).await`,
/// where the fixture is an `async fn(impl FnOnce(Store) -> impl Future<Output = ()>)`.
macro_rules! conformance_suite {
    ($fixture:path) => {
        conformance_suite!(@cases $fixture;
            round_trips_every_value_type,
            missing_keys_read_as_none_in_key_order,
            older_rows_are_skipped_and_newer_applied,
            replaying_a_batch_changes_nothing,
            the_newest_row_of_a_key_in_one_batch_wins,
            concurrent_writers_end_with_the_newest_row,
            clients_never_see_each_others_rows,
            views_of_an_entity_are_independent,
            separators_in_names_do_not_collide,
            orders_across_the_whole_time_range,
            a_big_batch_reads_back,
            an_empty_batch_is_a_no_op,
            ping_answers,
        );
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $fixture($crate::conformance::$case).await;
            }
        )*
    };
}

pub fn client(id: &str) -> ClientId {
    ClientId::new(id).unwrap()
}

pub fn key(entity: &str, key: &str, view: &str) -> RowKey {
    RowKey::new(entity, key, view)
}

/// A row whose values tell where it came from.
pub fn row(event_time: i64, created: i64, tag: &str) -> OnlineRow {
    OnlineRow {
        event_time,
        created,
        values: vec![("tag".into(), Value::String(tag.into())), ("event_time".into(), Value::Int64(event_time))],
    }
}

fn times(row: &Option<OnlineRow>) -> Option<(i64, i64)> {
    row.as_ref().map(|r| (r.event_time, r.created))
}

async fn read_one(store: &Store, client: &ClientId, key: &RowKey) -> Option<OnlineRow> {
    let mut rows = store.read(client, std::slice::from_ref(key)).await.unwrap();
    assert_eq!(rows.len(), 1);
    rows.pop().unwrap()
}

pub async fn round_trips_every_value_type(store: Store) {
    let c = client("shop");
    let full = OnlineRow {
        event_time: 1_767_225_600_000_000,
        created: 1_767_225_601_000_000,
        values: vec![
            ("null".into(), Value::Null),
            ("yes".into(), Value::Bool(true)),
            ("no".into(), Value::Bool(false)),
            ("int_min".into(), Value::Int64(i64::MIN)),
            ("int_max".into(), Value::Int64(i64::MAX)),
            ("float".into(), Value::Float64(-1.5e-300)),
            ("negative_zero".into(), Value::Float64(-0.0)),
            ("infinity".into(), Value::Float64(f64::INFINITY)),
            ("nan".into(), Value::Float64(f64::NAN)),
            ("empty".into(), Value::String(String::new())),
            ("unicode".into(), Value::String("zäh 🦀 \u{0} \"quoted\"".into())),
            ("long".into(), Value::String("x".repeat(20_000))),
            ("before_epoch".into(), Value::Timestamp(-86_400_000_000)),
            ("ts".into(), Value::Timestamp(1_767_225_600_123_456)),
        ],
    };
    let no_values = OnlineRow { event_time: 5, created: 6, values: Vec::new() };
    let (k1, k2) = (key("user", "u-1", "everything"), key("user", "u-1", "nothing"));
    let written = store.write(&c, &[(k1.clone(), full.clone()), (k2.clone(), no_values.clone())]).await.unwrap();
    assert_eq!(written, 2);

    let back = store.read(&c, &[k1, k2]).await.unwrap();
    // NaN != NaN: compare the encodings, which are bit-exact.
    let encoded = |r: &Option<OnlineRow>| codec::encode(r.as_ref().expect("row present")).unwrap();
    assert_eq!(encoded(&back[0]), codec::encode(&full).unwrap());
    assert_eq!(back[1], Some(no_values));
    assert_eq!(back[0].as_ref().unwrap().get("long"), Some(&Value::String("x".repeat(20_000))));
}

pub async fn missing_keys_read_as_none_in_key_order(store: Store) {
    let c = client("shop");
    let (k1, k2, k3) = (key("user", "u-1", "a"), key("user", "u-2", "a"), key("user", "u-3", "a"));
    store.write(&c, &[(k1.clone(), row(1, 1, "one")), (k3.clone(), row(3, 3, "three"))]).await.unwrap();

    let back = store.read(&c, &[k3.clone(), k2.clone(), k1.clone(), k3.clone()]).await.unwrap();
    assert_eq!(back, vec![Some(row(3, 3, "three")), None, Some(row(1, 1, "one")), Some(row(3, 3, "three"))]);
    assert_eq!(store.read(&c, &[k2]).await.unwrap(), vec![None]);
    assert_eq!(store.read(&c, &[]).await.unwrap(), vec![]);
}

pub async fn older_rows_are_skipped_and_newer_applied(store: Store) {
    let c = client("shop");
    let k = key("user", "u-1", "activity");
    let write = |r: OnlineRow| {
        let (store, c, k) = (store.clone(), c.clone(), k.clone());
        async move { store.write(&c, &[(k, r)]).await.unwrap() }
    };

    assert_eq!(write(row(100, 50, "first")).await, 1);
    assert_eq!(write(row(99, 1_000, "older event")).await, 0, "an older event time loses, whatever created");
    assert_eq!(write(row(100, 49, "older created")).await, 0, "equal event times: the older created loses");
    assert_eq!(write(row(100, 50, "same times")).await, 0, "equal times are a no-op");
    assert_eq!(read_one(&store, &c, &k).await, Some(row(100, 50, "first")));

    assert_eq!(write(row(100, 51, "newer created")).await, 1);
    assert_eq!(read_one(&store, &c, &k).await, Some(row(100, 51, "newer created")));
    assert_eq!(write(row(101, 0, "newer event")).await, 1);
    assert_eq!(read_one(&store, &c, &k).await, Some(row(101, 0, "newer event")));
}

pub async fn replaying_a_batch_changes_nothing(store: Store) {
    let c = client("shop");
    let batch: Vec<(RowKey, OnlineRow)> =
        (0..50).map(|i| (key("user", &format!("u-{i}"), "activity"), row(i, i, &format!("r{i}")))).collect();
    assert_eq!(store.write(&c, &batch).await.unwrap(), 50);
    let keys: Vec<RowKey> = batch.iter().map(|(k, _)| k.clone()).collect();
    let before = store.read(&c, &keys).await.unwrap();

    assert_eq!(store.write(&c, &batch).await.unwrap(), 0);
    // A replay with other values but the same times is still a no-op.
    let altered: Vec<(RowKey, OnlineRow)> =
        batch.iter().map(|(k, r)| (k.clone(), row(r.event_time, r.created, "replayed"))).collect();
    assert_eq!(store.write(&c, &altered).await.unwrap(), 0);
    assert_eq!(store.read(&c, &keys).await.unwrap(), before);
}

pub async fn the_newest_row_of_a_key_in_one_batch_wins(store: Store) {
    let c = client("shop");
    let k = key("user", "u-1", "activity");

    // In order: both apply, as if written one after the other.
    assert_eq!(store.write(&c, &[(k.clone(), row(1, 0, "old")), (k.clone(), row(2, 0, "new"))]).await.unwrap(), 2);
    assert_eq!(read_one(&store, &c, &k).await, Some(row(2, 0, "new")));

    // Newest first: the older one after it is skipped.
    assert_eq!(store.write(&c, &[(k.clone(), row(4, 0, "newer")), (k.clone(), row(3, 0, "older"))]).await.unwrap(), 1);
    assert_eq!(read_one(&store, &c, &k).await, Some(row(4, 0, "newer")));

    // Equal times in one batch: the first wins.
    assert_eq!(store.write(&c, &[(k.clone(), row(5, 5, "first")), (k.clone(), row(5, 5, "second"))]).await.unwrap(), 1);
    assert_eq!(read_one(&store, &c, &k).await, Some(row(5, 5, "first")));

    // Mixed with other keys.
    let other = key("user", "u-2", "activity");
    let batch = [
        (k.clone(), row(7, 0, "k7")),
        (other.clone(), row(1, 0, "o1")),
        (k.clone(), row(6, 0, "k6")),
        (other.clone(), row(2, 0, "o2")),
        (k.clone(), row(8, 0, "k8")),
    ];
    assert_eq!(store.write(&c, &batch).await.unwrap(), 4);
    assert_eq!(store.read(&c, &[k, other]).await.unwrap(), vec![Some(row(8, 0, "k8")), Some(row(2, 0, "o2"))]);
}

pub async fn concurrent_writers_end_with_the_newest_row(store: Store) {
    const WRITERS: i64 = 16;
    const VERSIONS: i64 = 24;
    let c = client("shop");
    let keys: Vec<RowKey> = (0..4).map(|i| key("user", &format!("hot-{i}"), "activity")).collect();

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, c, keys) = (store.clone(), c.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let mut applied = 0;
            // Every writer walks the versions in its own order, and writes every key per call.
            for j in 0..VERSIONS {
                let version = (j * 7 + w * 5) % VERSIONS;
                // Writers share event times; `created` breaks ties and differs per writer.
                let batch: Vec<(RowKey, OnlineRow)> =
                    keys.iter().map(|k| (k.clone(), row(version, w, &format!("w{w}v{version}")))).collect();
                applied += store.write(&c, &batch).await.unwrap();
                tokio::task::yield_now().await;
            }
            applied
        }));
    }
    let mut applied = 0;
    for task in tasks {
        applied += task.await.unwrap();
    }
    let keys_len = keys.len();
    assert!(applied >= keys_len, "at least the first write of every key applies ({applied})");
    assert!(applied <= keys_len * (WRITERS * VERSIONS) as usize);

    let newest = row(VERSIONS - 1, WRITERS - 1, &format!("w{}v{}", WRITERS - 1, VERSIONS - 1));
    for back in store.read(&c, &keys).await.unwrap() {
        assert_eq!(back, Some(newest.clone()));
    }
}

pub async fn clients_never_see_each_others_rows(store: Store) {
    let (a, b, nobody) = (client("shop-a"), client("shop-b"), client("shop-c"));
    let k = key("user", "u-1", "activity");
    let only_a = key("user", "u-only-a", "activity");

    store.write(&a, &[(k.clone(), row(10, 0, "a")), (only_a.clone(), row(1, 0, "a-only"))]).await.unwrap();
    // B's older row is not compared with A's newer one: it is B's first row for this key.
    assert_eq!(store.write(&b, &[(k.clone(), row(5, 0, "b"))]).await.unwrap(), 1);

    assert_eq!(
        store.read(&a, &[k.clone(), only_a.clone()]).await.unwrap(),
        vec![Some(row(10, 0, "a")), Some(row(1, 0, "a-only"))]
    );
    assert_eq!(store.read(&b, &[k.clone(), only_a.clone()]).await.unwrap(), vec![Some(row(5, 0, "b")), None]);
    assert_eq!(store.read(&nobody, &[k.clone(), only_a]).await.unwrap(), vec![None, None]);

    // A client id that is a prefix of another, or looks like a key part, stays separate.
    let (shop, shop_a_user) = (client("shop"), client("shop-a-user"));
    assert_eq!(store.read(&shop, std::slice::from_ref(&k)).await.unwrap(), vec![None]);
    assert_eq!(store.read(&shop_a_user, std::slice::from_ref(&k)).await.unwrap(), vec![None]);
}

pub async fn views_of_an_entity_are_independent(store: Store) {
    let c = client("shop");
    let (activity, profile) = (key("user", "u-1", "activity"), key("user", "u-1", "profile@v2"));
    assert_eq!(store.write(&c, &[(activity.clone(), row(100, 0, "activity"))]).await.unwrap(), 1);
    // Older than the other view's row, yet the first of its own view.
    assert_eq!(store.write(&c, &[(profile.clone(), row(1, 0, "profile"))]).await.unwrap(), 1);
    assert_eq!(store.write(&c, &[(activity.clone(), row(50, 0, "stale"))]).await.unwrap(), 0);

    assert_eq!(
        store.read(&c, &[activity, profile]).await.unwrap(),
        vec![Some(row(100, 0, "activity")), Some(row(1, 0, "profile"))]
    );
    // Another entity with the same key is another row.
    assert_eq!(store.read(&c, &[key("product", "u-1", "activity")]).await.unwrap(), vec![None]);
}

pub async fn separators_in_names_do_not_collide(store: Store) {
    let c = client("shop");
    // Pairs that a naive `entity:key:view` or `entity#key#view` join would map to one key.
    let keys = [
        key("user", "a:b", "v"),
        key("user:a", "b", "v"),
        key("user", "a", "b:v"),
        key("user", "a}", "v"),
        key("user", "a", "}v"),
        key("user", "{a}", "v"),
        key("user", "a#b", "v"),
        key("user#a", "b", "v"),
        key("user", "a", "b#v"),
        key("user", "a%3Ab", "v"),
        key("User", "a", "v"),
        key("user", "", "v"),
        key("user", "ü 🦀", "v"),
    ];
    let batch: Vec<(RowKey, OnlineRow)> =
        keys.iter().enumerate().map(|(i, k)| (k.clone(), row(1, 0, &format!("row-{i}")))).collect();
    assert_eq!(store.write(&c, &batch).await.unwrap(), keys.len(), "every key is a row of its own");
    let back = store.read(&c, &keys).await.unwrap();
    for (i, r) in back.into_iter().enumerate() {
        assert_eq!(r, Some(row(1, 0, &format!("row-{i}"))), "{:?}", keys[i]);
    }
}

pub async fn orders_across_the_whole_time_range(store: Store) {
    let c = client("shop");
    // Strictly increasing (event_time, created), across the sign, the 32-bit halves and the 2^53
    // limit of doubles.
    let ascending = [
        (i64::MIN, i64::MIN),
        (i64::MIN, 0),
        (-(1 << 32) - 1, 0),
        (-(1 << 32), 0),
        (-1, i64::MAX),
        (0, -1),
        (0, 0),
        (1, (1 << 32) - 1),
        (1, 1 << 32),
        ((1 << 32) - 1, 0),
        (1 << 32, i64::MIN),
        (1 << 53, 0),
        ((1 << 53) + 1, 0),
        (i64::MAX - 1, i64::MAX),
        (i64::MAX, i64::MAX - 1),
        (i64::MAX, i64::MAX),
    ];
    let k = key("user", "u-1", "activity");
    for (i, &(et, cr)) in ascending.iter().enumerate() {
        assert_eq!(store.write(&c, &[(k.clone(), row(et, cr, "t"))]).await.unwrap(), 1, "{:?}", (et, cr));
        for &(old_et, old_cr) in &ascending[..i] {
            assert_eq!(
                store.write(&c, &[(k.clone(), row(old_et, old_cr, "old"))]).await.unwrap(),
                0,
                "{:?}",
                (old_et, old_cr)
            );
        }
        assert_eq!(times(&read_one(&store, &c, &k).await), Some((et, cr)));
    }

    // Scrambled, one key per position: each ends with the greatest of the times written to it.
    let scrambled = key("user", "u-2", "activity");
    let batch: Vec<(RowKey, OnlineRow)> = (0..ascending.len())
        .map(|i| (i * 11) % ascending.len())
        .map(|i| (scrambled.clone(), row(ascending[i].0, ascending[i].1, "s")))
        .collect();
    store.write(&c, &batch).await.unwrap();
    assert_eq!(times(&read_one(&store, &c, &scrambled).await), Some((i64::MAX, i64::MAX)));
}

pub async fn a_big_batch_reads_back(store: Store) {
    let c = client("shop");
    let batch: Vec<(RowKey, OnlineRow)> = (0..1000)
        .map(|i| (key("user", &format!("u-{}", i / 10), &format!("view_{}", i % 10)), row(i, 0, &format!("r{i}"))))
        .collect();
    assert_eq!(store.write(&c, &batch).await.unwrap(), 1000);

    let mut keys: Vec<RowKey> = batch.iter().map(|(k, _)| k.clone()).collect();
    let expected: BTreeMap<RowKey, OnlineRow> = batch.into_iter().collect();
    let back = store.read(&c, &keys).await.unwrap();
    assert_eq!(back.len(), 1000);
    for (k, r) in keys.iter().zip(&back) {
        assert_eq!(r.as_ref(), Some(&expected[k]));
    }

    // Reversed, with missing keys and a duplicate mixed in.
    keys.reverse();
    keys.insert(500, key("user", "missing", "view_0"));
    keys.push(keys[0].clone());
    let back = store.read(&c, &keys).await.unwrap();
    assert_eq!(back.len(), keys.len());
    for (k, r) in keys.iter().zip(&back) {
        assert_eq!(r.as_ref(), expected.get(k), "{k:?}");
    }
}

pub async fn an_empty_batch_is_a_no_op(store: Store) {
    let c = client("shop");
    assert_eq!(store.write(&c, &[]).await.unwrap(), 0);
    assert_eq!(store.read(&c, &[]).await.unwrap(), vec![]);
}

pub async fn ping_answers(store: Store) {
    store.ping().await.unwrap();
    assert!(["redb", "redis", "dynamodb"].contains(&store.backend()));
}
