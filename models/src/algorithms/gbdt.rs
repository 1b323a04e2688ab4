//! Gradient-boosted decision trees, fitted with `perpetual` (histogram splits, log loss).
//!
//! perpetual reads column-major matrices; the encoder writes row-major ones, so rows are
//! transposed on the way in. Contributions are perpetual's `Average` method (XGBoost's
//! `approx_contribs`): per column, summing with the bias to the log-odds.

use perpetual::booster::config::BoosterIO;
use perpetual::objective::Objective;
use perpetual::{ContributionsMethod, Matrix, PerpetualBooster};

use super::FitParams;
use crate::error::{Error, Result};

/// A fitted booster.
#[derive(Clone)]
pub struct Gbdt {
    booster: PerpetualBooster,
    width: usize,
}

impl std::fmt::Debug for Gbdt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gbdt").field("trees", &self.booster.get_prediction_trees().len()).field("width", &self.width).finish()
    }
}

fn column_major(x: &[f64], width: usize) -> Vec<f64> {
    let rows = x.len() / width;
    let mut out = vec![0.0; x.len()];
    for (r, row) in x.chunks_exact(width).enumerate() {
        for (c, v) in row.iter().enumerate() {
            out[c * rows + r] = *v;
        }
    }
    out
}

impl Gbdt {
    /// Fits on `x` (row-major, `width` columns) and `y`.
    pub fn fit(x: &[f64], width: usize, y: &[bool], params: &FitParams) -> Result<Self> {
        let data = column_major(x, width);
        let matrix = Matrix::new(&data, y.len(), width);
        let y: Vec<f64> = y.iter().map(|&v| if v { 1.0 } else { 0.0 }).collect();
        let mut booster = PerpetualBooster::default()
            .set_objective(Objective::LogLoss)
            .set_budget(params.budget)
            .set_seed(params.seed);
        booster.fit(&matrix, &y, None, None).map_err(|e| Error::Fit { algorithm: "gbdt", message: e.to_string() })?;
        Ok(Self { booster, width })
    }

    /// The number of trees.
    pub fn trees(&self) -> usize {
        self.booster.get_prediction_trees().len()
    }

    /// The positive-class probability of each row.
    pub fn predict(&self, x: &[f64], width: usize) -> Vec<f64> {
        let rows = x.len() / width;
        // One row is the same in both layouts; larger batches are transposed.
        let data = if rows == 1 { x.to_vec() } else { column_major(x, width) };
        self.booster.predict_proba(&Matrix::new(&data, rows, width), rows > 4096, false)
    }

    /// Per-column contributions to the log-odds of one row, and the bias.
    pub fn contributions(&self, row: &[f64]) -> (Vec<f64>, f64) {
        let mut all = self.booster.predict_contributions(
            &Matrix::new(row, 1, row.len()),
            ContributionsMethod::Average,
            false,
        );
        let bias = all.pop().unwrap_or(0.0);
        (all, bias)
    }

    /// The booster as perpetual's JSON, with the column count.
    pub fn to_json(&self) -> Result<String> {
        let booster = self.booster.json_dump().map_err(|e| Error::Fit { algorithm: "gbdt", message: e.to_string() })?;
        Ok(format!("{{\"width\":{},\"booster\":{booster}}}", self.width))
    }

    /// A booster from [`Gbdt::to_json`].
    pub fn from_json(json: &str) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Stored<'a> {
            width: usize,
            #[serde(borrow)]
            booster: &'a serde_json::value::RawValue,
        }
        let err = |m: String| Error::InvalidArgument(format!("gbdt weights: {m}"));
        let stored: Stored<'_> = serde_json::from_str(json).map_err(|e| err(e.to_string()))?;
        let booster = PerpetualBooster::from_json(stored.booster.get()).map_err(|e| err(e.to_string()))?;
        Ok(Self { booster, width: stored.width })
    }
}
