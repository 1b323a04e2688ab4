//! The model registry: every trained or imported version of a client's models, and the aliases
//! (`production`, `staging`, `shadow`) that say which version serves.
//!
//! Versions are numbered 1, 2, … per client and model and never rewritten; their artifacts live
//! under the artifact root (`<root>/<client>/<model>/v<version>/`). Moving an alias is recorded
//! as a stack per alias: `promote` pushes, `rollback` pops back to the version before, and every
//! move stays in the history. Same SQL on SQLite (embedded) and PostgreSQL.
//!
//! An alias may also carry a **canary** (table `model_canaries`, one row per client, model and
//! alias): another version of the same model, reading the same features, that serving scores a
//! share of the alias's entities with (`weight`, 1–100 percent; `livora-inference` decides which
//! entities). Promoting the canary's version to its alias ends the canary; rolling the alias
//! back leaves it, and serving ignores it if the version the alias then points at reads other
//! features.

use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use livora_common::ClientId;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use crate::artifact::{Artifact, Manifest};
use crate::error::{Error, Result};

mod canary;

pub use canary::Canary;

/// The aliases a version can carry.
pub const ALIASES: [&str; 3] = ["production", "staging", "shadow"];

/// One registered version.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    /// The model.
    pub model: String,
    /// The version.
    pub version: i64,
    /// Its manifest.
    pub manifest: Manifest,
    /// Where its artifact is.
    pub path: PathBuf,
    /// The aliases pointing at it.
    pub aliases: Vec<String>,
    /// The canaries it takes part in: beside an alias that points at it
    /// ([`Canary::primary`]), or as the canary ([`Canary::version`]).
    pub canaries: Vec<Canary>,
}

/// What a reference serves: the version it names and, for an alias, the alias's canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The model.
    pub model: String,
    /// The version the reference names or its alias points at.
    pub version: i64,
    /// The alias a reference names (`churn` names `production`); `None` for `churn@3`.
    pub alias: Option<String>,
    /// The alias's canary, if it has one; never for a reference naming a version.
    pub canary: Option<Canary>,
}

/// The registry database and the artifact root.
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    pool: AnyPool,
    root: PathBuf,
}

/// An [`Error::InvalidArgument`] unless `alias` is one of [`ALIASES`].
fn check_alias(alias: &str) -> Result<()> {
    if ALIASES.contains(&alias) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("alias: `{alias}` is not one of {}", ALIASES.join(", "))))
    }
}

