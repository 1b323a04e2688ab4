//! The ONNX runtime against scikit-learn: models fitted and exported by
//! `tests/python/sklearn_onnx.py` (skl2onnx) score the same rows here as in scikit-learn, and
//! models or rows that do not fit give errors, not panics.

mod common;

use std::sync::Arc;

use livora_inference::{Error, OnnxModel, ScoreKind, init_runtime};
use ndarray::{Array2, ArrayView2, Axis, ShapeBuilder, Slice};

/// scikit-learn computes in float64; ONNX Runtime runs these graphs in float32 (the linear
/// model's dot product and sigmoid, the sum of 50 trees' leaf values), so each score may differ
/// by a few float32 ulps of its terms (float32's epsilon is 1.2e-7); we measured at most 1.8e-7.
/// 1e-5 leaves room for other CPUs' kernels and still fails on any real difference in the model.
const TOLERANCE: f32 = 1e-5;

fn model(name: &str) -> OnnxModel {
    let path = common::sklearn_models().join(format!("{name}.onnx"));
    OnnxModel::load(&path, &common::config()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn sklearn_scores(name: &str) -> Vec<f32> {
    let scores: Vec<f64> = common::read_json(&common::sklearn_models().join(format!("{name}_proba.json")));
    // The float64 scores, rounded once to float32: the comparison is then in the runtime's type.
    scores.into_iter().map(|p| p as f32).collect()
}

/// `rows[range, ..]` (ndarray's `s!` cannot be used under `forbid(unsafe_code)`).
fn row_range(rows: &Array2<f32>, range: std::ops::Range<usize>) -> ArrayView2<'_, f32> {
    rows.slice_axis(Axis(0), Slice::from(range))
}

#[test]
fn scores_match_scikit_learn_on_every_row() {
    let rows = common::rows();
    assert_eq!(rows.dim(), (2000, 8));
    for name in ["logistic", "gradient_boosting"] {
        let model = model(name);
        let expected = sklearn_scores(name);
        let scores = model.predict(rows.view()).expect("predicts");
        assert_eq!(scores.len(), expected.len(), "{name}");
        let mut max_diff = 0.0_f32;
        for (row, (got, want)) in scores.iter().zip(&expected).enumerate() {
            let diff = (got - want).abs();
            assert!(diff <= TOLERANCE, "{name}, row {row}: onnx {got}, scikit-learn {want}, differ by {diff}");
            max_diff = max_diff.max(diff);
        }
        // Not a constant: the model separates the classes.
        assert!(scores.iter().any(|p| *p < 0.1) && scores.iter().any(|p| *p > 0.9), "{name}");
        println!("{name}: {} rows, max |onnx - scikit-learn| = {max_diff:e}", scores.len());
    }
}

#[test]
fn a_skl2onnx_classifier_describes_itself() {
    let model = model("logistic");
    assert_eq!((model.input_name(), model.n_features(), model.output_name()), ("X", Some(8), "probabilities"));
    let metadata = model.metadata();
    assert_eq!(metadata.score, ScoreKind::PositiveClassProbability);
    assert_eq!(metadata.producer_name.as_deref(), Some("skl2onnx"));
    assert_eq!(metadata.graph_name.as_deref(), Some("ONNX(LogisticRegression)"));
    assert_eq!(metadata.input_name, "X");
    assert_eq!(metadata.n_features, Some(8));
}

#[test]
fn any_layout_and_any_number_of_rows_score_the_same() {
    let model = model("gradient_boosting");
    let rows = common::rows();
    let expected = model.predict(rows.view()).expect("predicts");

    let mut column_major = Array2::zeros(rows.dim().f());
    column_major.assign(&rows);
    assert!(!column_major.is_standard_layout());
    assert_eq!(model.predict(column_major.view()).expect("predicts"), expected);

    let one = model.predict(row_range(&rows, 5..6)).expect("one row");
    assert_eq!(one, [expected[5]]);
    assert_eq!(model.predict(row_range(&rows, 0..0)).expect("no rows"), Vec::<f32>::new());
}

#[test]
fn concurrent_callers_get_the_same_scores() {
    let model = Arc::new(model("logistic"));
    let rows = Arc::new(common::rows());
    let expected = model.predict(rows.view()).expect("predicts");
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let (model, rows, expected) = (&model, &rows, &expected);
            scope.spawn(move || {
                for start in (thread * 100..2000).step_by(400) {
                    let scores = model.predict(row_range(rows, start..start + 100)).expect("predicts");
                    assert_eq!(scores, expected[start..start + 100]);
                }
            });
        }
    });
    let cap = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!((1..=cap).contains(&model.sessions()), "{} sessions", model.sessions());
}

#[test]
fn a_wrong_feature_count_is_named() {
    let model = model("logistic");
    let rows = common::rows();
    let error = model.predict(rows.slice_axis(Axis(1), Slice::from(..7))).expect_err("seven features");
    assert!(matches!(error, Error::InvalidInput(_)), "{error:?}");
    assert_eq!(error.to_string(), "model expects 8 features, got 7");
    let wide = Array2::<f32>::zeros((3, 9));
    assert_eq!(model.predict(wide.view()).expect_err("nine").to_string(), "model expects 8 features, got 9");
}

#[test]
fn a_zipmap_classifier_is_refused_with_how_to_export_it() {
    let path = common::sklearn_models().join("logistic_zipmap.onnx");
    let error = OnnxModel::load(&path, &common::config()).expect_err("zipmap");
    assert!(matches!(error, Error::UnsupportedModel { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("output `output_probability` is sequence of map<i64, f32>, a ZipMap"), "{message}");
    assert!(message.contains(r#"options={id(model): {"zipmap": False}}"#), "{message}");
    assert!(message.contains("logistic_zipmap.onnx"), "{message}");
}

#[test]
fn bytes_that_are_not_onnx_are_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("garbage.onnx");
    std::fs::write(&path, b"\x08\xff\xff\xff\xff\xff not a model, just bytes \x00\x01\x02").expect("write");
    let error = OnnxModel::load(&path, &common::config()).expect_err("garbage");
    assert!(matches!(error, Error::InvalidModel { .. }), "{error:?}");
    assert!(error.to_string().starts_with(&format!("the model file `{}` is not an ONNX model", path.display())));

    let error = OnnxModel::from_bytes(Vec::new(), &common::config()).expect_err("empty");
    assert!(matches!(error, Error::InvalidModel { .. }), "{error:?}");
    let text = std::fs::read(common::sklearn_models().join("rows.json")).expect("rows");
    assert!(matches!(OnnxModel::from_bytes(text, &common::config()), Err(Error::InvalidModel { .. })));
}

#[test]
fn a_missing_model_file_is_not_found() {
    let error = OnnxModel::load("/nonexistent/model.onnx".as_ref(), &common::config()).expect_err("missing");
    assert!(matches!(error, Error::ModelRead { .. }), "{error:?}");
    assert_eq!(error.code(), livora_common::ErrorCode::NotFound);
}

#[test]
fn the_library_is_loaded_once_and_then_kept() {
    init_runtime(&common::config()).expect("loads");
    init_runtime(&common::config()).expect("the same library again is fine");

    let dir = tempfile::tempdir().expect("temp dir");
    let other = dir.path().join("libonnxruntime.so.1.99.0");
    std::fs::write(&other, b"another library").expect("write");
    let config = livora_inference::OnnxConfig { runtime_path: Some(other) };
    let error = init_runtime(&config).expect_err("another library");
    assert!(matches!(error, Error::RuntimeAlreadyLoaded { .. }), "{error:?}");
    assert!(error.to_string().contains("is already loaded from"), "{error}");
}
