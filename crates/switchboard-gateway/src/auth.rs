//! Gateway keys: which callers may use the gateway, and which tenant each one is.

use std::collections::BTreeMap;
use std::fmt;

use http::HeaderMap;
use subtle::ConstantTimeEq;
use switchboard_core::TenantId;

/// The keys callers present (`Authorization: Bearer KEY` or `x-api-key: KEY`, so both
/// OpenAI and Anthropic SDKs work unchanged), each mapped to a tenant. Keys are compared
/// in constant time, and every configured key is compared, so timing reveals nothing about
/// which key was close.
#[derive(Clone, Default)]
pub struct GatewayKeys {
    keys: Vec<(Vec<u8>, TenantId)>,
}

impl GatewayKeys {
    /// No keys: the gateway is open (the default for the local demo).
    pub fn open() -> Self {
        Self::default()
    }

    /// Keys mapped to tenants.
    pub fn new(keys: BTreeMap<String, TenantId>) -> Self {
        Self {
            keys: keys.into_iter().map(|(k, t)| (k.into_bytes(), t)).collect(),
        }
    }

    /// Whether any key is required.
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// The tenant of the key the request carries; `Err` when keys are required and the
    /// request's is missing or unknown. `Ok(None)` for an open gateway.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<TenantId>, Unauthorized> {
        if self.is_open() {
            return Ok(None);
        }
        let presented = presented_key(headers).ok_or(Unauthorized::Missing)?;
        let mut found = None;
        for (key, tenant) in &self.keys {
            if bool::from(key.as_slice().ct_eq(presented.as_bytes())) {
                found = Some(tenant.clone());
            }
        }
        found.map(Some).ok_or(Unauthorized::Unknown)
    }
}

impl fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// No key in `Authorization` or `x-api-key`.
    Missing,
    /// A key that is not configured.
    Unknown,
}

impl Unauthorized {
    /// The message callers read.
    pub fn message(self) -> &'static str {
        match self {
            Unauthorized::Missing => {
                "You didn't provide an API key. Send it as `Authorization: Bearer KEY` or `x-api-key: KEY`."
            }
            Unauthorized::Unknown => "Incorrect API key provided.",
        }
    }
}

/// `Authorization: Bearer KEY`, else `x-api-key: KEY`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> GatewayKeys {
        GatewayKeys::new(BTreeMap::from([
            ("sk-acme".to_owned(), TenantId::new("acme").unwrap()),
            ("sk-beta".to_owned(), TenantId::new("beta").unwrap()),
        ]))
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::try_from(name).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[test]
    fn bearer_and_x_api_key_both_authenticate() {
        let k = keys();
        assert_eq!(
            k.authenticate(&headers("authorization", "Bearer sk-acme"))
                .unwrap()
                .unwrap(),
            "acme"
        );
        assert_eq!(
            k.authenticate(&headers("x-api-key", "sk-beta"))
                .unwrap()
                .unwrap(),
            "beta"
        );
    }

    #[test]
    fn missing_and_unknown_keys_are_refused() {
        let k = keys();
        assert_eq!(
            k.authenticate(&HeaderMap::new()),
            Err(Unauthorized::Missing)
        );
        assert_eq!(
            k.authenticate(&headers("x-api-key", "sk-acm")),
            Err(Unauthorized::Unknown)
        );
        assert_eq!(
            k.authenticate(&headers("x-api-key", "sk-acme2")),
            Err(Unauthorized::Unknown)
        );
    }

    #[test]
    fn an_open_gateway_needs_no_key() {
        assert_eq!(
            GatewayKeys::open().authenticate(&HeaderMap::new()),
            Ok(None)
        );
    }

    #[test]
    fn debug_never_prints_keys() {
        assert!(!format!("{:?}", keys()).contains("sk-acme"));
    }
}
