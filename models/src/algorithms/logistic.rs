//! Logistic regression: L2-penalised log loss minimised by L-BFGS (`argmin`, the solver and
//! More–Thuente line search `linfa-logistic` uses), with the objective's value and gradient
//! computed together in **one pass** over the rows.
//!
//! The objective is linfa's (and scikit-learn's with `C = 1 / l2`): `Σᵢ log(1 + e^(−yᵢ·zᵢ)) +
//! l2/2 · ‖w‖²`, `zᵢ = b + w·xᵢ`, `yᵢ ∈ {−1, +1}`, the intercept not penalised. linfa computes
//! the value and the gradient in separate passes, each a matrix product that copies or strides
//! across the whole matrix; here one sweep of the row-major matrix yields both (`zᵢ`, then
//! `gᵢ += rᵢ·xᵢ` while the row is in cache), and the line search's gradient request at the point
//! whose value it just asked for is answered from that sweep. The fit stops when the gradient's
//! norm falls below `1e-4 × rows` (scikit-learn's `tol` on the mean loss) or after
//! `max_iterations`. `tests` check the solution against linfa-logistic's on the same rows.

use std::sync::Mutex;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use linfa_ndarray::Array1;
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

/// `a · b`, summed in eight independent lanes: a single running sum is one long chain of
/// dependent additions (a float sum may not be reordered), which leaves the row pass bound by
/// the adder's latency; eight lanes let the compiler keep them in vector registers.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    let tail: f64 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f64>() + tail
}

/// `log σ(t)`, without overflow.
fn log_sigmoid(t: f64) -> f64 {
    if t > 0.0 { -(-t).exp().ln_1p() } else { t - t.exp().ln_1p() }
}

/// A point, the objective's value there and its gradient.
type Evaluation = (Array1<f64>, f64, Array1<f64>);

/// The penalised log loss of row-major `x` and labels `y` (±1), as argmin sees it: parameters
/// are the coefficients then the intercept.
struct Objective<'a> {
    x: &'a [f64],
    width: usize,
    y: Vec<f64>,
    l2: f64,
    /// The last point evaluated, with its value and gradient.
    last: Mutex<Option<Evaluation>>,
}

impl Objective<'_> {
    /// The value and gradient at `w`, in one pass over the rows (or from the last evaluation).
    fn evaluate(&self, w: &Array1<f64>) -> (f64, Array1<f64>) {
        if let Ok(last) = self.last.lock()
            && let Some((at, value, gradient)) = last.as_ref()
            && at == w
        {
            return (*value, gradient.clone());
        }
        let width = self.width;
        let (coefficients, intercept) = (&w.as_slice().unwrap_or_default()[..width], w[width]);
        let mut value = 0.0;
        let mut gradient = vec![0.0; width + 1];
        let (g, g_intercept) = gradient.split_at_mut(width);
        for (row, &y) in self.x.chunks_exact(width).zip(&self.y) {
            let z = intercept + dot(row, coefficients);
            let yz = y * z;
            value -= log_sigmoid(yz);
            // d/dz of −log σ(y·z).
            let r = y * (sigmoid(yz) - 1.0);
            for (gj, xj) in g.iter_mut().zip(row) {
                *gj += r * xj;
            }
            g_intercept[0] += r;
        }
        for (gj, c) in g.iter_mut().zip(coefficients) {
            value += 0.5 * self.l2 * c * c;
            *gj += self.l2 * c;
        }
        let gradient = Array1::from(gradient);
        if let Ok(mut last) = self.last.lock() {
            *last = Some((w.clone(), value, gradient.clone()));
        }
        (value, gradient)
    }
}

impl CostFunction for Objective<'_> {
    type Param = Array1<f64>;
    type Output = f64;

    fn cost(&self, w: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.evaluate(w).0)
    }
}

impl Gradient for Objective<'_> {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;

    fn gradient(&self, w: &Self::Param) -> std::result::Result<Array1<f64>, argmin::core::Error> {
        Ok(self.evaluate(w).1)
    }
}

