//! Evaluation metrics: ROC AUC, PR AUC (average precision), log loss, Brier score and a
//! calibration table for classifiers; precision@k, recall@k and NDCG@k for rankings.
//!
//! Definitions follow scikit-learn's (`roc_auc_score`, `average_precision_score`, `log_loss`,
//! `brier_score_loss`), so figures can be compared with a Python baseline on the same split.

use serde::{Deserialize, Serialize};

/// How well a binary classifier's probabilities rank and fit the labels of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMetrics {
    /// Rows evaluated.
    pub rows: usize,
    /// Rows with a positive label.
    pub positives: usize,
    /// Area under the ROC curve (ties count half).
    pub roc_auc: f64,
    /// Area under the precision-recall curve, as average precision.
    pub pr_auc: f64,
    /// Mean negative log-likelihood (probabilities clipped to [1e-15, 1 − 1e-15]).
    pub log_loss: f64,
    /// Mean squared error of the probabilities.
    pub brier: f64,
    /// Ten equal-width bins of predicted probability.
    pub calibration: Vec<CalibrationBin>,
}

/// One bin of the calibration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower bound of the predicted probability (included).
    pub lower: f64,
    /// Upper bound (excluded, but 1.0 is in the last bin).
    pub upper: f64,
    /// Rows whose prediction falls in the bin.
    pub rows: usize,
    /// Their mean predicted probability.
    pub mean_predicted: f64,
    /// Their share of positive labels.
    pub observed_rate: f64,
}

/// The metrics of `scores` (probabilities of the positive class) against `labels`.
/// `scores` and `labels` must have the same length; an empty split gives NaN metrics.
pub fn classifier_metrics(scores: &[f64], labels: &[bool]) -> ClassifierMetrics {
    debug_assert_eq!(scores.len(), labels.len());
    let n = scores.len();
    let positives = labels.iter().filter(|&&y| y).count();
    let eps = 1e-15;
    let mut log_loss = 0.0;
    let mut brier = 0.0;
    for (&p, &y) in scores.iter().zip(labels) {
        let q = p.clamp(eps, 1.0 - eps);
        log_loss -= if y { q.ln() } else { (1.0 - q).ln() };
        let t = if y { 1.0 } else { 0.0 };
        brier += (p - t) * (p - t);
    }
    let nf = n as f64;
    ClassifierMetrics {
        rows: n,
        positives,
        roc_auc: roc_auc(scores, labels),
        pr_auc: average_precision(scores, labels),
        log_loss: log_loss / nf,
        brier: brier / nf,
        calibration: calibration(scores, labels, 10),
    }
}

/// Indices of `scores` in descending order (NaN last), ties in index order.
fn descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// ROC AUC as the Mann–Whitney statistic: the probability that a random positive scores above a
/// random negative, ties counting half. NaN when either class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let order = descending(scores);
    let pos = labels.iter().filter(|&&y| y).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    // Walk groups of tied scores from the top: each negative in a group is outranked by every
    // positive seen before the group, and ties with half of the group's positives.
    let mut positives_above = 0.0;
    let mut sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let (mut p, mut q) = (0.0, 0.0);
        while j < order.len() && scores[order[j]].total_cmp(&scores[order[i]]).is_eq() {
            if labels[order[j]] {
                p += 1.0
            } else {
                q += 1.0
            }
            j += 1;
        }
        sum += q * (positives_above + p / 2.0);
        positives_above += p;
        i = j;
    }
    sum / (pos * neg)
}

/// Average precision: Σ (Rₙ − Rₙ₋₁) Pₙ over the distinct thresholds, highest first (scikit-learn's
/// `average_precision_score`). NaN without positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> f64 {
    let order = descending(scores);
    let pos = labels.iter().filter(|&&y| y).count() as f64;
    if pos == 0.0 {
        return f64::NAN;
    }
    let (mut tp, mut seen, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]].total_cmp(&scores[order[i]]).is_eq() {
            if labels[order[j]] {
                tp += 1.0;
            }
            seen += 1.0;
            j += 1;
        }
        let recall = tp / pos;
        ap += (recall - last_recall) * (tp / seen);
        last_recall = recall;
        i = j;
    }
    ap
}

/// `bins` equal-width bins of predicted probability; empty bins are kept (rows 0, means 0).
pub fn calibration(scores: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for (&p, &y) in scores.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += usize::from(y);
    }
    sums.into_iter()
        .enumerate()
        .map(|(b, (rows, sum, pos))| CalibrationBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            rows,
            mean_predicted: if rows == 0 { 0.0 } else { sum / rows as f64 },
            observed_rate: if rows == 0 { 0.0 } else { pos as f64 / rows as f64 },
        })
        .collect()
}

/// How well a ranking puts the relevant items first, averaged over the rows that have at least
/// one relevant item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingMetrics {
    /// Rows evaluated (rows with at least one relevant item).
    pub rows: usize,
    /// The cut-off.
    pub k: usize,
    /// Share of the top k that is relevant.
    pub precision_at_k: f64,
    /// Share of the relevant items found in the top k.
    pub recall_at_k: f64,
    /// Normalised discounted cumulative gain at k, binary relevance.
    pub ndcg_at_k: f64,
}

