//! Gradient-boosted decision trees, fitted with `forust-ml` (histogram splits, log loss,
//! depth-wise trees, learned directions for missing values).
//!
//! forust reads column-major matrices; the encoder writes row-major ones, so rows are transposed
//! on the way in. Like scikit-learn's `HistGradientBoostingClassifier`, a fit on more than 10,000
//! rows holds out a tenth of them (chosen by the seed) and stops adding trees when the held-out
//! log loss has not improved for 10 rounds. Contributions are forust's `Average` method
//! (XGBoost's `approx_contribs`): per column, summing with the bias to the log-odds.

use forust_ml::Matrix;
use forust_ml::gradientbooster::{ContributionsMethod, GradientBooster};
use forust_ml::metric::Metric;
use std::sync::Arc;

use super::FitParams;
use crate::error::{Error, Result};

/// Rows above which a tenth is held out for early stopping.
const EARLY_STOPPING_ROWS: usize = 10_000;

/// A fitted booster (shared: boosters are read-only once fitted, and forust's is not `Clone`).
#[derive(Clone)]
pub struct Gbdt {
    booster: Arc<GradientBooster>,
}

impl std::fmt::Debug for Gbdt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gbdt").field("trees", &self.booster.trees.len()).finish()
    }
}

/// `rows` (indices) of the row-major `x`, column-major.
fn column_major(x: &[f64], width: usize, rows: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; rows.len() * width];
    for (r, &i) in rows.iter().enumerate() {
        for (c, v) in x[i * width..(i + 1) * width].iter().enumerate() {
            out[c * rows.len() + r] = *v;
        }
    }
    out
}

/// A well-mixed 64-bit hash (splitmix64), to pick held-out rows from the seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Gbdt {
    /// Fits on `x` (row-major, `width` columns) and `y`.
    pub fn fit(x: &[f64], width: usize, y: &[bool], params: &FitParams) -> Result<Self> {
        let err = |e: forust_ml::errors::ForustError| Error::Fit { algorithm: "gbdt", message: e.to_string() };
        let n = y.len();
        let (fit_rows, held_out): (Vec<usize>, Vec<usize>) = if n > EARLY_STOPPING_ROWS {
            (0..n).partition(|&i| !mix(params.seed ^ i as u64).is_multiple_of(10))
        } else {
            ((0..n).collect(), Vec::new())
        };
        let label = |rows: &[usize]| -> Vec<f64> { rows.iter().map(|&i| if y[i] { 1.0 } else { 0.0 }).collect() };
        let data = column_major(x, width, &fit_rows);
        let matrix = Matrix::new(&data, fit_rows.len(), width);
        let y_fit = label(&fit_rows);
        let weights = vec![1.0; fit_rows.len()];
        let mut booster = GradientBooster::default()
            .set_iterations(params.trees)
            .set_learning_rate(params.learning_rate)
            .set_max_depth(params.max_depth)
            .set_l2(1.0)
            .set_min_leaf_weight(1.0)
            .set_seed(params.seed)
            .set_parallel(true);
        if held_out.is_empty() {
            booster.fit(&matrix, &y_fit, &weights, None).map_err(err)?;
        } else {
            let held = column_major(x, width, &held_out);
            let y_held = label(&held_out);
            let w_held = vec![1.0; held_out.len()];
            booster = booster.set_evaluation_metric(Some(Metric::LogLoss)).set_early_stopping_rounds(Some(10));
            let evaluation = vec![(Matrix::new(&held, held_out.len(), width), y_held.as_slice(), w_held.as_slice())];
            booster.fit(&matrix, &y_fit, &weights, Some(evaluation)).map_err(err)?;
        }
        Ok(Self { booster: Arc::new(booster) })
    }

    /// The number of trees.
    pub fn trees(&self) -> usize {
        self.booster.trees.len()
    }

    /// The positive-class probability of each row.
    pub fn predict(&self, x: &[f64], width: usize) -> Vec<f64> {
        let rows = x.len() / width;
        // One row is the same in both layouts; larger batches are transposed.
        let data = if rows == 1 { x.to_vec() } else { column_major(x, width, &(0..rows).collect::<Vec<_>>()) };
        let logits = self.booster.predict(&Matrix::new(&data, rows, width), rows > 4096);
        logits.into_iter().map(super::sigmoid).collect()
    }

    /// Per-column contributions to the log-odds of one row, and the bias.
    pub fn contributions(&self, row: &[f64]) -> (Vec<f64>, f64) {
        let mut all =
            self.booster.predict_contributions(&Matrix::new(row, 1, row.len()), ContributionsMethod::Average, false);
        let bias = all.pop().unwrap_or(0.0);
        (all, bias)
    }

    /// The booster as forust's JSON.
    pub fn to_json(&self) -> Result<String> {
        self.booster.json_dump().map_err(|e| Error::Fit { algorithm: "gbdt", message: e.to_string() })
    }

    /// A booster from [`Gbdt::to_json`].
    pub fn from_json(json: &str) -> Result<Self> {
        let booster =
            GradientBooster::from_json(json).map_err(|e| Error::InvalidArgument(format!("gbdt weights: {e}")))?;
        Ok(Self { booster: Arc::new(booster) })
    }
}
