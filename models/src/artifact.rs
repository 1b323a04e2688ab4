//! Model artifacts: a directory per model version holding `manifest.json` (what the model is,
//! what it reads, how it was trained and how it scored) and the weights: `weights.json` (the
//! fitted parameters of a native model) or `model.onnx` (a model trained elsewhere). Inference
//! loads a version from these two files alone.
//!
//! A directory appears whole: it is written under a temporary name, synced and renamed.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::algorithms::{Algorithm, Classifier, FitParams, Ranker, ranked};
use crate::encoding::{Encoder, Input};
use crate::error::{Error, Result};
use crate::metrics::{ClassifierMetrics, RankingMetrics};

/// The manifest format this code writes and reads.
pub const FORMAT: u32 = 1;

const MANIFEST: &str = "manifest.json";
const WEIGHTS: &str = "weights.json";
const ONNX: &str = "model.onnx";
const ENDPOINT: &str = "endpoint.json";

/// A feature the model reads, as the feature store names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureRef {
    /// The feature view.
    pub view: String,
    /// The feature.
    pub feature: String,
}

impl FeatureRef {
    /// `view__feature`, the column name in datasets and the encoder.
    pub fn column(&self) -> String {
        format!("{}__{}", self.view, self.feature)
    }
}

/// How a version was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// First spine time.
    pub start: DateTime<Utc>,
    /// Last spine time.
    pub end: DateTime<Utc>,
    /// Spine cadence, seconds.
    pub cadence_seconds: u64,
    /// Rows before this time train, rows from it on evaluate.
    pub split_at: DateTime<Utc>,
    /// Training rows.
    pub train_rows: usize,
    /// Evaluation rows.
    pub test_rows: usize,
    /// Positive share of the training rows.
    pub train_positive_rate: f64,
    /// The fit's parameters, seed included.
    pub params: FitParams,
    /// SHA-256 of the encoded training and evaluation matrices and labels, hex: equal
    /// fingerprints mean equal data.
    pub dataset_fingerprint: String,
    /// Wall time of the whole job, seconds.
    pub seconds: f64,
}

/// A model's and its baseline's metrics on the same evaluation rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The model's.
    pub model: ClassifierMetrics,
    /// The baseline algorithm.
    pub baseline_algorithm: Algorithm,
    /// The baseline's.
    pub baseline: ClassifierMetrics,
}

/// A ranker's and its baseline's ranking metrics on the same evaluation rows, at each cut-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingEvaluation {
    /// The model's, one per cut-off (k = 1, 3).
    pub model: Vec<RankingMetrics>,
    /// The baseline algorithm.
    pub baseline_algorithm: Algorithm,
    /// The baseline's, at the same cut-offs.
    pub baseline: Vec<RankingMetrics>,
}

/// What a model version is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The zoo model (`churn`).
    pub model: String,
    /// Its version, 1, 2, … per client and model.
    pub version: i64,
    /// The client it belongs to.
    pub client_id: String,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The feature service it reads.
    pub feature_service: String,
    /// The client's feature registry version the dataset was built with.
    pub feature_registry_version: i64,
    /// The entity the model scores (`user`).
    pub entity: String,
    /// The entity join key the model scores by (`user_id`): every feature it reads belongs to
    /// that entity.
    pub join_key: String,
    /// The features it reads, in encoder order.
    pub features: Vec<FeatureRef>,
    /// How features become model columns.
    pub encoder: Encoder,
    /// The label, in words.
    pub label: String,
    /// How it was trained (`None` for an imported model).
    pub training: Option<Training>,
    /// How it scored (`None` for an imported model and for a ranker).
    pub evaluation: Option<Evaluation>,
    /// A ranker: the offers it ranks, in output order (empty for a classifier).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<String>,
    /// A ranker: how it ranked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking: Option<RankingEvaluation>,
    /// The Livora version that trained it.
    pub code_version: String,
    /// When it was trained.
    pub created_at: DateTime<Utc>,
}

