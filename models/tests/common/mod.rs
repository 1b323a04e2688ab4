//! Generated data with a known ground truth, shared by the model tests.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A sample: the encoded-free features, the true probability and the drawn label.
pub struct Sample {
    pub x: Vec<f64>,
    pub width: usize,
    pub p: Vec<f64>,
    pub y: Vec<bool>,
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller: enough for test data, no extra dependency.
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `rows` rows of 4 standard-normal features. The true log-odds are
/// `-0.5 + 1.2 x0 − 0.8 x1 + (interaction ? 2.0 · sign(x2 · x3) : 0)`: with the interaction, a
/// linear model cannot see the last term and trees can.
pub fn sample(rows: usize, seed: u64, interaction: bool) -> Sample {
    let mut rng = StdRng::seed_from_u64(seed);
    let width = 4;
    let (mut x, mut p, mut y) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rows {
        let row: Vec<f64> = (0..width).map(|_| normal(&mut rng)).collect();
        let mut logit = -0.5 + 1.2 * row[0] - 0.8 * row[1];
        if interaction {
            logit += 2.0 * (row[2] * row[3]).signum();
        }
        let prob = 1.0 / (1.0 + (-logit).exp());
        y.push(rng.random::<f64>() < prob);
        p.push(prob);
        x.extend(row);
    }
    Sample { x, width, p, y }
}
