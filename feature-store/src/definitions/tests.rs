use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse(files: &[(&str, &str)]) -> Result<Repo, Vec<DefinitionError>> {
    let files: Vec<(PathBuf, String)> = files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect();
    parse_files(&files)
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    parse(files).expect_err("definitions should be refused").iter().map(ToString::to_string).collect()
}

const BASE: &str = r#"
[[entity]]
name = "user"
join_keys = ["user_id"]
value_type = "string"

[[source]]
name = "events"
kind = "event_log"
"#;

#[test]
fn the_example_repository_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("example-repo");
    let repo = load_repo(&root).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(repo.entities.keys().collect::<Vec<_>>(), ["product", "user"]);
    let activity = &repo.views["user_activity"];
    assert_eq!(activity.features.len(), 25);
    assert!(activity.is_streaming());
    assert_eq!(activity.key_field.as_deref(), Some("user_id"));
    assert_eq!(activity.ttl, Some(Duration::from_secs(90 * 86_400)));
    assert_eq!(repo.views["product_activity"].key_field.as_deref(), Some("props.product_id"));
    assert!(!repo.views["customer_profile"].is_streaming());
    assert_eq!(repo.services["churn"].features.len(), 27);
    assert_eq!(repo.offers.len(), 9);
    assert_eq!(repo.offers["home_and_garden_week"].categories, ["home", "garden"]);
    let revenue = activity.feature("revenue_30d").unwrap();
    let FeatureKind::Aggregation(agg) = &revenue.kind else { panic!("revenue_30d is an aggregation") };
    assert_eq!(agg.window, Some(Window { size: Duration::from_secs(30 * 86_400), hop: Duration::from_secs(86_400) }));
    assert_eq!(revenue.value_type, crate::ValueType::Float64);
    assert_eq!(activity.feature("last_purchase_at").unwrap().value_type, crate::ValueType::Timestamp);
}

#[test]
fn every_error_names_file_and_line() {
    let views = r#"
[[feature_view]]
name = "a"
entity = "nobody"
source = "events"

[[feature_view.feature]]
name = "n"
aggregate = "count"
"#;
    let errs = errors(&[("base.toml", BASE), ("views.toml", views)]);
    assert_eq!(errs, ["views.toml:4: view `a`: unknown entity `nobody`"]);
}

#[test]
fn duplicates_are_reported_with_the_first_definition() {
    let errs = errors(&[("a.toml", BASE), ("b.toml", BASE)]);
    assert_eq!(
        errs,
        [
            "b.toml:3: duplicate entity `user` (first defined at a.toml:2)",
            "b.toml:8: duplicate source `events` (first defined at a.toml:7)",
        ]
    );
}

#[test]
fn type_mismatches_are_refused() {
    let view = r#"
[[feature_view]]
name = "v"
entity = "user"
source = "events"

[[feature_view.feature]]
name = "n"
aggregate = "count"
type = "string"

[[feature_view.feature]]
name = "d"
days_since = "n"

[[feature_view.feature]]
name = "e"
days_since = "zz"
"#;
    let errs = errors(&[("base.toml", BASE), ("v.toml", view)]);
    assert_eq!(
        errs,
        [
            "v.toml:7: view `v`: feature `n`: type mismatch: count cannot produce string",
            "v.toml:16: view `v`: feature `e`: days_since names unknown feature `zz`",
        ]
    );
}

#[test]
fn syntax_and_unknown_keys_are_located() {
    let errs =
        errors(&[("x.toml", "[[entity]]\nname = \"u\"\njoin_keys = [\"id\"]\nvalue_type = \"string\"\ncolour = 1\n")]);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("x.toml:5: unknown field `colour`"), "{errs:?}");
    let errs = errors(&[("y.toml", "[[entity]\n")]);
    assert!(errs[0].starts_with("y.toml:1: "), "{errs:?}");
}

