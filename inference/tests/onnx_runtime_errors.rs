//! A wrong ONNX Runtime library is an error that says what is wrong, never a panic, and leaves
//! the process able to load the right one.
//!
//! Its own test binary, so its own process: `ort` holds one library per process, so these must
//! run before anything loads the real one. One test, so that the steps run in this order.

mod common;

use std::path::{Path, PathBuf};

use common::Stub;
use livora_inference::{Error, OnnxConfig, OnnxModel, init_runtime};

fn config(path: &Path) -> OnnxConfig {
    OnnxConfig { runtime_path: Some(path.to_path_buf()) }
}

fn refused(path: &Path) -> Error {
    let error = init_runtime(&config(path)).expect_err("a wrong library");
    assert_eq!(error.code(), livora_common::ErrorCode::Internal, "{error:?}");
    error
}

#[test]
fn wrong_libraries_are_errors_and_the_right_one_still_loads() {
    let dir = tempfile::tempdir().expect("temp dir");

    let missing = dir.path().join("libonnxruntime.so.1.32.0");
    let error = refused(&missing);
    assert!(matches!(error, Error::RuntimeMissing { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&missing.display().to_string()), "{message}");
    assert!(message.contains("(from inference.onnx.runtime_path) does not exist"), "{message}");
    assert!(message.contains("pip install onnxruntime"), "{message}");

    let text = dir.path().join("libonnxruntime.so.txt");
    std::fs::write(&text, "not a shared library\n").expect("write");
    let error = refused(&text);
    assert!(matches!(error, Error::RuntimeNotLoadable { .. }), "{error:?}");
    assert!(error.to_string().contains("cannot be loaded: dlopen failed: "), "{error}");

    let other = common::stub_library(dir.path(), "libother", Stub::NoEntryPoint);
    let error = refused(&other);
    assert!(error.to_string().contains("does not export `OrtGetApiBase`, so it is not ONNX Runtime"), "{error}");

    let old = common::stub_library(dir.path(), "libold", Stub::Version("1.16.3"));
    let error = refused(&old);
    assert!(matches!(error, Error::RuntimeTooOld { .. }), "{error:?}");
    assert!(error.to_string().contains("is version 1.16.3, older than the 1.17 this build needs"), "{error}");

    // ort asserts that `OrtGetApiBase` returned non-null: a panic, caught.
    let null = common::stub_library(dir.path(), "libnull", Stub::NullBase);
    let error = refused(&null);
    assert!(matches!(error, Error::RuntimeNotLoadable { .. }), "{error:?}");
    assert!(error.to_string().contains("ort panicked while opening it"), "{error}");

    // A model load goes through the same checks.
    let error = OnnxModel::from_bytes(b"irrelevant".to_vec(), &config(&old)).expect_err("old library");
    assert!(matches!(error, Error::RuntimeTooOld { .. }), "{error:?}");

    // None of the failures above kept a library: the right one loads now.
    let library: PathBuf = common::runtime_library();
    init_runtime(&config(&library)).expect("the right library loads after wrong ones");
}
