//! The next-best-offer network: a softmax multi-layer perceptron in `candle`.
//!
//! One hidden layer of ReLU units over the encoded features, a softmax over the offers. It is
//! trained on soft targets (a row that accepted two offers puts half its mass on each) with
//! AdamW in mini-batches, and stops early on a seeded holdout of the training rows: the epoch
//! with the lowest holdout loss is kept. Every random choice (initial weights, holdout,
//! batch order) comes from the seed, so the same rows and seed give the same weights.
//!
//! The weights are stored as plain arrays (row-major, `f32`): inference rebuilds the tensors
//! from them and runs the same forward pass as training.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::FitParams;
use crate::error::{Error, Result};

/// Rows per mini-batch.
const BATCH: usize = 256;
/// Share of the training rows held out to choose the epoch.
const HOLDOUT: f64 = 0.1;
/// Epochs without a better holdout loss before the fit stops.
const PATIENCE: usize = 6;

/// A fitted softmax MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    /// Input columns.
    pub inputs: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Outputs (offers).
    pub outputs: usize,
    /// Input → hidden weights, `inputs × hidden`, row-major.
    pub w1: Vec<f32>,
    /// Hidden biases.
    pub b1: Vec<f32>,
    /// Hidden → output weights, `hidden × outputs`, row-major.
    pub w2: Vec<f32>,
    /// Output biases.
    pub b2: Vec<f32>,
    /// The epoch kept (1-based): the one with the lowest holdout loss.
    pub epochs: usize,
}

fn fit_error(e: impl std::fmt::Display) -> Error {
    Error::Fit { algorithm: "mlp", message: e.to_string() }
}

/// Uniform in `[-bound, bound)`.
fn uniform(rng: &mut StdRng, n: usize, bound: f64) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect()
}

struct Net {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

impl Net {
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(self.w1.as_tensor())?
            .broadcast_add(self.b1.as_tensor())?
            .relu()?
            .matmul(self.w2.as_tensor())?
            .broadcast_add(self.b2.as_tensor())
    }

    /// Mean cross-entropy of the soft targets `y` under the logits of `x`.
    fn loss(&self, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        let rows = x.dim(0)? as f64;
        let log_p = candle_nn::ops::log_softmax(&self.logits(x)?, D::Minus1)?;
        (log_p * y)?.sum_all()?.affine(-1.0 / rows, 0.0)
    }

    fn snapshot(&self) -> candle_core::Result<[Vec<f32>; 4]> {
        let flat = |v: &Var| v.as_tensor().flatten_all()?.to_vec1::<f32>();
        Ok([flat(&self.w1)?, flat(&self.b1)?, flat(&self.w2)?, flat(&self.b2)?])
    }
}

impl Mlp {
    /// Fits on `x` (row-major, `width` columns) against `targets` (rows × `outputs`, each row
    /// a distribution over the outputs).
    pub fn fit(x: &[f64], width: usize, targets: &[f32], outputs: usize, params: &FitParams) -> Result<Self> {
        let rows = x.len() / width;
        if params.hidden_units == 0 || params.epochs == 0 {
            return Err(Error::InvalidArgument("mlp: hidden units and epochs must be positive".into()));
        }
        let hidden = params.hidden_units;
        let mut rng = StdRng::seed_from_u64(params.seed);
        let mut order: Vec<usize> = (0..rows).collect();
        order.shuffle(&mut rng);
        let held = ((rows as f64 * HOLDOUT) as usize).max(1).min(rows.saturating_sub(1));
        let (holdout, train) = order.split_at(held);
        if train.is_empty() {
            return Err(Error::InsufficientData(format!("mlp: {rows} rows leave none to train on")));
        }

        let device = Device::Cpu;
        let gather = |rows: &[usize]| -> candle_core::Result<(Tensor, Tensor)> {
            let xs: Vec<f32> =
                rows.iter().flat_map(|&r| x[r * width..(r + 1) * width].iter().map(|&v| v as f32)).collect();
            let ys: Vec<f32> =
                rows.iter().flat_map(|&r| targets[r * outputs..(r + 1) * outputs].iter().copied()).collect();
            Ok((
                Tensor::from_vec(xs, (rows.len(), width), &device)?,
                Tensor::from_vec(ys, (rows.len(), outputs), &device)?,
            ))
        };

        // He initialisation for the ReLU layer, Glorot for the softmax one; the output biases
        // start at the log of each output's share of the training targets, so the first epoch
        // starts from the popularity ranking rather than from uniform.
        let mut share = vec![1e-3f64; outputs];
        for &r in train {
            for (o, s) in share.iter_mut().enumerate() {
                *s += f64::from(targets[r * outputs + o]);
            }
        }
        let total: f64 = share.iter().sum();
        let b2: Vec<f32> = share.iter().map(|s| (s / total).ln() as f32).collect();
        let w1 = uniform(&mut rng, width * hidden, (6.0 / width as f64).sqrt());
        let w2 = uniform(&mut rng, hidden * outputs, (6.0 / (hidden + outputs) as f64).sqrt());
        let var = |v: Vec<f32>, shape: (usize, usize)| Var::from_tensor(&Tensor::from_vec(v, shape, &device)?);
        let net = (|| -> candle_core::Result<Net> {
            Ok(Net {
                w1: var(w1, (width, hidden))?,
                b1: var(vec![0.0; hidden], (1, hidden))?,
                w2: var(w2, (hidden, outputs))?,
                b2: var(b2, (1, outputs))?,
            })
        })()
        .map_err(fit_error)?;
        let mut optimiser = AdamW::new(
            vec![net.w1.clone(), net.b1.clone(), net.w2.clone(), net.b2.clone()],
            ParamsAdamW { lr: f64::from(params.learning_rate), weight_decay: params.l2, ..ParamsAdamW::default() },
        )
        .map_err(fit_error)?;

        let (x_hold, y_hold) = gather(holdout).map_err(fit_error)?;
        let mut batches: Vec<usize> = train.to_vec();
        let mut best = (f32::INFINITY, 0usize, net.snapshot().map_err(fit_error)?);
        for epoch in 1..=params.epochs {
            batches.shuffle(&mut rng);
            for chunk in batches.chunks(BATCH) {
                let (xb, yb) = gather(chunk).map_err(fit_error)?;
                let loss = net.loss(&xb, &yb).map_err(fit_error)?;
                optimiser.backward_step(&loss).map_err(fit_error)?;
            }
            let loss = net.loss(&x_hold, &y_hold).and_then(|l| l.to_scalar::<f32>()).map_err(fit_error)?;
            if !loss.is_finite() {
                return Err(fit_error(format!("the holdout loss diverged at epoch {epoch}: lower the learning rate")));
            }
            if loss < best.0 {
                best = (loss, epoch, net.snapshot().map_err(fit_error)?);
            } else if epoch - best.1 >= PATIENCE {
                break;
            }
        }
        let (_, epochs, [w1, b1, w2, b2]) = best;
        Ok(Self { inputs: width, hidden, outputs, w1, b1, w2, b2, epochs })
    }

