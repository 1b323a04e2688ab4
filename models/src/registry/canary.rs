//! Canaries: a second version of a model beside the version an alias points at, scoring a
//! share of the alias's entities (table `model_canaries`, one row per client, model and alias).
//! Which entities is serving's choice (`livora-inference`); the registry keeps the version and
//! the weight, and refuses canaries that serving could not score.

use chrono::{DateTime, Utc};
use livora_common::ClientId;
use sqlx::Row;

use super::{ModelRegistry, check_alias, now};
use crate::error::{Error, Result};

/// A canary: a second version that scores a share of an alias's entities, beside the version
/// the alias points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// The model.
    pub model: String,
    /// The alias (`production`, `staging`, `shadow`).
    pub alias: String,
    /// The version the alias points at, which scores the other entities.
    pub primary: i64,
    /// The canary version.
    pub version: i64,
    /// The share of the alias's entities it scores, in percent (1–100).
    pub weight: u32,
    /// When it was set.
    pub set_at: DateTime<Utc>,
}

impl std::fmt::Display for Canary {
    /// `production → v3 (canary v4 at 10%)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} → v{} (canary v{} at {}%)", self.alias, self.primary, self.version, self.weight)
    }
}

impl ModelRegistry {
    /// The version `alias` of `model` points at and its canary, in one query; `None` when the
    /// alias points at nothing.
    pub(super) async fn alias_with_canary(
        &self,
        client: &ClientId,
        model: &str,
        alias: &str,
    ) -> Result<Option<(i64, Option<Canary>)>> {
        let row = sqlx::query(
            "SELECT m.version, c.version, c.weight, c.set_at FROM model_alias_moves m \
             LEFT JOIN model_canaries c ON c.client_id = m.client_id AND c.model = m.model AND c.alias = m.alias \
             WHERE m.client_id = $1 AND m.model = $2 AND m.alias = $3 AND m.rolled_back_at IS NULL \
             ORDER BY m.seq DESC LIMIT 1",
        )
        .bind(client.as_str())
        .bind(model)
        .bind(alias)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let primary: i64 = row.try_get(0)?;
        let canary = match (row.try_get(1)?, row.try_get(2)?, row.try_get::<Option<String>, _>(3)?) {
            (Some(version), Some(weight), Some(set_at)) => {
                Some(canary_row(model.to_owned(), alias.to_owned(), primary, version, weight, &set_at)?)
            }
            _ => None,
        };
        Ok(Some((primary, canary)))
    }

    /// Every canary of `client`, by model and alias, each with the version its alias points at.
    pub async fn canaries(&self, client: &ClientId) -> Result<Vec<Canary>> {
        let aliases = self.aliases(client).await?;
        self.canaries_beside(client, &aliases).await
    }

