//! `livora train`: trains a zoo model on the feature store and registers a new version.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use livora_common::ClientId;
use livora_ingest::lake::{LakeReader, store};
use livora_models::{Algorithm, FitParams, ModelRegistry, zoo};
use livora_training::{Purchases, TrainRequest};

use crate::config::Config;
use crate::models::print_evaluation;

/// `livora train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The zoo model: `churn`, `lead_scoring` or `next_best_offer`.
    pub model: String,
    /// The client whose data trains it.
    #[arg(long)]
    pub client: ClientId,
    /// First spine time (RFC 3339).
    #[arg(long)]
    pub start: DateTime<Utc>,
    /// Last spine time (RFC 3339, included). Labels need events up to this time plus the
    /// model's horizon (30 days for churn, 14 for lead scoring).
    #[arg(long)]
    pub end: DateTime<Utc>,
    /// Spine cadence: each entity is sampled this often.
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub cadence: Duration,
    /// The algorithm: classifiers `prior`, `logistic`, `gbdt` (default for churn and lead
    /// scoring); rankers `popularity`, `mlp` (default for next-best offer).
    #[arg(long)]
    pub algorithm: Option<Algorithm>,
    /// Seed of every random choice: the same data and seed train the same model (default: the
    /// model's, 42).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Share of the spine's times, the latest, that evaluate.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Gradient-boosted trees: the most trees, early stopping may use fewer (default: the
    /// model's, 300).
    #[arg(long)]
    pub trees: Option<usize>,
    /// Gradient-boosted trees: the learning rate (default: the model's, 0.1); MLP: AdamW's step
    /// (default 0.01).
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// Gradient-boosted trees: the depth of each tree (default: the model's, 2 for churn and
    /// lead scoring).
    #[arg(long)]
    pub max_depth: Option<usize>,
    /// Logistic regression: L2 penalty, scikit-learn's 1/C (default: the model's, 1.0); MLP:
    /// AdamW's weight decay (default 0.1).
    #[arg(long)]
    pub l2: Option<f64>,
    /// MLP: units of the hidden layer (default: the model's, 32).
    #[arg(long)]
    pub hidden_units: Option<usize>,
    /// MLP: the most epochs; the fit keeps the epoch with the lowest holdout loss (default: the
    /// model's, 200).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Point this alias (`production`, `staging`, `shadow`) at the new version.
    #[arg(long)]
    pub promote: Option<String>,
}

pub async fn run(config: &Config, args: TrainArgs) -> Result<()> {
    let started = Instant::now();
    let spec = zoo::spec(&args.model)?;
    let (_, current) = crate::stores::definitions(config, &args.client).await?;
    let models = ModelRegistry::connect(&config.registry_url(), config.models_root())
        .await
        .context("cannot open the model registry")?;

    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));

    bar.set_message("reading purchases from the lake".to_owned());
    let lake = LakeReader::new(store::open(&config.lake_root(), &config.lake)?);
    let purchases = if spec.label.is_ranking() {
        let events = lake.user_event_props(args.client.as_str(), zoo::PURCHASE).await?;
        Purchases::with_categories(events.events, events.latest)
    } else {
        let times = lake.user_event_times(args.client.as_str(), zoo::PURCHASE).await?;
        Purchases { times: times.times, latest: times.latest, ..Purchases::default() }
    };

    let request = TrainRequest {
        client: args.client.clone(),
        model: spec,
        start: args.start,
        end: args.end,
        cadence: args.cadence,
        algorithm: args.algorithm,
        params: FitParams {
            seed: args.seed.unwrap_or(spec.params.seed),
            l2: args.l2.unwrap_or(spec.params.l2),
            trees: args.trees.unwrap_or(spec.params.trees),
            learning_rate: args.learning_rate.unwrap_or(spec.params.learning_rate),
            max_depth: args.max_depth.unwrap_or(spec.params.max_depth),
            hidden_units: args.hidden_units.unwrap_or(spec.params.hidden_units),
            epochs: args.epochs.unwrap_or(spec.params.epochs),
            ..spec.params
        },
        test_fraction: args.test_fraction,
    };
    let version = models.next_version(&args.client, spec.name).await?;
    let root = config.offline_root();
    let store = config.offline_store()?;
    let (artifact, prepared) = {
        let (request, bar, repo) = (request.clone(), bar.clone(), current.repo.clone());
        tokio::task::spawn_blocking(move || -> Result<_> {
            let prepared =
                livora_training::prepare(&request, &repo, current.version, store.as_ref(), &root, &purchases, &bar)?;
            let artifact = livora_training::fit(&request, &prepared, version, &bar)?;
            Ok((artifact, prepared))
        })
        .await??
    };
    bar.set_message("registering".to_owned());
    let registered = models.register(&args.client, &artifact).await?;
    bar.finish_and_clear();

    let m = &artifact.manifest;
    let d = prepared.dropped;
    let Some(t) = &m.training else { bail!("the job recorded no training summary") };
    println!(
        "trained {} v{} ({}) for client {} in {:.1?}",
        m.model,
        m.version,
        m.algorithm,
        args.client,
        started.elapsed()
    );
    println!(
        "  rows: {} train, {} evaluate (split at {}); {} outside the population, {} with an open label window",
        t.train_rows,
        t.test_rows,
        t.split_at.format("%Y-%m-%d %H:%M"),
        d.not_in_population,
        d.label_not_observed
    );
    println!(
        "  features: {} read, {} skipped; artifact {}",
        m.features.len(),
        m.encoder.skipped.len(),
        registered.path.display()
    );
    print_evaluation(m);
    if let Some(alias) = args.promote {
        let before = models.promote(&args.client, spec.name, m.version, &alias).await?;
        println!("{alias}: v{} (was {})", m.version, before.map_or("none".into(), |v| format!("v{v}")));
    }
    Ok(())
}
