//! `livora models`: the registered model versions, their metrics, and the aliases (and their
//! canaries) that serve.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use livora_common::ClientId;
use livora_feature_store::dataset::{self, Selection};
use livora_feature_store::value::ValueType;
use livora_models::{
    Algorithm, Artifact, ClassifierMetrics, Encoder, FeatureRef, Manifest, ModelRegistry, ModelVersion, RankingMetrics,
    Weights, zoo,
};

use crate::config::Config;

/// `livora models …`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Lists the versions of every model (or one), newest first, with their aliases and canaries.
    List {
        /// The client.
        #[arg(long)]
        client: ClientId,
        /// Only this model.
        model: Option<String>,
    },
    /// Shows a version: what it reads, how it was trained, its metrics and calibration.
    Show {
        /// The client.
        #[arg(long)]
        client: ClientId,
        /// `model` (its production version), `model@alias` or `model@<version>`.
        reference: String,
    },
    /// Compares versions on their evaluation metrics, side by side.
    Compare {
        /// The client.
        #[arg(long)]
        client: ClientId,
        /// Two or more references (`churn@3 churn@production`).
        #[arg(num_args = 2..)]
        references: Vec<String>,
    },
    /// Points an alias at a version.
    Promote {
        /// The client.
        #[arg(long)]
        client: ClientId,
        /// The model.
        model: String,
        /// The version.
        version: i64,
        /// `production`, `staging` or `shadow`.
        #[arg(long, default_value = "production")]
        alias: String,
    },
    /// Registers a model trained elsewhere (scikit-learn via skl2onnx, LightGBM or XGBoost via
    /// onnxmltools) as a new version. The model reads one float matrix whose columns are the
    /// features, in the order given, as the feature store serves them (missing = NaN).
    Import(ImportArgs),
    /// Runs a canary beside an alias: another version of the model, reading the same features,
    /// scores a share of the alias's entities (each entity keeps its version while the weight
    /// stays; raising the weight only adds entities). `--clear` ends it; promoting the canary's
    /// version to the alias ends it too.
    Canary {
        /// The client.
        #[arg(long)]
        client: ClientId,
        /// The model.
        model: String,
        /// The canary version.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        version: Option<i64>,
        /// `production`, `staging` or `shadow`.
        #[arg(long, default_value = "production")]
        alias: String,
        /// The share of the alias's entities the canary scores, in percent (1 to 100).
        #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
        weight: Option<u32>,
        /// Ends the alias's canary: the version the alias points at scores every entity.
        #[arg(long)]
        clear: bool,
    },
    /// Moves an alias back to the version it pointed at before its last promotion.
    Rollback {
        /// The client.
        #[arg(long)]
        client: ClientId,
        /// The model.
        model: String,
        /// `production`, `staging` or `shadow`.
        #[arg(long, default_value = "production")]
        alias: String,
    },
}

/// `livora models import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The model name (a zoo model such as `churn`, to compete with its trained versions, or a
    /// name of your own: lowercase letters, digits and `_`).
    pub model: String,
    /// The client.
    #[arg(long)]
    pub client: ClientId,
    /// The ONNX file (exported with `zipmap=False` for a classifier).
    #[arg(long, required_unless_present = "sagemaker_endpoint", conflicts_with = "sagemaker_endpoint")]
    pub onnx: Option<PathBuf>,
    /// Or: the SageMaker endpoint that serves the model. Livora fetches and encodes the features
    /// (raw numbers, in order) and calls it (`[inference.sagemaker]` configures the client).
    #[arg(long)]
    pub sagemaker_endpoint: Option<String>,
    /// The SageMaker request body: `text/csv` or `application/json`.
    #[arg(long, default_value = "text/csv", requires = "sagemaker_endpoint")]
    pub content_type: String,
    /// The model's input columns, in order, as `view:feature` (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "service", required_unless_present = "service")]
    pub features: Vec<String>,
    /// A feature service whose features, in its order, are the model's input columns.
    #[arg(long)]
    pub service: Option<String>,
    /// What the model predicts (shown by `livora models show`).
    #[arg(long)]
    pub label: Option<String>,
}