    /// The canaries of `client` beside `aliases` ([`ModelRegistry::aliases`]). A canary is set
    /// only beside an alias that points at a version, and no alias is ever emptied, so each
    /// finds its alias.
    pub(super) async fn canaries_beside(
        &self,
        client: &ClientId,
        aliases: &[(String, String, i64)],
    ) -> Result<Vec<Canary>> {
        let rows = sqlx::query(
            "SELECT model, alias, version, weight, set_at FROM model_canaries WHERE client_id = $1 \
             ORDER BY model, alias",
        )
        .bind(client.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut canaries = Vec::with_capacity(rows.len());
        for r in &rows {
            let (model, alias): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            let Some(primary) = aliases.iter().find(|(m, a, _)| *m == model && *a == alias).map(|x| x.2) else {
                continue;
            };
            let set_at: String = r.try_get(4)?;
            canaries.push(canary_row(model, alias, primary, r.try_get(2)?, r.try_get(3)?, &set_at)?);
        }
        Ok(canaries)
    }

    /// The canary of `alias` of `model`, if it has one.
    pub async fn canary(&self, client: &ClientId, model: &str, alias: &str) -> Result<Option<Canary>> {
        check_alias(alias)?;
        Ok(self.alias_with_canary(client, model, alias).await?.and_then(|(_, canary)| canary))
    }

    /// Makes `version` the canary of `alias` of `model`, scoring `weight` percent of the
    /// alias's entities, in place of the alias's canary if it had one; returns the canary now
    /// in force. Refused
    /// (each error names the field): an unknown alias, a weight outside 1–100, an unknown
    /// version, an alias pointing at no version or at `version` itself, and a version that
    /// reads other features than the alias's (serving scores both from one online read).
    pub async fn set_canary(
        &self,
        client: &ClientId,
        model: &str,
        alias: &str,
        version: i64,
        weight: u32,
    ) -> Result<Canary> {
        check_alias(alias)?;
        if !(1..=100).contains(&weight) {
            return Err(Error::InvalidArgument(format!(
                "weight: {weight} is not a share of entities from 1 to 100 (percent)"
            )));
        }
        let canary = self.get(client, model, version).await?;
        let Some((primary, _)) = self.alias_with_canary(client, model, alias).await? else {
            return Err(Error::InvalidArgument(format!(
                "alias: `{alias}` of model `{model}` points at no version for client `{client}`, so there is \
                 nothing to run a canary beside; promote one with `livora models promote {model} <version> \
                 --alias {alias}`"
            )));
        };
        if primary == version {
            return Err(Error::InvalidArgument(format!(
                "version: `{alias}` of model `{model}` already points at v{version}; a canary is another version"
            )));
        }
        let current = self.get(client, model, primary).await?;
        if let Some(why) = current.manifest.input_difference(&canary.manifest) {
            return Err(Error::InvalidArgument(format!(
                "version: v{version} cannot be the canary of `{alias}` (v{primary}) of model `{model}`: {why}; \
                 a canary is scored from the same online feature read as the version beside it, so it must \
                 read the same features in the same order"
            )));
        }
        let set_at = now();
        sqlx::query(
            "INSERT INTO model_canaries (client_id, model, alias, version, weight, set_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client_id, model, alias) \
             DO UPDATE SET version = excluded.version, weight = excluded.weight, set_at = excluded.set_at",
        )
        .bind(client.as_str())
        .bind(model)
        .bind(alias)
        .bind(version)
        .bind(i64::from(weight))
        .bind(set_at.clone())
        .execute(&self.pool)
        .await?;
        canary_row(model.to_owned(), alias.to_owned(), primary, version, i64::from(weight), &set_at)
    }

    /// Ends the canary of `alias` of `model`: the version the alias points at scores every
    /// entity again. Returns the canary it ended; `None` when there was none.
    pub async fn clear_canary(&self, client: &ClientId, model: &str, alias: &str) -> Result<Option<Canary>> {
        let before = self.canary(client, model, alias).await?;
        sqlx::query("DELETE FROM model_canaries WHERE client_id = $1 AND model = $2 AND alias = $3")
            .bind(client.as_str())
            .bind(model)
            .bind(alias)
            .execute(&self.pool)
            .await?;
        Ok(before)
    }
}

/// A [`Canary`] from its row; a stored weight outside 1–100 or an unreadable time is an error.
fn canary_row(model: String, alias: String, primary: i64, version: i64, weight: i64, set_at: &str) -> Result<Canary> {
    let weight = u32::try_from(weight)
        .ok()
        .filter(|w| (1..=100).contains(w))
        .ok_or_else(|| Error::Registry(format!("the canary of `{alias}` of model `{model}` has weight {weight}")))?;
    let set_at = DateTime::parse_from_rfc3339(set_at)
        .map_err(|e| Error::Registry(format!("the canary of `{alias}` of model `{model}`: set_at `{set_at}`: {e}")))?
        .with_timezone(&Utc);
    Ok(Canary { model, alias, primary, version, weight, set_at })
}
