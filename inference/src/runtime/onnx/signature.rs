//! What a tabular scorer's graph must look like, and reading the scores out of its output.
//!
//! One input: a float tensor `[N, F]` of feature rows, `N` dynamic. One output that holds the
//! score: a binary classifier's probabilities `[N, 2]` (skl2onnx and onnxmltools name it
//! `probabilities` when exported with `zipmap=False`), of which the positive class (column 1) is
//! the score, or a single float `[N, 1]` or `[N]` (a regressor, or a model that outputs one score).

use ort::value::{TensorElementType, ValueType};

/// A model input or output: its name and type.
pub(crate) type Port<'a> = (&'a str, &'a ValueType);

/// The name skl2onnx and onnxmltools give a classifier's probability tensor.
const PROBABILITIES: &str = "probabilities";

/// How the model is fed and where its score is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signature {
    /// The input's name.
    pub(crate) input: String,
    /// `F`, when the graph fixes it.
    pub(crate) n_features: Option<usize>,
    /// The output's name.
    pub(crate) output: String,
    /// What the output holds.
    pub(crate) kind: OutputKind,
}

/// What the scoring output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputKind {
    /// A binary classifier's class probabilities `[N, 2]`; the score is column 1.
    Probabilities,
    /// One score per row, `[N, 1]` or `[N]`.
    Score,
}

/// Checks the graph's inputs and outputs; the error says what was found and what was expected.
pub(crate) fn inspect(inputs: &[Port<'_>], outputs: &[Port<'_>]) -> Result<Signature, String> {
    let (input, n_features) = input(inputs)?;
    let (output, kind) = output(outputs)?;
    Ok(Signature { input, n_features, output, kind })
}

