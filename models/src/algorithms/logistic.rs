//! Logistic regression, fitted with `linfa-logistic` (L-BFGS, L2 penalty).

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use linfa_ndarray::{Array1, Array2, ShapeBuilder};
use serde::{Deserialize, Serialize};

use super::{FitParams, sigmoid};
use crate::error::{Error, Result};

/// A fitted logistic regression: `p = σ(intercept + Σ coefficientᵢ xᵢ)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    /// The intercept.
    pub intercept: f64,
    /// One coefficient per model column.
    pub coefficients: Vec<f64>,
}

impl Logistic {
    /// Fits on `x` (row-major, `width` columns) and `y` (both classes present).
    pub fn fit(x: &[f64], width: usize, y: &[bool], params: &FitParams) -> Result<Self> {
        let err = |message: String| Error::Fit { algorithm: "logistic", message };
        // Column-major: the gradient's `xᵀ·r` then walks contiguous columns instead of striding
        // across rows (ndarray has no BLAS here), half the cost of an iteration.
        let rows = y.len();
        let mut columns = Vec::with_capacity(x.len());
        for c in 0..width {
            columns.extend(x.iter().skip(c).step_by(width));
        }
        let records = Array2::from_shape_vec((rows, width).f(), columns).map_err(|e| err(e.to_string()))?;
        let targets = Array1::from_iter(y.iter().copied());
        let dataset = Dataset::new(records, targets);
        let fitted = LogisticRegression::default()
            .alpha(params.l2)
            .max_iterations(params.max_iterations)
            // linfa's loss is summed over rows, so an absolute tolerance never fires on large
            // sets and the fit runs until the cost stalls; 1e-4 per row is scikit-learn's rule
            // (`tol` on the mean loss's gradient).
            .gradient_tolerance(1e-4 * rows as f64)
            .fit(&dataset)
            .map_err(|e| err(e.to_string()))?;
        // linfa's probabilities are those of the larger label: `true`, the positive class.
        let mut coefficients = fitted.params().to_vec();
        let mut intercept = fitted.intercept();
        if !fitted.labels().pos.class {
            coefficients.iter_mut().for_each(|c| *c = -*c);
            intercept = -intercept;
        }
        Ok(Self { intercept, coefficients })
    }

    /// The log-odds of one row.
    fn logit(&self, row: &[f64]) -> f64 {
        self.intercept + self.coefficients.iter().zip(row).map(|(c, x)| c * x).sum::<f64>()
    }

    /// The positive-class probability of each row.
    pub fn predict(&self, x: &[f64], width: usize) -> Vec<f64> {
        x.chunks_exact(width).map(|row| sigmoid(self.logit(row))).collect()
    }

    /// `coefficientᵢ · xᵢ` per column, and the intercept.
    pub fn contributions(&self, row: &[f64]) -> (Vec<f64>, f64) {
        (self.coefficients.iter().zip(row).map(|(c, x)| c * x).collect(), self.intercept)
    }
}
