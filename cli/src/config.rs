//! The whole configuration document of `livora`, composed of each room's sections.

use std::path::{Path, PathBuf};

use livora_common::ConfigError;
use livora_common::telemetry::LogFormat;
use livora_feature_store::{FeatureStoreConfig, OnlineConfig};
use livora_ingest::config::{ClientsConfig, EventLogConfig, IngestConfig};
use livora_ingest::lake::LakeConfig;
use serde::{Deserialize, Serialize};

/// `livora.toml`. Every key is optional; see `config/livora.example.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where all embedded state lives (log, lake, registries). Default `./livora-data`;
    /// `--data-dir` wins.
    pub data_dir: Option<PathBuf>,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// The HTTP collector.
    pub ingest: IngestConfig,
    /// The event log.
    pub event_log: EventLogConfig,
    /// The raw lake.
    pub lake: LakeConfig,
    /// Clients and API keys.
    pub clients: ClientsConfig,
    /// The feature store.
    pub features: FeatureStoreConfig,
    /// The online store's backend (`[online_store]`).
    pub online_store: OnlineConfig,
    /// Model inference (`[inference]`).
    pub inference: livora_inference::InferenceConfig,
    /// The CPU priority of `livora serve`'s background work (`[scheduling]`).
    pub scheduling: crate::sched::SchedulingConfig,
}

/// Logging (`[telemetry]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// A `RUST_LOG`-style filter; `RUST_LOG` wins when set. Default `info`.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_format: LogFormat::Text, log_level: "info".into() }
    }
}

impl Config {
    /// Loads the file (if any) and the `LIVORA__…` environment, and validates every section.
    pub fn load(file: Option<&Path>, data_dir: Option<PathBuf>) -> Result<Self, ConfigError> {
        let mut config: Self = livora_common::config::load(file, std::env::vars())?;
        if data_dir.is_some() {
            config.data_dir = data_dir;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every section, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.ingest.validate()?;
        self.event_log.validate()?;
        self.lake.validate()?;
        self.clients.validate()?;
        self.features.validate()?;
        self.online_store.validate()?;
        if self.event_log.backend == livora_ingest::config::EventLogBackend::Nats
            && self.event_log.nats.ack_wait <= self.lake.roll_interval
        {
            return Err(ConfigError::invalid(
                "event_log.nats.ack_wait",
                "must exceed lake.roll_interval, or JetStream redelivers records the lake writer still buffers",
            ));
        }
        if let Err(e) = tracing_subscriber_filter_ok(&self.telemetry.log_level) {
            return Err(ConfigError::invalid("telemetry.log_level", e));
        }
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from("livora-data"))
    }

    /// The client registry URL.
    pub fn clients_url(&self) -> String {
        self.clients
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir().join("clients.db").display()))
    }

    /// The feature registry URL.
    pub fn registry_url(&self) -> String {
        self.features
            .registry_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir().join("registry.db").display()))
    }

    /// The offline store's root directory.
    pub fn offline_root(&self) -> PathBuf {
        if let Some(root) = &self.features.offline_root {
            return root.clone();
        }
        let lake = self.lake_root();
        if lake.contains("://") { self.data_dir().join("offline") } else { PathBuf::from(lake) }
    }

    /// The store of feature history: Parquet under [`Self::offline_root`], or in S3 when
    /// `features.offline_store.url` is set (read through `features.offline_store.cache_dir`).
    pub fn offline_store(&self) -> anyhow::Result<std::sync::Arc<dyn livora_feature_store::OfflineStore>> {
        let settings = &self.features.offline_store;
        let Some(url) = &settings.url else {
            return Ok(std::sync::Arc::new(livora_feature_store::LocalOfflineStore::new(self.offline_root())));
        };
        let lake = LakeConfig { s3: settings.s3.clone(), ..LakeConfig::default() };
        let store = livora_ingest::lake::store::open(url, &lake)
            .map_err(|e| anyhow::anyhow!("features.offline_store.url: {e}"))?;
        let cache = settings.cache_dir.clone().unwrap_or_else(|| self.data_dir().join("offline-cache"));
        Ok(std::sync::Arc::new(livora_feature_store::ObjectOfflineStore::new(store, url.clone(), cache)?))
    }

    /// Where model artifacts are kept (`<data dir>/models`).
    pub fn models_root(&self) -> PathBuf {
        self.data_dir().join("models")
    }

    /// The embedded log directory.
    pub fn log_dir(&self) -> PathBuf {
        self.event_log.embedded.dir.clone().unwrap_or_else(|| self.data_dir().join("log"))
    }

    /// The offline root.
    pub fn lake_root(&self) -> String {
        self.lake.root.clone().unwrap_or_else(|| self.data_dir().join("lake").display().to_string())
    }
}