impl Manifest {
    /// Why `other` cannot score the features fetched online for this version, or `None` when
    /// it can: the same join key and the same [`Manifest::features`], names and order. A
    /// canary must pass it against the version its alias points at, because both are scored
    /// from one online read.
    pub fn input_difference(&self, other: &Manifest) -> Option<String> {
        let (a, b) = (self, other);
        if a.join_key != b.join_key {
            return Some(format!(
                "v{} scores entities by `{}`, v{} by `{}`",
                b.version, b.join_key, a.version, a.join_key
            ));
        }
        let first_difference = a.features.iter().zip(&b.features).position(|(x, y)| x != y);
        let i = first_difference
            .or_else(|| (a.features.len() != b.features.len()).then(|| a.features.len().min(b.features.len())))?;
        let name =
            |f: Option<&FeatureRef>| f.map_or_else(|| "absent".to_owned(), |f| format!("`{}:{}`", f.view, f.feature));
        Some(format!(
            "v{} reads {} features and v{} reads {}: feature {} is {} in v{} but {} in v{}",
            b.version,
            b.features.len(),
            a.version,
            a.features.len(),
            i + 1,
            name(b.features.get(i)),
            b.version,
            name(a.features.get(i)),
            a.version
        ))
    }
}

/// A score and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Probability of the positive class.
    pub probability: f64,
    /// The features that moved the log-odds most, largest magnitude first: (feature column,
    /// contribution). Empty for the prior.
    pub contributions: Vec<(String, f64)>,
}

/// An offer and the probability that the entity accepts it.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedOffer {
    /// The offer's name.
    pub offer: String,
    /// The probability (over the offers) that it is the one accepted.
    pub probability: f64,
}

/// A SageMaker endpoint that scores a model's rows: Livora sends the encoded rows (the
/// features in [`Manifest::features`] order) and reads one probability per row back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The endpoint's name.
    pub name: String,
    /// The request body's type: `text/csv` (one row a line, a missing value as an empty field,
    /// as SageMaker's built-in XGBoost and scikit-learn containers read) or `application/json`
    /// (`{"instances": [[…], …]}`, missing as null).
    pub content_type: String,
    /// A production variant to call instead of the endpoint's traffic split, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_variant: Option<String>,
}

/// The weights of a model version.
#[derive(Debug, Clone)]
pub enum Weights {
    /// A classifier Livora fitted.
    Native(Classifier),
    /// A ranker Livora fitted.
    Ranker(Ranker),
    /// An ONNX model, as bytes; `livora-inference` runs it.
    Onnx(Vec<u8>),
    /// A model served elsewhere, by a SageMaker endpoint; `livora-inference` calls it.
    Endpoint(Endpoint),
}

/// A loaded model version.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// What it is.
    pub manifest: Manifest,
    /// Its weights.
    pub weights: Weights,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::artifact(path, e))
}

