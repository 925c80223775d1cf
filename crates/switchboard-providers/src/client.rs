//! The shared HTTP client: hyper-util's pooled client over rustls, with a connection pool
//! per OS thread (or one pool for all, [`ClientConfig::pool_per_thread`]).

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Weak};
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
    /// Idle connections kept per host (per thread's pool when `pool_per_thread`). Default 64.
    pub pool_max_idle_per_host: usize,
    /// Give every OS thread that sends requests its own connection pool. A pooled
    /// connection is driven by a task on the runtime that opened it, so a request sent over
    /// a connection another thread opened wakes that thread twice (request out, answer
    /// back); per-thread pools keep a request and its connection on one thread. This is
    /// what the gateway's thread-per-core workers want, and it helps a multi-thread runtime
    /// too (a task spawned by a worker tends to stay on it). The price: up to one set of
    /// idle connections (and TLS handshakes) per thread. Default true.
    pub pool_per_thread: bool,
    /// Trusted roots. Default: compiled-in webpki roots.
    pub tls_roots: TlsRoots,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
            pool_per_thread: true,
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

type Connector = HttpsConnector<HttpConnector>;
type Inner = Client<Connector, Full<Bytes>>;

/// A pooled HTTP/1.1 + HTTP/2 (negotiated by ALPN) client over rustls, with a connect
/// timeout. Cheap to clone; share one between providers so they share the pool (or, with
/// [`ClientConfig::pool_per_thread`], each thread's pool).
#[derive(Clone)]
pub struct HttpClient {
    pools: Arc<Pools>,
    connect_timeout: Duration,
}

/// The connector and pool settings every pool of one [`HttpClient`] is built from, and the
/// shared pool when pools are not per thread.
struct Pools {
    shared: Option<Inner>,
    connector: Connector,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    /// Pools built so far (for tests: which calls shared a pool).
    #[cfg(test)]
    built: std::sync::atomic::AtomicUsize,
}

impl Pools {
    fn build(&self) -> Inner {
        #[cfg(test)]
        self.built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.idle_timeout)
            .pool_max_idle_per_host(self.max_idle_per_host)
            .build(self.connector.clone())
    }
}

thread_local! {
    /// This thread's pools, one per live [`HttpClient`] (keyed by its `Pools`; an entry
    /// whose client is gone is dropped when the next pool is added).
    static THREAD_POOLS: RefCell<Vec<(Weak<Pools>, Inner)>> = const { RefCell::new(Vec::new()) };
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
        let connector = builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let mut pools = Pools {
            shared: None,
            connector,
            idle_timeout: config.pool_idle_timeout,
            max_idle_per_host: config.pool_max_idle_per_host,
            #[cfg(test)]
            built: std::sync::atomic::AtomicUsize::new(0),
        };
        if !config.pool_per_thread {
            pools.shared = Some(pools.build());
        }
        Ok(Self {
            pools: Arc::new(pools),
            connect_timeout: config.connect_timeout,
        })
    }

    /// Sends `request` over a connection of this thread's pool (or the shared one).
    pub(crate) fn request(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        self.with_pool(|pool| pool.request(request))
    }

    /// Runs `f` with this thread's pool (built on its first use), or the shared pool.
    fn with_pool<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        if let Some(shared) = &self.pools.shared {
            return f(shared);
        }
        THREAD_POOLS.with_borrow_mut(|pools| {
            let key = Arc::as_ptr(&self.pools);
            // A live `Weak` keeps its allocation, so an equal pointer is this very client.
            if let Some((_, pool)) = pools.iter().find(|(k, _)| k.as_ptr() == key) {
                return f(pool);
            }
            pools.retain(|(k, _)| k.strong_count() > 0);
            let pool = self.pools.build();
            let out = f(&pool);
            pools.push((Arc::downgrade(&self.pools), pool));
            out
        })
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_per_thread", &self.pools.shared.is_none())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn client(pool_per_thread: bool) -> HttpClient {
        HttpClient::with_config(&ClientConfig {
            pool_per_thread,
            ..ClientConfig::default()
        })
        .unwrap()
    }

    fn built(client: &HttpClient) -> usize {
        client.pools.built.load(Ordering::Relaxed)
    }

    fn pools_on_this_thread() -> usize {
        THREAD_POOLS.with_borrow(Vec::len)
    }

    #[test]
    fn each_thread_gets_its_own_pool_and_keeps_it() {
        let client = client(true);
        assert_eq!(built(&client), 0, "no pool before the first request");
        client.with_pool(|_| ());
        client.clone().with_pool(|_| ());
        assert_eq!(
            built(&client),
            1,
            "one pool per thread, shared by the client's clones"
        );
        let other = client.clone();
        std::thread::spawn(move || {
            other.with_pool(|_| ());
            other.with_pool(|_| ());
        })
        .join()
        .unwrap();
        assert_eq!(
            built(&client),
            2,
            "a second thread builds a pool of its own"
        );
        client.with_pool(|_| ());
        assert_eq!(built(&client), 2, "the first thread still has its pool");
    }

    #[test]
    fn a_shared_pool_serves_every_thread() {
        let client = client(false);
        assert_eq!(
            built(&client),
            1,
            "the shared pool is built with the client"
        );
        let other = client.clone();
        std::thread::spawn(move || other.with_pool(|_| ()))
            .join()
            .unwrap();
        client.with_pool(|_| ());
        assert_eq!(built(&client), 1, "no thread builds a pool of its own");
        assert_eq!(pools_on_this_thread(), 0);
    }

    #[test]
    fn a_dropped_clients_pool_is_let_go_when_the_thread_adds_another() {
        std::thread::spawn(|| {
            let first = client(true);
            first.with_pool(|_| ());
            assert_eq!(pools_on_this_thread(), 1);
            drop(first);
            let second = client(true);
            second.with_pool(|_| ());
            assert_eq!(
                pools_on_this_thread(),
                1,
                "the dropped client's pool was let go, not kept beside the new one"
            );
        })
        .join()
        .unwrap();
    }
}
