//! `livora score`: batch-scores every known entity with a model and refreshes its prediction
//! view (online) and prediction log (offline), as the inference service does for each request.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use livora_common::ClientId;
use livora_feature_store::dataset;
use livora_feature_store::serving::FeatureServer;
use livora_inference::{MissingPolicy, PredictionSink, Predictor, RowStatus, SinkConfig};
use livora_models::{ModelRegistry, zoo};
use polars::prelude::{DataType, UniqueKeepStrategy, col};

use crate::config::Config;

/// `livora score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// `churn` (its production version), `churn@staging` or `churn@3`.
    pub model: String,
    /// The client.
    #[arg(long)]
    pub client: ClientId,
    /// Score every entity seen in the history of the model's entity view.
    #[arg(long, required = true)]
    pub all: bool,
}

pub async fn run(config: &Config, args: ScoreArgs) -> Result<()> {
    let started = Instant::now();
    let (registry, current) = crate::stores::definitions(config, &args.client).await?;
    let models = ModelRegistry::connect(&config.registry_url(), config.models_root())
        .await
        .context("cannot open the model registry")?;
    let version = models.resolve(&args.client, &args.model).await?;
    let m = &version.manifest;
    // The entities: those of the zoo model's spine view, else of the first feature's view.
    let view_name = zoo::spec(&m.model)
        .map(|s| s.spine_view.to_owned())
        .unwrap_or_else(|_| m.features.first().map(|f| f.view.clone()).unwrap_or_default());
    let Some(view) = current.repo.views.get(&view_name) else {
        bail!(
            "model `{}` scores the entities of view `{view_name}`, which client `{}` has not registered",
            m.model,
            args.client
        )
    };
    let root = config.offline_root();
    let store = config.offline_store()?;
    let keys: Vec<String> = dataset::history(&current.repo, store.as_ref(), &root, &args.client, view)?
        .select([col(m.join_key.as_str()).cast(DataType::String)])
        .unique_stable(None, UniqueKeepStrategy::First)
        .drop_nulls(None)
        .collect()
        .map_err(|e| anyhow::anyhow!("listing the entities of view `{view_name}`: {e}"))?
        .column(&m.join_key)?
        .str()?
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();

    let online = crate::stores::online_store(config).await?;
    let server = Arc::new(FeatureServer::new(registry, online.clone(), &config.features.serving));
    let (sink, writer) = PredictionSink::start(online, root, SinkConfig::default());
    let batch = config.features.serving.max_entity_rows;
    let predictor =
        Predictor::new(models, server, config.inference.onnx.clone(), config.inference.alias_refresh, batch)
            .with_sagemaker(config.inference.sagemaker.clone())
            .with_sink(sink.clone());
    let policy: MissingPolicy = config.inference.missing_policy.into();

    let bar = ProgressBar::new(keys.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entities {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("scoring with {} v{}", m.model, m.version));
    let (mut scored, mut imputed, mut refused) = (0usize, 0usize, 0usize);
    // Entities the alias's canary scored, when it has one.
    let mut by_canary = std::collections::BTreeMap::<i64, usize>::new();
    for chunk in keys.chunks(batch.max(1)) {
        let p = predictor.predict(&args.client, &args.model, chunk, 0, policy).await?;
        for row in &p.rows {
            if row.version != p.version {
                *by_canary.entry(row.version).or_default() += 1;
            }
            match row.status {
                RowStatus::Scored => scored += 1,
                RowStatus::ScoredWithImputation => imputed += 1,
                RowStatus::Refused => refused += 1,
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.set_message("writing the prediction view and log".to_owned());
    sink.flush().await?;
    drop(predictor);
    drop(sink);
    writer.await.context("the prediction writer panicked")?;
    bar.finish_and_clear();
    println!(
        "scored {} entities of view `{view_name}` with {} v{} in {:.1?}: {scored} with every feature, {imputed} \
         with imputed features, {refused} refused",
        keys.len(),
        m.model,
        m.version,
        started.elapsed()
    );
    for (version, n) in by_canary {
        println!("{n} of them were scored by v{version}, the canary of the alias");
    }
    println!(
        "online: view `{}` ({}, {}); log: {}",
        zoo::prediction_view(&m.model),
        zoo::probability_feature(&m.model),
        zoo::version_feature(&m.model),
        config.offline_root().join(zoo::prediction_log_path(&m.model)).display()
    );
    Ok(())
}