fn input(inputs: &[Port<'_>]) -> Result<(String, Option<usize>), String> {
    let [(name, ty)] = inputs else {
        return Err(format!(
            "expected one input, a float tensor [N, F] of feature rows; the model has {}: {}",
            inputs.len(),
            list(inputs)
        ));
    };
    let expected = "expected a float tensor [N, F] of feature rows (skl2onnx: FloatTensorType([None, F]))";
    let Some(dims) = float_dims(ty).filter(|dims| dims.len() == 2) else {
        return Err(format!("input `{name}` is {}; {expected}", describe(ty)));
    };
    if dims[0] >= 0 {
        return Err(format!(
            "input `{name}` is {}: its batch size is fixed at {}; {expected} with N dynamic",
            describe(ty),
            dims[0]
        ));
    }
    match usize::try_from(dims[1]) {
        Ok(0) => Err(format!("input `{name}` is {}: it has no features; {expected}", describe(ty))),
        Ok(n) => Ok((name.to_string(), Some(n))),
        Err(_) => Ok((name.to_string(), None)),
    }
}

fn output(outputs: &[Port<'_>]) -> Result<(String, OutputKind), String> {
    let probabilities: Vec<_> = outputs.iter().filter(|(name, ty)| is_probabilities(name, ty)).collect();
    match probabilities.as_slice() {
        [(name, _)] => return Ok((name.to_string(), OutputKind::Probabilities)),
        [] => {}
        _ => {
            return Err(format!("several outputs could be the class probabilities: {}; expected one", list(outputs)));
        }
    }
    if let Some((name, ty)) = outputs.iter().find(|(_, ty)| is_zipmap(ty)) {
        return Err(format!(
            "output `{name}` is {}, a ZipMap (one map of class to probability per row); export the \
             classifier without it, as a probability tensor [N, 2]: with skl2onnx, \
             options={{id(model): {{\"zipmap\": False}}}}",
            describe(ty)
        ));
    }
    if let Some((name, ty)) = outputs.iter().find(|(_, ty)| float_dims(ty).is_some_and(|d| d.len() == 2 && d[1] > 2)) {
        return Err(format!(
            "output `{name}` is {}, the probabilities of more than two classes; only binary \
             classifiers ([N, 2]) and single scores ([N, 1] or [N]) are supported",
            describe(ty)
        ));
    }
    let scores: Vec<_> = outputs.iter().filter(|(_, ty)| is_score(ty)).collect();
    match scores.as_slice() {
        [(name, _)] => Ok((name.to_string(), OutputKind::Score)),
        [] => Err(format!(
            "no output is a probability tensor [N, 2] or a score [N, 1] or [N] of floats; the model has {}",
            list(outputs)
        )),
        _ => Err(format!("several outputs could be the score: {}; expected one", list(outputs))),
    }
}

/// The scores of `rows` rows from the output tensor's shape and data.
pub(crate) fn scores(kind: OutputKind, shape: &[i64], data: &[f32], rows: usize) -> Result<Vec<f32>, String> {
    let rows_i64 = i64::try_from(rows).map_err(|_| format!("{rows} rows is too many"))?;
    let fits = match kind {
        OutputKind::Probabilities => shape == [rows_i64, 2] && data.len() == rows * 2,
        OutputKind::Score => (shape == [rows_i64] || shape == [rows_i64, 1]) && data.len() == rows,
    };
    if !fits {
        let expected = match kind {
            OutputKind::Probabilities => format!("[{rows}, 2]"),
            OutputKind::Score => format!("[{rows}] or [{rows}, 1]"),
        };
        return Err(format!("the output has shape {shape:?} for {rows} rows; expected {expected}"));
    }
    Ok(match kind {
        OutputKind::Probabilities => data.chunks_exact(2).map(|row| row[1]).collect(),
        OutputKind::Score => data.to_vec(),
    })
}

/// A float32 tensor's dimensions (`-1` where dynamic); `None` for anything else.
fn float_dims(ty: &ValueType) -> Option<&[i64]> {
    match ty {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => Some(shape),
        _ => None,
    }
}

/// `[N, 2]` floats, or `[N, ?]` floats under the name exporters give probabilities.
fn is_probabilities(name: &str, ty: &ValueType) -> bool {
    float_dims(ty).is_some_and(|dims| dims.len() == 2 && (dims[1] == 2 || (dims[1] < 0 && name == PROBABILITIES)))
}

fn is_score(ty: &ValueType) -> bool {
    float_dims(ty).is_some_and(|dims| dims.len() == 1 || (dims.len() == 2 && dims[1] == 1))
}

fn is_zipmap(ty: &ValueType) -> bool {
    matches!(ty, ValueType::Sequence(inner) if inner.is_map())
}

/// `` `X` (f32 [?, 8]), `label` (i64 [?]) ``.
fn list(ports: &[Port<'_>]) -> String {
    if ports.is_empty() {
        return "none".to_string();
    }
    ports.iter().map(|(name, ty)| format!("`{name}` ({})", describe(ty))).collect::<Vec<_>>().join(", ")
}

/// A type in the words of the error messages: `f32 [?, 8]`, `sequence of map<i64, f32>`.
/// (`ValueType`'s own `Display` indexes the dimension names and could panic on a short list.)
fn describe(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { ty, shape, .. } => {
            let dims: Vec<String> =
                shape.iter().map(|d| if *d < 0 { "?".to_string() } else { d.to_string() }).collect();
            format!("{ty} [{}]", dims.join(", "))
        }
        ValueType::Sequence(inner) => format!("sequence of {}", describe(inner)),
        ValueType::Map { key, value } => format!("map<{key}, {value}>"),
        ValueType::Optional(inner) => format!("optional {}", describe(inner)),
    }
}

#[cfg(test)]
mod tests {
    use ort::value::{Shape, SymbolicDimensions};

    use super::*;

    fn tensor(ty: TensorElementType, dims: &[i64]) -> ValueType {
        ValueType::Tensor {
            ty,
            shape: Shape::new(dims.iter().copied()),
            dimension_symbols: SymbolicDimensions::empty(dims.len()),
        }
    }

    fn floats(dims: &[i64]) -> ValueType {
        tensor(TensorElementType::Float32, dims)
    }

    fn zipmap() -> ValueType {
        ValueType::Sequence(Box::new(ValueType::Map {
            key: TensorElementType::Int64,
            value: TensorElementType::Float32,
        }))
    }

    #[test]
    fn a_skl2onnx_classifier_scores_with_column_one_of_its_probabilities() {
        let (x, label, proba) = (floats(&[-1, 8]), tensor(TensorElementType::Int64, &[-1]), floats(&[-1, 2]));
        let signature = inspect(&[("X", &x)], &[("label", &label), ("probabilities", &proba)]).expect("supported");
        assert_eq!(
            signature,
            Signature {
                input: "X".into(),
                n_features: Some(8),
                output: "probabilities".into(),
                kind: OutputKind::Probabilities
            }
        );
        let scores = scores(OutputKind::Probabilities, &[2, 2], &[0.9, 0.1, 0.25, 0.75], 2).expect("fits");
        assert_eq!(scores, [0.1, 0.75]);
    }

    #[test]
    fn a_regressor_or_scorer_has_one_float_output() {
        for dims in [&[-1, 1][..], &[-1]] {
            let (x, y) = (floats(&[-1, -1]), floats(dims));
            let signature = inspect(&[("input", &x)], &[("variable", &y)]).expect("supported");
            assert_eq!((signature.n_features, signature.kind), (None, OutputKind::Score));
        }
        assert_eq!(scores(OutputKind::Score, &[3, 1], &[1.0, 2.0, 3.0], 3), Ok(vec![1.0, 2.0, 3.0]));
        assert_eq!(scores(OutputKind::Score, &[2], &[1.0, 2.0], 2), Ok(vec![1.0, 2.0]));
    }

    #[test]
    fn probabilities_of_unknown_width_are_accepted_by_name_and_checked_when_run() {
        let (x, proba) = (floats(&[-1, 4]), floats(&[-1, -1]));
        let signature = inspect(&[("X", &x)], &[("probabilities", &proba)]).expect("supported");
        assert_eq!(signature.kind, OutputKind::Probabilities);
        let error = scores(OutputKind::Probabilities, &[2, 3], &[0.0; 6], 2).expect_err("three classes");
        assert_eq!(error, "the output has shape [2, 3] for 2 rows; expected [2, 2]");
    }

    #[test]
    fn a_zipmap_output_says_to_export_without_it() {
        let (x, label, map) = (floats(&[-1, 8]), tensor(TensorElementType::Int64, &[-1]), zipmap());
        let error =
            inspect(&[("X", &x)], &[("output_label", &label), ("output_probability", &map)]).expect_err("zipmap");
        assert!(error.contains("output `output_probability` is sequence of map<i64, f32>"), "{error}");
        assert!(error.contains(r#"options={id(model): {"zipmap": False}}"#), "{error}");
    }

    #[test]
    fn inputs_other_than_one_float_matrix_are_named() {
        let (a, b) = (floats(&[-1, 3]), tensor(TensorElementType::Int64, &[-1, 2]));
        let out = floats(&[-1, 2]);
        let outputs = [("probabilities", &out)];
        let error = inspect(&[("a", &a), ("b", &b)], &outputs).expect_err("two inputs");
        assert_eq!(
            error,
            "expected one input, a float tensor [N, F] of feature rows; the model has 2: \
             `a` (f32 [?, 3]), `b` (i64 [?, 2])"
        );
        let error = inspect(&[("b", &b)], &outputs).expect_err("ints");
        assert!(error.starts_with("input `b` is i64 [?, 2]; expected a float tensor [N, F]"), "{error}");
        let doubles = tensor(TensorElementType::Float64, &[-1, 3]);
        assert!(inspect(&[("d", &doubles)], &outputs).is_err());
        let image = floats(&[-1, 3, 32, 32]);
        assert!(inspect(&[("image", &image)], &outputs).is_err());
        let fixed = floats(&[1, 3]);
        let error = inspect(&[("x", &fixed)], &outputs).expect_err("fixed batch");
        assert!(error.contains("its batch size is fixed at 1"), "{error}");
        assert!(inspect(&[], &outputs).expect_err("no input").contains("the model has 0: none"));
    }

    #[test]
    fn outputs_without_a_single_score_are_named() {
        let x = floats(&[-1, 8]);
        let (label, three, two) = (tensor(TensorElementType::Int64, &[-1]), floats(&[-1, 3]), floats(&[-1, 2]));
        let error = inspect(&[("X", &x)], &[("label", &label)]).expect_err("labels only");
        assert!(error.ends_with("the model has `label` (i64 [?])"), "{error}");
        let error = inspect(&[("X", &x)], &[("probabilities", &three)]).expect_err("multiclass");
        assert!(error.contains("more than two classes"), "{error}");
        let error = inspect(&[("X", &x)], &[("a", &two), ("b", &two)]).expect_err("ambiguous");
        assert!(error.starts_with("several outputs could be the class probabilities"), "{error}");
        let (s1, s2) = (floats(&[-1]), floats(&[-1, 1]));
        let error = inspect(&[("X", &x)], &[("s1", &s1), ("s2", &s2)]).expect_err("ambiguous");
        assert!(error.starts_with("several outputs could be the score"), "{error}");
    }

    #[test]
    fn an_output_of_the_wrong_length_is_an_error_not_a_panic() {
        assert!(scores(OutputKind::Probabilities, &[2, 2], &[0.5; 3], 2).is_err());
        assert!(scores(OutputKind::Score, &[3], &[0.5; 3], 2).is_err());
        assert!(scores(OutputKind::Score, &[2, 2], &[0.5; 4], 2).is_err());
        assert_eq!(scores(OutputKind::Score, &[0], &[], 0), Ok(vec![]));
    }
}
