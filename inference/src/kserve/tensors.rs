//! KServe V2 tensors to feature columns and back: the rules of `proto/inference/grpc_predict_v2.proto`.
//!
//! One input per feature of the model's encoder, named as the feature, shape `[N]` or `[N, 1]`;
//! numeric features as FP64, FP32, INT64, INT32 or BOOL (NaN: missing), categorical ones as BYTES
//! (UTF-8, empty: missing); values typed in `contents` or raw in `raw_input_contents`
//! (little-endian; BYTES elements length-prefixed by a 4-byte little-endian length, as Triton
//! does). Every violation is an [`Error::InvalidInput`] naming the input and the reason.

use livora_models::encoding::{EncodedFeature, Encoding};
use livora_models::{Column, Encoder, Table};
use livora_proto::inference::model_infer_request::InferInputTensor;
use livora_proto::inference::model_infer_response::InferOutputTensor;
use livora_proto::inference::{InferTensorContents, ModelInferRequest};

use crate::error::{Error, Result};

/// The one output: the probability of the positive class.
pub(crate) const OUTPUT: &str = "probability";
/// The datatype of [`OUTPUT`].
pub(crate) const FP64: &str = "FP64";
/// The datatype of categorical inputs.
pub(crate) const BYTES: &str = "BYTES";
/// What a numeric feature accepts, as said in error messages.
const NUMERIC_TYPES: &str = "FP64, FP32, INT64, INT32 or BOOL";

/// The datatype ModelMetadata describes a feature with: FP64 for a number, BYTES for text.
pub(crate) fn metadata_datatype(feature: &EncodedFeature) -> &'static str {
    if is_text(feature) { BYTES } else { FP64 }
}

fn is_text(feature: &EncodedFeature) -> bool {
    matches!(feature.encoding, Encoding::Categorical { .. })
}

/// The inputs of a request, as the encoder reads them.
#[derive(Debug)]
pub(crate) struct Inputs {
    /// One column per encoder feature, in encoder order.
    pub table: Table,
    /// The entity of each row, when the request sends the optional input named as the model's
    /// join key (`user_id`, BYTES): the prediction log and the prediction view record them.
    pub entity_keys: Option<Vec<String>>,
    /// Whether they came in `raw_input_contents` (the answer then uses `raw_output_contents`).
    pub raw: bool,
}

fn invalid(input: &str, reason: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("input `{input}`: {reason}"))
}

fn names(encoder: &Encoder) -> String {
    encoder.features.iter().map(|f| format!("`{}`", f.name)).collect::<Vec<_>>().join(", ")
}