/// Precision@k, recall@k and NDCG@k of `ranked` (item indices, best first) against `relevant`
/// (the items each row actually took). Rows with no relevant item are skipped.
pub fn ranking_metrics(ranked: &[Vec<usize>], relevant: &[Vec<usize>], k: usize) -> RankingMetrics {
    debug_assert_eq!(ranked.len(), relevant.len());
    let (mut rows, mut precision, mut recall, mut ndcg) = (0usize, 0.0, 0.0, 0.0);
    for (ranking, truth) in ranked.iter().zip(relevant) {
        if truth.is_empty() {
            continue;
        }
        rows += 1;
        let top = &ranking[..k.min(ranking.len())];
        let hits: Vec<bool> = top.iter().map(|i| truth.contains(i)).collect();
        let found = hits.iter().filter(|&&h| h).count() as f64;
        precision += found / k as f64;
        recall += found / truth.len() as f64;
        let dcg: f64 = hits.iter().enumerate().filter(|(_, h)| **h).map(|(r, _)| 1.0 / ((r + 2) as f64).log2()).sum();
        let ideal: f64 = (0..truth.len().min(k)).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
        ndcg += dcg / ideal;
    }
    let n = rows as f64;
    RankingMetrics { rows, k, precision_at_k: precision / n, recall_at_k: recall / n, ndcg_at_k: ndcg / n }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The definition: the share of (positive, negative) pairs ordered right, ties half.
    fn naive_auc(scores: &[f64], labels: &[bool]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (i, &yi) in labels.iter().enumerate() {
            for (j, &yj) in labels.iter().enumerate() {
                if yi && !yj {
                    den += 1.0;
                    num += match scores[i].total_cmp(&scores[j]) {
                        std::cmp::Ordering::Greater => 1.0,
                        std::cmp::Ordering::Equal => 0.5,
                        std::cmp::Ordering::Less => 0.0,
                    };
                }
            }
        }
        num / den
    }

    #[test]
    fn hand_worked_values_match_scikit_learn() {
        // scikit-learn 1.9.1 on the same rows: roc_auc_score 0.75, average_precision_score
        // 0.8333333333333333, log_loss 0.47228795380917615, brier_score_loss 0.158125.
        let s = [0.1, 0.4, 0.35, 0.8];
        let y = [false, false, true, true];
        let m = classifier_metrics(&s, &y);
        assert!((m.roc_auc - 0.75).abs() < 1e-12, "{m:?}");
        assert!((m.pr_auc - 0.833_333_333_333_333_4).abs() < 1e-12, "{m:?}");
        assert!((m.log_loss - 0.472_287_953_809_176_15).abs() < 1e-12, "{m:?}");
        assert!((m.brier - 0.158_125).abs() < 1e-12, "{m:?}");
        assert_eq!(m.calibration.iter().map(|b| b.rows).sum::<usize>(), 4);
        assert_eq!((m.rows, m.positives), (4, 2));
    }

    #[test]
    fn ties_count_half_and_one_class_is_nan() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), 0.5);
        assert!(roc_auc(&[0.1, 0.2], &[true, true]).is_nan());
        assert!(average_precision(&[0.1, 0.2], &[false, false]).is_nan());
    }

    #[test]
    fn ranking_metrics_by_hand() {
        // Row 1: relevant {2}, found at rank 2. Row 2: relevant {0, 1}, both in the top 2.
        // Row 3: nothing relevant: skipped.
        let ranked = vec![vec![1, 2, 0], vec![0, 1, 2], vec![0, 1, 2]];
        let relevant = vec![vec![2], vec![1, 0], vec![]];
        let m = ranking_metrics(&ranked, &relevant, 2);
        assert_eq!(m.rows, 2);
        assert!((m.precision_at_k - (0.5 + 1.0) / 2.0).abs() < 1e-12);
        assert!((m.recall_at_k - (1.0 + 1.0) / 2.0).abs() < 1e-12);
        let row1 = (1.0 / 3f64.log2()) / 1.0;
        assert!((m.ndcg_at_k - (row1 + 1.0) / 2.0).abs() < 1e-12, "{m:?}");
    }

    proptest! {
        #[test]
        fn auc_equals_the_pairwise_definition(
            rows in proptest::collection::vec((0u8..6, any::<bool>()), 2..60)
        ) {
            let scores: Vec<f64> = rows.iter().map(|r| f64::from(r.0) / 5.0).collect();
            let labels: Vec<bool> = rows.iter().map(|r| r.1).collect();
            let fast = roc_auc(&scores, &labels);
            let slow = naive_auc(&scores, &labels);
            prop_assert!(fast == slow || (fast.is_nan() && slow.is_nan()) || (fast - slow).abs() < 1e-12,
                "{fast} vs {slow}");
        }
    }
}
