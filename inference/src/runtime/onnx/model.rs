//! An ONNX model loaded for scoring rows of features.

use std::path::Path;

use ndarray::ArrayView2;
use ort::session::Session;
use ort::value::TensorRef;

use super::library::{self, Runtime};
use super::pool::Pool;
use super::signature::{self, OutputKind, Signature};
use crate::config::OnnxConfig;
use crate::error::{Error, Result};

/// A binary classifier or scorer exported to ONNX (skl2onnx, onnxmltools), ready to score rows.
///
/// Its graph has one float input `[N, F]` and one score output: class probabilities `[N, 2]`
/// (the score is the positive class's) or a single `[N, 1]` or `[N]`. Loading checks that.
///
/// `OnnxModel` is `Send + Sync`: share it (`Arc`) between threads. Each concurrent
/// [`predict`](Self::predict) runs on a session of its own from a small pool, created from the
/// model's bytes when callers overlap and capped at the machine's parallelism; all sessions share
/// one ONNX Runtime thread pool.
pub struct OnnxModel {
    runtime: &'static Runtime,
    bytes: Vec<u8>,
    signature: Signature,
    metadata: OnnxMetadata,
    sessions: Pool<Session>,
}

/// What a loaded model is: its input, output and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxMetadata {
    /// The input's name (`X` for skl2onnx).
    pub input_name: String,
    /// The number of features `F` when the graph fixes it.
    pub n_features: Option<usize>,
    /// The output the score is read from (`probabilities` for skl2onnx classifiers).
    pub output_name: String,
    /// What the score is.
    pub score: ScoreKind,
    /// The tool that wrote the model (`skl2onnx`), when recorded. ONNX Runtime does not expose
    /// the producer's version.
    pub producer_name: Option<String>,
    /// The graph's name (`ONNX(LogisticRegression)` for skl2onnx), when recorded.
    pub graph_name: Option<String>,
    /// The model's own version number (`model_version`; skl2onnx writes 0).
    pub model_version: Option<i64>,
}

/// What [`OnnxModel::predict`] returns for each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    /// The probability of the positive class (column 1 of a `[N, 2]` output).
    PositiveClassProbability,
    /// The model's single output (`[N, 1]` or `[N]`): a regression value or a score.
    Score,
}

impl OnnxModel {
    /// Loads the model at `path`, loading the ONNX Runtime library first if this process has not.
    pub fn load(path: &Path, config: &OnnxConfig) -> Result<Self> {
        let runtime = library::runtime(config)?;
        let bytes = std::fs::read(path).map_err(|source| Error::ModelRead { path: path.to_path_buf(), source })?;
        Self::new(runtime, bytes, format!("the model file `{}`", path.display()))
    }

    /// Loads a model from its serialised bytes (an `.onnx` file's content).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>, config: &OnnxConfig) -> Result<Self> {
        let runtime = library::runtime(config)?;
        Self::new(runtime, bytes.into(), "the model".to_string())
    }

    fn new(runtime: &'static Runtime, bytes: Vec<u8>, origin: String) -> Result<Self> {
        let session =
            new_session(runtime, &bytes).map_err(|reason| Error::InvalidModel { origin: origin.clone(), reason })?;
        let signature = signature::inspect(&ports(session.inputs()), &ports(session.outputs()))
            .map_err(|reason| Error::UnsupportedModel { origin: origin.clone(), reason })?;
        let metadata = metadata(&session, &signature);
        tracing::debug!(
            model = %origin,
            input = %signature.input,
            n_features = ?signature.n_features,
            output = %signature.output,
            producer = ?metadata.producer_name,
            "loaded an ONNX model"
        );
        let max = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self { runtime, bytes, signature, metadata, sessions: Pool::new(session, max) })
    }

    /// The input's name.
    pub fn input_name(&self) -> &str {
        &self.signature.input
    }

    /// The number of features each row must have, when the graph fixes it.
    pub fn n_features(&self) -> Option<usize> {
        self.signature.n_features
    }

    /// The name of the output the score is read from.
    pub fn output_name(&self) -> &str {
        &self.signature.output
    }

    /// What the model is: input, output, producer.
    pub fn metadata(&self) -> OnnxMetadata {
        self.metadata.clone()
    }

    /// Scores `rows` (one row of features each): the positive class's probability for a binary
    /// classifier, else the model's single output. Errors if the rows do not have the number of
    /// features the model expects.
    pub fn predict(&self, rows: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        if let Some(expected) = self.signature.n_features
            && rows.ncols() != expected
        {
            return Err(Error::InvalidInput(format!("model expects {expected} features, got {}", rows.ncols())));
        }
        if rows.nrows() == 0 {
            return Ok(Vec::new());
        }
        let rows = rows.as_standard_layout();
        let create = || new_session(self.runtime, &self.bytes).map_err(Error::Inference);
        self.sessions.with(create, |session| {
            let input = TensorRef::from_array_view(&rows).map_err(|e| Error::Inference(e.to_string()))?;
            let outputs = session.run(ort::inputs![input]).map_err(|e| Error::Inference(e.to_string()))?;
            // Found by iterating: `SessionOutputs::get` asserts on an empty name rather than failing.
            let Some((_, value)) = outputs.iter().find(|(name, _)| *name == self.signature.output) else {
                return Err(Error::Inference(format!("the model returned no output `{}`", self.signature.output)));
            };
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::Inference(format!("output `{}`: {e}", self.signature.output)))?;
            signature::scores(self.signature.kind, shape, data, rows.nrows())
                .map_err(|reason| Error::Inference(format!("output `{}`: {reason}", self.signature.output)))
        })
    }

    /// How many sessions the model holds now (one, plus one per overlapping caller, up to the cap).
    pub fn sessions(&self) -> usize {
        self.sessions.created()
    }
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").field("metadata", &self.metadata).field("bytes", &self.bytes.len()).finish()
    }
}

/// A session of the model in the process's environment (so on its shared thread pool).
fn new_session(runtime: &Runtime, bytes: &[u8]) -> std::result::Result<Session, String> {
    let mut builder = Session::builder(&runtime.environment).map_err(|e| e.to_string())?;
    builder.commit_from_memory(bytes).map_err(|e| e.to_string())
}

fn ports(outlets: &[ort::value::Outlet]) -> Vec<signature::Port<'_>> {
    outlets.iter().map(|outlet| (outlet.name(), outlet.dtype())).collect()
}

fn metadata(session: &Session, signature: &Signature) -> OnnxMetadata {
    let recorded = session.metadata().ok();
    let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
    OnnxMetadata {
        input_name: signature.input.clone(),
        n_features: signature.n_features,
        output_name: signature.output.clone(),
        score: match signature.kind {
            OutputKind::Probabilities => ScoreKind::PositiveClassProbability,
            OutputKind::Score => ScoreKind::Score,
        },
        producer_name: non_empty(recorded.as_ref().and_then(|m| m.producer())),
        graph_name: non_empty(recorded.as_ref().and_then(|m| m.name())),
        model_version: recorded.as_ref().and_then(|m| m.version()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<OnnxModel>();
    }
}
