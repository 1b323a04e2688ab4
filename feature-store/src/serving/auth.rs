//! Per-client authentication of serving requests, with the rules of ingestion.
//!
//! A request carries `authorization: Bearer <api key>` and `x-client-id: <client>` (HTTP headers,
//! or gRPC metadata). The key is verified with the client registry ([`ClientStore::verify`],
//! which caches verified keys for `clients.cache_ttl`):
//! - no key, or a key that is unknown or revoked → [`Error::Unauthenticated`];
//! - no `x-client-id` → [`Error::InvalidArgument`] (as ingestion answers 400);
//! - a valid key of another client than `x-client-id` names → [`Error::PermissionDenied`].
//!
//! The client returned scopes everything the request reads.

use livora_common::ClientId;
use livora_ingest::ClientStore;
use livora_ingest::auth::ClientsError;

use crate::error::{Error, Result};

/// The client a request is from, given its `authorization` and `x-client-id` values.
pub async fn authenticate(
    clients: &ClientStore,
    authorization: Option<&[u8]>,
    client_id: Option<&[u8]>,
) -> Result<ClientId> {
    let key = authorization
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Error::Unauthenticated("missing `authorization: Bearer <api key>`".into()))?;
    let owner = verify_key(clients, key).await?;
    let claimed = client_id.ok_or_else(|| Error::InvalidArgument("x-client-id: the header is required".into()))?;
    if claimed != owner.as_str().as_bytes() {
        return Err(Error::PermissionDenied(format!(
            "the api key does not belong to client `{}`",
            String::from_utf8_lossy(claimed)
        )));
    }
    Ok(owner)
}

/// The client owning the api key `key`.
///
/// # Errors
/// [`Error::Unauthenticated`] for an unknown or revoked key; [`Error::Clients`] when the
/// registry cannot be asked.
pub async fn verify_key(clients: &ClientStore, key: &str) -> Result<ClientId> {
    clients
        .verify(key)
        .await
        .map_err(|e| match e {
            ClientsError::Db(db) => Error::Clients(db.to_string()),
            other => Error::Clients(other.to_string()),
        })?
        .ok_or_else(|| Error::Unauthenticated("unknown or revoked api key".into()))
}