#[test]
fn windows_and_hops_are_checked() {
    let view = |window: &str| {
        format!(
            "[[feature_view]]\nname = \"v\"\nentity = \"user\"\nsource = \"events\"\n\n\
             [[feature_view.feature]]\nname = \"n\"\naggregate = \"count\"\n{window}\n"
        )
    };
    let ok = parse(&[("b.toml", BASE), ("v.toml", &view("window = \"2h\"\nkind = \"tumbling\""))]).unwrap();
    let FeatureKind::Aggregation(agg) = &ok.views["v"].features[0].kind else { panic!() };
    assert_eq!(agg.window.unwrap().hop, Duration::from_secs(7200));
    let bad = errors(&[("b.toml", BASE), ("v.toml", &view("window = \"1h\"\nhop = \"7m\""))]);
    assert_eq!(bad, ["v.toml:6: view `v`: feature `n`: the hop must divide the window"]);
    let bad = errors(&[("b.toml", BASE), ("v.toml", &view("window = \"soon\""))]);
    assert!(bad[0].contains("window `soon` is not a duration"), "{bad:?}");
}

#[test]
fn default_hops() {
    let h = |s: u64| load::default_hop(Duration::from_secs(s)).as_secs();
    assert_eq!(h(3600), 60);
    assert_eq!(h(86_400), 3600);
    assert_eq!(h(7 * 86_400), 3600);
    assert_eq!(h(30 * 86_400), 86_400);
    assert_eq!(h(90), 1);
    assert_eq!(h(10), 10);
}

#[test]
fn services_name_existing_features() {
    let view = r#"
[[feature_view]]
name = "v"
entity = "user"
source = "events"

[[feature_view.feature]]
name = "n"
aggregate = "count"

[[feature_service]]
name = "s"
features = ["v:n", "v:missing", "w:*", "bad"]
"#;
    let errs = errors(&[("b.toml", BASE), ("v.toml", view)]);
    assert_eq!(
        errs,
        [
            "v.toml:13: service `s`: view `v` has no feature `missing`",
            "v.toml:13: service `s`: unknown feature view `w`",
            "v.toml:13: service `s`: `bad` must be `view:feature` or `view:*`",
        ]
    );
}

#[test]
fn view_versions() {
    assert!(load::valid_view_name("user_activity@v2"));
    assert!(!load::valid_view_name("user_activity@v1"));
    assert!(!load::valid_view_name("user_activity@v02"));
    assert!(!load::valid_view_name("user_activity@2"));
    assert!(!load::valid_view_name("User"));
}

#[test]
fn the_compiled_in_example_is_the_whole_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("example-repo");
    let mut on_disk: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let mut compiled: Vec<String> = EXAMPLE_REPO.iter().map(|(n, _)| n.to_string()).collect();
    compiled.sort();
    assert_eq!(compiled, on_disk, "EXAMPLE_REPO must list every file of example-repo/");
    let files: Vec<(PathBuf, String)> = EXAMPLE_REPO.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())).collect();
    assert_eq!(parse_files(&files).unwrap(), load_repo(&root).unwrap());
}

#[test]
fn offers_are_checked() {
    let offers = r#"
[[offer]]
name = "fashion"
categories = ["fashion"]

[[offer]]
name = "fashion"
categories = ["shoes"]

[[offer]]
name = "Bad"
categories = ["x"]

[[offer]]
name = "none"
categories = []

[[offer]]
name = "twice"
categories = ["home", "home", ""]
"#;
    let errs = errors(&[("b.toml", BASE), ("o.toml", offers)]);
    assert_eq!(
        errs,
        [
            "o.toml:7: duplicate offer `fashion` (first defined at o.toml:2)",
            "o.toml:11: offer name `Bad` must match [a-z][a-z0-9_]{0,62}",
            "o.toml:14: offer `none`: categories must name at least one product category",
            "o.toml:20: offer `twice`: category `home` is listed twice",
            "o.toml:20: offer `twice`: category `` must be 1 to 128 printable characters",
        ]
    );
}
