//! The algorithms on generated data with a known ground truth.

mod common;

use livora_models::{Algorithm, Classifier, FitParams, classifier_metrics};

#[test]
fn logistic_regression_recovers_a_linear_truth() {
    let train = common::sample(20_000, 1, false);
    let m = Classifier::fit(Algorithm::Logistic, &train.x, train.width, &train.y, &FitParams::default()).expect("fit");
    let Classifier::Logistic(lr) = &m else { panic!("a logistic model") };
    // True coefficients: -0.5 (intercept), 1.2, -0.8, 0, 0.
    let truth = [1.2, -0.8, 0.0, 0.0];
    for (c, t) in lr.coefficients.iter().zip(truth) {
        assert!((c - t).abs() < 0.1, "coefficients {:?} intercept {}", lr.coefficients, lr.intercept);
    }
    assert!((lr.intercept + 0.5).abs() < 0.1, "intercept {}", lr.intercept);
}

#[test]
fn boosted_trees_beat_the_linear_baseline_where_the_truth_is_not_linear() {
    let train = common::sample(10_000, 2, true);
    let test = common::sample(5_000, 3, true);
    let params = FitParams::default();
    let oracle = classifier_metrics(&test.p, &test.y).roc_auc;
    let auc = |a: Algorithm| {
        let m = Classifier::fit(a, &train.x, train.width, &train.y, &params).expect("fit");
        classifier_metrics(&m.predict(&test.x, test.width), &test.y)
    };
    let (prior, logistic, gbdt) = (auc(Algorithm::Prior), auc(Algorithm::Logistic), auc(Algorithm::Gbdt));
    eprintln!("AUC oracle {oracle:.4} gbdt {:.4} logistic {:.4}", gbdt.roc_auc, logistic.roc_auc);
    assert_eq!(prior.roc_auc, 0.5);
    // The linear terms alone rank at about 0.69 here.
    assert!(logistic.roc_auc > 0.65, "logistic {logistic:?}");
    assert!(gbdt.roc_auc > logistic.roc_auc + 0.05, "gbdt {gbdt:?} vs logistic {logistic:?}");
    assert!(gbdt.roc_auc > oracle - 0.02, "gbdt {:.4} vs the true probabilities' {oracle:.4}", gbdt.roc_auc);
    assert!(gbdt.log_loss < logistic.log_loss && gbdt.brier < logistic.brier, "{gbdt:?} vs {logistic:?}");
}

#[test]
fn fits_are_reproducible_and_weights_round_trip() {
    let train = common::sample(3_000, 4, true);
    let test = common::sample(500, 5, true);
    for a in Algorithm::ALL.into_iter().filter(|a| !a.is_ranker()) {
        let fit = || Classifier::fit(a, &train.x, train.width, &train.y, &FitParams::default()).expect("fit");
        let (first, second) = (fit(), fit());
        let p = first.predict(&test.x, test.width);
        assert_eq!(p, second.predict(&test.x, test.width), "{a} is not reproducible");
        let json = first.to_json().expect("to json");
        assert_eq!(second.to_json().expect("to json"), json, "{a} weights differ between two fits");
        let loaded = Classifier::from_json(a, &json).expect("from json");
        assert_eq!(loaded.predict(&test.x, test.width), p, "{a} does not round-trip");
        // One row at a time scores as the batch does (the layouts differ for trees).
        let one: Vec<f64> = test.x.chunks_exact(test.width).flat_map(|r| loaded.predict(r, test.width)).collect();
        assert_eq!(one, p, "{a}: single rows differ from the batch");
    }
}

#[test]
fn contributions_add_up_to_the_log_odds() {
    let train = common::sample(3_000, 6, true);
    let test = common::sample(50, 7, true);
    for a in [Algorithm::Logistic, Algorithm::Gbdt] {
        let m = Classifier::fit(a, &train.x, train.width, &train.y, &FitParams::default()).expect("fit");
        for row in test.x.chunks_exact(test.width) {
            let p = m.predict(row, test.width)[0];
            let (columns, bias) = m.contributions(row).expect("explained");
            let logit: f64 = bias + columns.iter().sum::<f64>();
            assert!((1.0 / (1.0 + (-logit).exp()) - p).abs() < 1e-6, "{a}: {columns:?} + {bias} vs p = {p}");
        }
    }
}

#[test]
fn a_single_class_or_a_bad_shape_is_a_clear_error() {
    let err =
        Classifier::fit(Algorithm::Gbdt, &[1.0, 2.0], 1, &[true, true], &FitParams::default()).expect_err("one class");
    assert!(err.to_string().contains("single class (2 positive of 2)"), "{err}");
    let err = Classifier::fit(Algorithm::Logistic, &[1.0, 2.0, 3.0], 2, &[true, false], &FitParams::default())
        .expect_err("shape");
    assert!(err.to_string().contains("3 values, expected 2 rows × 2 columns"), "{err}");
    let err = "xgboost".parse::<Algorithm>().expect_err("unknown");
    assert_eq!(err.to_string(), "unknown algorithm `xgboost`; expected one of prior, logistic, gbdt, popularity, mlp");
    let err =
        Classifier::fit(Algorithm::Mlp, &[1.0, 2.0], 1, &[true, false], &FitParams::default()).expect_err("a ranker");
    assert_eq!(err.to_string(), "mlp ranks offers; classifiers are prior, logistic and gbdt");
}