fn tracing_subscriber_filter_ok(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err("must not be empty (e.g. `info` or `livora_ingest=debug,info`)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/livora.example.toml")
    }

    #[test]
    fn the_example_config_parses_and_matches_the_defaults() {
        let parsed: Config = livora_common::config::load(Some(&example()), Vec::new()).unwrap();
        parsed.validate().unwrap();
        // The example documents every key with its default value, so it must equal the defaults
        // (bar the keys that default to "derived from data_dir", shown with their derived value).
        let mut expected = Config { data_dir: Some("./livora-data".into()), ..Config::default() };
        expected.event_log.embedded.dir = parsed.event_log.embedded.dir.clone();
        expected.lake.root = parsed.lake.root.clone();
        expected.clients.url = parsed.clients.url.clone();
        expected.features.registry_url = parsed.features.registry_url.clone();
        expected.features.offline_root = parsed.features.offline_root.clone();
        expected.online_store = parsed.online_store.clone();
        let livora_feature_store::OnlineConfig::Redb(redb) = &mut expected.online_store else {
            panic!("the example's online store is the embedded default")
        };
        assert_eq!(redb.path.take(), Some("./livora-data/online.redb".into()));
        assert_eq!(expected.online_store, livora_feature_store::OnlineConfig::default());
        expected.online_store = parsed.online_store.clone();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn the_example_documents_every_key() {
        let text = std::fs::read_to_string(example()).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let mut missing = Vec::new();
        walk(&defaults, "", &mut |key| {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            if !text.contains(&format!("{leaf} =")) {
                missing.push(key.to_owned());
            }
        });
        assert!(missing.is_empty(), "keys not documented in the example: {missing:?}");
    }

    fn walk(v: &toml::Value, prefix: &str, f: &mut impl FnMut(&str)) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match v {
                    toml::Value::Table(_) => walk(v, &key, f),
                    _ => f(&key),
                }
            }
        }
    }

    #[test]
    fn env_overrides_and_bad_values_name_the_key() {
        let c: Config = livora_common::config::load(
            None,
            vec![
                ("LIVORA__INGEST__MAX_BATCH_EVENTS".to_owned(), "50".to_owned()),
                ("LIVORA__EVENT_LOG__BACKEND".to_owned(), "nats".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(c.ingest.max_batch_events, 50);
        assert_eq!(c.event_log.backend, livora_ingest::config::EventLogBackend::Nats);

        let err = livora_common::config::load::<Config>(
            None,
            vec![("LIVORA__INGEST__MAX_EVENT_BYTES".to_owned(), "lots".to_owned())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("ingest.max_event_bytes"), "{err}");

        let mut c = Config::default();
        c.ingest.max_request_bytes = livora_common::ByteSize(10);
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("ingest.max_request_bytes"), "{err}");
        let err = livora_common::config::load::<Config>(
            None,
            vec![("LIVORA__LAKE__COMPRESSION".to_owned(), "lz4".to_owned())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("lake.compression"), "{err}");
    }

    #[test]
    fn background_priorities_are_set_per_kind_of_work_and_a_bad_one_names_the_key() {
        use crate::sched::Priority;
        let c: Config =
            livora_common::config::load(None, vec![("LIVORA__SCHEDULING__LAKE".to_owned(), "low".to_owned())]).unwrap();
        assert_eq!(
            (c.scheduling.lake, c.scheduling.stream, c.scheduling.predictions),
            (Priority::Low, Priority::Low, Priority::Idle)
        );
        let err = livora_common::config::load::<Config>(
            None,
            vec![("LIVORA__SCHEDULING__PREDICTIONS".to_owned(), "realtime".to_owned())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("scheduling.predictions"), "{err}");
    }
}
