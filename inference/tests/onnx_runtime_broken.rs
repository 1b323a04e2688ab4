//! A library that loads but that ONNX Runtime's API cannot be had from: `ort` panics when it
//! builds the environment; that is an error here. `ort` keeps such a library for the rest of the
//! process, so the error says a restart is needed to use another one.
//!
//! Its own test binary: it leaves the process unable to load the real library.

mod common;

use common::Stub;
use livora_inference::{Error, OnnxConfig, init_runtime};

#[test]
fn a_library_that_loads_but_gives_no_api_is_an_error_for_the_rest_of_the_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = common::stub_library(dir.path(), "libbroken", Stub::Version("1.20.0"));
    let config = OnnxConfig { runtime_path: Some(broken) };

    for attempt in 0..2 {
        let error = init_runtime(&config).expect_err("no API");
        assert!(matches!(error, Error::RuntimeInit { .. }), "attempt {attempt}: {error:?}");
        assert!(error.to_string().contains("loaded but could not be initialised: ort panicked"), "{error}");
    }

    let error = init_runtime(&common::config()).expect_err("ort keeps the first library");
    assert!(matches!(error, Error::RuntimeAlreadyLoaded { .. }), "{error:?}");
    assert!(error.to_string().contains("libbroken.so"), "{error}");
    assert!(error.to_string().contains("restart the process"), "{error}");
}
