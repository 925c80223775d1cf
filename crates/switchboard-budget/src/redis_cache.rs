//! [`RedisResponseCache`]: the exact-match response cache shared by gateway replicas.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use switchboard_core::{ChatBody, ChatEvent, ChatResponse, ProviderId};
use tokio::sync::Notify;

use crate::ResponseCache;
use crate::cache::{AnswerCache, CacheFuture, Replay};

/// A stored answer; `key` is the whole cache key, checked on every hit.
#[derive(Serialize, Deserialize)]
struct Stored {
    key: String,
    provider: ProviderId,
    model: String,
    events: Vec<ChatEvent>,
}

/// The exact-match response cache in Redis, with the semantics of [`ResponseCache`]:
/// the key is the whole request body serialized (`stream` aside), so only an identical
/// request hits; complete answers are stored when their stream ends cleanly; a hit
/// replays the stored events.
///
/// - **TTL** by Redis expiry (`SET … PX`), so every replica sees an entry expire at once.
/// - **Size bound**: an answer whose stored form is over
///   [`max_entry_bytes`](Self::max_entry_bytes) (default 256 KiB) is not stored; the
///   total is bounded by the TTL times the rate of distinct answers, and by the server's
///   `maxmemory` policy (give the cache its own database or `volatile-ttl`).
/// - **Keys** are `{prefix}:{64-bit FNV-1a of the key}`; the stored entry carries the full
///   key and a hit must match it exactly, so a hash collision is a miss, never another
///   request's answer.
/// - Stores are sent in the background (the settlement that stores is synchronous);
///   [`flushed`](Self::flushed) waits for them. A Redis error is a miss (the blocked
///   request gets its 429) and a lost store, logged.
#[derive(Clone)]
pub struct RedisResponseCache {
    conn: MultiplexedConnection,
    prefix: Arc<str>,
    ttl: Duration,
    max_entry_bytes: usize,
    pending: Arc<Pending>,
}

#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

impl std::fmt::Debug for RedisResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisResponseCache")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .finish_non_exhaustive()
    }
}

/// 64-bit FNV-1a.
fn fnv(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl RedisResponseCache {
    /// Connects to `url`; answers are kept for `ttl` (whole milliseconds, at least one).
    pub async fn connect(url: &str, ttl: Duration) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Self::from_connection(conn, ttl))
    }

    /// A cache over an existing connection. Keys start with `switchboard:cache`.
    pub fn from_connection(conn: MultiplexedConnection, ttl: Duration) -> Self {
        Self {
            conn,
            prefix: Arc::from("switchboard:cache"),
            ttl: ttl.max(Duration::from_millis(1)),
            max_entry_bytes: 256 * 1024,
            pending: Arc::default(),
        }
    }

    /// Sets the key prefix. Default: `switchboard:cache`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// Answers larger than this (stored as JSON) are not stored. Default: 256 KiB.
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    fn redis_key(&self, key: &str) -> String {
        format!("{}:{:016x}", self.prefix, fnv(key))
    }

    /// A replay of the stored answer to `body`, if fresh.
    pub async fn get(&self, body: &ChatBody) -> Option<ChatResponse> {
        let key = ResponseCache::key(body);
        let mut conn = self.conn.clone();
        let found: RedisResult<Option<String>> = redis::cmd("GET")
            .arg(self.redis_key(&key))
            .query_async(&mut conn)
            .await;
        let text = match found {
            Ok(text) => text?,
            Err(error) => {
                tracing::warn!(%error, "redis response cache unavailable: a miss");
                return None;
            }
        };
        let stored: Stored = serde_json::from_str(&text).ok()?;
        if stored.key != key {
            return None;
        }
        Some(ChatResponse::new(
            stored.provider,
            stored.model,
            Replay::new(stored.events.into()),
        ))
    }

    /// Stores a complete answer to `body` in the background (needs a tokio runtime);
    /// returns whether it was sent (not over the size bound, a runtime present).
    pub fn insert(
        &self,
        body: &ChatBody,
        provider: ProviderId,
        model: String,
        events: Vec<ChatEvent>,
    ) -> bool {
        let key = ResponseCache::key(body);
        let redis_key = self.redis_key(&key);
        let stored = Stored {
            key,
            provider,
            model,
            events,
        };
        let Ok(text) = serde_json::to_string(&stored) else {
            return false;
        };
        if text.len() > self.max_entry_bytes {
            tracing::debug!(
                bytes = text.len(),
                max = self.max_entry_bytes,
                "answer too large for the response cache"
            );
            return false;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("redis response cache: a store outside a tokio runtime is lost");
            return false;
        };
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        let pending = self.pending.clone();
        pending.count.fetch_add(1, Ordering::AcqRel);
        runtime.spawn(async move {
            let stored: RedisResult<()> = redis::cmd("SET")
                .arg(redis_key)
                .arg(text)
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await;
            if let Err(error) = stored {
                tracing::warn!(%error, "redis response cache: a store failed");
            }
            if pending.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                pending.idle.notify_waiters();
            }
        });
        true
    }

    /// Waits until every store started by this cache (and its clones) has reached Redis.
    pub async fn flushed(&self) {
        loop {
            let idle = self.pending.idle.notified();
            if self.pending.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl AnswerCache for RedisResponseCache {
    fn lookup(&self, body: &ChatBody) -> CacheFuture {
        let cache = self.clone();
        let body = body.clone();
        Box::pin(async move { cache.get(&body).await })
    }

    fn store(&self, body: &ChatBody, provider: ProviderId, model: String, events: Vec<ChatEvent>) {
        self.insert(body, provider, model, events);
    }
}
