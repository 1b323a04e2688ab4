//! The algorithms of the zoo and the fitted models they produce: classifiers and rankers.
//!
//! Every model reads the rows an [`crate::Encoder`] produces (row-major, `width` columns). A
//! classifier returns the probability of the positive class; linear and tree models also explain
//! a score: the contribution of each model column to the log-odds. A [`Ranker`] returns a
//! probability per offer.

mod gbdt;
mod logistic;
mod mlp;
mod ranking;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use gbdt::Gbdt;
pub use logistic::Logistic;
pub use mlp::Mlp;
pub use ranking::{Ranker, ranked};

use crate::error::{Error, Result};

/// A training algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// The training set's positive rate for every row: the floor any model must beat.
    Prior,
    /// L2-regularised logistic regression (L-BFGS from `argmin`, one pass per evaluation).
    Logistic,
    /// Gradient-boosted decision trees (`forust-ml`).
    Gbdt,
    /// A model trained elsewhere and imported as ONNX; scored by `livora-inference`.
    Onnx,
    /// Ranker: every row gets the offers' popularity in the training rows.
    Popularity,
    /// Ranker: a softmax multi-layer perceptron (`candle`).
    Mlp,
    /// A model served by a SageMaker endpoint that Livora calls; registered, not trained.
    #[serde(rename = "sagemaker")]
    SageMaker,
}

impl Algorithm {
    /// Every algorithm `livora train` fits, in the order `--algorithm` lists them.
    pub const ALL: [Algorithm; 5] =
        [Algorithm::Prior, Algorithm::Logistic, Algorithm::Gbdt, Algorithm::Popularity, Algorithm::Mlp];

    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::Prior => "prior",
            Self::Logistic => "logistic",
            Self::Gbdt => "gbdt",
            Self::Onnx => "onnx",
            Self::Popularity => "popularity",
            Self::Mlp => "mlp",
            Self::SageMaker => "sagemaker",
        }
    }

    /// Whether it ranks offers (a [`Ranker`]) rather than classifies.
    pub fn is_ranker(self) -> bool {
        matches!(self, Self::Popularity | Self::Mlp)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|a| a.name()).collect();
            Error::InvalidArgument(format!("unknown algorithm `{s}`; expected one of {}", names.join(", ")))
        })
    }
}

/// Knobs of the fit; every algorithm reads the ones it has.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitParams {
    /// Seed of every random choice.
    pub seed: u64,
    /// Logistic regression: L2 penalty (scikit-learn's `1 / C`).
    pub l2: f64,
    /// Logistic regression: iterations of the optimiser at most.
    pub max_iterations: u64,
    /// Gradient-boosted trees: the most trees (fewer when early stopping ends the fit).
    pub trees: usize,
    /// Gradient-boosted trees: the shrinkage of each tree.
    pub learning_rate: f32,
    /// Gradient-boosted trees: the depth of each tree.
    pub max_depth: usize,
    /// MLP: the hidden layer's units.
    #[serde(default = "default_hidden_units")]
    pub hidden_units: usize,
    /// MLP: the most epochs (fewer when the holdout loss stops improving).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
}

fn default_hidden_units() -> usize {
    FitParams::default().hidden_units
}

fn default_epochs() -> usize {
    FitParams::default().epochs
}

impl Default for FitParams {
    fn default() -> Self {
        Self {
            seed: 42,
            l2: 1.0,
            max_iterations: 300,
            trees: 300,
            learning_rate: 0.1,
            max_depth: 5,
            hidden_units: 64,
            epochs: 60,
        }
    }
}

/// A fitted binary classifier.
#[derive(Debug, Clone)]
pub enum Classifier {
    /// A constant probability.
    Prior {
        /// The training set's positive rate.
        rate: f64,
    },
    /// Logistic regression.
    Logistic(Logistic),
    /// Gradient-boosted trees.
    Gbdt(Gbdt),
}

