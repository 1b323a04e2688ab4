//! `livora dataset build`: a point-in-time correct training set, written to Parquet.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use livora_common::ClientId;
use livora_feature_store::dataset::{self, DatasetRequest, Entities, Selection};
use livora_feature_store::{SpineOptions, write_dataset};
use polars::prelude::{LazyFrame, PlRefPath, ScanArgsParquet};

use crate::config::Config;

/// `livora dataset …`.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Joins features point-in-time onto entity rows (a Parquet file, or a spine of every entity
    /// of a view sampled at a cadence) and writes the result as Parquet.
    Build(BuildArgs),
}

/// `livora dataset build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The client.
    #[arg(long)]
    pub client: ClientId,
    /// Features as `view:feature` or `view:*`, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "service", required_unless_present = "service")]
    pub features: Vec<String>,
    /// A feature service instead of `--features`.
    #[arg(long)]
    pub service: Option<String>,
    /// Entity rows: a Parquet file with the join keys and a timestamp column.
    #[arg(long, conflicts_with = "spine", required_unless_present = "spine")]
    pub entities: Option<PathBuf>,
    /// The timestamp column of `--entities`.
    #[arg(long, default_value = "event_timestamp")]
    pub timestamp_column: String,
    /// Instead of `--entities`: every entity seen in this view's history, sampled at `--cadence`
    /// from `--start` to `--end`.
    #[arg(long)]
    pub spine: Option<String>,
    /// Spine start (RFC 3339).
    #[arg(long, requires = "spine")]
    pub start: Option<DateTime<Utc>>,
    /// Spine end (RFC 3339), included.
    #[arg(long, requires = "spine")]
    pub end: Option<DateTime<Utc>>,
    /// Spine cadence (`1h`, `1d`).
    #[arg(long, requires = "spine", value_parser = humantime::parse_duration)]
    pub cadence: Option<std::time::Duration>,
    /// Name features `view__feature`.
    #[arg(long)]
    pub full_feature_names: bool,
    /// Where to write the dataset (Parquet).
    #[arg(long)]
    pub out: PathBuf,
}

pub async fn run(config: &Config, command: DatasetCommand) -> Result<()> {
    let DatasetCommand::Build(args) = command;
    let (_, current) = crate::stores::definitions(config, &args.client).await?;
    let selection = match args.service {
        Some(s) => Selection::Service(s),
        None => Selection::Refs(args.features),
    };
    let entities = match (args.entities, args.spine) {
        (Some(path), _) => {
            let frame =
                LazyFrame::scan_parquet(PlRefPath::new(path.to_string_lossy().as_ref()), ScanArgsParquet::default())
                    .with_context(|| format!("cannot read the entity rows {}", path.display()))?;
            Entities::Rows { frame: Box::new(frame), timestamp_column: args.timestamp_column }
        }
        (None, Some(view)) => {
            let (Some(start), Some(end), Some(cadence)) = (args.start, args.end, args.cadence) else {
                bail!("--spine needs --start, --end and --cadence")
            };
            Entities::Spine { view, options: SpineOptions::new(start, end, cadence) }
        }
        (None, None) => bail!("give --entities FILE or --spine VIEW"),
    };
    let store = config.offline_store()?;
    let started = std::time::Instant::now();
    let frame = dataset::build(
        &current.repo,
        store.as_ref(),
        &config.offline_root(),
        &args.client,
        DatasetRequest { selection, entities, full_feature_names: args.full_feature_names },
    )?;
    write_dataset(frame, &args.out)?;
    eprintln!("wrote {} in {:.2?}", args.out.display(), started.elapsed());
    Ok(())
}
