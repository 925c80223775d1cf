//! API keys that never print.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A provider API key. `Debug` and `Display` print `ApiKey(****)`, so keys cannot leak
/// through logs, tracing fields or panic messages; the header built from it is marked
/// sensitive, so hyper's own debug output hides it too. There is deliberately no
/// `Serialize`.
///
/// ```
/// use switchboard_providers::ApiKey;
/// let key = ApiKey::new("sk-live-123");
/// assert_eq!(format!("{key:?}"), "ApiKey(****)");
/// assert_eq!(key.to_string(), "ApiKey(****)");
/// assert_eq!(key.expose(), "sk-live-123");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// Reads a key from an environment variable (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`).
    pub fn from_env(var: &str) -> Result<Self, MissingKey> {
        match std::env::var(var) {
            Ok(key) if !key.trim().is_empty() => Ok(Self(key.trim().to_owned())),
            _ => Err(MissingKey {
                var: var.to_owned(),
            }),
        }
    }

    /// The key itself, for building the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(****)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(****)")
    }
}

impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ApiKey)
    }
}

/// No key was configured and the environment variable is unset or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKey {
    var: String,
}

impl fmt::Display for MissingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no API key: set `api_key` in the provider's config or the {} environment variable",
            self.var
        )
    }
}

impl std::error::Error for MissingKey {}
