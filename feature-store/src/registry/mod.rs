//! The registry: every version of a client's feature definitions.
//!
//! `livora apply` checks a feature repository ([`crate::definitions`]), compares it with the
//! client's current definitions ([`Plan`]) and records the whole resolved repository as a new
//! version. Versions are never rewritten; the latest is the one in force. A change that would break
//! readers of a registered view is refused ([`Plan::breaking`]); the author publishes it as a new
//! version of the view (`user_activity@v2`) instead. SQLite in the data directory by default,
//! PostgreSQL at scale (`registry.url`); both through the same SQL.

mod plan;

use chrono::{SecondsFormat, Utc};
use livora_common::ClientId;
use sha2::{Digest, Sha256};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use crate::definitions::Repo;
use crate::error::{Error, Result};

pub use plan::{Change, Plan};

/// One recorded version of a client's definitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// 1, 2, … per client.
    pub version: i64,
    /// When it was applied (RFC 3339).
    pub applied_at: String,
    /// SHA-256 of the definitions, hex.
    pub digest: String,
    /// The definitions.
    pub repo: Repo,
}

/// What [`Registry::apply`] did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The plan that was (or, on a dry run, would be) applied.
    pub plan: Plan,
    /// The version in force afterwards (unchanged when the plan is empty or on a dry run).
    pub version: i64,
}

/// The registry database.
#[derive(Debug, Clone)]
pub struct Registry {
    pool: AnyPool,
}

impl Registry {
    /// Connects to `url` (`sqlite:…?mode=rwc` or `postgres://…`) and creates the table if needed.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().max_connections(4).connect(url).await.map_err(db)?;
        if url.starts_with("sqlite:") {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await.map_err(db)?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS feature_registry (client_id TEXT NOT NULL, version BIGINT NOT NULL, \
             applied_at TEXT NOT NULL, digest TEXT NOT NULL, definitions TEXT NOT NULL, \
             PRIMARY KEY (client_id, version))",
        )
        .execute(&pool)
        .await
        .map_err(db)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS feature_materializations (client_id TEXT NOT NULL, view TEXT NOT NULL, \
             watermark BIGINT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (client_id, view))",
        )
        .execute(&pool)
        .await
        .map_err(db)?;
        Ok(Self { pool })
    }

    /// The version in force for `client`, if it ever applied definitions.
    pub async fn current(&self, client: &ClientId) -> Result<Option<Version>> {
        let row = sqlx::query(
            "SELECT version, applied_at, digest, definitions FROM feature_registry WHERE client_id = $1 \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(client.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| version_of(&r)).transpose()
    }

    /// The number of the version in force for `client`, if it ever applied definitions: a cheap
    /// check of whether cached definitions are still current.
    pub async fn current_version(&self, client: &ClientId) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MAX(version) FROM feature_registry WHERE client_id = $1")
            .bind(client.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        row.try_get::<Option<i64>, _>(0).map_err(db)
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    /// The clients that have applied definitions, with their current version number.
    pub async fn clients(&self) -> Result<Vec<(ClientId, i64)>> {
        let rows =
            sqlx::query("SELECT client_id, MAX(version) FROM feature_registry GROUP BY client_id ORDER BY client_id")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get(0).map_err(db)?;
            let client = ClientId::new(&id)
                .map_err(|e| Error::Corrupt { what: "the feature registry".into(), reason: e.to_string() })?;
            out.push((client, r.try_get(1).map_err(db)?));
        }
        Ok(out)
    }

    /// The incremental-materialization watermark of `view` (µs), if it ever ran.
    pub async fn watermark(&self, client: &ClientId, view: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT watermark FROM feature_materializations WHERE client_id = $1 AND view = $2")
            .bind(client.as_str())
            .bind(view)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| r.try_get(0).map_err(db)).transpose()
    }

    /// Records the incremental-materialization watermark of `view`.
    pub async fn set_watermark(&self, client: &ClientId, view: &str, watermark: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO feature_materializations (client_id, view, watermark, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (client_id, view) DO UPDATE SET watermark = excluded.watermark, updated_at = excluded.updated_at",
        )
        .bind(client.as_str())
        .bind(view)
        .bind(watermark)
        .bind(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// A given version of `client`'s definitions.
    pub async fn version(&self, client: &ClientId, version: i64) -> Result<Version> {
        let row = sqlx::query(
            "SELECT version, applied_at, digest, definitions FROM feature_registry \
             WHERE client_id = $1 AND version = $2",
        )
        .bind(client.as_str())
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::NotFound(format!("client `{client}` has no registry version {version}")))?;
        version_of(&row)
    }

    /// Every version of `client`, oldest first, without their definitions' bodies decoded.
    pub async fn history(&self, client: &ClientId) -> Result<Vec<(i64, String, String)>> {
        let rows = sqlx::query(
            "SELECT version, applied_at, digest FROM feature_registry WHERE client_id = $1 ORDER BY version",
        )
        .bind(client.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?, r.try_get(2).map_err(db)?)))
            .collect()
    }

    /// Plans `repo` against `client`'s current definitions and, unless `dry_run` or the plan is
    /// empty, records it as the next version. Refused with [`Error::Breaking`] when the plan
    /// breaks a registered view. Two concurrent applies cannot both win: the second fails on the
    /// version's primary key and can be re-run.
    pub async fn apply(&self, client: &ClientId, repo: &Repo, dry_run: bool, prune: bool) -> Result<Applied> {
        let current = self.current(client).await?;
        let (old, version) = current.map_or((Repo::default(), 0), |c| (c.repo, c.version));
        let plan = Plan::between(&old, repo, prune);
        if !plan.breaking.is_empty() {
            return Err(Error::Breaking(plan.breaking));
        }
        if dry_run || plan.is_empty() {
            return Ok(Applied { plan, version });
        }
        let json =
            serde_json::to_string(repo).map_err(|e| Error::Registry(format!("cannot encode definitions: {e}")))?;
        let digest = hex(&Sha256::digest(json.as_bytes()));
        let next = version + 1;
        sqlx::query(
            "INSERT INTO feature_registry (client_id, version, applied_at, digest, definitions) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(client.as_str())
        .bind(next)
        .bind(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true))
        .bind(&digest)
        .bind(&json)
        .execute(&self.pool)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Error::Registry(format!(
                "client `{client}` applied version {next} concurrently; re-run to plan against it"
            )),
            e => db(e),
        })?;
        Ok(Applied { plan, version: next })
    }
}

fn version_of(row: &sqlx::any::AnyRow) -> Result<Version> {
    let json: String = row.try_get(3).map_err(db)?;
    let repo = serde_json::from_str(&json)
        .map_err(|e| Error::Corrupt { what: "the feature registry".into(), reason: e.to_string() })?;
    Ok(Version {
        version: row.try_get(0).map_err(db)?,
        applied_at: row.try_get(1).map_err(db)?,
        digest: row.try_get(2).map_err(db)?,
        repo,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn db(e: sqlx::Error) -> Error {
    Error::Registry(format!("database: {e}"))
}
