//! The notebooks of `notebooks/` run headless against a real `livora serve`, so they never rot:
//! a simulated shop's events in the lake, `user_activity`'s history backfilled from them, then
//! each notebook executed by nbconvert (`.ci/services` installs Jupyter, pandas, matplotlib,
//! scikit-learn, pyarrow and the ADBC Flight SQL driver). A cell that raises fails the test; the
//! notebooks assert what they show (a funnel with buyers, a model better than chance, the plan of
//! a new feature view).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use chrono::{DurationRound, SecondsFormat, Utc};
use livora_common::{ClientId, Event};
use livora_simulator::{SimConfig, Simulator};
use livora_tests::{Livora, create_client, write_lake};

const BIN: &str = env!("CARGO_BIN_EXE_livora");
const DAYS: i64 = 60;

fn repo_root() -> &'static Path {
    livora_tests::workspace_root()
}

fn livora(data: &Path, args: &[&str]) -> Result<String> {
    livora_tests::run_livora(Path::new(BIN), data, args)
}

#[test]
fn the_analyst_and_data_scientist_notebooks_run_against_livora() -> Result<()> {
    let data = tempfile::tempdir()?;
    let key = create_client(Path::new(BIN), data.path(), &[], "shop")?;
    let example = repo_root().join("feature-store/example-repo");
    livora(data.path(), &["apply", &example.to_string_lossy(), "--client", "shop"])?;
    let shop = ClientId::new("shop").map_err(anyhow::Error::msg)?;
    let start = (Utc::now() - chrono::Duration::days(DAYS)).duration_trunc(chrono::Duration::days(1))?;
    let events: Vec<Event> =
        Simulator::new(SimConfig { client_id: shop, users: 300, days: DAYS as u32, start, seed: 3 })
            .events()
            .map(|mut w| {
                w["received_at"] = w["timestamp"].clone();
                serde_json::from_value(w)
            })
            .collect::<Result<_, _>>()?;
    write_lake(data.path(), &events)?;
    let day = |d: i64| (start + chrono::Duration::days(d)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let backfilled = livora(
        data.path(),
        &[
            "features",
            "backfill",
            "--client",
            "shop",
            "--view",
            "user_activity",
            "--start",
            &day(0),
            "--end",
            &day(DAYS),
        ],
    )?;
    ensure!(backfilled.contains("backfilled user_activity"), "{backfilled}");

    let mut server = Livora::start(Path::new(BIN), data.path(), &[])?;
    let grpc = server.grpc_addr.context("no gRPC address printed")?.to_string();
    let out = tempfile::tempdir()?;
    for notebook in ["analyst.ipynb", "data_scientist.ipynb"] {
        let run = Command::new("python3")
            .args(["-m", "nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=600"])
            .arg("--output-dir")
            .arg(out.path())
            .arg(repo_root().join("notebooks").join(notebook))
            .env("LIVORA_FLIGHT", &grpc)
            .env("LIVORA_CLIENT", "shop")
            .env("LIVORA_API_KEY", &key)
            .env("LIVORA_BIN", BIN)
            .env("LIVORA_DATA_DIR", data.path())
            .env("LIVORA_REPO", &example)
            .env("LIVORA_FUNNEL_PNG", out.path().join("funnel.png"))
            .output()?;
        ensure!(
            run.status.success(),
            "{notebook} failed (run .ci/services to install Jupyter and the clients):\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&run.stderr),
            server.log_tail()
        );
        ensure!(out.path().join(notebook).exists(), "nbconvert wrote no executed copy of {notebook}");
    }
    ensure!(out.path().join("funnel.png").exists(), "the analyst notebook plots the funnel");
    server.stop()?;
    Ok(())
}
