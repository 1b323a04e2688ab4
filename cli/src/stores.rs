//! What the commands open alike — the feature registry, a client's definitions, the online
//! store — with the errors that say what to do.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use livora_common::ClientId;
use livora_feature_store::registry::Version;
use livora_feature_store::{OnlineStore, Registry};

use crate::config::Config;

/// The feature registry (the data directory is created for the embedded one).
pub async fn feature_registry(config: &Config) -> Result<Registry> {
    std::fs::create_dir_all(config.data_dir())
        .with_context(|| format!("cannot create the data directory {}", config.data_dir().display()))?;
    Registry::connect(&config.registry_url()).await.context("cannot open the feature registry")
}

/// The feature registry and the definitions in force for `client`.
pub async fn definitions(config: &Config, client: &ClientId) -> Result<(Registry, Version)> {
    let registry = feature_registry(config).await?;
    let Some(current) = registry.current(client).await? else {
        bail!("client `{client}` has no feature definitions; run `livora apply <repo> --client {client}`")
    };
    Ok((registry, current))
}

/// The online store of the configuration.
pub async fn online_store(config: &Config) -> Result<Arc<dyn OnlineStore>> {
    livora_feature_store::online::open(&config.online_store, &config.data_dir()).await.with_context(|| {
        format!(
            "cannot open the online store ({}); the embedded store admits one process: stop `livora serve` first",
            config.online_store.backend()
        )
    })
}
