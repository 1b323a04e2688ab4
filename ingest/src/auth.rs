//! Clients (tenants) and their API keys.
//!
//! A key is `lvk_` followed by 64 hex digits (256 random bits). It is shown once, when created;
//! the registry keeps only its SHA-256 (a fast hash is right for keys of this entropy: there is
//! nothing to brute-force) and an 8-character prefix to tell keys apart in listings. The registry
//! is SQLite in the data directory by default, PostgreSQL at scale (`clients.url`).
//! Verified keys are cached for `clients.cache_ttl`, so the hot path does not touch the database
//! and a revocation takes effect within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use livora_common::ClientId;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;

const KEY_PREFIX: &str = "lvk_";

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    /// The database failed.
    #[error("client registry database: {0}")]
    Db(#[from] sqlx::Error),
    /// `clients create` for a client that exists.
    #[error("client `{0}` already exists (use `livora clients key {0}` for another key)")]
    Exists(ClientId),
    /// The client or key does not exist.
    #[error("{0} not found")]
    NotFound(String),
}

/// A key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// The key's id, used to revoke it.
    pub key_id: String,
    /// The client the key belongs to.
    pub client_id: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// When the key was created (RFC 3339).
    pub created_at: String,
    /// When the key was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
}

/// A newly created key: the only moment the secret is known.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The key's id.
    pub key_id: String,
    /// The secret to give to the client.
    pub secret: String,
}

/// The client registry.
pub struct ClientStore {
    pool: AnyPool,
    cache_ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], (ClientId, Instant)>>,
}

impl ClientStore {
    /// Connects to `url` (`sqlite://…?mode=rwc` or `postgres://…`) and creates the tables.
    pub async fn connect(url: &str, cache_ttl: Duration) -> Result<Self, ClientsError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().max_connections(4).connect(url).await?;
        if url.starts_with("sqlite:") {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        for ddl in [
            "CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, created_at TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, client_id TEXT NOT NULL \
             REFERENCES clients(client_id), key_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, \
             created_at TEXT NOT NULL, revoked_at TEXT)",
        ] {
            sqlx::query(ddl).execute(&pool).await?;
        }
        Ok(Self { pool, cache_ttl, cache: Mutex::new(HashMap::new()) })
    }

    /// Registers `client` and returns its first key.
    pub async fn create_client(&self, client: &ClientId) -> Result<NewKey, ClientsError> {
        let now = Utc::now().to_rfc3339();
        let inserted = sqlx::query(
            "INSERT INTO clients (client_id, created_at) VALUES ($1, $2) ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(client.as_str())
        .bind(&now)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(ClientsError::Exists(client.clone()));
        }
        self.create_key(client).await
    }

    /// Whether `client` is registered.
    pub async fn exists(&self, client: &ClientId) -> Result<bool, ClientsError> {
        let row = sqlx::query("SELECT client_id FROM clients WHERE client_id = $1")
            .bind(client.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Issues another key for an existing client (for rotation).
    pub async fn create_key(&self, client: &ClientId) -> Result<NewKey, ClientsError> {
        if !self.exists(client).await? {
            return Err(ClientsError::NotFound(format!("client `{client}`")));
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = format!("{KEY_PREFIX}{}", hex::encode(raw));
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        let key_id = format!("key_{}", hex::encode(id));
        sqlx::query(
            "INSERT INTO api_keys (key_id, client_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key_id)
        .bind(client.as_str())
        .bind(hex::encode(hash(&secret)))
        .bind(&secret[..KEY_PREFIX.len() + 8])
        .bind(Utc::now().to_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(NewKey { key_id, secret })
    }

    /// Every key, newest first, optionally of one client.
    pub async fn list_keys(&self, client: Option<&ClientId>) -> Result<Vec<KeyInfo>, ClientsError> {
        let rows = sqlx::query(
            "SELECT key_id, client_id, prefix, created_at, revoked_at FROM api_keys \
             WHERE ($1 = '' OR client_id = $1) ORDER BY created_at DESC, key_id",
        )
        .bind(client.map_or("", ClientId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    key_id: r.try_get(0)?,
                    client_id: r.try_get(1)?,
                    prefix: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    revoked_at: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ClientsError::from)
    }

    /// Revokes a key by id. Running collectors stop accepting it within `cache_ttl`.
    pub async fn revoke(&self, key_id: &str) -> Result<(), ClientsError> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL")
            .bind(Utc::now().to_rfc3339())
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(ClientsError::NotFound(format!("active key `{key_id}`")));
        }
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    /// The client an active key belongs to, or `None` for an unknown or revoked key.
    pub async fn verify(&self, secret: &str) -> Result<Option<ClientId>, ClientsError> {
        let digest = hash(secret);
        let now = Instant::now();
        if let Some((client, at)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&digest)
            && now.duration_since(*at) < self.cache_ttl
        {
            return Ok(Some(client.clone()));
        }
        let row = sqlx::query("SELECT client_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(hex::encode(digest))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest);
            return Ok(None);
        };
        let id: String = row.try_get(0)?;
        let Ok(client) = ClientId::new(id) else { return Ok(None) };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(digest, (client.clone(), now));
        Ok(Some(client))
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), ClientsError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}
