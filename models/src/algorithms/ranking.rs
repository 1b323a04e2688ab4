//! Rankers: models that order a catalogue of offers for each row (next-best offer).
//!
//! A ranker returns, for each row, a probability per offer (the row's distribution over the
//! offers it may accept next); the ranking is that distribution sorted.

use serde::{Deserialize, Serialize};

use super::mlp::Mlp;
use super::{Algorithm, FitParams, check_shape};
use crate::error::{Error, Result};

/// A fitted ranker.
#[derive(Debug, Clone, PartialEq)]
pub enum Ranker {
    /// The same ranking for every row: each offer's share of the acceptances in the training
    /// rows. The floor a personalised ranker must beat.
    Popularity {
        /// Share of each offer, summing to 1.
        shares: Vec<f64>,
    },
    /// A softmax MLP over the row's features.
    Mlp(Mlp),
}

#[derive(Serialize, Deserialize)]
struct PopularityWeights {
    shares: Vec<f64>,
}

impl Ranker {
    /// Fits `algorithm` on `x` (row-major, `width` columns) against `accepted`: for each row, the
    /// indices (below `offers`) of the offers it accepted; every row accepted at least one.
    pub fn fit(
        algorithm: Algorithm,
        x: &[f64],
        width: usize,
        accepted: &[Vec<usize>],
        offers: usize,
        params: &FitParams,
    ) -> Result<Self> {
        check_shape(x, width, accepted.len())?;
        if offers < 2 {
            return Err(Error::InsufficientData(format!("{offers} offer(s): a ranking needs at least 2")));
        }
        let mut targets = vec![0f32; accepted.len() * offers];
        for (row, taken) in accepted.iter().enumerate() {
            if taken.is_empty() || taken.iter().any(|&o| o >= offers) {
                return Err(Error::InvalidArgument(format!(
                    "row {row} accepted offers {taken:?}; each row needs at least one of 0..{offers}"
                )));
            }
            for &o in taken {
                targets[row * offers + o] = 1.0 / taken.len() as f32;
            }
        }
        match algorithm {
            Algorithm::Popularity => {
                let mut shares = vec![0f64; offers];
                for (i, t) in targets.iter().enumerate() {
                    shares[i % offers] += f64::from(*t);
                }
                let total: f64 = shares.iter().sum();
                shares.iter_mut().for_each(|s| *s /= total);
                Ok(Self::Popularity { shares })
            }
            Algorithm::Mlp => Ok(Self::Mlp(Mlp::fit(x, width, &targets, offers, params)?)),
            other => Err(Error::InvalidArgument(format!(
                "{other} is a classifier; offers are ranked by {} or {}",
                Algorithm::Mlp,
                Algorithm::Popularity
            ))),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Popularity { .. } => Algorithm::Popularity,
            Self::Mlp(_) => Algorithm::Mlp,
        }
    }

    /// How many offers it ranks.
    pub fn offers(&self) -> usize {
        match self {
            Self::Popularity { shares } => shares.len(),
            Self::Mlp(m) => m.outputs,
        }
    }

    /// Each offer's probability for each row of `x` (row-major, `width` columns): rows × offers,
    /// row-major.
    pub fn predict(&self, x: &[f64], width: usize) -> Result<Vec<f64>> {
        let rows = x.len().checked_div(width).unwrap_or(0);
        match self {
            Self::Popularity { shares } => Ok(shares.repeat(rows)),
            Self::Mlp(m) => {
                if width != m.inputs {
                    return Err(Error::InvalidArgument(format!(
                        "the rows have {width} columns; the network reads {}",
                        m.inputs
                    )));
                }
                m.predict(x)
            }
        }
    }

    /// The fitted parameters as JSON (the artifact's weights file).
    pub fn to_json(&self) -> Result<String> {
        let err = |e: serde_json::Error| Error::Fit { algorithm: self.algorithm().name(), message: e.to_string() };
        match self {
            Self::Popularity { shares } => {
                serde_json::to_string(&PopularityWeights { shares: shares.clone() }).map_err(err)
            }
            Self::Mlp(m) => serde_json::to_string(m).map_err(err),
        }
    }

    /// A ranker of `algorithm` from the JSON [`Ranker::to_json`] wrote.
    pub fn from_json(algorithm: Algorithm, json: &str) -> Result<Self> {
        let err = |e: serde_json::Error| Error::InvalidArgument(format!("{algorithm} weights: {e}"));
        match algorithm {
            Algorithm::Popularity => {
                Ok(Self::Popularity { shares: serde_json::from_str::<PopularityWeights>(json).map_err(err)?.shares })
            }
            Algorithm::Mlp => {
                let m: Mlp = serde_json::from_str(json).map_err(err)?;
                m.check()?;
                Ok(Self::Mlp(m))
            }
            other => Err(Error::InvalidArgument(format!("{other} is not a ranker"))),
        }
    }
}

/// The offer indices of one row's probabilities, most probable first (ties: lower index first).
pub fn ranked(probabilities: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popularity_ranks_by_share_of_acceptances() {
        let accepted = vec![vec![2], vec![2, 0], vec![1], vec![2]];
        let x = vec![0.0; 4];
        let r = Ranker::fit(Algorithm::Popularity, &x, 1, &accepted, 3, &FitParams::default()).expect("fit");
        let p = r.predict(&[0.0, 0.0], 1).expect("predict");
        assert_eq!(p.len(), 6);
        // Offer 2: 2.5 acceptances of 4, offer 1: 1, offer 0: 0.5.
        assert_eq!(ranked(&p[..3]), [2, 1, 0]);
        assert!((p[2] - 2.5 / 4.0).abs() < 1e-12, "{p:?}");
        assert!((p[..3].iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let back = Ranker::from_json(Algorithm::Popularity, &r.to_json().expect("json")).expect("load");
        assert_eq!(back, r);
    }

    #[test]
    fn rows_without_an_accepted_offer_and_classifiers_are_refused() {
        let err = Ranker::fit(Algorithm::Popularity, &[0.0, 0.0], 1, &[vec![0], vec![]], 2, &FitParams::default())
            .expect_err("row 1 accepted nothing");
        assert!(err.to_string().contains("row 1 accepted offers []"), "{err}");
        let err = Ranker::fit(Algorithm::Gbdt, &[0.0], 1, &[vec![0]], 2, &FitParams::default()).expect_err("gbdt");
        assert_eq!(err.to_string(), "gbdt is a classifier; offers are ranked by mlp or popularity");
    }
}
