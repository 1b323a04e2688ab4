//! The model registry on SQLite and PostgreSQL, and artifacts on disk.

mod common;

use chrono::{TimeZone, Utc};
use livora_common::ClientId;
use livora_models::encoding::{Column, Encoder, Input, Table};
use livora_models::{
    Algorithm, Artifact, Classifier, Evaluation, FeatureRef, FitParams, Manifest, ModelRegistry, Training, Weights,
    classifier_metrics,
};
use livora_tests::postgres::with_database_of_its_own;

fn client(s: &str) -> ClientId {
    s.parse().expect("client id")
}

/// A small trained churn artifact of `version` for `client_id`.
fn artifact(client_id: &str, version: i64, algorithm: Algorithm) -> Artifact {
    let s = common::sample(2_000, version as u64, true);
    let mut table = Table::default();
    for c in 0..s.width {
        let column = s.x.chunks_exact(s.width).map(|r| Some(r[c])).collect();
        table.push(format!("user_activity__f{c}"), Column::Numeric(column)).expect("column");
    }
    let encoder = Encoder::fit(&table).expect("encoder");
    let x = encoder.encode_table(&table).expect("encode");
    let classifier = Classifier::fit(algorithm, &x, encoder.width(), &s.y, &FitParams::default()).expect("fit");
    let metrics = classifier_metrics(&classifier.predict(&x, encoder.width()), &s.y);
    let t = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single().expect("time");
    Artifact {
        manifest: Manifest {
            format: livora_models::artifact::FORMAT,
            model: "churn".into(),
            version,
            client_id: client_id.into(),
            algorithm,
            feature_service: "churn".into(),
            feature_registry_version: 1,
            entity: "user".into(),
            join_key: "user_id".into(),
            features: (0..s.width)
                .map(|c| FeatureRef { view: "user_activity".into(), feature: format!("f{c}") })
                .collect(),
            encoder,
            label: "test".into(),
            training: Some(Training {
                start: t,
                end: t,
                cadence_seconds: 86_400,
                split_at: t,
                train_rows: 2_000,
                test_rows: 0,
                train_positive_rate: 0.5,
                params: FitParams::default(),
                dataset_fingerprint: "00".into(),
                seconds: 0.0,
            }),
            evaluation: Some(Evaluation {
                model: metrics.clone(),
                baseline_algorithm: Algorithm::Prior,
                baseline: metrics,
            }),
            offers: Vec::new(),
            ranking: None,
            code_version: "test".into(),
            created_at: t,
        },
        weights: Weights::Native(classifier),
    }
}

async fn conformance(url: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    let registry = ModelRegistry::connect(url, root.path()).await.expect("connect");
    let (shop, other) = (client("shop"), client("other"));
    registry.ping().await.expect("the database answers");

    assert_eq!(registry.next_version(&shop, "churn").await.expect("next"), 1);
    for v in 1..=3 {
        registry.register(&shop, &artifact("shop", v, Algorithm::Logistic)).await.expect("register");
    }
    registry.register(&other, &artifact("other", 1, Algorithm::Gbdt)).await.expect("register other");
    assert_eq!(registry.next_version(&shop, "churn").await.expect("next"), 4);

    // A version is never rewritten, and an artifact of another client is refused.
    let err = registry.register(&shop, &artifact("shop", 2, Algorithm::Logistic)).await.expect_err("again");
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = registry.register(&shop, &artifact("other", 9, Algorithm::Logistic)).await.expect_err("tenant");
    assert!(err.to_string().contains("belongs to client `other`"), "{err}");

    // Tenancy: each client sees its own versions.
    let listed = registry.list(&shop, Some("churn")).await.expect("list");
    assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(registry.list(&other, None).await.expect("list").len(), 1);
    assert!(registry.get(&other, "churn", 3).await.is_err());

    // No alias yet: the bare name says how to promote.
    let err = registry.resolve(&shop, "churn").await.expect_err("no production");
    assert!(err.to_string().contains("livora models promote churn <version> --alias production"), "{err}");

    // Promote 1, then 3; roll back to 1; rolling back further has nowhere to go.
    assert_eq!(registry.promote(&shop, "churn", 1, "production").await.expect("promote"), None);
    assert_eq!(registry.promote(&shop, "churn", 3, "production").await.expect("promote"), Some(1));
    registry.promote(&shop, "churn", 2, "staging").await.expect("staging");
    assert_eq!(registry.resolve(&shop, "churn").await.expect("resolve").version, 3);
    assert_eq!(registry.resolve(&shop, "churn@staging").await.expect("resolve").version, 2);
    assert_eq!(registry.resolve(&shop, "churn@1").await.expect("resolve").version, 1);
    assert_eq!(registry.resolve(&shop, "churn@v2").await.expect("resolve").version, 2);
    let listed = registry.list(&shop, Some("churn")).await.expect("list");
    assert_eq!(listed[0].aliases, ["production"]);
    assert_eq!(listed[1].aliases, ["staging"]);
    assert_eq!(registry.rollback(&shop, "churn", "production").await.expect("rollback"), (3, 1));
    assert_eq!(registry.resolve(&shop, "churn").await.expect("resolve").version, 1);
    let err = registry.rollback(&shop, "churn", "production").await.expect_err("nothing earlier");
    assert!(err.to_string().contains("no earlier version"), "{err}");
    assert!(registry.resolve(&other, "churn").await.is_err(), "aliases are per client");

    let err = registry.promote(&shop, "churn", 1, "prod").await.expect_err("alias");
    assert_eq!(err.to_string(), "alias: `prod` is not one of production, staging, shadow");
    let err = registry.promote(&shop, "churn", 42, "production").await.expect_err("version");
    assert!(err.to_string().contains("no version 42"), "{err}");

    // The artifact loads alone and scores as the classifier it was saved from.
    let v = registry.resolve(&shop, "churn@3").await.expect("resolve");
    let loaded = registry.load(&v).expect("load");
    let original = artifact("shop", 3, Algorithm::Logistic);
    let inputs = [Input::Number(0.3), Input::Missing, Input::Number(-1.0), Input::Number(2.0)];
    let a = loaded.score(&inputs, 2).expect("score");
    let b = original.score(&inputs, 2).expect("score");
    assert_eq!(a, b);
    assert_eq!(a.contributions.len(), 2);
    assert_eq!(loaded.manifest, original.manifest);
}