/// Decodes the input tensors of `request` for `encoder` (and the optional entity keys, the input
/// named `join_key`); at most `max_rows` rows.
pub(crate) fn decode(
    request: &ModelInferRequest,
    encoder: &Encoder,
    join_key: &str,
    max_rows: usize,
) -> Result<Inputs> {
    let raw = !request.raw_input_contents.is_empty();
    if raw && request.raw_input_contents.len() != request.inputs.len() {
        return Err(Error::InvalidInput(format!(
            "raw_input_contents: {} entries for {} inputs; give one per input, in `inputs` order",
            request.raw_input_contents.len(),
            request.inputs.len()
        )));
    }
    if request.inputs.is_empty() {
        return Err(Error::InvalidInput(format!("inputs: none given; the model reads {}", names(encoder))));
    }
    let mut columns: Vec<Option<Column>> = vec![None; encoder.features.len()];
    // The entity keys are read as a text feature would be.
    let key_feature = EncodedFeature {
        name: join_key.to_owned(),
        encoding: Encoding::Categorical { levels: Vec::new() },
        missing_rate: 0.0,
    };
    let mut keys: Option<Column> = None;
    // The first input's name and row count: every other input must have as many rows.
    let mut rows: Option<(&str, usize)> = None;
    for (i, tensor) in request.inputs.iter().enumerate() {
        let name = tensor.name.as_str();
        let at = encoder.features.iter().position(|f| f.name == name);
        if at.is_none() && name != join_key {
            return Err(invalid(
                name,
                format_args!(
                    "not a feature of the model, which reads {} (and `{join_key}`, the entity keys)",
                    names(encoder)
                ),
            ));
        }
        if at.map_or(keys.is_some(), |at| columns[at].is_some()) {
            return Err(invalid(name, "given twice"));
        }
        let feature = at.map_or(&key_feature, |at| &encoder.features[at]);
        let n = shape_rows(tensor, max_rows)?;
        match rows {
            Some((first, m)) if m != n => {
                return Err(invalid(
                    name,
                    format_args!("{n} rows, but input `{first}` has {m}; every input needs the same rows"),
                ));
            }
            Some(_) => {}
            None => rows = Some((name, n)),
        }
        let column = if raw {
            if tensor.contents.as_ref().is_some_and(has_values) {
                return Err(invalid(name, "sets `contents` while the request sends raw_input_contents; use one"));
            }
            raw_column(tensor, feature, n, &request.raw_input_contents[i])?
        } else {
            typed_column(tensor, feature, n)?
        };
        match at {
            Some(at) => columns[at] = Some(column),
            None => keys = Some(column),
        }
    }
    let entity_keys = match keys {
        None => None,
        Some(Column::Categorical(values)) => Some(
            values
                .into_iter()
                .enumerate()
                .map(|(row, k)| k.ok_or_else(|| invalid(join_key, format_args!("row {row}: an empty entity key"))))
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(Column::Numeric(_)) => return Err(invalid(join_key, "entity keys are BYTES")),
    };
    let mut table = Table::default();
    for (feature, column) in encoder.features.iter().zip(columns) {
        let column = column.ok_or_else(|| {
            invalid(
                &feature.name,
                format_args!("missing; every feature of the model must be given: {}", names(encoder)),
            )
        })?;
        table.push(feature.name.clone(), column)?;
    }
    Ok(Inputs { table, entity_keys, raw })
}

/// N, from a shape `[N]` or `[N, 1]`.
fn shape_rows(tensor: &InferInputTensor, max_rows: usize) -> Result<usize> {
    let name = tensor.name.as_str();
    let n = match tensor.shape.as_slice() {
        [n] | [n, 1] => *n,
        other => return Err(invalid(name, format_args!("shape {other:?}: give [N] or [N, 1]"))),
    };
    let n = usize::try_from(n).map_err(|_| invalid(name, format_args!("shape {:?}: N is negative", tensor.shape)))?;
    if n == 0 {
        return Err(invalid(name, "no rows; give at least one"));
    }
    if n > max_rows {
        return Err(invalid(name, format_args!("{n} rows, more than the {max_rows} a request may score")));
    }
    Ok(n)
}

fn has_values(c: &InferTensorContents) -> bool {
    !(c.bool_contents.is_empty()
        && c.int_contents.is_empty()
        && c.int64_contents.is_empty()
        && c.uint_contents.is_empty()
        && c.uint64_contents.is_empty()
        && c.fp32_contents.is_empty()
        && c.fp64_contents.is_empty()
        && c.bytes_contents.is_empty())
}

/// Checks the datatype fits the feature: BYTES for text, one of [`NUMERIC_TYPES`] for numbers.
fn check_datatype(tensor: &InferInputTensor, feature: &EncodedFeature) -> Result<()> {
    let (name, datatype) = (tensor.name.as_str(), tensor.datatype.as_str());
    match (is_text(feature), datatype) {
        (true, BYTES) | (false, "FP64" | "FP32" | "INT64" | "INT32" | "BOOL") => Ok(()),
        (true, _) => {
            Err(invalid(name, format_args!("datatype {datatype}, but the feature is categorical: send BYTES (UTF-8)")))
        }
        (false, BYTES) => {
            Err(invalid(name, format_args!("datatype BYTES, but the feature is numeric: send {NUMERIC_TYPES}")))
        }
        (false, _) => Err(invalid(name, format_args!("datatype {datatype:?} is not accepted: send {NUMERIC_TYPES}"))),
    }
}

fn numbers(values: impl IntoIterator<Item = f64>) -> Column {
    Column::Numeric(values.into_iter().map(|v| (!v.is_nan()).then_some(v)).collect())
}

fn texts(values: Vec<String>) -> Column {
    Column::Categorical(values.into_iter().map(|s| (!s.is_empty()).then_some(s)).collect())
}

fn utf8(name: &str, k: usize, bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| invalid(name, format_args!("element {k} is not UTF-8: {e}")))
}