    /// The probability of each output for each row of `x` (row-major, `inputs` columns):
    /// rows × outputs, row-major, each row summing to 1.
    pub fn predict(&self, x: &[f64]) -> Result<Vec<f64>> {
        let rows = x.len() / self.inputs.max(1);
        let device = Device::Cpu;
        let run = || -> candle_core::Result<Vec<f32>> {
            let tensor = |v: &[f32], shape: (usize, usize)| Tensor::from_slice(v, shape, &device);
            let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let h = tensor(&xs, (rows, self.inputs))?
                .matmul(&tensor(&self.w1, (self.inputs, self.hidden))?)?
                .broadcast_add(&tensor(&self.b1, (1, self.hidden))?)?
                .relu()?;
            let logits = h
                .matmul(&tensor(&self.w2, (self.hidden, self.outputs))?)?
                .broadcast_add(&tensor(&self.b2, (1, self.outputs))?)?;
            candle_nn::ops::softmax_last_dim(&logits)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
        };
        let p = run().map_err(|e| Error::InvalidArgument(format!("mlp forward pass: {e}")))?;
        Ok(p.into_iter().map(f64::from).collect())
    }

    /// Checks that the stored arrays have the shapes the sizes say (weights read from a file).
    pub fn check(&self) -> Result<()> {
        let (i, h, o) = (self.inputs, self.hidden, self.outputs);
        for (name, len, want) in [
            ("w1", self.w1.len(), i * h),
            ("b1", self.b1.len(), h),
            ("w2", self.w2.len(), h * o),
            ("b2", self.b2.len(), o),
        ] {
            if len != want || want == 0 {
                return Err(Error::InvalidArgument(format!(
                    "mlp weights: `{name}` has {len} values, expected {want} ({i} inputs, {h} hidden, {o} outputs)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two inputs, three outputs: the output is the index of the hot input, or 2 when none is.
    fn data(rows: usize) -> (Vec<f64>, Vec<f32>) {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for r in 0..rows {
            let class = r % 3;
            x.extend([f64::from(u8::from(class == 0)), f64::from(u8::from(class == 1))]);
            y.extend((0..3).map(|o| if o == class { 1.0f32 } else { 0.0 }));
        }
        (x, y)
    }

    fn params() -> FitParams {
        FitParams { learning_rate: 0.05, l2: 0.0, hidden_units: 8, epochs: 80, ..FitParams::default() }
    }

    #[test]
    fn learns_a_separable_mapping_and_reproduces_with_the_seed() {
        let (x, y) = data(300);
        let mlp = Mlp::fit(&x, 2, &y, 3, &params()).expect("fit");
        mlp.check().expect("shapes");
        let p = mlp.predict(&[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).expect("predict");
        assert_eq!(p.len(), 9);
        for (row, class) in [0, 1, 2].into_iter().enumerate() {
            let probs = &p[row * 3..row * 3 + 3];
            assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{probs:?}");
            assert!(probs[class] > 0.9, "row {row}: {probs:?}");
        }
        let again = Mlp::fit(&x, 2, &y, 3, &params()).expect("fit");
        assert_eq!(mlp, again, "the same rows and seed must give the same weights");
    }

    #[test]
    fn weights_of_the_wrong_shape_are_refused() {
        let (x, y) = data(30);
        let mut mlp = Mlp::fit(&x, 2, &y, 3, &FitParams { epochs: 1, ..params() }).expect("fit");
        mlp.b2.pop();
        let err = mlp.check().expect_err("b2 is short");
        assert!(err.to_string().contains("`b2` has 2 values, expected 3"), "{err}");
    }
}
