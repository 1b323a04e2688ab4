//! The feature registry against SQLite and the local PostgreSQL (which must run; see
//! `livora_tests::postgres`): versions, plans, refusal of breaking changes, tenancy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use livora_common::ClientId;
use livora_feature_store::definitions::parse_files;
use livora_feature_store::{Error, Registry, Repo};
use livora_tests::postgres::with_database_of_its_own;

const BASE: &str = r#"
[[entity]]
name = "user"
join_keys = ["user_id"]
value_type = "string"

[[source]]
name = "events"
kind = "event_log"
"#;

fn repo(views: &str) -> Repo {
    parse_files(&[(PathBuf::from("base.toml"), BASE.into()), (PathBuf::from("views.toml"), views.into())])
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn view(name: &str, features: &[(&str, &str)]) -> String {
    let mut s = format!("[[feature_view]]\nname = \"{name}\"\nentity = \"user\"\nsource = \"events\"\n\n");
    for (f, agg) in features {
        s.push_str(&format!("[[feature_view.feature]]\nname = \"{f}\"\n{agg}\n\n"));
    }
    s
}

const COUNT: &str = "aggregate = \"count\"\nwindow = \"1h\"";
const COUNT_2H: &str = "aggregate = \"count\"\nwindow = \"2h\"";

async fn conformance(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    let shop = ClientId::new("shop").unwrap();
    let other = ClientId::new("other").unwrap();
    assert!(registry.current(&shop).await.unwrap().is_none());

    let v1 = repo(&view("activity", &[("views_1h", COUNT)]));
    let dry = registry.apply(&shop, &v1, true, false).await.unwrap();
    assert_eq!(dry.version, 0);
    assert_eq!(dry.plan.added.len(), 3, "{}", dry.plan);
    assert!(registry.current(&shop).await.unwrap().is_none(), "a dry run records nothing");

    let applied = registry.apply(&shop, &v1, false, false).await.unwrap();
    assert_eq!(applied.version, 1);
    assert_eq!(registry.current(&shop).await.unwrap().unwrap().repo, v1);
    assert!(registry.current(&other).await.unwrap().is_none(), "registries are per client");

    let again = registry.apply(&shop, &v1, false, false).await.unwrap();
    assert!(again.plan.is_empty());
    assert_eq!(again.version, 1, "an unchanged repository records no version");

    // Adding a feature is compatible.
    let v2 = repo(&view("activity", &[("views_1h", COUNT), ("views_2h", COUNT_2H)]));
    let applied = registry.apply(&shop, &v2, false, false).await.unwrap();
    assert_eq!(applied.version, 2);
    assert_eq!(applied.plan.changed[0].details, ["+ feature `views_2h`"]);

    // Changing how a served feature is computed is refused, and the way out is named.
    let changed = repo(&view("activity", &[("views_1h", COUNT_2H), ("views_2h", COUNT_2H)]));
    let Err(Error::Breaking(why)) = registry.apply(&shop, &changed, false, false).await else {
        panic!("a breaking change must be refused")
    };
    assert_eq!(
        why,
        [
            "view `activity`: changing how `views_1h` is computed would break its readers; publish the change as `activity@v2`"
        ]
    );
    assert_eq!(registry.current(&shop).await.unwrap().unwrap().version, 2);

    // Published as a new version, it is accepted.
    let both = repo(&format!(
        "{}{}",
        view("activity", &[("views_1h", COUNT), ("views_2h", COUNT_2H)]),
        view("activity@v2", &[("views_1h", COUNT_2H)])
    ));
    assert_eq!(registry.apply(&shop, &both, false, false).await.unwrap().version, 3);

    // Removing a registered view needs --prune.
    let only_v2 = repo(&view("activity@v2", &[("views_1h", COUNT_2H)]));
    let Err(Error::Breaking(why)) = registry.apply(&shop, &only_v2, false, false).await else {
        panic!("removing a view must be refused without prune")
    };
    assert!(why[0].contains("removing view `activity`"), "{why:?}");
    let pruned = registry.apply(&shop, &only_v2, false, true).await.unwrap();
    assert_eq!(pruned.version, 4);
    assert_eq!(pruned.plan.removed[0].name, "activity");

    let history = registry.history(&shop).await.unwrap();
    assert_eq!(history.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(registry.version(&shop, 1).await.unwrap().repo, v1);
    assert!(matches!(registry.version(&other, 1).await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn registry_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&format!("sqlite://{}/registry.db?mode=rwc", dir.path().display())).await;
}

#[tokio::test]
async fn registry_on_postgres() {
    with_database_of_its_own(|url| async move { conformance(&url).await }).await;
}
