//! `livora apply` and `livora features …`: feature definitions as code, what is registered, and
//! the backfill of a streaming view's history from the raw lake.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use livora_common::ClientId;
use livora_feature_store::backfill::{self, BackfillOptions};
use livora_feature_store::definitions::{FeatureKind, Repo, SourceKind, format_duration};
use livora_feature_store::{Error, Registry};
use livora_ingest::lake::{LakeReader, store};

use crate::config::Config;

/// `livora apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The feature repository: a folder of TOML definition files.
    pub repo: PathBuf,
    /// The client whose definitions these are.
    #[arg(long)]
    pub client: ClientId,
    /// Print the plan without recording it.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow removing registered feature views.
    #[arg(long)]
    pub prune: bool,
}

/// `livora features …`.
#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Lists the registered entities, sources, views, services and offers of a client.
    List {
        /// The client.
        #[arg(long)]
        client: ClientId,
    },
    /// Shows one feature view or feature service in full.
    Describe {
        /// The view or service.
        name: String,
        /// The client.
        #[arg(long)]
        client: ClientId,
    },
    /// Lists the registry versions of a client.
    History {
        /// The client.
        #[arg(long)]
        client: ClientId,
    },
    /// Computes a streaming view's offline history from the raw lake with the batch engine: the
    /// values of every entity at every `--cadence` from `--start` to `--end`, appended to the
    /// offline store (the latest run wins where rows meet).
    Backfill(BackfillArgs),
}

/// `livora features backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The client.
    #[arg(long)]
    pub client: ClientId,
    /// The streaming feature view.
    #[arg(long)]
    pub view: String,
    /// The first grid time (RFC 3339); earlier events still fill the windows.
    #[arg(long)]
    pub start: DateTime<Utc>,
    /// The last grid time (RFC 3339), included.
    #[arg(long)]
    pub end: DateTime<Utc>,
    /// The time between two rows of an entity (`1h`, `1d`).
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub cadence: Duration,
}

async fn open(config: &Config) -> Result<Registry> {
    crate::stores::feature_registry(config).await
}

pub async fn apply(config: &Config, args: ApplyArgs) -> Result<()> {
    let repo = match livora_feature_store::load_repo(&args.repo) {
        Ok(repo) => repo,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", located(&args.repo, e));
            }
            bail!("{} problem(s) in the feature repository {}; nothing was applied", errors.len(), args.repo.display());
        }
    };
    let registry = open(config).await?;
    match registry.apply(&args.client, &repo, args.dry_run, args.prune).await {
        Ok(applied) => {
            print!("{}", applied.plan);
            if applied.plan.is_empty() {
                println!("Registry of `{}` stays at version {}.", args.client, applied.version);
            } else if args.dry_run {
                println!("Dry run: nothing recorded (registry of `{}` at version {}).", args.client, applied.version);
            } else {
                println!("Registry of `{}` is now at version {}.", args.client, applied.version);
            }
            Ok(())
        }
        Err(Error::Breaking(why)) => {
            for w in &why {
                eprintln!("refused: {w}");
            }
            bail!("nothing was applied")
        }
        Err(e) => Err(e.into()),
    }
}

fn located(root: &std::path::Path, e: &livora_feature_store::DefinitionError) -> String {
    let mut e = e.clone();
    if e.file.is_relative() && !e.file.starts_with(root) {
        e.file = root.join(&e.file);
    }
    e.to_string()
}

pub async fn run(config: &Config, command: FeaturesCommand) -> Result<()> {
    let (client, describe_name) = match command {
        FeaturesCommand::Backfill(args) => return run_backfill(config, args).await,
        FeaturesCommand::History { client } => {
            let registry = open(config).await?;
            let mut out = format!("{:<8} {:<26} DIGEST\n", "VERSION", "APPLIED");
            for (version, at, digest) in registry.history(&client).await? {
                let _ = writeln!(out, "{version:<8} {at:<26} {}", &digest[..12.min(digest.len())]);
            }
            return crate::print(&out);
        }
        FeaturesCommand::List { client } => (client, None),
        FeaturesCommand::Describe { name, client } => (client, Some(name)),
    };
    let registry = open(config).await?;
    let Some(current) = registry.current(&client).await? else {
        bail!("client `{client}` has no feature definitions; run `livora apply <repo> --client {client}`")
    };
    match describe_name {
        None => crate::print(&list(&current.repo, current.version)),
        Some(name) => crate::print(&describe(&current.repo, &name)?),
    }
}