impl ModelRegistry {
    /// Connects to `url` (`sqlite:…?mode=rwc` or `postgres://…`), creating the tables if needed;
    /// artifacts are kept under `root`.
    pub async fn connect(url: &str, root: impl Into<PathBuf>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().max_connections(4).connect(url).await?;
        if url.starts_with("sqlite:") {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        for ddl in [
            "CREATE TABLE IF NOT EXISTS model_versions (client_id TEXT NOT NULL, model TEXT NOT NULL, \
             version BIGINT NOT NULL, algorithm TEXT NOT NULL, path TEXT NOT NULL, manifest TEXT NOT NULL, \
             created_at TEXT NOT NULL, PRIMARY KEY (client_id, model, version))",
            "CREATE TABLE IF NOT EXISTS model_alias_moves (client_id TEXT NOT NULL, model TEXT NOT NULL, \
             alias TEXT NOT NULL, seq BIGINT NOT NULL, version BIGINT NOT NULL, moved_at TEXT NOT NULL, \
             rolled_back_at TEXT, PRIMARY KEY (client_id, model, alias, seq))",
            "CREATE TABLE IF NOT EXISTS model_canaries (client_id TEXT NOT NULL, model TEXT NOT NULL, \
             alias TEXT NOT NULL, version BIGINT NOT NULL, weight BIGINT NOT NULL, set_at TEXT NOT NULL, \
             PRIMARY KEY (client_id, model, alias))",
        ] {
            sqlx::query(ddl).execute(&pool).await?;
        }
        Ok(Self { pool, root: root.into() })
    }

    /// Where artifacts are kept.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The next version number of `model` for `client`.
    pub async fn next_version(&self, client: &ClientId, model: &str) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(version) FROM model_versions WHERE client_id = $1 AND model = $2")
            .bind(client.as_str())
            .bind(model)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0) + 1)
    }

    /// Saves `artifact` under the root and records it. Its manifest's version must be
    /// [`ModelRegistry::next_version`]'s; a concurrent registration of the same number fails
    /// without touching the existing version.
    pub async fn register(&self, client: &ClientId, artifact: &Artifact) -> Result<ModelVersion> {
        let m = &artifact.manifest;
        if m.client_id != client.as_str() {
            return Err(Error::InvalidArgument(format!(
                "the artifact belongs to client `{}`, not `{client}`",
                m.client_id
            )));
        }
        let dir = self.root.join(client.as_str()).join(&m.model).join(format!("v{}", m.version));
        artifact.save(&dir)?;
        let manifest = serde_json::to_string(m).map_err(|e| Error::artifact(&dir, e))?;
        let inserted = sqlx::query(
            "INSERT INTO model_versions (client_id, model, version, algorithm, path, manifest, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(client.as_str())
        .bind(&m.model)
        .bind(m.version)
        .bind(m.algorithm.name())
        .bind(dir.to_string_lossy().into_owned())
        .bind(manifest)
        .bind(m.created_at.to_rfc3339_opts(SecondsFormat::Millis, true))
        .execute(&self.pool)
        .await;
        if let Err(e) = inserted {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        Ok(ModelVersion {
            model: m.model.clone(),
            version: m.version,
            manifest: m.clone(),
            path: dir,
            aliases: vec![],
            canaries: vec![],
        })
    }

    /// Every version of `model` (every model when `None`) for `client`, newest first per model.
    pub async fn list(&self, client: &ClientId, model: Option<&str>) -> Result<Vec<ModelVersion>> {
        self.versions(client, model.unwrap_or(""), None).await
    }

    /// The versions of `model` (every model when empty), or only `version`, with their aliases.
    async fn versions(&self, client: &ClientId, model: &str, version: Option<i64>) -> Result<Vec<ModelVersion>> {
        let rows = sqlx::query(
            "SELECT model, version, path, manifest FROM model_versions WHERE client_id = $1 \
             AND ($2 = '' OR model = $2) AND ($3 < 0 OR version = $3) ORDER BY model, version DESC",
        )
        .bind(client.as_str())
        .bind(model)
        .bind(version.unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        let aliases = self.aliases(client).await?;
        let canaries = self.canaries_beside(client, &aliases).await?;
        rows.iter()
            .map(|r| {
                let model: String = r.try_get(0)?;
                let version: i64 = r.try_get(1)?;
                let path: String = r.try_get(2)?;
                let manifest: String = r.try_get(3)?;
                let manifest: Manifest = serde_json::from_str(&manifest)
                    .map_err(|e| Error::Registry(format!("manifest of {model} v{version}: {e}")))?;
                let aliases = aliases
                    .iter()
                    .filter(|(m, _, v)| m == &model && *v == version)
                    .map(|(_, a, _)| a.clone())
                    .collect();
                let canaries = canaries
                    .iter()
                    .filter(|c| c.model == model && (c.primary == version || c.version == version))
                    .cloned()
                    .collect();
                Ok(ModelVersion { model, version, manifest, path: PathBuf::from(path), aliases, canaries })
            })
            .collect()
    }

    /// Version `version` of `model`.
    pub async fn get(&self, client: &ClientId, model: &str, version: i64) -> Result<ModelVersion> {
        self.versions(client, model, Some(version.max(0)))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("model `{model}` has no version {version} for client `{client}`")))
    }

    /// The version a reference names: `model` (its `production` alias), `model@alias` or
    /// `model@<version>`.
    pub async fn resolve(&self, client: &ClientId, reference: &str) -> Result<ModelVersion> {
        let (model, version) = self.resolve_version(client, reference).await?;
        self.get(client, &model, version).await
    }

    /// The model and version number a reference names, without reading the manifest: at most
    /// one query (an alias), none for `model@<version>`, whose existence [`ModelRegistry::get`]
    /// checks.
    pub async fn resolve_version(&self, client: &ClientId, reference: &str) -> Result<(String, i64)> {
        let target = self.resolve_target(client, reference).await?;
        Ok((target.model, target.version))
    }

    /// What a reference serves: the version it names and, for an alias, the alias's canary.
    /// One query for an alias, none for `model@<version>` (whose existence
    /// [`ModelRegistry::get`] checks). Serving re-resolves aliases often and reads a manifest
    /// only for a new version.
    pub async fn resolve_target(&self, client: &ClientId, reference: &str) -> Result<Target> {
        let (model, which) = reference.split_once('@').unwrap_or((reference, "production"));
        if let Ok(version) = which.trim_start_matches('v').parse::<i64>() {
            return Ok(Target { model: model.to_owned(), version, alias: None, canary: None });
        }
        check_alias(which)?;
        let (version, canary) = self.alias_with_canary(client, model, which).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "model `{model}` has no `{which}` version for client `{client}`; \
                 promote one with `livora models promote {model} <version> --alias {which}`"
            ))
        })?;
        Ok(Target { model: model.to_owned(), version, alias: Some(which.to_owned()), canary })
    }

    /// The version `alias` of `model` points at.
    pub async fn alias(&self, client: &ClientId, model: &str, alias: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT version FROM model_alias_moves WHERE client_id = $1 AND model = $2 AND alias = $3 \
             AND rolled_back_at IS NULL ORDER BY seq DESC LIMIT 1",
        )
        .bind(client.as_str())
        .bind(model)
        .bind(alias)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get::<i64, _>(0)).transpose().map_err(Into::into)
    }

    /// Whether the registry database answers: the readiness of the services that score with it.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Every (model, alias, version) in force for `client`.
    pub async fn aliases(&self, client: &ClientId) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT m.model, m.alias, m.version FROM model_alias_moves m WHERE m.client_id = $1 \
             AND m.rolled_back_at IS NULL AND m.seq = (SELECT MAX(n.seq) FROM model_alias_moves n \
             WHERE n.client_id = m.client_id AND n.model = m.model AND n.alias = m.alias \
             AND n.rolled_back_at IS NULL) ORDER BY m.model, m.alias",
        )
        .bind(client.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
    }

    /// Points `alias` of `model` at `version`; returns the version it pointed at before. When
    /// `version` is the alias's canary, the canary ends with the move (same transaction): the
    /// version now scores every entity.
    pub async fn promote(&self, client: &ClientId, model: &str, version: i64, alias: &str) -> Result<Option<i64>> {
        check_alias(alias)?;
        self.get(client, model, version).await?;
        let before = self.alias(client, model, alias).await?;
        let mut tx = self.pool.begin().await?;
        let seq: i64 = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM model_alias_moves WHERE client_id = $1 AND model = $2 \
             AND alias = $3",
        )
        .bind(client.as_str())
        .bind(model)
        .bind(alias)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO model_alias_moves (client_id, model, alias, seq, version, moved_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(client.as_str())
        .bind(model)
        .bind(alias)
        .bind(seq)
        .bind(version)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM model_canaries WHERE client_id = $1 AND model = $2 AND alias = $3 AND version = $4")
            .bind(client.as_str())
            .bind(model)
            .bind(alias)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(before)
    }

    /// Moves `alias` of `model` back to the version it pointed at before the last promotion;
    /// returns (from, to). A canary of the alias stays; serving ignores it while the version
    /// the alias points at reads other features.
    pub async fn rollback(&self, client: &ClientId, model: &str, alias: &str) -> Result<(i64, i64)> {
        check_alias(alias)?;
        let rows = sqlx::query(
            "SELECT seq, version FROM model_alias_moves WHERE client_id = $1 AND model = $2 AND alias = $3 \
             AND rolled_back_at IS NULL ORDER BY seq DESC LIMIT 2",
        )
        .bind(client.as_str())
        .bind(model)
        .bind(alias)
        .fetch_all(&self.pool)
        .await?;
        let stack: Vec<(i64, i64)> =
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_, sqlx::Error>>()?;
        let [(seq, from), (_, to)] = stack[..] else {
            return Err(Error::NotFound(format!(
                "`{alias}` of model `{model}` has no earlier version to roll back to"
            )));
        };
        sqlx::query(
            "UPDATE model_alias_moves SET rolled_back_at = $5 WHERE client_id = $1 AND model = $2 \
             AND alias = $3 AND seq = $4",
        )
        .bind(client.as_str())
        .bind(model)
        .bind(alias)
        .bind(seq)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok((from, to))
    }

    /// Loads the artifact of `version`.
    pub fn load(&self, version: &ModelVersion) -> Result<Artifact> {
        Artifact::load(&version.path)
    }
}

/// The time now, as the registry's tables store it.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
