//! Layered configuration: defaults → TOML file → `LIVORA__SECTION__KEY` environment → validation.
//!
//! Each room declares its own section types (serde structs with `deny_unknown_fields` and
//! documented defaults); the binary composes them into one document and loads it with [`load`].
//! Every error names the key at fault.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// The prefix of environment overrides: `LIVORA__INGEST__LISTEN=0.0.0.0:8080` sets `ingest.listen`.
pub const ENV_PREFIX: &str = "LIVORA__";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown, of the wrong type, or has an invalid value.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The dotted key (`ingest.max_event_bytes`).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    /// An invalid value for `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), reason: reason.into() }
    }
}

/// Checks that an optional database URL under `key` is one Livora can open (SQLite or PostgreSQL).
pub fn check_database_url(key: &str, url: Option<&str>) -> Result<(), ConfigError> {
    match url {
        Some(url)
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
        {
            Err(ConfigError::invalid(key, "must start with sqlite: or postgres://"))
        }
        _ => Ok(()),
    }
}

/// Loads `T` from the optional TOML `file`, overlaid with the `LIVORA__…` variables of `env`.
///
/// Missing keys take the defaults of `T`'s serde attributes. Validation beyond types is the
/// caller's job (each section has a `validate` that names its keys).
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut doc = match file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax { path: path.to_owned(), message: e.to_string().trim().to_owned() })?
        }
        None => toml::Table::new(),
    };
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        set_path(&mut doc, &path, parse_env_value(&value))
            .map_err(|reason| ConfigError::invalid(format!("{name} ({})", path.join(".")), reason))?;
    }
    from_table(doc)
}

/// Deserializes a TOML table into `T`, naming the key of the first error.
pub fn from_table<T: DeserializeOwned>(doc: toml::Table) -> Result<T, ConfigError> {
    let de = toml::Value::Table(doc);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { "(root)".to_owned() } else { key };
        ConfigError::invalid(key, e.inner().to_string().trim())
    })
}

/// An environment value is read as a TOML value when it parses as one (`8080`, `true`, `"x"`,
/// `[1, 2]`), else as a bare string (`127.0.0.1:8080`, `30s`).
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(doc: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    if path.iter().any(String::is_empty) {
        return Err("empty key segment (use one `__` between segments)".into());
    }
    let mut table = doc;
    for segment in parents {
        let entry = table.entry(segment.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| format!("`{segment}` is a value, not a section"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        server: Server,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Server {
        listen: String,
        workers: u32,
        tls: bool,
    }

    impl Default for Server {
        fn default() -> Self {
            Self { listen: "127.0.0.1:8080".into(), workers: 2, tls: false }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_then_env_overrides() {
        let doc: Doc = load(
            None,
            env(&[("LIVORA__SERVER__LISTEN", "0.0.0.0:9000"), ("LIVORA__SERVER__WORKERS", "8"), ("PATH", "/bin")]),
        )
        .expect("loads");
        assert_eq!(doc.server, Server { listen: "0.0.0.0:9000".into(), workers: 8, tls: false });
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load::<Doc>(None, env(&[("LIVORA__SERVER__WORKRES", "8")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("server.workres") || msg.contains("workres"), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn wrong_types_are_named() {
        let err = load::<Doc>(None, env(&[("LIVORA__SERVER__TLS", "maybe")])).unwrap_err();
        assert!(err.to_string().starts_with("config key `server.tls`"), "{err}");
    }

    #[test]
    fn file_syntax_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("livora-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[server\nlisten = 1").expect("write");
        let err = load::<Doc>(Some(&file), Vec::new()).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("bad.toml"));
    }
}
