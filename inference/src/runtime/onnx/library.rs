//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! `ort` is built with `load-dynamic`: nothing is linked at build time, and the library is opened
//! here, at run time, from the config key or `ORT_DYLIB_PATH`. `ort` keeps one library and one
//! environment per process, so the first successful load decides the path for the process.
//!
//! `ort` panics rather than returning an error on a few failures of a broken library: an
//! `OrtGetApiBase` that returns null (an assertion in its version check), and a library whose
//! `GetApi` refuses the API version `ort` asks for (an `expect` when the environment is built).
//! Both calls run under `catch_unwind`, so that those come back as errors too.

use std::any::Any;
use std::ffi::OsString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use ort::environment::{Environment, EnvironmentBuilder, GlobalThreadPoolOptions};

use crate::config::OnnxConfig;
use crate::error::{Error, Result};

/// The environment variable naming the library, as `ort` itself reads it.
pub(crate) const ENV_VAR: &str = "ORT_DYLIB_PATH";
/// The config key naming the library.
pub(crate) const CONFIG_KEY: &str = "inference.onnx.runtime_path";

/// The loaded runtime: where the library is and the environment every session is created in.
pub(crate) struct Runtime {
    /// The library, canonical.
    pub(crate) path: PathBuf,
    /// ONNX Runtime's environment (logging, the thread pool that all sessions share).
    pub(crate) environment: Environment,
}

/// Set once the library is loaded and the environment built.
static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// The library `ort` holds once a load succeeded, even if building the environment failed after
/// it: `ort` keeps that library for the life of the process. Also serialises first loads.
static LOADED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Loads the ONNX Runtime library named by `config.runtime_path`, else by `ORT_DYLIB_PATH`, and
/// sets ONNX Runtime up for this process. Calling it again with the same library does nothing;
/// with another one it is an error, since a process holds one library.
///
/// Errors: no library configured, the file missing, not a loadable ONNX Runtime library, or a
/// version older than 1.17. None of them panics.
pub fn init_runtime(config: &OnnxConfig) -> Result<()> {
    runtime(config).map(|_| ())
}

/// The process's runtime, loading the configured library first if need be.
pub(crate) fn runtime(config: &OnnxConfig) -> Result<&'static Runtime> {
    let library = resolve(config.runtime_path.as_deref(), std::env::var_os(ENV_VAR))?;
    let path = check(&library)?;
    if let Some(runtime) = RUNTIME.get() {
        return same_library(runtime, path);
    }
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(runtime) = RUNTIME.get() {
        return same_library(runtime, path);
    }
    if let Some(held) = loaded.as_ref().filter(|held| **held != path) {
        return Err(Error::RuntimeAlreadyLoaded { loaded: held.clone(), requested: path });
    }

    let not_loadable = |reason| Error::RuntimeNotLoadable { path: path.clone(), origin: library.origin, reason };
    let builder = guard(|| ort::init_from(&path))
        .map_err(|panic| not_loadable(format!("ort panicked while opening it: {panic}")))?
        .map_err(|error| load_error(error, &library, &path))?;
    *loaded = Some(path.clone());

    let not_initialised = |reason| Error::RuntimeInit { path: path.clone(), reason };
    let environment = guard(|| build_environment(builder))
        .map_err(|panic| not_initialised(format!("ort panicked: {panic}")))?
        .map_err(|error| not_initialised(error.to_string()))?;
    tracing::info!(path = %path.display(), origin = library.origin, "loaded the ONNX Runtime library");
    Ok(RUNTIME.get_or_init(|| Runtime { path, environment }))
}

/// The library the configuration names, and which setting named it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Library {
    path: PathBuf,
    origin: &'static str,
}

/// The config key wins over the environment variable; an empty value counts as unset.
fn resolve(configured: Option<&Path>, env: Option<OsString>) -> Result<Library> {
    if let Some(path) = configured.filter(|path| !path.as_os_str().is_empty()) {
        return Ok(Library { path: path.to_path_buf(), origin: CONFIG_KEY });
    }
    match env.filter(|value| !value.is_empty()) {
        Some(value) => Ok(Library { path: value.into(), origin: ENV_VAR }),
        None => Err(Error::RuntimeNotConfigured),
    }
}

/// Checks that the library is a file and returns its canonical path. `ort` is always handed an
/// absolute path: for a relative one it would look beside the executable first, and panic if it
/// cannot tell where that is.
fn check(library: &Library) -> Result<PathBuf> {
    let not_loadable =
        |reason: String| Error::RuntimeNotLoadable { path: library.path.clone(), origin: library.origin, reason };
    match std::fs::metadata(&library.path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::RuntimeMissing { path: library.path.clone(), origin: library.origin })
        }
        Err(error) => Err(not_loadable(error.to_string())),
        Ok(metadata) if !metadata.is_file() => Err(not_loadable("it is not a file".into())),
        Ok(_) => std::fs::canonicalize(&library.path).map_err(|error| not_loadable(error.to_string())),
    }
}