impl Classifier {
    /// Fits `algorithm` on `x` (row-major, `width` columns) and `y`.
    pub fn fit(algorithm: Algorithm, x: &[f64], width: usize, y: &[bool], params: &FitParams) -> Result<Self> {
        check_shape(x, width, y.len())?;
        let positives = y.iter().filter(|&&v| v).count();
        if positives == 0 || positives == y.len() {
            return Err(Error::InsufficientData(format!(
                "the training rows have a single class ({positives} positive of {}); a classifier needs both",
                y.len()
            )));
        }
        Ok(match algorithm {
            Algorithm::Prior => Self::Prior { rate: positives as f64 / y.len() as f64 },
            Algorithm::Logistic => Self::Logistic(Logistic::fit(x, width, y, params)?),
            Algorithm::Gbdt => Self::Gbdt(Gbdt::fit(x, width, y, params)?),
            Algorithm::Onnx | Algorithm::SageMaker => {
                return Err(Error::InvalidArgument(format!(
                    "{algorithm} models are imported (`livora models import`), not trained"
                )));
            }
            Algorithm::Popularity | Algorithm::Mlp => {
                return Err(Error::InvalidArgument(format!(
                    "{algorithm} ranks offers; classifiers are {}, {} and {}",
                    Algorithm::Prior,
                    Algorithm::Logistic,
                    Algorithm::Gbdt
                )));
            }
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Prior { .. } => Algorithm::Prior,
            Self::Logistic(_) => Algorithm::Logistic,
            Self::Gbdt(_) => Algorithm::Gbdt,
        }
    }

    /// The probability of the positive class for each row of `x` (row-major, `width` columns).
    pub fn predict(&self, x: &[f64], width: usize) -> Vec<f64> {
        let rows = x.len().checked_div(width).unwrap_or(0);
        match self {
            Self::Prior { rate } => vec![*rate; rows],
            Self::Logistic(m) => m.predict(x, width),
            Self::Gbdt(m) => m.predict(x, width),
        }
    }

    /// Each column's contribution to the log-odds of one row, and the bias (the log-odds with
    /// no information); `None` for the prior.
    pub fn contributions(&self, row: &[f64]) -> Option<(Vec<f64>, f64)> {
        match self {
            Self::Prior { .. } => None,
            Self::Logistic(m) => Some(m.contributions(row)),
            Self::Gbdt(m) => Some(m.contributions(row)),
        }
    }

    /// The fitted parameters as JSON (the artifact's weights file).
    pub fn to_json(&self) -> Result<String> {
        let err = |e: serde_json::Error| Error::Fit { algorithm: self.algorithm().name(), message: e.to_string() };
        match self {
            Self::Prior { rate } => serde_json::to_string(&serde_json::json!({ "rate": rate })).map_err(err),
            Self::Logistic(m) => serde_json::to_string(m).map_err(err),
            Self::Gbdt(m) => m.to_json(),
        }
    }

    /// A classifier of `algorithm` from the JSON [`Classifier::to_json`] wrote.
    pub fn from_json(algorithm: Algorithm, json: &str) -> Result<Self> {
        let err = |e: serde_json::Error| Error::InvalidArgument(format!("{algorithm} weights: {e}"));
        Ok(match algorithm {
            Algorithm::Prior => {
                #[derive(Deserialize)]
                struct P {
                    rate: f64,
                }
                Self::Prior { rate: serde_json::from_str::<P>(json).map_err(err)?.rate }
            }
            Algorithm::Logistic => Self::Logistic(serde_json::from_str(json).map_err(err)?),
            Algorithm::Gbdt => Self::Gbdt(Gbdt::from_json(json)?),
            Algorithm::Onnx | Algorithm::SageMaker => {
                return Err(Error::InvalidArgument(format!("{algorithm} models have no native weights")));
            }
            Algorithm::Popularity | Algorithm::Mlp => {
                return Err(Error::InvalidArgument(format!("{algorithm} is a ranker, not a classifier")));
            }
        })
    }
}

fn check_shape(x: &[f64], width: usize, rows: usize) -> Result<()> {
    if width == 0 || x.len() != rows * width {
        return Err(Error::InvalidArgument(format!(
            "the matrix has {} values, expected {rows} rows × {width} columns",
            x.len()
        )));
    }
    Ok(())
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}
