//! `livora features backfill` as an operator runs it: a client's past events are in the lake (an
//! import), the example repository is applied, the backfill writes `user_activity`'s history, and
//! `livora dataset build` over a spine of the same grid reads exactly the batch engine's values.
//! Flags at fault are named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, TimeZone, Utc};
use livora_common::{ClientId, Event};
use livora_feature_store::definitions::{EXAMPLE_REPO, parse_files};
use livora_feature_store::stream::CompiledView;
use livora_feature_store::{Value, batch};
use livora_simulator::{SimConfig, Simulator};
use polars::prelude::SerReader as _;

const BIN: &str = env!("CARGO_BIN_EXE_livora");

fn livora(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).arg("--data-dir").arg(data_dir).args(args).output().expect("livora runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_backfill_from_the_lake_gives_datasets_the_batch_engine_values() {
    let data = tempfile::tempdir().unwrap();
    let shop = ClientId::new("shop").unwrap();
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    let events: Vec<Event> =
        Simulator::new(SimConfig { client_id: shop.clone(), users: 200, days: 10, start, seed: 3 })
            .events()
            .map(|mut v| {
                v["received_at"] = v["timestamp"].clone();
                serde_json::from_value(v).unwrap()
            })
            .collect();
    assert!(livora_tests::write_lake(data.path(), &events).unwrap() > 100);
    let repo_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo");
    let applied = livora(data.path(), &["apply", repo_dir.to_str().unwrap(), "--client", "shop"]);
    assert!(applied.status.success(), "{:?}", text(&applied));

    let (grid_start, grid_end) = ("2026-03-04T00:00:00Z", "2026-03-12T00:00:00Z");
    let backfill = ["features", "backfill", "--client", "shop", "--view", "user_activity"];
    let grid = ["--start", grid_start, "--end", grid_end, "--cadence", "1d"];
    let ran = livora(data.path(), &[&backfill[..], &grid[..]].concat());
    let (out, err) = text(&ran);
    assert!(ran.status.success(), "{out}{err}");
    eprintln!("{out}");
    assert!(
        out.starts_with("backfilled user_activity: ") && out.contains(" entities over 2026-03-04..2026-03-12 in "),
        "{out}"
    );

    let repo =
        parse_files(&EXAMPLE_REPO.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())).collect::<Vec<_>>()).unwrap();
    let views = CompiledView::all(&shop, &repo);
    let view = views.iter().find(|v| v.view.name == "user_activity").unwrap();
    let features: Vec<String> = view.aggs.iter().map(|a| format!("user_activity:{}", a.name)).collect();
    let out_file = data.path().join("dataset.parquet");
    let built = livora(
        data.path(),
        &[
            &["dataset", "build", "--client", "shop", "--spine", "user_activity", "--cadence", "1d"][..],
            &["--start", grid_start, "--end", grid_end, "--features", &features.join(",")],
            &["--out", out_file.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(built.status.success(), "{:?}", text(&built));
    let dataset = polars::prelude::ParquetReader::new(std::fs::File::open(&out_file).unwrap()).finish().unwrap();
    let users = dataset.column("user_id").unwrap().str().unwrap().clone();
    let times = dataset.column("event_timestamp").unwrap().to_physical_repr();
    let queries: Vec<(String, i64)> =
        users.iter().zip(times.i64().unwrap().iter()).map(|(u, t)| (u.unwrap().to_owned(), t.unwrap())).collect();
    assert!(queries.len() > 300, "{} rows", queries.len());
    assert!(out.contains(&format!(": {} rows for ", thousands(queries.len()))), "{out}");
    let expected = batch::values_at(view, &events, &queries);
    for (i, agg) in view.aggs.iter().enumerate() {
        let column = dataset.column(&agg.name).unwrap();
        for (row, want) in expected.iter().enumerate() {
            assert_eq!(
                Value::from_cell(column.get(row).unwrap(), agg.ty),
                want[i],
                "{} at {:?}",
                agg.name,
                queries[row]
            );
        }
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    digits.chars().enumerate().fold(String::new(), |mut out, (i, c)| {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
        out
    })
}

#[test]
fn flags_at_fault_are_named() {
    let data = tempfile::tempdir().unwrap();
    let repo_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo");
    assert!(livora(data.path(), &["apply", repo_dir.to_str().unwrap(), "--client", "shop"]).status.success());
    let base = ["features", "backfill", "--client", "shop"];
    let cases: [(&[&str], &str); 5] = [
        (&["--view", "user_activity", "--start", "2026-03-05T00:00:00Z", "--end", "2026-03-04T00:00:00Z"], "--end"),
        (
            &[
                "--view",
                "user_activity",
                "--start",
                "2026-03-01T00:00:00Z",
                "--end",
                "2026-03-04T00:00:00Z",
                "--cadence",
                "0s",
            ],
            "--cadence must be longer than zero",
        ),
        (
            &["--view", "customer_profile", "--start", "2026-03-01T00:00:00Z", "--end", "2026-03-04T00:00:00Z"],
            "--view: feature view `customer_profile` is a batch view",
        ),
        (
            &["--view", "nope", "--start", "2026-03-01T00:00:00Z", "--end", "2026-03-04T00:00:00Z"],
            "streaming views: product_activity, user_activity, user_interests",
        ),
        (&["--view", "user_activity", "--start", "yesterday", "--end", "2026-03-04T00:00:00Z"], "--start"),
    ];
    for (args, expected) in cases {
        let ran = livora(data.path(), &[&base[..], args].concat());
        let (_, err) = text(&ran);
        assert!(!ran.status.success(), "{args:?} must fail");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // Nothing was written by a refused backfill.
    assert!(!data.path().join("lake/features").exists());
}
