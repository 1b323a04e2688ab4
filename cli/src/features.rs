//! `livora apply` and `livora features …`: feature definitions as code, and what is registered.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use livora_common::ClientId;
use livora_feature_store::definitions::{FeatureKind, Repo, SourceKind, format_duration};
use livora_feature_store::{Error, Registry};

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
    /// Lists the registered entities, views and services of a client.
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
}

async fn open(config: &Config) -> Result<Registry> {
    std::fs::create_dir_all(config.data_dir())
        .with_context(|| format!("cannot create the data directory {}", config.data_dir().display()))?;
    Registry::connect(&config.registry_url()).await.context("cannot open the feature registry")
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
    let registry = open(config).await?;
    let (client, current) = match &command {
        FeaturesCommand::History { client } => {
            let mut out = format!("{:<8} {:<26} DIGEST\n", "VERSION", "APPLIED");
            for (version, at, digest) in registry.history(client).await? {
                let _ = writeln!(out, "{version:<8} {at:<26} {}", &digest[..12.min(digest.len())]);
            }
            return crate::print(&out);
        }
        FeaturesCommand::List { client } | FeaturesCommand::Describe { client, .. } => {
            (client, registry.current(client).await?)
        }
    };
    let Some(current) = current else {
        bail!("client `{client}` has no feature definitions; run `livora apply <repo> --client {client}`")
    };
    match command {
        FeaturesCommand::List { .. } => crate::print(&list(&current.repo, current.version)),
        FeaturesCommand::Describe { name, .. } => crate::print(&describe(&current.repo, &name)?),
        FeaturesCommand::History { .. } => Ok(()),
    }
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
