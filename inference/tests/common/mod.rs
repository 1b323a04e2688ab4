//! Fixtures of the inference tests: [`shop`] (a registered model, its clients, a gRPC server) for
//! the serving tests; here, those of the ONNX runtime tests: the ONNX Runtime library,
//! scikit-learn models exported by skl2onnx, and stand-in libraries that break the way a wrong
//! library does.
//!
//! Nothing here skips: without Python's `onnxruntime`, `scikit-learn` and `skl2onnx` (or
//! `tritonclient[grpc]` for the KServe interop test), or a C compiler, the tests fail and say
//! what to install.

// Each test binary uses part of this.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod shop;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use livora_inference::OnnxConfig;
use ndarray::Array2;

/// What to run when the Python side is missing.
pub const INSTALL: &str = "install the Python packages the tests use: python3 -m pip install onnxruntime scikit-learn skl2onnx \
     (or run `bash .ci/services`)";

/// The ONNX Runtime library: `ORT_DYLIB_PATH` when set, else the one the `onnxruntime` wheel ships.
pub fn runtime_library() -> PathBuf {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(find_runtime_library).clone()
}

/// A configuration naming [`runtime_library`].
pub fn config() -> OnnxConfig {
    OnnxConfig { runtime_path: Some(runtime_library()) }
}

fn find_runtime_library() -> PathBuf {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|path| !path.is_empty()) {
        return path.into();
    }
    let script = "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))";
    let package = PathBuf::from(python(&["-c", script]).trim());
    let capi = package.join("capi");
    let mut libraries: Vec<PathBuf> = std::fs::read_dir(&capi)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}; {INSTALL}", capi.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
        .collect();
    libraries.sort();
    // `libonnxruntime.so.1.32.0` rather than a bare `libonnxruntime.so` link, when both are there.
    libraries.pop().unwrap_or_else(|| panic!("no libonnxruntime.so* in {}; {INSTALL}", capi.display()))
}

/// Runs `python3 ARGS` and returns its standard output; fails the test with how to fix it.
pub fn python(args: &[&str]) -> String {
    python_or(args, INSTALL)
}

/// Runs `python3 ARGS` and returns its standard output; fails the test with its standard error
/// and `install`, what to install when a package is missing.
pub fn python_or(args: &[&str], install: &str) -> String {
    let output = Command::new("python3")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {args:?}: {e}; {install}"));
    assert!(
        output.status.success(),
        "python3 {args:?} failed ({}):\n{}\n{install}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python3 prints UTF-8")
}

/// The directory `tests/python/sklearn_onnx.py` wrote its models, rows and scores into; run once
/// per test binary.
pub fn sklearn_models() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sklearn_onnx.py");
        let out = dir.path().to_str().expect("a UTF-8 temp dir");
        python(&[script.to_str().expect("a UTF-8 path"), "--out", out]);
        dir
    })
    .path()
}

/// The rows the models were fitted on, as float32.
pub fn rows() -> Array2<f32> {
    let rows: Vec<Vec<f32>> = read_json(&sklearn_models().join("rows.json"));
    let n_features = rows.first().map_or(0, Vec::len);
    Array2::from_shape_vec((rows.len(), n_features), rows.concat()).expect("rows of one length")
}

/// Reads a JSON file written by the script.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How a stand-in library's `OrtGetApiBase` behaves.
pub enum Stub {
    /// No `OrtGetApiBase` at all: some other shared library.
    NoEntryPoint,
    /// `OrtGetApiBase` returns null.
    NullBase,
    /// Reports `version`; `GetApi` returns null, as a library refusing ort's API version would.
    Version(&'static str),
}

/// Compiles a shared library into `dir` that looks, as far as `ort`'s loader can tell, like an
/// ONNX Runtime broken in the way `stub` says.
pub fn stub_library(dir: &Path, name: &str, stub: Stub) -> PathBuf {
    let body = match stub {
        Stub::NoEntryPoint => "int not_onnx_runtime(void) { return 0; }\n".to_string(),
        Stub::NullBase => "const void* OrtGetApiBase(void) { return 0; }\n".to_string(),
        Stub::Version(version) => format!(
            "typedef struct {{ const void* (*get_api)(unsigned); const char* (*version)(void); }} Base;\n\
             static const void* get_api(unsigned v) {{ (void)v; return 0; }}\n\
             static const char* version(void) {{ return \"{version}\"; }}\n\
             static const Base base = {{ get_api, version }};\n\
             const Base* OrtGetApiBase(void) {{ return &base; }}\n"
        ),
    };
    let source = dir.join(format!("{name}.c"));
    std::fs::write(&source, body).expect("write the stub's source");
    let library = dir.join(format!("{name}.so"));
    let output = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cc to build a stand-in library: {e}; install a C compiler"));
    assert!(output.status.success(), "cc failed: {}", String::from_utf8_lossy(&output.stderr));
    library
}