impl Logistic {
    /// Fits on `x` (row-major, `width` columns) and `y` (both classes present).
    pub fn fit(x: &[f64], width: usize, y: &[bool], params: &FitParams) -> Result<Self> {
        let err = |message: String| Error::Fit { algorithm: "logistic", message };
        let rows = y.len();
        let objective = Objective {
            x,
            width,
            y: y.iter().map(|&p| if p { 1.0 } else { -1.0 }).collect(),
            l2: params.l2,
            last: Mutex::new(None),
        };
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(1e-4 * rows as f64)
            .map_err(|e| err(e.to_string()))?;
        let result = Executor::new(objective, solver)
            .configure(|state| state.param(Array1::zeros(width + 1)).max_iters(params.max_iterations))
            .run()
            .map_err(|e| err(e.to_string()))?;
        let best = result.state().get_best_param().ok_or_else(|| err("the solver returned no parameters".into()))?;
        let coefficients = best.iter().take(width).copied().collect();
        Ok(Self { intercept: best[width], coefficients })
    }

    /// The log-odds of one row.
    fn logit(&self, row: &[f64]) -> f64 {
        self.intercept + dot(&self.coefficients, row)
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

#[cfg(test)]
mod tests {
    use linfa::prelude::*;
    use linfa_logistic::LogisticRegression;
    use linfa_ndarray::Array2;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn the_lane_dot_product_is_the_dot_product() {
        for n in [0, 1, 7, 8, 9, 57] {
            let a: Vec<f64> = (0..n).map(|i| f64::from(i) * 0.5).collect();
            let b: Vec<f64> = (0..n).map(|i| 3.0 - f64::from(i)).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-9, "{n}");
        }
    }

    #[test]
    fn log_sigmoid_is_stable_at_both_ends() {
        assert!((log_sigmoid(0.0) - 0.5f64.ln()).abs() < 1e-15);
        assert!(log_sigmoid(800.0).abs() < 1e-300 && log_sigmoid(-800.0) == -800.0);
    }

    #[test]
    fn the_fused_fit_finds_linfa_logistics_solution() {
        let (rows, width) = (3_000, 6);
        let mut rng = StdRng::seed_from_u64(7);
        let x: Vec<f64> = (0..rows * width).map(|_| rng.random_range(-2.0..2.0)).collect();
        let truth = [1.5, -2.0, 0.5, 0.0, 0.8, -0.3];
        let y: Vec<bool> = x
            .chunks_exact(width)
            .map(|r| {
                let z = 0.3 + r.iter().zip(truth).map(|(a, b)| a * b).sum::<f64>();
                rng.random::<f64>() < sigmoid(z)
            })
            .collect();
        let params = FitParams::default();
        let ours = Logistic::fit(&x, width, &y, &params).expect("fit");

        let records = Array2::from_shape_vec((rows, width), x.clone()).expect("shape");
        let dataset = Dataset::new(records, Array1::from_iter(y.iter().copied()));
        let linfa = LogisticRegression::default()
            .alpha(params.l2)
            .max_iterations(params.max_iterations)
            .gradient_tolerance(1e-4 * rows as f64)
            .fit(&dataset)
            .expect("linfa fit");
        // linfa's probabilities are those of the larger label, `true`.
        assert!(linfa.labels().pos.class);
        for (a, b) in ours.coefficients.iter().zip(linfa.params()) {
            assert!((a - b).abs() < 1e-2, "{:?} vs {}", ours.coefficients, linfa.params());
        }
        assert!((ours.intercept - linfa.intercept()).abs() < 1e-2, "{} vs {}", ours.intercept, linfa.intercept());
        // Both are at the optimum: the truth within the noise of 3,000 rows.
        for (a, t) in ours.coefficients.iter().zip(truth) {
            assert!((a - t).abs() < 0.2, "{:?}", ours.coefficients);
        }
    }
}
