//! `livora`: the one binary of the platform.
//!
//! `livora serve` runs everything on embedded defaults with no configuration; the other
//! commands manage clients, inspect what arrived and simulate a shop.

mod clients;
mod config;
mod dataset;
mod events;
mod features;
mod materialize;
mod metrics;
mod models;
mod sched;
mod score;
mod serve;
mod simulate;
mod stores;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The collector allocates many small strings per event; mimalloc serves them faster than the
/// system allocator and keeps fragmentation low under sustained load. It is built without
/// transparent huge pages (the workspace's `no_thp`): a request that touches a fresh huge page
/// waits for the kernel to zero 2 MiB of it, which was most of the serving tail.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Livora: a shop's event stream turned into fresh features and live predictions.
#[derive(Debug, Parser)]
#[command(name = "livora", version, about)]
struct Cli {
    /// A TOML configuration file (see config/livora.example.toml). Without one, everything runs
    /// embedded under the data directory.
    #[arg(long, short = 'c', global = true, env = "LIVORA_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory of the embedded backends (default ./livora-data).
    #[arg(long, global = true, env = "LIVORA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the platform: the HTTP collector, the event log, the lake writer and feature serving
    /// (gRPC, and JSON on the collector's listener).
    Serve(serve::ServeArgs),
    /// Manages clients (tenants) and their API keys.
    #[command(subcommand)]
    Clients(clients::ClientsCommand),
    /// Shows what arrived: counts, latest events, quarantined records.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Generates realistic shop traffic and sends it to a collector or writes it to a file.
    Simulate(simulate::SimulateArgs),
    /// Checks a feature repository, prints the plan and records a new registry version.
    Apply(features::ApplyArgs),
    /// Shows the registered feature definitions.
    #[command(subcommand)]
    Features(features::FeaturesCommand),
    /// Loads batch feature views into the online store.
    Materialize(materialize::MaterializeArgs),
    /// Builds point-in-time correct training sets.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Trains a model of the zoo (churn, lead scoring) and registers a new version.
    Train(train::TrainArgs),
    /// Lists, shows, compares, promotes, rolls back and imports model versions; runs canaries.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Batch-scores every known entity with a model and refreshes its prediction view.
    Score(score::ScoreArgs),
}

/// Writes `text` to stdout; a closed pipe (`livora … | head`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Makes a reader that closed the pipe (`livora models show … | head`) end the output quietly
/// instead of with a panic: `println!` panics when stdout fails, and a closed pipe is the one
/// failure that means "enough". Every other panic goes to the default hook.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let config = match config::Config::load(cli.config.as_deref(), cli.data_dir.clone()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(config, args).await,
            Command::Clients(cmd) => clients::run(&config, cmd).await,
            Command::Events(cmd) => events::run(&config, cmd).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::Apply(args) => features::apply(&config, args).await,
            Command::Features(cmd) => features::run(&config, cmd).await,
            Command::Dataset(cmd) => dataset::run(&config, cmd).await,
            Command::Materialize(args) => materialize::run(&config, args).await,
            Command::Train(args) => train::run(&config, args).await,
            Command::Models(cmd) => models::run(&config, cmd).await,
            Command::Score(args) => score::run(&config, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
