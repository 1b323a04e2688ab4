//! Who a Flight call is from: the client's api key, as a bearer token or as basic credentials.
//!
//! - `authorization: Bearer <api key>`: the key decides the client. `x-client-id` may be sent
//!   too (as for feature serving); it must then name the key's client. Flight SQL and JDBC
//!   clients cannot always add headers, so here it is optional.
//! - `authorization: Basic base64(<client id>:<api key>)`, on any call.
//! - The Flight handshake with basic credentials (pyarrow's `authenticate_basic_token`, the
//!   Flight SQL JDBC driver): answered with `authorization: Bearer <api key>` in the response
//!   headers and the key as payload, which the client sends on its next calls. The token *is*
//!   the key: nothing is kept on the server, and revoking the key revokes the token.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use livora_common::ClientId;
use livora_ingest::ClientStore;
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};
use crate::serving::auth::verify_key;

/// Base64 of basic credentials, padded or not: the Go Flight client (ADBC's Flight SQL driver)
/// leaves the padding out.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The credentials a call carries.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    Bearer(String),
    Basic { client: String, key: String },
}

/// The client a call is from.
///
/// # Errors
/// [`Error::Unauthenticated`] for no credentials, malformed ones or an unknown key;
/// [`Error::PermissionDenied`] when `x-client-id` or the basic user names another client than
/// the key's.
pub async fn authenticate(clients: &ClientStore, metadata: &MetadataMap) -> Result<ClientId> {
    let credentials = credentials(metadata)?;
    let (claimed, key) = match &credentials {
        Credentials::Bearer(key) => (metadata.get("x-client-id").map(|v| v.as_bytes()), key.as_str()),
        Credentials::Basic { client, key } => (Some(client.as_bytes()), key.as_str()),
    };
    let owner = verify_key(clients, key).await?;
    if let Some(claimed) = claimed
        && claimed != owner.as_str().as_bytes()
    {
        return Err(Error::PermissionDenied(format!(
            "the api key does not belong to client `{}`",
            String::from_utf8_lossy(claimed)
        )));
    }
    Ok(owner)
}

/// The handshake: credentials in (basic, or a bearer key), the bearer token (the api key) out.
///
/// # Errors
/// As [`authenticate`].
pub async fn handshake(clients: &ClientStore, metadata: &MetadataMap) -> Result<(ClientId, String)> {
    let key = match credentials(metadata)? {
        Credentials::Basic { key, .. } | Credentials::Bearer(key) => key,
    };
    Ok((authenticate(clients, metadata).await?, key))
}

fn credentials(metadata: &MetadataMap) -> Result<Credentials> {
    let missing = || {
        Error::Unauthenticated(
            "missing `authorization: Bearer <api key>` (or basic credentials: user = client id, password = api key)"
                .into(),
        )
    };
    let value = metadata.get("authorization").ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| Error::Unauthenticated("authorization: not ASCII".into()))?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(missing)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Credentials::Bearer(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASIC.decode(rest).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(|| {
            Error::Unauthenticated("authorization: basic credentials are not base64 of `user:password`".into())
        })?;
        let (client, key) = decoded
            .split_once(':')
            .ok_or_else(|| Error::Unauthenticated("authorization: basic credentials need `user:password`".into()))?;
        return Ok(Credentials::Basic { client: client.to_owned(), key: key.to_owned() });
    }
    Err(missing())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn reads_bearer_and_basic_credentials() {
        assert_eq!(credentials(&with("Bearer lvk_1")).unwrap(), Credentials::Bearer("lvk_1".into()));
        for basic in [
            base64::engine::general_purpose::STANDARD.encode("shop:lvk_1"),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode("shop:lvk_1"),
        ] {
            assert_eq!(
                credentials(&with(&format!("Basic {basic}"))).unwrap(),
                Credentials::Basic { client: "shop".into(), key: "lvk_1".into() }
            );
        }
        for bad in ["Bearer ", "Basic !!", "Token x", "lvk_1"] {
            assert!(matches!(credentials(&with(bad)), Err(Error::Unauthenticated(_))), "{bad}");
        }
        assert!(matches!(credentials(&MetadataMap::new()), Err(Error::Unauthenticated(m)) if m.contains("Bearer")));
    }
}
