//! The shared HTTP client: hyper-util's pooled client over rustls.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;

/// Which certificate authorities HTTPS connections trust.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsRoots {
    /// Mozilla's roots, compiled in (`webpki-roots`): works in minimal containers.
    #[default]
    Webpki,
    /// The operating system's store (for corporate CAs and TLS-inspecting proxies).
    Native,
}

/// Connection settings shared by every provider that uses one [`HttpClient`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Limit on opening a TCP connection (the TLS handshake is then bounded by the
    /// first-token deadline). Default 10 s.
    #[serde(with = "millis", rename = "connect_timeout_ms")]
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept. Default 90 s.
    #[serde(with = "millis", rename = "pool_idle_timeout_ms")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host. Default 64.
    pub pool_max_idle_per_host: usize,
    /// Trusted roots. Default: compiled-in webpki roots.
    pub tls_roots: TlsRoots,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
            tls_roots: TlsRoots::Webpki,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

type Inner = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTP/1.1 + HTTP/2 (negotiated by ALPN) client over rustls, with a connect
/// timeout. Cheap to clone; share one between providers so they share the pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Inner,
    connect_timeout: Duration,
}

impl HttpClient {
    /// A client with the default [`ClientConfig`].
    pub fn new() -> Result<Self, std::io::Error> {
        Self::with_config(&ClientConfig::default())
    }

    /// A client with these settings. Fails only when `tls_roots = native` and the system
    /// store cannot be read.
    pub fn with_config(config: &ClientConfig) -> Result<Self, std::io::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match config.tls_roots {
            TlsRoots::Webpki => builder.with_webpki_roots(),
            TlsRoots::Native => builder.with_native_roots()?,
        };
        let https = builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(https);
        Ok(Self {
            inner,
            connect_timeout: config.connect_timeout,
        })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}