impl Artifact {
    /// Writes the artifact to `dir` (which must not exist), atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            return Err(Error::artifact(dir, "already exists; versions are never rewritten"));
        }
        let parent = dir.parent().ok_or_else(|| Error::artifact(dir, "has no parent directory"))?;
        std::fs::create_dir_all(parent).map_err(|e| Error::artifact(parent, e))?;
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("model");
        let tmp: PathBuf = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| Error::artifact(&tmp, e))?;
        let manifest = serde_json::to_string_pretty(&self.manifest).map_err(|e| Error::artifact(dir, e))?;
        let weights = match &self.weights {
            Weights::Native(c) => (WEIGHTS, c.to_json()?.into_bytes()),
            Weights::Ranker(r) => (WEIGHTS, r.to_json()?.into_bytes()),
            Weights::Onnx(bytes) => (ONNX, bytes.clone()),
            Weights::Endpoint(e) => (ENDPOINT, serde_json::to_vec_pretty(e).map_err(|e| Error::artifact(dir, e))?),
        };
        for (file, body) in [(MANIFEST, manifest.into_bytes()), weights] {
            let path = tmp.join(file);
            let f = std::fs::File::create(&path).map_err(|e| Error::artifact(&path, e))?;
            std::io::Write::write_all(&mut &f, &body).map_err(|e| Error::artifact(&path, e))?;
            f.sync_all().map_err(|e| Error::artifact(&path, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| Error::artifact(dir, e))?;
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Loads the artifact in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let manifest: Manifest = serde_json::from_str(&read(&path)?).map_err(|e| Error::artifact(&path, e))?;
        if manifest.format != FORMAT {
            return Err(Error::artifact(
                &path,
                format!("format {} is not supported by this Livora (format {FORMAT})", manifest.format),
            ));
        }
        let weights = if manifest.algorithm == Algorithm::Onnx {
            let path = dir.join(ONNX);
            Weights::Onnx(std::fs::read(&path).map_err(|e| Error::artifact(&path, e))?)
        } else if manifest.algorithm == Algorithm::SageMaker {
            let path = dir.join(ENDPOINT);
            Weights::Endpoint(serde_json::from_str(&read(&path)?).map_err(|e| Error::artifact(&path, e))?)
        } else if manifest.algorithm.is_ranker() {
            let path = dir.join(WEIGHTS);
            let ranker = Ranker::from_json(manifest.algorithm, &read(&path)?).map_err(|e| Error::artifact(&path, e))?;
            if ranker.offers() != manifest.offers.len() {
                return Err(Error::artifact(
                    &path,
                    format!("ranks {} offers; the manifest lists {}", ranker.offers(), manifest.offers.len()),
                ));
            }
            Weights::Ranker(ranker)
        } else {
            let path = dir.join(WEIGHTS);
            Weights::Native(
                Classifier::from_json(manifest.algorithm, &read(&path)?).map_err(|e| Error::artifact(&path, e))?,
            )
        };
        Ok(Self { manifest, weights })
    }

    /// The fitted classifier of a native model.
    pub fn classifier(&self) -> Option<&Classifier> {
        match &self.weights {
            Weights::Native(c) => Some(c),
            Weights::Ranker(_) | Weights::Onnx(_) | Weights::Endpoint(_) => None,
        }
    }

    /// The fitted ranker of a next-best-offer model.
    pub fn ranker(&self) -> Option<&Ranker> {
        match &self.weights {
            Weights::Ranker(r) => Some(r),
            Weights::Native(_) | Weights::Onnx(_) | Weights::Endpoint(_) => None,
        }
    }

    /// Ranks the offers for one row (`inputs` in [`Manifest::features`] order), most probable
    /// first; `top` of them (0: all). A classifier is an [`Error::InvalidArgument`].
    pub fn rank(&self, inputs: &[Input<'_>], top: usize) -> Result<Vec<RankedOffer>> {
        let Some(ranker) = self.ranker() else {
            return Err(Error::InvalidArgument(format!(
                "{} v{} is a {} model: it scores, it does not rank offers",
                self.manifest.model, self.manifest.version, self.manifest.algorithm
            )));
        };
        let row = self.encode(inputs)?;
        let p = ranker.predict(&row, row.len())?;
        let n = if top == 0 { p.len() } else { top.min(p.len()) };
        Ok(ranked(&p)
            .into_iter()
            .take(n)
            .map(|i| RankedOffer { offer: self.manifest.offers[i].clone(), probability: p[i] })
            .collect())
    }

    /// The model row of one entity (`inputs` in [`Manifest::features`] order).
    pub fn encode(&self, inputs: &[Input<'_>]) -> Result<Vec<f64>> {
        let mut row = Vec::with_capacity(self.manifest.encoder.width());
        self.manifest.encoder.encode_into(inputs, &mut row)?;
        Ok(row)
    }

    /// Scores one row of a native model (`inputs` in [`Manifest::features`] order), explaining
    /// it with the `top` largest feature contributions. An ONNX model is an
    /// [`Error::InvalidArgument`]: `livora-inference` runs those.
    pub fn score(&self, inputs: &[Input<'_>], top: usize) -> Result<Score> {
        let Some(classifier) = self.classifier() else {
            let why = match &self.weights {
                Weights::Ranker(_) => "a ranker: rank its offers (`Artifact::rank`)",
                Weights::Endpoint(_) => "served by a SageMaker endpoint: livora-inference calls it",
                _ => "an ONNX model: score it with livora-inference's ONNX runtime",
            };
            return Err(Error::InvalidArgument(format!("{} v{} is {why}", self.manifest.model, self.manifest.version)));
        };
        let encoder = &self.manifest.encoder;
        let row = self.encode(inputs)?;
        let probability = classifier.predict(&row, row.len())[0];
        let mut contributions = Vec::new();
        if top > 0
            && let Some((columns, _bias)) = classifier.contributions(&row)
        {
            contributions = encoder.feature_contributions(&columns, top);
        }
        Ok(Score { probability, contributions })
    }
}