async fn run_backfill(config: &Config, args: BackfillArgs) -> Result<()> {
    let started = Instant::now();
    if args.end < args.start {
        bail!("--end {} is before --start {}", args.end.to_rfc3339(), args.start.to_rfc3339());
    }
    if args.cadence.is_zero() {
        bail!("--cadence must be longer than zero (e.g. 1h or 1d)");
    }
    let registry = open(config).await?;
    let Some(current) = registry.current(&args.client).await? else {
        bail!("client `{}` has no feature definitions; run `livora apply <repo> --client {}`", args.client, args.client)
    };
    // Checked before the lake is read, which may take long.
    if let Err(e) = backfill::streaming_view(&args.client, &current.repo, &args.view) {
        bail!("--view: {e}");
    }

    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("reading the events of `{}` from the lake", args.client));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let reader = LakeReader::new(store::open(&config.lake_root(), &config.lake)?);
    let events = reader
        .read_events(args.client.as_str(), (None, Some(args.end)))
        .await
        .with_context(|| format!("cannot read the events of client `{}` from the lake", args.client))?;
    spinner.finish_and_clear();
    if events.is_empty() {
        eprintln!("warning: client `{}` has no events in the lake up to {}", args.client, args.end.to_rfc3339());
    }

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} entities {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(args.view.clone());
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let store = config.offline_store()?;
    let options = BackfillOptions::new(args.start, args.end, args.cadence);
    let created = Utc::now().timestamp_micros();
    let done = backfill::backfill(
        store.as_ref(),
        &args.client,
        &current.repo,
        &args.view,
        &events,
        &options,
        created,
        &progress,
    )?;
    bar.finish_and_clear();
    println!(
        "backfilled {}: {} rows for {} entities over {}..{} in {:.1} s",
        done.view,
        thousands(done.rows),
        thousands(done.entities),
        args.start.format("%Y-%m-%d"),
        args.end.format("%Y-%m-%d"),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `n` with a comma between groups of three digits (`12,345`).
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn list(repo: &Repo, version: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "registry version {version}\n");
    let _ = writeln!(out, "{:<10} {:<28} DETAILS", "KIND", "NAME");
    for e in repo.entities.values() {
        let _ = writeln!(out, "{:<10} {:<28} key {} ({})", "entity", e.name, e.join_keys.join(", "), e.value_type);
    }
    for s in repo.sources.values() {
        let what = match &s.kind {
            SourceKind::EventLog { .. } => "event log".to_string(),
            SourceKind::Parquet { path, .. } => format!("parquet {path}"),
        };
        let _ = writeln!(out, "{:<10} {:<28} {what}", "source", s.name);
    }
    for v in repo.views.values() {
        let ttl = v.ttl.map_or("none".to_string(), format_duration);
        let mode = if v.is_streaming() { "streaming" } else { "batch" };
        let _ = writeln!(
            out,
            "{:<10} {:<28} {} features of {}, {mode}, ttl {ttl}{}",
            "view",
            v.name,
            v.features.len(),
            v.entity,
            if v.online { ", online" } else { "" }
        );
    }
    for s in repo.services.values() {
        let _ = writeln!(out, "{:<10} {:<28} {} features", "service", s.name, s.features.len());
    }
    for o in repo.offers.values() {
        let _ = writeln!(out, "{:<10} {:<28} categories {}", "offer", o.name, o.categories.join(", "));
    }
    out
}

fn describe(repo: &Repo, name: &str) -> Result<String> {
    let mut out = String::new();
    if let Some(v) = repo.views.get(name) {
        let _ = writeln!(out, "view {}  ({})", v.name, v.origin);
        let _ = writeln!(out, "  entity     {}", v.entity);
        let _ = writeln!(out, "  source     {}", v.source);
        if let Some(k) = &v.key_field {
            let _ = writeln!(out, "  key field  {k}");
        }
        let ttl = v.ttl.map_or("none".to_string(), format_duration);
        let _ = writeln!(out, "  ttl        {ttl}");
        let _ = writeln!(out, "  online     {}", v.online);
        let _ = writeln!(out, "  owner      {}", v.owner);
        if !v.tags.is_empty() {
            let tags: Vec<String> = v.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "  tags       {}", tags.join(", "));
        }
        if v.is_streaming() {
            let _ = writeln!(out, "  lateness   {}", format_duration(v.allowed_lateness));
        }
        if !v.description.is_empty() {
            let _ = writeln!(out, "  {}", v.description);
        }
        let _ = writeln!(out, "\n  {:<28} {:<10} COMPUTED AS", "FEATURE", "TYPE");
        for f in &v.features {
            let how = match &f.kind {
                FeatureKind::Column => "column".to_string(),
                FeatureKind::DaysSince { of } => format!("days since {of}"),
                FeatureKind::Aggregation(a) => {
                    let mut s = a.function.as_str().to_string();
                    if let Some(field) = &a.field {
                        s.push_str(&format!("({field})"));
                    }
                    if !a.event_types.is_empty() {
                        s.push_str(&format!(" of {}", a.event_types.join("|")));
                    }
                    match a.window {
                        Some(w) if w.hop == w.size => {
                            s.push_str(&format!(" per tumbling {}", format_duration(w.size)));
                        }
                        Some(w) => {
                            s.push_str(&format!(" over {} (hop {})", format_duration(w.size), format_duration(w.hop)))
                        }
                        None => s.push_str(" over all history"),
                    }
                    s
                }
            };
            let _ = writeln!(out, "  {:<28} {:<10} {how}", f.name, f.value_type.as_str());
        }
        return Ok(out);
    }
    if let Some(s) = repo.services.get(name) {
        let _ = writeln!(out, "service {}  ({})", s.name, s.origin);
        let _ = writeln!(out, "  owner  {}", s.owner);
        if !s.description.is_empty() {
            let _ = writeln!(out, "  {}", s.description);
        }
        out.push('\n');
        for (view, feature) in &s.features {
            let _ = writeln!(out, "  {view}:{feature}");
        }
        return Ok(out);
    }
    bail!("no feature view or service `{name}` is registered (see `livora features list`)")
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_grouped_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345), "12,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
