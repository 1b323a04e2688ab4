//! Point-in-time retrieval: hand-worked cases of the rule, and a property test against a naive
//! reference written as plain loops.

use std::time::Duration;

use livora_feature_store::offline::{CREATED_TIMESTAMP, EVENT_TIMESTAMP, timestamp_dtype};
use livora_feature_store::{Error, PitOptions, ViewHistory, get_historical_features};
use polars::prelude::*;
use proptest::prelude::*;

/// A `Datetime(Microseconds, UTC)` column.
fn times(name: &str, micros: &[i64]) -> Column {
    Int64Chunked::from_vec(name.into(), micros.to_vec())
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column()
}

fn opt_times(name: &str, micros: &[Option<i64>]) -> Column {
    Int64Chunked::from_iter_options(name.into(), micros.iter().copied())
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column()
}

fn frame(columns: Vec<Column>) -> DataFrame {
    DataFrame::new_infer_height(columns).expect("frame")
}

/// Entity rows keyed by `user` at times `t` (µs).
fn entities(rows: &[(i64, i64)]) -> LazyFrame {
    let users: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let at: Vec<i64> = rows.iter().map(|r| r.1).collect();
    frame(vec![Column::new("user".into(), users), times("ts", &at)]).lazy()
}

/// A history keyed by `user`: (user, event µs, created µs, value).
fn history(rows: &[(i64, i64, Option<i64>, i64)]) -> LazyFrame {
    frame(vec![
        Column::new("user".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
        times(EVENT_TIMESTAMP, &rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        opt_times(CREATED_TIMESTAMP, &rows.iter().map(|r| r.2).collect::<Vec<_>>()),
        Column::new("value".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
    ])
    .lazy()
}

fn view(name: &str, ttl: Option<Duration>, history: LazyFrame) -> ViewHistory {
    ViewHistory { name: name.into(), join_keys: vec!["user".into()], features: vec!["value".into()], ttl, history }
}

fn run(entity_rows: LazyFrame, views: &[ViewHistory], options: &PitOptions) -> DataFrame {
    get_historical_features(entity_rows, "ts", views, options).expect("plan").collect().expect("collect")
}

fn values(df: &DataFrame, name: &str) -> Vec<Option<i64>> {
    df.column(name).expect("column").i64().expect("i64").iter().collect()
}

fn collect_streaming(plan: LazyFrame) -> DataFrame {
    plan.collect_with_engine(Engine::Streaming).expect("streaming").unwrap_single()
}

/// The error of a plan that should have been refused.
fn refused(plan: Result<LazyFrame, Error>) -> Error {
    match plan {
        Ok(_) => panic!("the request should have been refused"),
        Err(err) => err,
    }
}

#[test]
fn ttl_lower_bound_is_inclusive_to_the_microsecond() {
    let ttl = Some(Duration::from_micros(10));
    // User 1's row is exactly t − ttl old; user 2's one microsecond more.
    let history = history(&[(1, 90, None, 1), (2, 89, None, 2)]);
    let out = run(entities(&[(1, 100), (2, 100)]), &[view("v", ttl, history)], &PitOptions::default());
    assert_eq!(values(&out, "value"), [Some(1), None]);
}

#[test]
fn a_row_at_exactly_t_counts_and_one_microsecond_later_does_not() {
    let history = history(&[(1, 100, None, 1), (1, 101, None, 2), (2, 101, None, 3)]);
    let out = run(entities(&[(1, 100), (2, 100), (2, 101)]), &[view("v", None, history)], &PitOptions::default());
    assert_eq!(values(&out, "value"), [Some(1), None, Some(3)]);
}

#[test]
fn equal_event_times_go_to_the_greatest_created() {
    let history = history(&[
        (1, 50, Some(1), 10),
        (1, 50, Some(3), 30),
        (1, 50, Some(2), 20),
        (1, 40, Some(9), 99), // older event time: loses whatever its created time
        (2, 50, Some(1), 1),
        (2, 50, None, 2), // a null created loses to any value
    ]);
    let out = run(entities(&[(1, 60), (2, 60)]), &[view("v", None, history)], &PitOptions::default());
    assert_eq!(values(&out, "value"), [Some(30), Some(1)]);
}

#[test]
fn without_created_the_last_row_of_the_history_wins_a_tie() {
    let history = frame(vec![
        Column::new("user".into(), [1i64, 1, 1]),
        times(EVENT_TIMESTAMP, &[50, 50, 40]),
        Column::new("value".into(), [1i64, 2, 3]),
    ])
    .lazy();
    let out = run(entities(&[(1, 60)]), &[view("v", None, history)], &PitOptions::default());
    assert_eq!(values(&out, "value"), [Some(2)]);
}

#[test]
fn unknown_entities_keep_their_row_with_nulls_and_duplicates_keep_their_order() {
    let history = history(&[(1, 10, None, 1), (1, 20, None, 2), (1, 30, None, 3)]);
    let rows = [(1, 25), (9, 25), (1, 35), (1, 25), (1, 5), (1, 25)];
    let out = run(entities(&rows), &[view("v", None, history)], &PitOptions::default());
    assert_eq!(out.height(), rows.len());
    let users: Vec<Option<i64>> = out.column("user").expect("user").i64().expect("i64").iter().collect();
    assert_eq!(users, rows.iter().map(|r| Some(r.0)).collect::<Vec<_>>());
    assert_eq!(values(&out, "value"), [Some(2), None, Some(3), Some(2), None, Some(2)]);
}

#[test]
fn a_null_join_key_or_time_never_matches_and_its_row_is_kept() {
    // History: a row for user 1, one with a null user and one with a null event time.
    let history = frame(vec![
        Column::new("user".into(), [Some(1i64), None, Some(2)]),
        opt_times(EVENT_TIMESTAMP, &[Some(10), Some(10), None]),
        Column::new("value".into(), [1i64, 2, 3]),
    ])
    .lazy();
    // Entity rows: a null user, a null time, user 2 (only a row without time), then user 1.
    let entity_rows = frame(vec![
        Column::new("user".into(), [None, Some(1i64), Some(2), Some(1)]),
        opt_times("ts", &[Some(20), None, Some(20), Some(20)]),
    ])
    .lazy();
    for streaming in [false, true] {
        let plan = get_historical_features(
            entity_rows.clone(),
            "ts",
            &[view("v", None, history.clone())],
            &PitOptions::default(),
        )
        .expect("plan");
        let out = if streaming { collect_streaming(plan) } else { plan.collect().expect("collect") };
        assert_eq!(values(&out, "value"), [None, None, None, Some(1)], "streaming: {streaming}");
        assert_eq!(
            out.column("user").expect("user").i64().expect("i64").iter().collect::<Vec<_>>(),
            [None, Some(1), Some(2), Some(1)]
        );
    }
}

#[test]
fn times_too_far_apart_for_a_64_bit_sort_word_give_the_same_answers() {
    // A span of 2^63 µs (about 292,000 years) leaves no room for the entity in 64 bits: the
    // merge sorts 128-bit words instead.
    let (early, late) = (-(1i64 << 62), 1i64 << 62);
    let history = history(&[(1, early, None, 1), (1, late, None, 2), (2, early, Some(5), 3), (2, early, Some(4), 4)]);
    let rows = entities(&[(1, 0), (1, late), (2, late), (3, late), (1, early - 1)]);
    let out = run(rows, &[view("v", None, history)], &PitOptions::default());
    assert_eq!(values(&out, "value"), [Some(1), Some(2), Some(3), None, None]);
}

#[test]
fn features_of_every_type_are_null_where_nothing_matches_and_keep_their_own_nulls() {
    // User 1 has a row with a null score; user 2 has none at all.
    let history = frame(vec![
        Column::new("user".into(), [1i64, 1]),
        times(EVENT_TIMESTAMP, &[10, 20]),
        Column::new("channel".into(), ["email", "push"]),
        Column::new("vip".into(), [true, false]),
        Column::new("score".into(), [Some(0.5), None]),
        times("last_seen", &[7, 8]),
    ])
    .lazy();
    let view = ViewHistory {
        name: "v".into(),
        join_keys: vec!["user".into()],
        features: ["channel", "vip", "score", "last_seen"].map(String::from).to_vec(),
        ttl: None,
        history,
    };
    for streaming in [false, true] {
        let plan = get_historical_features(
            entities(&[(1, 15), (2, 30), (1, 25)]),
            "ts",
            std::slice::from_ref(&view),
            &PitOptions::default(),
        )
        .expect("plan");
        let out = if streaming { collect_streaming(plan) } else { plan.collect().expect("collect") };
        let column = |name: &str| out.column(name).expect(name).as_materialized_series().clone();
        assert_eq!(
            column("channel").str().expect("str").iter().collect::<Vec<_>>(),
            [Some("email"), None, Some("push")]
        );
        assert_eq!(column("vip").bool().expect("bool").iter().collect::<Vec<_>>(), [Some(true), None, Some(false)]);
        assert_eq!(column("score").f64().expect("f64").iter().collect::<Vec<_>>(), [Some(0.5), None, None]);
        assert_eq!(column("last_seen").dtype(), &timestamp_dtype());
        let last_seen = column("last_seen").to_physical_repr().i64().expect("i64").iter().collect::<Vec<_>>();
        assert_eq!(last_seen, [Some(7), None, Some(8)], "streaming: {streaming}");
    }
}

#[test]
fn views_with_different_join_keys_in_one_call() {
    // Entity rows carry both keys: a user and the item they look at, plus a label that passes through.
    let entity_rows = frame(vec![
        Column::new("label".into(), [true, false, true]),
        Column::new("user".into(), [1i64, 2, 1]),
        Column::new("item".into(), ["a", "b", "b"]),
        times("ts", &[100, 100, 200]),
    ])
    .lazy();
    let users = history(&[(1, 90, None, 11), (2, 150, None, 22)]);
    let items = frame(vec![
        Column::new("item".into(), ["a", "b", "b"]),
        times(EVENT_TIMESTAMP, &[50, 60, 190]),
        Column::new("price".into(), [5.0f64, 6.0, 7.0]),
        Column::new("stock".into(), [1i64, 2, 3]),
    ])
    .lazy();
    let item_view = ViewHistory {
        name: "item_stats".into(),
        join_keys: vec!["item".into()],
        features: vec!["stock".into(), "price".into()],
        ttl: Some(Duration::from_micros(100)),
        history: items,
    };
    let out = get_historical_features(
        entity_rows,
        "ts",
        &[view("user_stats", None, users), item_view],
        &PitOptions::default(),
    )
    .expect("plan")
    .collect()
    .expect("collect");
    assert_eq!(out.get_column_names(), ["label", "user", "item", "ts", "value", "stock", "price"]);
    assert_eq!(values(&out, "value"), [Some(11), None, Some(11)]);
    assert_eq!(values(&out, "stock"), [Some(1), Some(2), Some(3)]);
    let prices: Vec<Option<f64>> = out.column("price").expect("price").f64().expect("f64").iter().collect();
    assert_eq!(prices, [Some(5.0), Some(6.0), Some(7.0)]);
}

#[test]
fn composite_join_keys() {
    let entity_rows = frame(vec![
        Column::new("shop".into(), ["x", "y", "x"]),
        Column::new("user".into(), [1i64, 1, 2]),
        times("ts", &[100, 100, 100]),
    ])
    .lazy();
    let history = frame(vec![
        Column::new("shop".into(), ["x", "y", "x"]),
        Column::new("user".into(), [1i64, 1, 1]),
        times(EVENT_TIMESTAMP, &[10, 20, 30]),
        Column::new("value".into(), [1i64, 2, 3]),
    ])
    .lazy();
    let view = ViewHistory { join_keys: vec!["shop".into(), "user".into()], ..view("v", None, history) };
    let out = run(entity_rows, &[view], &PitOptions::default());
    assert_eq!(values(&out, "value"), [Some(3), Some(2), None]);
}

#[test]
fn full_feature_names_and_collisions() {
    let a = history(&[(1, 10, None, 1)]);
    let b = history(&[(1, 20, None, 2)]);
    let views = [view("a", None, a), view("b", None, b)];
    let full = PitOptions { full_feature_names: true };
    let out = run(entities(&[(1, 30)]), &views, &full);
    assert_eq!(out.get_column_names(), ["user", "ts", "a__value", "b__value"]);
    assert_eq!(values(&out, "a__value"), [Some(1)]);
    assert_eq!(values(&out, "b__value"), [Some(2)]);

    let err = refused(get_historical_features(entities(&[(1, 30)]), "ts", &views, &PitOptions::default()));
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains("`a`") && message.contains("`b`") && message.contains("value"), "{message}");
}

#[test]
fn empty_history_and_empty_entity_rows() {
    let out = run(entities(&[(1, 30), (2, 40)]), &[view("v", None, history(&[]))], &PitOptions::default());
    assert_eq!(values(&out, "value"), [None, None]);

    let out = run(entities(&[]), &[view("v", None, history(&[(1, 10, None, 1)]))], &PitOptions::default());
    assert_eq!(out.height(), 0);
    assert_eq!(out.get_column_names(), ["user", "ts", "value"]);
}

#[test]
fn entity_timestamps_in_other_units_and_naive_are_cast_to_utc_microseconds() {
    let history = history(&[(1, 2_000, None, 1), (1, 3_000, None, 2)]);
    for (unit, scale) in [(TimeUnit::Milliseconds, 1_000), (TimeUnit::Nanoseconds, -1_000)] {
        for zone in [None, Some(TimeZone::UTC)] {
            // 2_999 µs: the row at 3_000 µs is not yet visible.
            let at = if scale > 0 { 2 } else { 2_999_999 };
            let ts = Int64Chunked::from_vec("ts".into(), vec![at]).into_datetime(unit, zone.clone()).into_column();
            let rows = frame(vec![Column::new("user".into(), [1i64]), ts]).lazy();
            let out = run(rows, &[view("v", None, history.clone())], &PitOptions::default());
            assert_eq!(values(&out, "value"), [Some(1)], "{unit:?} {zone:?}");
            assert_eq!(out.schema().get("ts"), Some(&timestamp_dtype()));
        }
    }
}

#[test]
fn bad_requests_name_the_problem() {
    let rows = || entities(&[(1, 30)]);
    let h = || history(&[(1, 10, None, 1)]);
    let check = |views: &[ViewHistory], timestamp: &str, needle: &str, not_found: bool| {
        let err = refused(get_historical_features(rows(), timestamp, views, &PitOptions::default()));
        assert_eq!(matches!(err, Error::NotFound(_)), not_found, "{err}");
        assert!(err.to_string().contains(needle), "`{err}` should mention {needle}");
    };
    check(&[view("v", None, h())], "when", "`when`", false);
    check(&[view("v", None, h())], "user", "expected a datetime", false);
    check(&[], "ts", "no feature view", false);
    check(&[ViewHistory { features: vec!["nope".into()], ..view("v", None, h()) }], "ts", "`nope`", true);
    check(&[ViewHistory { join_keys: vec!["shop".into()], ..view("v", None, h()) }], "ts", "`shop`", false);
    check(&[ViewHistory { features: vec!["user".into()], ..view("v", None, h()) }], "ts", "join key", false);
    let no_time = frame(vec![Column::new("user".into(), [1i64]), Column::new("value".into(), [1i64])]).lazy();
    check(&[view("v", None, no_time)], "ts", EVENT_TIMESTAMP, false);
    let text_keys = frame(vec![
        Column::new("user".into(), ["1"]),
        times(EVENT_TIMESTAMP, &[1]),
        Column::new("value".into(), [1i64]),
    ])
    .lazy();
    check(&[view("v", None, text_keys)], "ts", "in the entity rows but", false);
    let colliding =
        frame(vec![Column::new("user".into(), [1i64]), times("ts", &[1]), Column::new("value".into(), [1i64])]);
    let err = refused(get_historical_features(colliding.lazy(), "ts", &[view("v", None, h())], &PitOptions::default()));
    assert!(err.to_string().contains("entity rows' column `value`"), "{err}");
}

#[test]
fn the_streaming_engine_gives_the_same_result() {
    let history = history(&[(1, 10, Some(1), 1), (1, 10, Some(2), 2), (2, 20, None, 3), (1, 30, None, 4)]);
    let rows = entities(&[(2, 25), (1, 20), (3, 5), (1, 40), (1, 20)]);
    let plan = get_historical_features(
        rows,
        "ts",
        &[view("v", Some(Duration::from_micros(15)), history)],
        &PitOptions::default(),
    )
    .expect("plan");
    let in_memory = plan.clone().collect().expect("in memory");
    let streamed = collect_streaming(plan);
    assert_eq!(values(&in_memory, "value"), [Some(3), Some(2), None, Some(4), Some(2)]);
    assert!(in_memory.equals_missing(&streamed), "{in_memory}\n{streamed}");
}

// --- Property test against a naive reference ---

/// A history row of the reference: (shop, user, event, created, value).
type RefRow = (String, i64, i64, Option<i64>, i64);

/// The rule, as plain loops: the best row by (event, created, position) with
/// t − ttl ≤ event ≤ t among the rows whose keys match.
fn reference(
    entity_rows: &[(String, i64, i64)],
    history: &[RefRow],
    keyed_by_shop: bool,
    ttl: Option<i64>,
) -> Vec<Option<i64>> {
    entity_rows
        .iter()
        .map(|(shop, user, t)| {
            let mut best: Option<(i64, Option<i64>, usize, i64)> = None;
            for (position, (h_shop, h_user, event, created, value)) in history.iter().enumerate() {
                let same_entity = h_user == user && (!keyed_by_shop || h_shop == shop);
                let in_window = event <= t && ttl.is_none_or(|ttl| *event >= t - ttl);
                if !same_entity || !in_window {
                    continue;
                }
                // None < Some: a null created loses; later position wins a full tie.
                let candidate = (*event, *created, position, *value);
                if best.is_none_or(|b| (candidate.0, candidate.1, candidate.2) > (b.0, b.1, b.2)) {
                    best = Some(candidate);
                }
            }
            best.map(|b| b.3)
        })
        .collect()
}

fn ref_history_frame(rows: &[RefRow], with_created: bool) -> LazyFrame {
    let mut columns = vec![
        Column::new("shop".into(), rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
        Column::new("user".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        times(EVENT_TIMESTAMP, &rows.iter().map(|r| r.2).collect::<Vec<_>>()),
        Column::new("value".into(), rows.iter().map(|r| r.4).collect::<Vec<_>>()),
    ];
    if with_created {
        columns.push(opt_times(CREATED_TIMESTAMP, &rows.iter().map(|r| r.3).collect::<Vec<_>>()));
    }
    frame(columns).lazy()
}

fn arb_history() -> impl Strategy<Value = Vec<RefRow>> {
    // Small key sets and a coarse time grid so that matches, misses and ties all happen.
    let row = (prop::sample::select(vec!["x", "y"]), 0i64..4, 0i64..12, prop::option::of(0i64..3), any::<i16>())
        .prop_map(|(shop, user, event, created, value)| {
            (shop.to_string(), user, event * 10, created, i64::from(value))
        });
    prop::collection::vec(row, 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn matches_the_naive_reference(
        entity_rows in prop::collection::vec((prop::sample::select(vec!["x", "y"]), 0i64..5, 0i64..14), 0..30),
        by_user in arb_history(),
        by_shop_user in arb_history(),
        ttl_a in prop::option::of(0i64..6),
        ttl_b in prop::option::of(0i64..6),
        created_a in any::<bool>(),
        streaming in any::<bool>(),
    ) {
        let entity_rows: Vec<(String, i64, i64)> =
            entity_rows.into_iter().map(|(s, u, t)| (s.to_string(), u, t * 10 + 5 * (t % 2))).collect();
        let ttl_a = ttl_a.map(|t| t * 10);
        let ttl_b = ttl_b.map(|t| t * 10);
        let rows = frame(vec![
            Column::new("shop".into(), entity_rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
            Column::new("user".into(), entity_rows.iter().map(|r| r.1).collect::<Vec<_>>()),
            times("ts", &entity_rows.iter().map(|r| r.2).collect::<Vec<_>>()),
        ]).lazy();
        let micros = |t: Option<i64>| t.map(|t| Duration::from_micros(t.unsigned_abs()));
        let views = [
            ViewHistory {
                name: "a".into(),
                join_keys: vec!["user".into()],
                features: vec!["value".into()],
                ttl: micros(ttl_a),
                history: ref_history_frame(&by_user, created_a),
            },
            ViewHistory {
                name: "b".into(),
                join_keys: vec!["shop".into(), "user".into()],
                features: vec!["value".into()],
                ttl: micros(ttl_b),
                history: ref_history_frame(&by_shop_user, true),
            },
        ];
        let plan = get_historical_features(rows, "ts", &views, &PitOptions { full_feature_names: true }).expect("plan");
        let out = if streaming {
            collect_streaming(plan)
        } else {
            plan.collect().expect("collect")
        };

        let by_user_ref: Vec<RefRow> = if created_a {
            by_user.clone()
        } else {
            by_user.iter().map(|r| (r.0.clone(), r.1, r.2, None, r.4)).collect()
        };
        prop_assert_eq!(out.height(), entity_rows.len());
        let users: Vec<Option<i64>> = out.column("user").expect("user").i64().expect("i64").iter().collect();
        prop_assert_eq!(users, entity_rows.iter().map(|r| Some(r.1)).collect::<Vec<_>>());
        prop_assert_eq!(values(&out, "a__value"), reference(&entity_rows, &by_user_ref, false, ttl_a));
        prop_assert_eq!(values(&out, "b__value"), reference(&entity_rows, &by_shop_user, true, ttl_b));
    }
}