pub async fn run(config: &Config, command: ModelsCommand) -> Result<()> {
    let registry = ModelRegistry::connect(&config.registry_url(), config.models_root())
        .await
        .context("cannot open the model registry")?;
    match command {
        ModelsCommand::List { client, model } => {
            let versions = registry.list(&client, model.as_deref()).await?;
            if versions.is_empty() {
                println!("client `{client}` has no models; train one with `livora train <model> --client {client} …`");
                return Ok(());
            }
            println!(
                "{:<16} {:>4}  {:<10} {:>8} {:>8}  {:<17} aliases",
                "model", "ver", "algorithm", "metric", "base", "created"
            );
            for v in &versions {
                let m = &v.manifest;
                let (model, baseline) = primary_metric(m);
                let cell = |x: Option<f64>| x.map_or("-".to_owned(), |a| format!("{a:.4}"));
                println!(
                    "{:<16} {:>4}  {:<10} {:>8} {:>8}  {:<17} {}",
                    v.model,
                    v.version,
                    m.algorithm.name(),
                    cell(model),
                    cell(baseline),
                    m.created_at.format("%Y-%m-%d %H:%M"),
                    alias_cell(v)
                );
            }
            println!("metric: ROC AUC of classifiers, NDCG@3 of rankers; base: the baseline's on the same rows");
            for c in registry.canaries(&client).await? {
                if model.as_deref().is_none_or(|m| m == c.model) {
                    println!("canary: {} {c}", c.model);
                }
            }
        }
        ModelsCommand::Show { client, reference } => {
            let v = registry.resolve(&client, &reference).await?;
            let m = &v.manifest;
            println!("{} v{} ({}), client {}", m.model, m.version, m.algorithm, m.client_id);
            println!("  aliases:   {}", if v.aliases.is_empty() { "none".into() } else { v.aliases.join(", ") });
            for c in &v.canaries {
                println!("  canary:    {c}");
            }
            println!("  label:     {}", m.label);
            println!(
                "  features:  service `{}` at feature registry v{}; {} read:",
                m.feature_service,
                m.feature_registry_version,
                m.features.len()
            );
            for f in &m.encoder.features {
                println!("    {:<44} missing {:>5.1}%", f.name, 100.0 * f.missing_rate);
            }
            for s in &m.encoder.skipped {
                println!("    {:<44} skipped: {}", s.name, s.reason);
            }
            println!("  artifact:  {}", v.path.display());
            let Some(t) = &m.training else {
                println!("  imported: not trained by Livora, no evaluation recorded");
                return Ok(());
            };
            let share = if m.algorithm.is_ranker() { "of acceptances to the top offer" } else { "positive" };
            println!(
                "  training:  spine {} .. {} every {}s, split at {}; {} train / {} evaluate rows, {:.1}% {share}",
                t.start.format("%Y-%m-%d"),
                t.end.format("%Y-%m-%d"),
                t.cadence_seconds,
                t.split_at.format("%Y-%m-%d"),
                t.train_rows,
                t.test_rows,
                100.0 * t.train_positive_rate
            );
            if !m.offers.is_empty() {
                println!("  offers:    {}", m.offers.join(", "));
            }
            println!(
                "  seed {}, dataset {}, code {}, {:.1}s",
                t.params.seed,
                &t.dataset_fingerprint[..16.min(t.dataset_fingerprint.len())],
                m.code_version,
                t.seconds
            );
            print_evaluation(m);
            let Some(e) = &m.evaluation else { return Ok(()) };
            println!("  calibration (evaluation rows):");
            println!("    {:<11} {:>7} {:>10} {:>9}", "predicted", "rows", "mean pred", "observed");
            for b in &e.model.calibration {
                if b.rows > 0 {
                    println!(
                        "    {:.1} – {:.1}  {:>7} {:>10.3} {:>9.3}",
                        b.lower, b.upper, b.rows, b.mean_predicted, b.observed_rate
                    );
                }
            }
        }
        ModelsCommand::Compare { client, references } => {
            let mut columns = Vec::new();
            for r in &references {
                let v = registry.resolve(&client, r).await?;
                columns.push((format!("{}@{}", v.model, v.version), v.manifest));
            }
            print!("{:<12}", "");
            for (name, _) in &columns {
                print!(" {name:>16}");
            }
            println!();
            let metric = |m: &Manifest, f: fn(&ClassifierMetrics) -> String| {
                m.evaluation.as_ref().map_or("-".to_owned(), |e| f(&e.model))
            };
            // A row: its label, and how a version's cell is written.
            type Row = (&'static str, Box<dyn Fn(&Manifest) -> String>);
            let ranking = |m: &Manifest, k: usize, f: fn(&RankingMetrics) -> f64| {
                m.ranking
                    .as_ref()
                    .and_then(|r| r.model.iter().find(|x| x.k == k))
                    .map_or("-".to_owned(), |x| format!("{:.4}", f(x)))
            };
            let rows: [Row; 11] = [
                ("algorithm", Box::new(|m| m.algorithm.name().to_owned())),
                ("ndcg@3", Box::new(move |m| ranking(m, 3, |x| x.ndcg_at_k))),
                ("precision@1", Box::new(move |m| ranking(m, 1, |x| x.precision_at_k))),
                ("recall@3", Box::new(move |m| ranking(m, 3, |x| x.recall_at_k))),
                ("roc auc", Box::new(move |m| metric(m, |x| format!("{:.4}", x.roc_auc)))),
                ("pr auc", Box::new(move |m| metric(m, |x| format!("{:.4}", x.pr_auc)))),
                ("log loss", Box::new(move |m| metric(m, |x| format!("{:.4}", x.log_loss)))),
                ("brier", Box::new(move |m| metric(m, |x| format!("{:.4}", x.brier)))),
                ("eval rows", Box::new(|m| m.training.as_ref().map_or("-".into(), |t| t.test_rows.to_string()))),
                (
                    "split at",
                    Box::new(|m| m.training.as_ref().map_or("-".into(), |t| t.split_at.format("%Y-%m-%d").to_string())),
                ),
                ("dataset", Box::new(|m| fingerprint(m).chars().take(12).collect())),
            ];
            for (label, value) in rows {
                let cells: Vec<String> = columns.iter().map(|(_, m)| value(m)).collect();
                // Classifier metrics of rankers and ranking metrics of classifiers: no row at all.
                if cells.iter().all(|c| c == "-") {
                    continue;
                }
                print!("{label:<12}");
                for cell in cells {
                    print!(" {cell:>16}");
                }
                println!();
            }
            if columns.windows(2).any(|w| fingerprint(&w[0].1) != fingerprint(&w[1].1)) {
                println!("note: the versions were evaluated on different data; compare each with its baseline");
            }
        }
        ModelsCommand::Promote { client, model, version, alias } => {
            let ending = registry.canary(&client, &model, &alias).await?.filter(|c| c.version == version);
            let before = registry.promote(&client, &model, version, &alias).await?;
            println!("{model} {alias}: v{version} (was {})", before.map_or("none".into(), |v| format!("v{v}")));
            if let Some(c) = ending {
                println!("canary v{} at {}% ended: v{version} scores every entity", c.version, c.weight);
            }
        }
        ModelsCommand::Canary { client, model, version, alias, weight, clear } => {
            if clear {
                match registry.clear_canary(&client, &model, &alias).await? {
                    Some(c) => println!(
                        "{model} {alias} → v{} (canary v{} at {}% cleared: v{} scores every entity)",
                        c.primary, c.version, c.weight, c.primary
                    ),
                    None => println!("{model} {alias}: no canary to clear"),
                }
                return Ok(());
            }
            // clap requires both without --clear.
            let (Some(version), Some(weight)) = (version, weight) else {
                bail!("give the canary VERSION and --weight PERCENT, or --clear")
            };
            let before = registry.canary(&client, &model, &alias).await?;
            let canary = registry.set_canary(&client, &model, &alias, version, weight).await?;
            println!(
                "{model} {canary}; before: {}",
                before.map_or("no canary".into(), |b| format!("canary v{} at {}%", b.version, b.weight))
            );
        }
        ModelsCommand::Import(args) => import(config, &registry, args).await?,
        ModelsCommand::Rollback { client, model, alias } => {
            let (from, to) = registry.rollback(&client, &model, &alias).await?;
            println!("{model} {alias}: v{to} (was v{from})");
        }
    }
    Ok(())
}

/// The aliases column of `models list`: the aliases pointing at the version, and the canaries
/// it is (`production canary 10%`).
fn alias_cell(v: &ModelVersion) -> String {
    let canaries =
        v.canaries.iter().filter(|c| c.version == v.version).map(|c| format!("{} canary {}%", c.alias, c.weight));
    v.aliases.iter().cloned().chain(canaries).collect::<Vec<_>>().join(",")
}

fn fingerprint(m: &Manifest) -> &str {
    m.training.as_ref().map_or("-", |t| t.dataset_fingerprint.as_str())
}

/// The model's and its baseline's metrics, side by side.
/// A version's headline metric and its baseline's: ROC AUC for a classifier, NDCG@3 for a
/// ranker; `None` when it was not evaluated (imported).
fn primary_metric(m: &Manifest) -> (Option<f64>, Option<f64>) {
    if let Some(e) = &m.evaluation {
        return (Some(e.model.roc_auc), Some(e.baseline.roc_auc));
    }
    let at3 = |metrics: &[RankingMetrics]| metrics.iter().find(|x| x.k == 3).map(|x| x.ndcg_at_k);
    m.ranking.as_ref().map_or((None, None), |r| (at3(&r.model), at3(&r.baseline)))
}

pub fn print_evaluation(m: &Manifest) {
    if let Some(r) = &m.ranking {
        let rows = r.model.first().map_or(0, |x| x.rows);
        println!("  evaluation on {rows} rows ({} offers):", m.offers.len());
        println!("    {:<22} {:>4} {:>11} {:>9} {:>8}", "", "k", "precision", "recall", "ndcg");
        for (name, metrics) in
            [(m.algorithm.name().to_owned(), &r.model), (format!("{} (baseline)", r.baseline_algorithm), &r.baseline)]
        {
            for x in metrics {
                println!(
                    "    {:<22} {:>4} {:>11.4} {:>9.4} {:>8.4}",
                    name, x.k, x.precision_at_k, x.recall_at_k, x.ndcg_at_k
                );
            }
        }
        return;
    }
    let Some(e) = &m.evaluation else { return };
    let row = |name: &str, x: &ClassifierMetrics| {
        println!("    {:<10} {:>8.4} {:>8.4} {:>9.4} {:>8.4}", name, x.roc_auc, x.pr_auc, x.log_loss, x.brier);
    };
    println!("  evaluation on {} rows ({} positive):", e.model.rows, e.model.positives);
    println!("    {:<10} {:>8} {:>8} {:>9} {:>8}", "", "roc auc", "pr auc", "log loss", "brier");
    row(m.algorithm.name(), &e.model);
    row(&format!("{} (baseline)", e.baseline_algorithm), &e.baseline);
}

/// `livora models import`: checks the ONNX graph against the features, then registers it.
async fn import(config: &Config, registry: &ModelRegistry, args: ImportArgs) -> Result<()> {
    let name_ok =
        !args.model.is_empty() && args.model.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        bail!("model name `{}`: use lowercase letters, digits and `_`", args.model);
    }
    let (_, current) = crate::stores::definitions(config, &args.client).await?;
    let selection = match &args.service {
        Some(s) => Selection::Service(s.clone()),
        None => Selection::Refs(args.features.clone()),
    };
    let refs = dataset::resolve(&current.repo, &selection)?;
    let mut entities: Vec<&str> = refs.iter().map(|(view, _)| current.repo.views[view].entity.as_str()).collect();
    entities.sort_unstable();
    entities.dedup();
    let [entity] = entities[..] else {
        bail!("the features belong to entities {entities:?}; a model scores one entity: pick features of one")
    };
    let Some(join_key) = current.repo.entities.get(entity).and_then(|e| e.join_keys.first()).cloned() else {
        bail!("entity `{entity}` has no join key")
    };
    for (view, feature) in &refs {
        let ty = current.repo.views[view].feature(feature).map(|f| f.value_type);
        if !matches!(ty, Some(ValueType::Int64 | ValueType::Float64 | ValueType::Bool)) {
            bail!(
                "feature `{view}:{feature}` is {}: an imported model reads numbers (booleans as 0/1); encode it in \
                 the model or leave it out with --features",
                ty.map_or("unknown", ValueType::as_str)
            );
        }
    }
    // What scores the rows: ONNX bytes checked against the features, or an endpoint.
    let (algorithm, weights, producer, summary) = match (&args.onnx, &args.sagemaker_endpoint) {
        (Some(path), _) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let model = livora_inference::OnnxModel::from_bytes(bytes.clone(), &config.inference.onnx)?;
            if let Some(n) = model.n_features()
                && n != refs.len()
            {
                bail!("the ONNX model reads {n} columns, but {} features were given", refs.len());
            }
            let meta = model.metadata();
            let summary = format!("onnx, input `{}`, output `{}`", meta.input_name, meta.output_name);
            let producer = meta.producer_name.clone().unwrap_or_else(|| "unknown".into());
            (Algorithm::Onnx, Weights::Onnx(bytes), producer, summary)
        }
        (None, Some(name)) => {
            let content_type = args.content_type.as_str();
            if ![livora_inference::runtime::sagemaker::CSV, livora_inference::runtime::sagemaker::JSON]
                .contains(&content_type)
            {
                bail!("--content-type `{content_type}`: use text/csv or application/json");
            }
            if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                bail!("--sagemaker-endpoint `{name}`: an endpoint name is 1 to 63 letters, digits and `-`");
            }
            let endpoint = livora_models::Endpoint {
                name: name.clone(),
                content_type: content_type.to_owned(),
                target_variant: None,
            };
            let summary = format!("sagemaker endpoint `{name}`, {content_type}");
            (Algorithm::SageMaker, Weights::Endpoint(endpoint), "sagemaker".to_owned(), summary)
        }
        (None, None) => bail!("give --onnx FILE or --sagemaker-endpoint NAME"),
    };
    let features: Vec<FeatureRef> = refs.into_iter().map(|(view, feature)| FeatureRef { view, feature }).collect();
    let encoder = Encoder::raw(features.iter().map(FeatureRef::column));
    let label = args
        .label
        .unwrap_or_else(|| zoo::spec(&args.model).map_or_else(|_| "imported".to_owned(), |s| s.label.describe()));
    let version = registry.next_version(&args.client, &args.model).await?;
    let artifact = Artifact {
        manifest: Manifest {
            format: livora_models::artifact::FORMAT,
            model: args.model.clone(),
            version,
            client_id: args.client.as_str().to_owned(),
            algorithm,
            feature_service: args.service.clone().unwrap_or_default(),
            feature_registry_version: current.version,
            entity: entity.to_owned(),
            join_key,
            features,
            encoder,
            label,
            training: None,
            evaluation: None,
            offers: Vec::new(),
            ranking: None,
            code_version: format!("imported; producer {producer}"),
            created_at: Utc::now(),
        },
        weights,
    };
    let registered = registry.register(&args.client, &artifact).await?;
    println!(
        "imported {} v{} ({summary}; {} columns) for client {}; artifact {}",
        args.model,
        version,
        artifact.manifest.features.len(),
        args.client,
        registered.path.display()
    );
    Ok(())
}