/// The column of a tensor whose values are in `contents`.
fn typed_column(tensor: &InferInputTensor, feature: &EncodedFeature, n: usize) -> Result<Column> {
    check_datatype(tensor, feature)?;
    let name = tensor.name.as_str();
    let empty = InferTensorContents::default();
    let c = tensor.contents.as_ref().unwrap_or(&empty);
    let (field, len) = match tensor.datatype.as_str() {
        "FP64" => ("fp64_contents", c.fp64_contents.len()),
        "FP32" => ("fp32_contents", c.fp32_contents.len()),
        "INT64" => ("int64_contents", c.int64_contents.len()),
        "INT32" => ("int_contents", c.int_contents.len()),
        "BOOL" => ("bool_contents", c.bool_contents.len()),
        _ => ("bytes_contents", c.bytes_contents.len()),
    };
    if len != n {
        return Err(invalid(name, format_args!("{len} values in contents.{field}, but the shape says {n}")));
    }
    Ok(match tensor.datatype.as_str() {
        "FP64" => numbers(c.fp64_contents.iter().copied()),
        "FP32" => numbers(c.fp32_contents.iter().map(|&v| f64::from(v))),
        "INT64" => numbers(c.int64_contents.iter().map(|&v| v as f64)),
        "INT32" => numbers(c.int_contents.iter().map(|&v| f64::from(v))),
        "BOOL" => numbers(c.bool_contents.iter().map(|&v| f64::from(u8::from(v)))),
        _ => texts(c.bytes_contents.iter().enumerate().map(|(k, b)| utf8(name, k, b)).collect::<Result<_>>()?),
    })
}

/// The column of a tensor whose values are `bytes` of `raw_input_contents`.
fn raw_column(tensor: &InferInputTensor, feature: &EncodedFeature, n: usize, bytes: &[u8]) -> Result<Column> {
    check_datatype(tensor, feature)?;
    let (name, datatype) = (tensor.name.as_str(), tensor.datatype.as_str());
    if datatype == BYTES {
        return raw_texts(name, n, bytes).map(texts);
    }
    let width = match datatype {
        "FP64" | "INT64" => 8,
        "FP32" | "INT32" => 4,
        _ => 1,
    };
    if bytes.len() != n * width {
        return Err(invalid(
            name,
            format_args!("{} raw bytes for {n} {datatype} values ({} expected)", bytes.len(), n * width),
        ));
    }
    let chunks = bytes.chunks_exact(width);
    // `chunks_exact` yields slices of exactly `width` bytes: the conversions never fall back.
    let eight = |c: &[u8]| <[u8; 8]>::try_from(c).unwrap_or_default();
    let four = |c: &[u8]| <[u8; 4]>::try_from(c).unwrap_or_default();
    Ok(match datatype {
        "FP64" => numbers(chunks.map(|c| f64::from_le_bytes(eight(c)))),
        "INT64" => numbers(chunks.map(|c| i64::from_le_bytes(eight(c)) as f64)),
        "FP32" => numbers(chunks.map(|c| f64::from(f32::from_le_bytes(four(c))))),
        "INT32" => numbers(chunks.map(|c| f64::from(i32::from_le_bytes(four(c))))),
        _ => {
            let values = bytes
                .iter()
                .enumerate()
                .map(|(k, &b)| match b {
                    0 | 1 => Ok(f64::from(b)),
                    _ => Err(invalid(name, format_args!("element {k} is the byte {b}, not a BOOL (0 or 1)"))),
                })
                .collect::<Result<Vec<f64>>>()?;
            numbers(values)
        }
    })
}

