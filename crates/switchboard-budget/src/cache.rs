//! [`ResponseCache`]: exact-match answers for blocked requests, and [`AnswerCache`],
//! what the budget layer needs of a cache (in memory or shared).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_core::Stream;
use switchboard_core::{ChatBody, ChatEvent, ChatResponse, Error, ProviderId};
use tokio::time::Instant;

/// The future of a cache lookup.
pub type CacheFuture = Pin<Box<dyn Future<Output = Option<ChatResponse>> + Send + 'static>>;

/// An exact-match answer cache the budget layer answers blocked requests from
/// ([`BlockAction::Cache`](crate::BlockAction::Cache)) and stores complete answers in.
/// Implemented by [`ResponseCache`] (in memory) and `RedisResponseCache` (feature
/// `redis`, shared by replicas).
pub trait AnswerCache: fmt::Debug + Send + Sync + 'static {
    /// A replay of the stored answer to `body`, if fresh.
    fn lookup(&self, body: &ChatBody) -> CacheFuture;

    /// Stores a complete answer to `body` (a shared cache stores it in the background).
    fn store(&self, body: &ChatBody, provider: ProviderId, model: String, events: Vec<ChatEvent>);
}

impl AnswerCache for ResponseCache {
    fn lookup(&self, body: &ChatBody) -> CacheFuture {
        Box::pin(std::future::ready(self.get(body)))
    }

    fn store(&self, body: &ChatBody, provider: ProviderId, model: String, events: Vec<ChatEvent>) {
        self.insert(body, provider, model, events);
    }
}

/// An in-memory exact-match response cache with a TTL and a size bound.
///
/// The key is the whole request body (model, system, messages, sampling, tools; the
/// `stream` flag aside) serialized, so only an identical request hits. Complete answers
/// are stored when their stream ends cleanly; a hit replays the stored events. When full,
/// the oldest entry is evicted; expired entries are dropped when met.
#[derive(Clone)]
pub struct ResponseCache {
    inner: Arc<Mutex<Entries>>,
    ttl: Duration,
    max_entries: usize,
}

struct Entries {
    map: HashMap<Arc<str>, Entry>,
    order: VecDeque<(Arc<str>, Instant)>,
}

struct Entry {
    stored: Instant,
    provider: ProviderId,
    model: String,
    events: Arc<[ChatEvent]>,
}

impl fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache")
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .field("len", &self.len())
            .finish()
    }
}

impl ResponseCache {
    /// A cache keeping answers for `ttl`, at most `max_entries` of them.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Entries {
                map: HashMap::new(),
                order: VecDeque::new(),
            })),
            ttl,
            max_entries: max_entries.max(1),
        }
    }

    /// The cache key of a body: its JSON with `stream` cleared.
    pub fn key(body: &ChatBody) -> String {
        if body.stream {
            let mut copy = body.clone();
            copy.stream = false;
            serde_json::to_string(&copy).unwrap_or_default()
        } else {
            serde_json::to_string(body).unwrap_or_default()
        }
    }

    /// Entries held (expired ones included until met).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A replay of the stored answer to `body`, if fresh.
    pub fn get(&self, body: &ChatBody) -> Option<ChatResponse> {
        let key = Self::key(body);
        let mut entries = self.lock();
        let entry = entries.map.get(key.as_str())?;
        if entry.stored.elapsed() >= self.ttl {
            entries.map.remove(key.as_str());
            return None;
        }
        let events = Replay::new(entry.events.clone());
        Some(ChatResponse::new(
            entry.provider.clone(),
            entry.model.clone(),
            events,
        ))
    }

    /// Stores a complete answer to `body`.
    pub fn insert(
        &self,
        body: &ChatBody,
        provider: ProviderId,
        model: String,
        events: Vec<ChatEvent>,
    ) {
        let key: Arc<str> = Self::key(body).into();
        let now = Instant::now();
        let mut entries = self.lock();
        while entries.map.len() >= self.max_entries {
            let Some((old, stored)) = entries.order.pop_front() else {
                break;
            };
            // Only evict if the queue entry is the live one (a key re-inserted later has
            // a newer stamp).
            if entries.map.get(&old).is_some_and(|e| e.stored == stored) {
                entries.map.remove(&old);
            }
        }
        entries.order.push_back((key.clone(), now));
        entries.map.insert(
            key,
            Entry {
                stored: now,
                provider,
                model,
                events: events.into(),
            },
        );
    }
}

/// Replays stored events.
pub(crate) struct Replay {
    events: Arc<[ChatEvent]>,
    next: usize,
}

impl Replay {
    /// Replays `events`.
    pub(crate) fn new(events: Arc<[ChatEvent]>) -> Self {
        Self { events, next: 0 }
    }

    /// No events: the stream of an answer that is not coming now.
    pub(crate) fn empty() -> Self {
        Self {
            events: Arc::from(Vec::new()),
            next: 0,
        }
    }
}

impl Stream for Replay {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let event = self.events.get(self.next).cloned();
        self.next += 1;
        std::task::Poll::Ready(event.map(Ok))
    }
}