fn same_library(runtime: &'static Runtime, requested: PathBuf) -> Result<&'static Runtime> {
    if runtime.path == requested {
        Ok(runtime)
    } else {
        Err(Error::RuntimeAlreadyLoaded { loaded: runtime.path.clone(), requested })
    }
}

fn load_error(error: ort::LoadDynamicError, library: &Library, path: &Path) -> Error {
    let reason = match error {
        ort::LoadDynamicError::BadVersion { version_str, .. } => {
            return Error::RuntimeTooOld {
                path: path.to_path_buf(),
                found: version_str,
                required: format!("1.{}", ort::MINOR_VERSION),
            };
        }
        ort::LoadDynamicError::Dlopen { error, .. } => with_sources(&error),
        ort::LoadDynamicError::MissingApi { .. } => {
            "it does not export `OrtGetApiBase`, so it is not ONNX Runtime".to_string()
        }
        other => other.to_string(),
    };
    Error::RuntimeNotLoadable { path: path.to_path_buf(), origin: library.origin, reason }
}

/// `error: its source: ...`; libloading's own message is only "dlopen failed", the loader's why
/// is its source.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

/// One environment for the process, with one thread pool that every session shares, so that
/// sessions run side by side without each starting a pool of its own. Its threads sleep when
/// idle rather than spin: scoring comes in bursts and shares the machine with the rest.
fn build_environment(builder: EnvironmentBuilder) -> ort::Result<Environment> {
    let threads = GlobalThreadPoolOptions::default().with_spin_control(false)?;
    builder.with_name("livora").with_telemetry(false).with_global_thread_pool(threads).build()
}

/// Runs `f`, turning a panic into its message.
fn guard<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_key_wins_over_the_environment() {
        let library = resolve(Some(Path::new("/a/lib.so")), Some("/b/lib.so".into())).expect("configured");
        assert_eq!(library, Library { path: "/a/lib.so".into(), origin: CONFIG_KEY });
        let library = resolve(None, Some("/b/lib.so".into())).expect("from the environment");
        assert_eq!(library, Library { path: "/b/lib.so".into(), origin: ENV_VAR });
        let library = resolve(Some(Path::new("")), Some("/b/lib.so".into())).expect("empty key is unset");
        assert_eq!(library.origin, ENV_VAR);
    }

    #[test]
    fn nothing_configured_is_an_error() {
        assert!(matches!(resolve(None, None), Err(Error::RuntimeNotConfigured)));
        assert!(matches!(resolve(None, Some(OsString::new())), Err(Error::RuntimeNotConfigured)));
    }

    #[test]
    fn a_missing_file_or_a_directory_is_refused_before_ort_sees_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = Library { path: dir.path().join("libonnxruntime.so.1.32.0"), origin: ENV_VAR };
        let error = check(&missing).expect_err("missing");
        assert!(matches!(error, Error::RuntimeMissing { origin: ENV_VAR, .. }), "{error:?}");
        assert!(error.to_string().contains("libonnxruntime.so.1.32.0"), "{error}");

        let directory = Library { path: dir.path().to_path_buf(), origin: CONFIG_KEY };
        let error = check(&directory).expect_err("a directory");
        assert!(error.to_string().contains("it is not a file"), "{error}");
        assert!(error.to_string().contains(CONFIG_KEY), "{error}");
    }

    #[test]
    fn a_file_is_handed_on_canonical() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("lib.so"), b"x").expect("write");
        let relative = Library { path: dir.path().join(".").join("lib.so"), origin: ENV_VAR };
        let path = check(&relative).expect("a file");
        let canonical_dir = std::fs::canonicalize(dir.path()).expect("canonical");
        assert_eq!(path, canonical_dir.join("lib.so"));
    }

    #[test]
    fn an_old_library_names_both_versions() {
        let library = Library { path: "/x/libonnxruntime.so.1.16.3".into(), origin: ENV_VAR };
        let error = ort::LoadDynamicError::BadVersion { version_str: "1.16.3".into(), path: library.path.clone() };
        let error = load_error(error, &library, &library.path);
        let message = error.to_string();
        assert!(matches!(error, Error::RuntimeTooOld { .. }), "{error:?}");
        assert!(message.contains("version 1.16.3, older than the 1.17"), "{message}");
    }

    #[test]
    fn panics_become_messages() {
        assert_eq!(guard(|| 1), Ok(1));
        assert_eq!(guard(|| -> i32 { panic!("boom") }), Err("boom".to_string()));
        assert_eq!(guard(|| -> i32 { panic!("{}", 42) }), Err("42".to_string()));
    }
}
