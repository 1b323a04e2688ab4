//! Tenants: every read and write in Livora is scoped by a [`ClientId`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest client id accepted.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// The identifier of a tenant (a shop) of the platform.
///
/// 1 to 64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter or digit. The charset is
/// kept narrow on purpose: the id becomes a path segment (`client_id=<c>`), a NATS subject token and a
/// key prefix in every store, so it must be safe in all of them without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

/// Why a string is not a valid [`ClientId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidClientId {
    /// The id is empty.
    #[error("client id is empty")]
    Empty,
    /// The id is longer than [`MAX_CLIENT_ID_LEN`].
    #[error("client id is longer than {MAX_CLIENT_ID_LEN} characters")]
    TooLong,
    /// The id holds a character outside `a-z0-9_-` or starts with `_`/`-`.
    #[error("client id must be lowercase letters, digits, '_' or '-', starting with a letter or digit")]
    BadCharset,
}

impl ClientId {
    /// Validates and wraps a client id.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidClientId> {
        let id = id.into();
        if id.is_empty() {
            return Err(InvalidClientId::Empty);
        }
        if id.len() > MAX_CLIENT_ID_LEN {
            return Err(InvalidClientId::TooLong);
        }
        let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-';
        let first = id.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) || !id.bytes().all(ok_char) {
            return Err(InvalidClientId::BadCharset);
        }
        Ok(Self(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientId {
    type Error = InvalidClientId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ClientId> for String {
    fn from(value: ClientId) -> Self {
        value.0
    }
}

impl std::str::FromStr for ClientId {
    type Err = InvalidClientId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ClientId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_charset() {
        for ok in ["shop", "shop-1", "a", "0shop_eu", &"x".repeat(64)] {
            assert!(ClientId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_would_break_paths_or_subjects() {
        assert_eq!(ClientId::new(""), Err(InvalidClientId::Empty));
        assert_eq!(ClientId::new("x".repeat(65)), Err(InvalidClientId::TooLong));
        for bad in ["Shop", "shop.eu", "shop/eu", "-shop", "_shop", "sh op", "shöp", "shop*"] {
            assert_eq!(ClientId::new(bad), Err(InvalidClientId::BadCharset), "{bad}");
        }
    }
}