/// Canaries: set, read, replace, listed with the versions, each refusal, rollback and promotion.
async fn canaries(url: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    let registry = ModelRegistry::connect(url, root.path()).await.expect("connect");
    let shop = client("shop");
    for v in 1..=3 {
        registry.register(&shop, &artifact("shop", v, Algorithm::Logistic)).await.expect("register");
    }
    // v4 reads the same features in another order: it cannot share v1's online read.
    let mut reordered = artifact("shop", 4, Algorithm::Logistic);
    reordered.manifest.features.swap(0, 1);
    registry.register(&shop, &reordered).await.expect("register v4");

    // No alias yet: nothing to run a canary beside.
    let err = registry.set_canary(&shop, "churn", "production", 2, 10).await.expect_err("no production");
    assert!(err.to_string().starts_with("alias: `production` of model `churn` points at no version"), "{err}");
    registry.promote(&shop, "churn", 1, "production").await.expect("promote");
    assert_eq!(registry.canary(&shop, "churn", "production").await.expect("canary"), None);

    let set = registry.set_canary(&shop, "churn", "production", 2, 10).await.expect("set");
    assert_eq!(
        (set.model.as_str(), set.alias.as_str(), set.primary, set.version, set.weight),
        ("churn", "production", 1, 2, 10)
    );
    assert_eq!(set.to_string(), "production → v1 (canary v2 at 10%)");
    assert_eq!(registry.canary(&shop, "churn", "production").await.expect("canary"), Some(set.clone()));
    // Another version and weight replace it.
    let set = registry.set_canary(&shop, "churn", "production", 3, 30).await.expect("replace");
    assert_eq!((set.version, set.weight), (3, 30));
    assert_eq!(registry.canaries(&shop).await.expect("canaries"), std::slice::from_ref(&set));
    assert!(registry.canaries(&client("other")).await.expect("canaries").is_empty(), "canaries are per client");

    // Listed with the versions it involves: the alias's and the canary's.
    let listed = registry.list(&shop, Some("churn")).await.expect("list");
    let with_canary: Vec<i64> = listed.iter().filter(|v| !v.canaries.is_empty()).map(|v| v.version).collect();
    assert_eq!(with_canary, [3, 1]);
    assert_eq!(listed[1].canaries, std::slice::from_ref(&set));
    assert_eq!((listed[1].version, listed[3].version), (3, 1));
    assert_eq!(listed[3].canaries, std::slice::from_ref(&set));

    // Resolution: an alias carries its canary, a version never does.
    let target = registry.resolve_target(&shop, "churn").await.expect("target");
    assert_eq!((target.version, target.alias.as_deref(), target.canary), (1, Some("production"), Some(set.clone())));
    let target = registry.resolve_target(&shop, "churn@3").await.expect("target");
    assert_eq!((target.version, target.alias, target.canary), (3, None, None));

    // Each refusal names the field and the reason.
    let refuse = |version: i64, alias: &'static str, weight: u32| {
        let registry = registry.clone();
        let shop = shop.clone();
        async move { registry.set_canary(&shop, "churn", alias, version, weight).await.expect_err("refused").to_string() }
    };
    assert_eq!(refuse(2, "production", 0).await, "weight: 0 is not a share of entities from 1 to 100 (percent)");
    assert_eq!(refuse(2, "production", 101).await, "weight: 101 is not a share of entities from 1 to 100 (percent)");
    assert_eq!(refuse(2, "prod", 10).await, "alias: `prod` is not one of production, staging, shadow");
    assert_eq!(refuse(42, "production", 10).await, "model `churn` has no version 42 for client `shop`");
    assert_eq!(
        refuse(1, "production", 10).await,
        "version: `production` of model `churn` already points at v1; a canary is another version"
    );
    let err = refuse(4, "production", 10).await;
    assert!(
        err.starts_with(
            "version: v4 cannot be the canary of `production` (v1) of model `churn`: v4 reads 4 features and v1 \
             reads 4: feature 1 is `user_activity:f1` in v4 but `user_activity:f0` in v1; a canary is scored from \
             the same online feature read"
        ),
        "{err}"
    );
    let err = registry.set_canary(&shop, "churn", "production", 4, 10).await.expect_err("features");
    assert_eq!(err.code(), livora_common::ErrorCode::InvalidArgument);
    assert_eq!(registry.canary(&shop, "churn", "production").await.expect("canary"), Some(set.clone()), "unchanged");

    // A rollback leaves the canary, beside the version the alias is back at.
    registry.promote(&shop, "churn", 2, "production").await.expect("promote 2");
    assert_eq!(registry.canary(&shop, "churn", "production").await.expect("canary").map(|c| c.primary), Some(2));
    registry.rollback(&shop, "churn", "production").await.expect("rollback");
    let kept = registry.canary(&shop, "churn", "production").await.expect("canary").expect("kept");
    assert_eq!((kept.primary, kept.version, kept.weight), (1, 3, 30));

    // Promoting the canary's version ends it; promoting another version does not.
    registry.set_canary(&shop, "churn", "staging", 3, 50).await.expect_err("staging points at nothing");
    registry.promote(&shop, "churn", 1, "staging").await.expect("staging");
    registry.set_canary(&shop, "churn", "staging", 3, 50).await.expect("staging canary");
    registry.promote(&shop, "churn", 3, "production").await.expect("promote the canary");
    assert_eq!(registry.canary(&shop, "churn", "production").await.expect("canary"), None);
    assert_eq!(registry.resolve_target(&shop, "churn").await.expect("target").canary, None);
    assert!(registry.canary(&shop, "churn", "staging").await.expect("canary").is_some(), "other aliases keep theirs");

    // Clearing returns what it ended; clearing nothing is not an error.
    let cleared = registry.clear_canary(&shop, "churn", "staging").await.expect("clear");
    assert_eq!(cleared.map(|c| (c.primary, c.version, c.weight)), Some((1, 3, 50)));
    assert_eq!(registry.clear_canary(&shop, "churn", "staging").await.expect("clear again"), None);
    assert!(registry.canaries(&shop).await.expect("canaries").is_empty());
    let err = registry.clear_canary(&shop, "churn", "prod").await.expect_err("alias");
    assert_eq!(err.to_string(), "alias: `prod` is not one of production, staging, shadow");
}

/// A registry database in a new directory (kept alive by the returned guard).
fn sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("registry.db").display());
    (dir, url)
}

#[tokio::test]
async fn canaries_on_sqlite() {
    let (_dir, url) = sqlite();
    canaries(&url).await;
}

#[tokio::test]
async fn canaries_on_postgresql() {
    with_database_of_its_own(|url| async move { canaries(&url).await }).await;
}

#[tokio::test]
async fn the_registry_on_sqlite() {
    let (_dir, url) = sqlite();
    conformance(&url).await;
}

#[tokio::test]
async fn the_registry_on_postgresql() {
    with_database_of_its_own(|url| async move { conformance(&url).await }).await;
}

#[test]
fn a_damaged_artifact_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1");
    artifact("shop", 1, Algorithm::Gbdt).save(&path).expect("save");
    std::fs::write(path.join("weights.json"), "{\"width\": 4, \"booster\": 1}").expect("damage");
    let err = Artifact::load(&path).expect_err("damaged");
    assert!(err.to_string().contains("weights.json"), "{err}");
    std::fs::remove_file(path.join("manifest.json")).expect("remove");
    let err = Artifact::load(&path).expect_err("missing");
    assert!(err.to_string().contains("manifest.json"), "{err}");
}