/// The `n` elements of raw BYTES: each a 4-byte little-endian length, then that many bytes.
fn raw_texts(name: &str, n: usize, mut bytes: &[u8]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    while !bytes.is_empty() {
        let k = out.len();
        let Some((length, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(invalid(name, format_args!("raw BYTES end inside the 4-byte length of element {k}")));
        };
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return Err(invalid(
                name,
                format_args!("raw BYTES element {k} claims {length} bytes, {} remain", rest.len()),
            ));
        }
        let (element, rest) = rest.split_at(length);
        out.push(utf8(name, k, element)?);
        bytes = rest;
    }
    if out.len() != n {
        return Err(invalid(name, format_args!("{} raw BYTES elements, but the shape says {n}", out.len())));
    }
    Ok(out)
}

/// Checks that the request asks for no output but [`OUTPUT`].
pub(crate) fn check_outputs(request: &ModelInferRequest) -> Result<()> {
    match request.outputs.iter().find(|o| o.name != OUTPUT) {
        Some(o) => {
            Err(Error::InvalidInput(format!("outputs: the model has no output `{}`; it gives `{OUTPUT}`", o.name)))
        }
        None => Ok(()),
    }
}

/// The [`OUTPUT`] tensor of `probabilities`, `per_row` values a row (shape `[N]` when 1, else
/// `[N, per_row]`): typed in `contents`, or as raw bytes to put in `raw_output_contents` when
/// `raw`.
pub(crate) fn output(probabilities: Vec<f64>, per_row: usize, raw: bool) -> (InferOutputTensor, Option<Vec<u8>>) {
    let rows = (probabilities.len() / per_row.max(1)) as i64;
    let shape = if per_row == 1 { vec![rows] } else { vec![rows, per_row as i64] };
    let mut tensor = InferOutputTensor { name: OUTPUT.into(), datatype: FP64.into(), shape, ..Default::default() };
    if raw {
        return (tensor, Some(probabilities.iter().flat_map(|p| p.to_le_bytes()).collect()));
    }
    tensor.contents = Some(InferTensorContents { fp64_contents: probabilities, ..Default::default() });
    (tensor, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder() -> Encoder {
        let feature = |name: &str, encoding| EncodedFeature { name: name.into(), encoding, missing_rate: 0.0 };
        Encoder {
            features: vec![
                feature("n", Encoding::Numeric { mean: 0.0, scale: 1.0 }),
                feature("c", Encoding::Categorical { levels: vec!["a".into()] }),
            ],
            skipped: vec![],
        }
    }

    fn tensor(name: &str, datatype: &str, shape: &[i64], contents: Option<InferTensorContents>) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            contents,
            ..Default::default()
        }
    }

    fn raw_bytes(elements: &[&[u8]]) -> Vec<u8> {
        elements.iter().flat_map(|e| (e.len() as u32).to_le_bytes().into_iter().chain(e.iter().copied())).collect()
    }

    fn error(request: &ModelInferRequest) -> String {
        decode(request, &encoder(), "user_id", 10).expect_err("refused").to_string()
    }

    #[test]
    fn raw_numbers_of_every_accepted_type_and_length_prefixed_text() {
        let cases: [(&str, Vec<u8>); 5] = [
            ("FP64", [1.5_f64, f64::NAN].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("FP32", [1.5_f32, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("INT64", [3_i64, -2].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("INT32", [3_i32, -2].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("BOOL", vec![1, 0]),
        ];
        let expected = [
            vec![Some(1.5), None],
            vec![Some(1.5), None],
            vec![Some(3.0), Some(-2.0)],
            vec![Some(3.0), Some(-2.0)],
            vec![Some(1.0), Some(0.0)],
        ];
        for ((datatype, bytes), want) in cases.into_iter().zip(expected) {
            let request = ModelInferRequest {
                inputs: vec![tensor("c", BYTES, &[2, 1], None), tensor("n", datatype, &[2], None)],
                raw_input_contents: vec![raw_bytes(&[b"a", b""]), bytes],
                ..Default::default()
            };
            let inputs = decode(&request, &encoder(), "user_id", 10).expect(datatype);
            assert!(inputs.raw);
            assert_eq!(inputs.table.names, ["n", "c"], "encoder order, whatever the request's");
            assert_eq!(inputs.table.columns[0], Column::Numeric(want), "{datatype}");
            assert_eq!(inputs.table.columns[1], Column::Categorical(vec![Some("a".into()), None]));
        }
    }

    #[test]
    fn typed_contents_and_the_typed_answer() {
        let request = ModelInferRequest {
            inputs: vec![
                tensor("n", "INT32", &[1], Some(InferTensorContents { int_contents: vec![7], ..Default::default() })),
                tensor(
                    "c",
                    BYTES,
                    &[1],
                    Some(InferTensorContents { bytes_contents: vec![b"\xc3\xa9".to_vec()], ..Default::default() }),
                ),
            ],
            ..Default::default()
        };
        let inputs = decode(&request, &encoder(), "user_id", 10).expect("decodes");
        assert!(!inputs.raw);
        assert_eq!(inputs.entity_keys, None);
        // The optional entity keys, named as the join key.
        let mut keyed = request.clone();
        keyed.inputs.push(tensor(
            "user_id",
            BYTES,
            &[1],
            Some(InferTensorContents { bytes_contents: vec![b"u-1".to_vec()], ..Default::default() }),
        ));
        let inputs = decode(&keyed, &encoder(), "user_id", 10).expect("decodes with keys");
        assert_eq!(inputs.entity_keys, Some(vec!["u-1".to_owned()]));
        assert_eq!(inputs.table.columns[0], Column::Numeric(vec![Some(7.0)]));
        assert_eq!(inputs.table.columns[1], Column::Categorical(vec![Some("é".into())]));

        let (tensor, raw) = output(vec![0.25, 0.5], 1, false);
        assert_eq!((tensor.name.as_str(), tensor.datatype.as_str(), tensor.shape.as_slice()), (OUTPUT, FP64, &[2][..]));
        assert_eq!(tensor.contents.map(|c| c.fp64_contents), Some(vec![0.25, 0.5]));
        assert_eq!(raw, None);
        let (tensor, raw) = output(vec![0.25], 1, true);
        assert_eq!((tensor.contents, raw), (None, Some(0.25_f64.to_le_bytes().to_vec())));
        // A ranker's rows: one probability per offer.
        let (tensor, _) = output(vec![0.5, 0.3, 0.2, 0.1, 0.1, 0.8], 3, false);
        assert_eq!(tensor.shape, [2, 3]);
    }

    #[test]
    fn every_violation_names_the_input_and_the_reason() {
        let raw = |inputs: Vec<InferInputTensor>, contents: Vec<Vec<u8>>| ModelInferRequest {
            inputs,
            raw_input_contents: contents,
            ..Default::default()
        };
        let ok_c = || tensor("c", BYTES, &[1], None);
        let typed_n = |contents| tensor("n", "FP64", &[1], Some(contents));
        let c_bytes = || raw_bytes(&[b"a"]);
        let one = 1.0_f64.to_le_bytes().to_vec();
        let cases: Vec<(ModelInferRequest, &str)> = vec![
            (raw(vec![], vec![]), "inputs: none given; the model reads `n`, `c`"),
            (raw(vec![tensor("x", "FP64", &[1], None)], vec![one.clone()]), "input `x`: not a feature of the model"),
            (
                raw(
                    vec![tensor("n", "FP64", &[1], None), tensor("n", "FP64", &[1], None)],
                    vec![one.clone(), one.clone()],
                ),
                "input `n`: given twice",
            ),
            (raw(vec![ok_c()], vec![c_bytes()]), "input `n`: missing; every feature of the model must be given"),
            (
                raw(vec![tensor("n", BYTES, &[1], None), ok_c()], vec![c_bytes(), c_bytes()]),
                "input `n`: datatype BYTES, but the feature is numeric",
            ),
            (
                raw(vec![tensor("n", "FP16", &[1], None), ok_c()], vec![vec![0, 0], c_bytes()]),
                "input `n`: datatype \"FP16\" is not accepted",
            ),
            (
                raw(
                    vec![tensor("n", "FP64", &[1], None), tensor("c", "FP64", &[1], None)],
                    vec![one.clone(), one.clone()],
                ),
                "input `c`: datatype FP64, but the feature is categorical",
            ),
            (
                raw(vec![tensor("n", "FP64", &[1, 2], None), ok_c()], vec![one.clone(), c_bytes()]),
                "input `n`: shape [1, 2]: give [N] or [N, 1]",
            ),
            (
                raw(vec![tensor("n", "FP64", &[-1], None), ok_c()], vec![one.clone(), c_bytes()]),
                "input `n`: shape [-1]: N is negative",
            ),
            (raw(vec![tensor("n", "FP64", &[0], None), ok_c()], vec![vec![], c_bytes()]), "input `n`: no rows"),
            (
                raw(vec![tensor("n", "FP64", &[11], None), ok_c()], vec![one.clone(), c_bytes()]),
                "input `n`: 11 rows, more than the 10",
            ),
            (
                raw(
                    vec![tensor("n", "FP64", &[2], None), ok_c()],
                    vec![[one.clone(), one.clone()].concat(), c_bytes()],
                ),
                "input `c`: 1 rows, but input `n` has 2",
            ),
            (
                raw(
                    vec![tensor("n", "FP64", &[2], None), tensor("c", BYTES, &[2], None)],
                    vec![one.clone(), raw_bytes(&[b"a", b"b"])],
                ),
                "input `n`: 8 raw bytes for 2 FP64 values (16 expected)",
            ),
            (
                raw(vec![tensor("n", "BOOL", &[1], None), ok_c()], vec![vec![2], c_bytes()]),
                "input `n`: element 0 is the byte 2, not a BOOL",
            ),
            (
                raw(vec![tensor("n", "FP64", &[1], None), ok_c()], vec![one.clone(), vec![3, 0]]),
                "input `c`: raw BYTES end inside the 4-byte length of element 0",
            ),
            (
                raw(vec![tensor("n", "FP64", &[1], None), ok_c()], vec![one.clone(), vec![9, 0, 0, 0, b'a']]),
                "input `c`: raw BYTES element 0 claims 9 bytes, 1 remain",
            ),
            (
                raw(vec![tensor("n", "FP64", &[1], None), ok_c()], vec![one.clone(), raw_bytes(&[b"\xff"])]),
                "input `c`: element 0 is not UTF-8",
            ),
            (
                raw(vec![tensor("n", "FP64", &[1], None), ok_c()], vec![one.clone(), raw_bytes(&[b"a", b"b"])]),
                "input `c`: 2 raw BYTES elements, but the shape says 1",
            ),
            (
                raw(vec![tensor("n", "FP64", &[1], None), ok_c()], vec![one.clone()]),
                "raw_input_contents: 1 entries for 2 inputs",
            ),
            (
                raw(
                    vec![typed_n(InferTensorContents { fp64_contents: vec![1.0], ..Default::default() }), ok_c()],
                    vec![one.clone(), c_bytes()],
                ),
                "input `n`: sets `contents` while the request sends raw_input_contents",
            ),
            (
                raw(
                    vec![typed_n(InferTensorContents { fp32_contents: vec![1.0], ..Default::default() }), ok_c()],
                    vec![],
                ),
                "input `n`: 0 values in contents.fp64_contents, but the shape says 1",
            ),
        ];
        for (request, expected) in cases {
            let message = error(&request);
            assert!(message.contains(expected), "{message:?} does not say {expected:?}");
        }
    }

    #[test]
    fn only_the_probability_output_can_be_asked_for() {
        use livora_proto::inference::model_infer_request::InferRequestedOutputTensor;
        let ask = |name: &str| ModelInferRequest {
            outputs: vec![InferRequestedOutputTensor { name: name.into(), ..Default::default() }],
            ..Default::default()
        };
        assert!(check_outputs(&ask(OUTPUT)).is_ok());
        assert!(check_outputs(&ModelInferRequest::default()).is_ok());
        let message = check_outputs(&ask("score")).expect_err("unknown").to_string();
        assert!(message.contains("no output `score`; it gives `probability`"), "{message}");
    }
}
