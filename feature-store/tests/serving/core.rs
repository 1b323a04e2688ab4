//! The serving core.

use std::sync::atomic::Ordering;
use std::time::Duration;

use livora_common::ErrorCode;
use livora_feature_store::Value;
use livora_feature_store::serving::keys::composite;
use livora_feature_store::serving::{FeatureServer, FeatureStatus, KeyValue, Selection, ServingConfig};

use super::*;

#[tokio::test]
async fn present_missing_and_typed_values_with_their_event_times() {
    let f = Fixture::with_shop().await;
    let t = now() - 10 * 60_000_000;
    let seen = now() - 2 * DAY;
    f.write(
        "shop",
        "user",
        "u-1",
        "activity",
        t,
        vec![
            ("orders_30d", Value::Int64(3)),
            ("last_seen_at", Value::Timestamp(seen)),
            ("last_category", Value::String("shoes".into())),
        ],
    )
    .await;
    // A row that lacks one of the view's features.
    f.write("shop", "user", "u-3", "activity", t, vec![("orders_30d", Value::Int64(0))]).await;

    let refs =
        ["activity:orders_30d", "activity:last_category", "activity:days_since_last_seen", "activity:last_seen_at"];
    let answer = f.features(&refs, &["u-1", "u-2", "u-3"]).await.unwrap();
    assert_eq!(answer.feature_names, ["orders_30d", "last_category", "days_since_last_seen", "last_seen_at"]);

    let orders = answer.column("orders_30d").unwrap();
    assert_eq!(orders.values, [Value::Int64(3), Value::Null, Value::Int64(0)]);
    assert_eq!(orders.statuses, [FeatureStatus::Present, FeatureStatus::Missing, FeatureStatus::Present]);
    assert_eq!(orders.event_times, [Some(t), None, Some(t)]);

    let category = answer.column("last_category").unwrap();
    assert_eq!(category.values, [Value::String("shoes".into()), Value::Null, Value::Null]);
    assert_eq!(category.statuses, [FeatureStatus::Present, FeatureStatus::Missing, FeatureStatus::Missing]);
    assert_eq!(category.event_times, [Some(t), None, None]);

    let days = answer.column("days_since_last_seen").unwrap();
    let Value::Float64(d) = days.values[0] else { panic!("{:?}", days.values) };
    assert!((d - 2.0).abs() < 0.01, "{d}");
    assert_eq!(days.statuses, [FeatureStatus::Present, FeatureStatus::Missing, FeatureStatus::Missing]);
    assert_eq!(answer.column("last_seen_at").unwrap().values[0], Value::Timestamp(seen));
    assert_eq!(f.store.reads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_row_older_than_the_ttl_is_outside_max_age_and_its_value_withheld() {
    let f = Fixture::with_shop().await;
    let old = now() - 2 * HOUR; // activity's ttl is 1h
    f.write(
        "shop",
        "user",
        "u-1",
        "activity",
        old,
        vec![("orders_30d", Value::Int64(7)), ("last_seen_at", Value::Timestamp(old))],
    )
    .await;
    // profile has no ttl: a year-old row is still present.
    let year_ago = now() - 365 * DAY;
    f.write("shop", "user", "u-1", "profile", year_ago, vec![("country", Value::String("FR".into()))]).await;

    let answer = f
        .features(&["activity:orders_30d", "activity:days_since_last_seen", "profile:country"], &["u-1"])
        .await
        .unwrap();
    for name in ["orders_30d", "days_since_last_seen"] {
        let c = answer.column(name).unwrap();
        assert_eq!(c.values, [Value::Null], "{name}");
        assert_eq!(c.statuses, [FeatureStatus::OutsideMaxAge], "{name}");
        assert_eq!(c.event_times, [Some(old)], "{name}: the event time says how old the row is");
    }
    let country = answer.column("country").unwrap();
    assert_eq!((country.values[0].clone(), country.statuses[0]), (Value::String("FR".into()), FeatureStatus::Present));
    assert_eq!(country.event_times, [Some(year_ago)]);
}

#[tokio::test]
async fn days_since_is_computed_at_read_time_and_null_when_its_timestamp_is() {
    let f = Fixture::with_shop().await;
    let t = now();
    let signed_up = t - 10 * DAY - 12 * HOUR;
    f.write("shop", "user", "u-1", "profile", t, vec![("signed_up_at", Value::Timestamp(signed_up))]).await;
    f.write("shop", "user", "u-2", "profile", t, vec![("signed_up_at", Value::Null)]).await;
    f.write("shop", "user", "u-3", "profile", t, vec![("country", Value::String("DE".into()))]).await;

    let answer = f.features(&["profile:account_age_days"], &["u-1", "u-2", "u-3", "u-4"]).await.unwrap();
    let c = answer.column("account_age_days").unwrap();
    let Value::Float64(days) = c.values[0] else { panic!("{:?}", c.values) };
    assert!((days - 10.5).abs() < 0.001, "{days}");
    assert_eq!(c.values[1..], [Value::Null, Value::Null, Value::Null]);
    assert_eq!(
        c.statuses,
        [FeatureStatus::Present, FeatureStatus::Present, FeatureStatus::Missing, FeatureStatus::Missing],
        "a null timestamp gives a present null; an absent one a missing value"
    );
}

#[tokio::test]
async fn a_stored_value_of_another_type_than_declared_is_answered_as_missing() {
    let f = Fixture::with_shop().await;
    let t = now();
    f.write("shop", "user", "u-1", "profile", t, vec![("country", Value::Int64(33)), ("orders_30d", Value::Int64(2))])
        .await;
    let answer = f.features(&["profile:country", "profile:orders_30d"], &["u-1"]).await.unwrap();
    assert_eq!(answer.results[0].values, [Value::Null]);
    assert_eq!(answer.results[0].statuses, [FeatureStatus::Missing]);
    assert_eq!(answer.results[1].values, [Value::Int64(2)]);
}

#[tokio::test]
async fn feature_services_view_wildcards_and_full_names() {
    let f = Fixture::with_shop().await;
    let t = now();
    f.write("shop", "user", "u-1", "activity", t, vec![("orders_30d", Value::Int64(1))]).await;
    f.write("shop", "user", "u-1", "profile", t, vec![("country", Value::String("NL".into()))]).await;
    let users = || vec![("user_id", vec![KeyValue::String("u-1")])];

    let answer = f.get("shop", Selection::Service("churn"), &users(), false).await.unwrap();
    assert_eq!(
        answer.feature_names,
        ["orders_30d", "last_seen_at", "days_since_last_seen", "last_category", "country"]
    );
    assert_eq!(answer.column("country").unwrap().values, [Value::String("NL".into())]);
    assert_eq!(answer.column("orders_30d").unwrap().values, [Value::Int64(1)]);

    let answer = f.get("shop", Selection::Service("churn"), &users(), true).await.unwrap();
    assert_eq!(
        answer.feature_names,
        [
            "activity__orders_30d",
            "activity__last_seen_at",
            "activity__days_since_last_seen",
            "activity__last_category",
            "profile__country"
        ]
    );

    // `view:*` expands in the view's order; a feature named twice is answered once.
    let refs = strings(&["profile:country", "profile:*"]);
    let answer = f.get("shop", Selection::Features(&refs), &users(), false).await.unwrap();
    assert_eq!(answer.feature_names, ["country", "signed_up_at", "account_age_days", "orders_30d"]);

    // Two views with a feature of the same name need full names.
    let refs = strings(&["activity:orders_30d", "profile:orders_30d"]);
    let (code, message) = failure(f.get("shop", Selection::Features(&refs), &users(), false).await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("full_feature_names") && message.contains("`orders_30d`"), "{message}");
    let answer = f.get("shop", Selection::Features(&refs), &users(), true).await.unwrap();
    assert_eq!(answer.feature_names, ["activity__orders_30d", "profile__orders_30d"]);
    assert_eq!(f.store.reads.load(Ordering::SeqCst), 4, "one read per successful request, none for refusals");
}

#[tokio::test]
async fn one_batched_read_for_many_rows_and_views() {
    let f = Fixture::with_shop().await;
    let t = now();
    for u in ["u-1", "u-2", "u-3"] {
        f.write("shop", "user", u, "activity", t, vec![("orders_30d", Value::Int64(1))]).await;
        f.write("shop", "user", u, "profile", t, vec![("country", Value::String(u.into()))]).await;
    }
    let answer = f.features(&["profile:country", "activity:orders_30d"], &["u-3", "u-1", "u-9", "u-2"]).await.unwrap();
    assert_eq!(f.store.reads.load(Ordering::SeqCst), 1);
    let country = answer.column("country").unwrap();
    let expected = ["u-3", "u-1", "", "u-2"].map(|u| if u.is_empty() { Value::Null } else { Value::String(u.into()) });
    assert_eq!(country.values, expected, "values follow the order of the entity rows");
    assert_eq!(answer.column("orders_30d").unwrap().statuses[2], FeatureStatus::Missing);
}

#[tokio::test]
async fn composite_and_integer_entity_keys() {
    let f = Fixture::with_shop().await;
    let t = now();
    let key = composite(&["s-1", "p-9"]).unwrap();
    f.write("shop", "store_product", &key, "stock", t, vec![("units", Value::Int64(12))]).await;
    f.write("shop", "account", "42", "balance", t, vec![("amount", Value::Float64(9.5))]).await;

    let refs = strings(&["stock:units"]);
    let entities = [
        ("store_id", vec![KeyValue::String("s-1"), KeyValue::String("p-9")]),
        ("product_id", vec![KeyValue::String("p-9"), KeyValue::String("s-1")]),
    ];
    let answer = f.get("shop", Selection::Features(&refs), &entities, false).await.unwrap();
    assert_eq!(answer.results[0].values, [Value::Int64(12), Value::Null], "the parts are joined in join-key order");

    let refs = strings(&["balance:amount"]);
    let answer =
        f.get("shop", Selection::Features(&refs), &[("account_id", vec![KeyValue::Int64(42)])], false).await.unwrap();
    assert_eq!(answer.results[0].values, [Value::Float64(9.5)]);

    // A part holding the separator is refused rather than read ambiguously.
    let refs = strings(&["stock:units"]);
    let entities = [("store_id", vec![KeyValue::String("s\u{1f}1")]), ("product_id", vec![KeyValue::String("p")])];
    let (code, message) = failure(f.get("shop", Selection::Features(&refs), &entities, false).await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("entities.store_id[0]"), "{message}");
}

#[tokio::test]
async fn unknown_names_are_not_found_and_named() {
    let f = Fixture::with_shop().await;
    let u = || vec![("user_id", vec![KeyValue::String("u-1")])];
    let cases: [(&[&str], &str); 3] = [
        (&["activity:orders_30d", "nope:x"], "features[1]: unknown feature view `nope`"),
        (&["activity:nope"], "features[0]: feature view `activity` has no feature `nope`"),
        (&["activity@v2:orders_30d"], "unknown feature view `activity@v2`"),
    ];
    for (refs, expected) in cases {
        let (code, message) = failure(f.features(refs, &["u-1"]).await);
        assert_eq!(code, ErrorCode::NotFound, "{refs:?}");
        assert!(message.contains(expected), "{refs:?}: {message}");
    }
    let (code, message) = failure(f.get("shop", Selection::Service("retention"), &u(), false).await);
    assert_eq!(code, ErrorCode::NotFound);
    assert!(message.contains("`retention`"), "{message}");

    let refs = strings(&["activity:orders_30d"]);
    let (code, message) = failure(f.get("stranger", Selection::Features(&refs), &u(), false).await);
    assert_eq!(code, ErrorCode::NotFound);
    assert!(message.contains("client `stranger` has no feature definitions"), "{message}");
    assert_eq!(f.store.reads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let config = ServingConfig { max_entity_rows: 3, ..ServingConfig::default() };
    let f = Fixture::new(config).await;
    f.registry.apply(&client("shop"), &repo(""), false, false).await.unwrap();
    let refs = strings(&["activity:orders_30d"]);
    let orders = Selection::Features(&refs);
    let s = KeyValue::String;
    let cases: Vec<(Selection<'_>, Entities<'_>, &str)> = vec![
        (Selection::Features(&[]), vec![("user_id", vec![s("u")])], "features: the list is empty"),
        (Selection::Service(""), vec![("user_id", vec![s("u")])], "feature_service: the name is empty"),
        (orders, vec![], "entities: no entity rows"),
        (orders, vec![("user_id", vec![])], "entities.user_id: no values"),
        (orders, vec![("uid", vec![s("u")])], "missing the join key column `user_id` of entity `user`"),
        (orders, vec![("user_id", vec![s("u"), KeyValue::Int64(5)])], "entities.user_id[1]: expected string"),
        (orders, vec![("user_id", vec![KeyValue::Null])], "entities.user_id[0]: null"),
        (orders, vec![("user_id", vec![KeyValue::Other("double")])], "got double"),
        (orders, vec![("user_id", vec![s("a"), s("b"), s("c"), s("d")])], "4 entity rows; at most 3"),
        (
            orders,
            vec![("user_id", vec![s("a"), s("b")]), ("zone", vec![s("x")])],
            "entities.zone: 1 values, but entities.user_id has 2",
        ),
    ];
    for (selection, entities, expected) in cases {
        let (code, message) = failure(f.get("shop", selection, &entities, false).await);
        assert_eq!(code, ErrorCode::InvalidArgument, "{expected}");
        assert!(message.contains(expected), "expected `{expected}` in: {message}");
    }
    for (reference, index) in [("activity", 0), ("activity:", 0), (":orders_30d", 0), ("a:b:c", 0)] {
        let (code, message) = failure(f.features(&[reference], &["u"]).await);
        assert_eq!(code, ErrorCode::InvalidArgument, "{reference}");
        assert!(message.contains(&format!("features[{index}]: `{reference}` is not a feature reference")), "{message}");
    }
    let (code, message) = failure(f.features(&["archive:old_score"], &["u"]).await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("`archive` is not served online"), "{message}");
    let (code, message) =
        failure(f.get("shop", Selection::Service("archived"), &[("user_id", vec![s("u")])], false).await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("feature service `archived`: feature view `archive` is not served online"), "{message}");
    // Columns no requested view uses are ignored.
    f.get("shop", orders, &[("user_id", vec![s("u")]), ("zone", vec![s("x")])], false).await.unwrap();
}

#[tokio::test]
async fn clients_never_read_each_others_rows_or_definitions() {
    let f = Fixture::with_shop().await;
    f.registry.apply(&client("rival"), &repo(""), false, false).await.unwrap();
    let t = now();
    f.write("shop", "user", "u-1", "activity", t, vec![("orders_30d", Value::Int64(5))]).await;

    let refs = strings(&["activity:orders_30d"]);
    let u1 = || vec![("user_id", vec![KeyValue::String("u-1")])];
    let shop = f.get("shop", Selection::Features(&refs), &u1(), false).await.unwrap();
    assert_eq!(shop.results[0].values, [Value::Int64(5)]);
    let rival = f.get("rival", Selection::Features(&refs), &u1(), false).await.unwrap();
    assert_eq!(rival.results[0].values, [Value::Null], "same view, same key, another client: nothing");
    assert_eq!(rival.results[0].statuses, [FeatureStatus::Missing]);

    // A view only one client defined does not exist for the other.
    f.registry.apply(&client("shop"), &repo(SHOP_ONLY), false, false).await.unwrap();
    let f2 =
        Fixture { server: FeatureServer::new(f.registry.clone(), f.store.clone(), &ServingConfig::default()), ..f };
    let refs = strings(&["loyalty:tier"]);
    f2.get("shop", Selection::Features(&refs), &u1(), false).await.unwrap();
    let (code, _) = failure(f2.get("rival", Selection::Features(&refs), &u1(), false).await);
    assert_eq!(code, ErrorCode::NotFound);
}

pub(crate) const SHOP_ONLY: &str = r#"
[[feature_view]]
name = "loyalty"
entity = "user"
source = "tables"

[[feature_view.feature]]
name = "tier"
type = "string"
"#;

#[tokio::test]
async fn definitions_are_cached_for_the_refresh_period() {
    // Cached for an hour: an apply is not seen.
    let f =
        Fixture::new(ServingConfig { registry_refresh: Duration::from_secs(3600), ..ServingConfig::default() }).await;
    f.registry.apply(&client("shop"), &repo(""), false, false).await.unwrap();
    f.features(&["activity:orders_30d"], &["u-1"]).await.unwrap();
    f.registry.apply(&client("shop"), &repo(SHOP_ONLY), false, false).await.unwrap();
    let (code, _) = failure(f.features(&["loyalty:tier"], &["u-1"]).await);
    assert_eq!(code, ErrorCode::NotFound, "the cached definitions are served until the period ends");

    // Refreshed on every request: an apply is served at once.
    let f = Fixture::new(ServingConfig { registry_refresh: Duration::ZERO, ..ServingConfig::default() }).await;
    f.registry.apply(&client("shop"), &repo(""), false, false).await.unwrap();
    f.features(&["activity:orders_30d"], &["u-1"]).await.unwrap();
    f.registry.apply(&client("shop"), &repo(SHOP_ONLY), false, false).await.unwrap();
    f.features(&["loyalty:tier"], &["u-1"]).await.unwrap();
}
