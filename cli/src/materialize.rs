//! `livora materialize`: batch feature views loaded into the online store.

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use livora_common::ClientId;
use livora_feature_store::materialize::{self, Mode};

use crate::config::Config;

/// `livora materialize`.
#[derive(Debug, Args)]
pub struct MaterializeArgs {
    /// The client.
    #[arg(long)]
    pub client: ClientId,
    /// Load the rows with event times from this instant (RFC 3339)…
    #[arg(long, requires = "end", conflicts_with = "incremental")]
    pub start: Option<DateTime<Utc>>,
    /// …to this one, included.
    #[arg(long, requires = "start")]
    pub end: Option<DateTime<Utc>>,
    /// Load the rows created since the last incremental run (late rows included).
    #[arg(long)]
    pub incremental: bool,
    /// Only this view.
    #[arg(long)]
    pub view: Option<String>,
}

pub async fn run(config: &Config, args: MaterializeArgs) -> Result<()> {
    let mode = match (args.start, args.end, args.incremental) {
        (Some(start), Some(end), false) if start <= end => Mode::Range { start, end },
        (Some(_), Some(_), false) => bail!("--start must not be after --end"),
        (None, None, true) => Mode::Incremental,
        _ => bail!("give --start and --end, or --incremental"),
    };
    let (registry, current) = crate::stores::definitions(config, &args.client).await?;
    let online = crate::stores::online_store(config).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} rows {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |view: &str, done: u64, total: u64| {
        bar.set_message(view.to_owned());
        bar.set_length(total);
        bar.set_position(done);
    };
    let done = materialize::materialize(
        &current.repo,
        &config.offline_root(),
        &args.client,
        online.as_ref(),
        &registry,
        mode,
        args.view.as_deref(),
        &progress,
    )
    .await?;
    bar.finish_and_clear();
    if done.is_empty() {
        println!("no online batch view to materialize");
    }
    for m in done {
        let watermark = m
            .watermark
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .map_or(String::new(), |w| format!(", watermark {}", w.to_rfc3339()));
        println!("{}: {} entities, {} rows applied{watermark}", m.view, m.entities, m.applied);
    }
    Ok(())
}
