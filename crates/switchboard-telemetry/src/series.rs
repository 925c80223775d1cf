//! Bound instruments per label set, cached, so the request path records without building,
//! hashing and comparing an attribute set for every measurement.
//!
//! A call's labels (tier, scene, requested model, provider, answering model) are known once
//! its answer starts. The first call with a given set binds every instrument it may record
//! on the common path (OpenTelemetry's bound instruments) and caches them under those label
//! values; later calls find them with one hash of a few short strings and record with one
//! atomic operation each. Each thread also remembers its last few label sets, so a lookup
//! that repeats the one before (the usual case) takes neither the cache's lock nor a hash. Rare outcomes (errors, degradations, hedges, failovers) keep the
//! attribute sets beside the bound handles and record through the ordinary instruments.

use std::any::Any;
use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::{Equivalent, HashMap};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram};
use switchboard_core::Price;

use crate::telemetry::Instruments;

/// How many label sets each cache keeps. Past it, a series is bound afresh for each call
/// (correct, only slower); OpenTelemetry's own cardinality limit (2000 per instrument)
/// folds the excess into its overflow series anyway.
const LIMIT: usize = 4096;

/// Owned label values: the cache's key.
#[derive(PartialEq, Eq)]
struct Key(Box<[Box<str>]>);

/// Borrowed label values: what a lookup hashes. Hashes exactly like the [`Key`] it matches.
struct KeyRef<'a>(&'a [&'a str]);

fn hash_parts<'a, H: Hasher>(parts: impl ExactSizeIterator<Item = &'a str>, state: &mut H) {
    state.write_usize(parts.len());
    for part in parts {
        part.hash(state);
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(self.0.iter().map(|s| &**s), state);
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(self.0.iter().copied(), state);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        key.0.len() == self.0.len() && key.0.iter().zip(self.0).all(|(a, b)| **a == **b)
    }
}

/// Series by label values, built on first use.
pub(crate) struct Cache<V> {
    /// Tells this cache's entries in the threads' memos from another's (an address could be
    /// reused after a drop; an id is not).
    id: u64,
    map: RwLock<HashMap<Key, Arc<V>>>,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<V: Send + Sync + 'static> Cache<V> {
    /// The series for `labels`, built by `make` the first time.
    pub(crate) fn get(&self, labels: &[&str], make: impl FnOnce() -> V) -> Arc<V> {
        if let Some(series) = Memo::recall(self.id, labels) {
            return series;
        }
        let series = self.lookup(labels, make);
        Memo::remember(self.id, labels, &series);
        series
    }

    fn lookup(&self, labels: &[&str], make: impl FnOnce() -> V) -> Arc<V> {
        let key = KeyRef(labels);
        if let Some(series) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(series);
        }
        // Bind outside our lock: binding takes the SDK's own locks.
        let series = Arc::new(make());
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = map.get(&key) {
            return Arc::clone(existing);
        }
        if map.len() < LIMIT {
            map.insert(Key::of(labels), Arc::clone(&series));
        }
        series
    }
}

impl Key {
    fn of(labels: &[&str]) -> Self {
        Key(labels.iter().map(|s| Box::from(*s)).collect())
    }
}

/// How many recent lookups each thread remembers, across all caches: a call series and an
/// attempt series per request, a few models or tenants in turn.
const MEMO: usize = 8;

/// One thread's recent lookups: (cache, labels) → series, replaced in turn. Entries never
/// go stale (a cache never rebinds a label set); at most [`MEMO`] series per thread are
/// kept alive past their cache's drop, until replaced or the thread ends.
struct Memo {
    entries: [Option<Remembered>; MEMO],
    next: usize,
}

/// (cache id, labels, series).
type Remembered = (u64, Key, Arc<dyn Any + Send + Sync>);

thread_local! {
    static RECENT: RefCell<Memo> = const {
        RefCell::new(Memo {
            entries: [const { None }; MEMO],
            next: 0,
        })
    };
}

impl Memo {
    fn recall<V: Send + Sync + 'static>(cache: u64, labels: &[&str]) -> Option<Arc<V>> {
        let key = KeyRef(labels);
        let found = RECENT
            .try_with(|memo| {
                let memo = memo.try_borrow().ok()?;
                memo.entries
                    .iter()
                    .flatten()
                    .find(|(id, k, _)| *id == cache && key.equivalent(k))
                    .map(|(_, _, series)| Arc::clone(series))
            })
            .ok()??;
        found.downcast().ok()
    }

    fn remember<V: Send + Sync + 'static>(cache: u64, labels: &[&str], series: &Arc<V>) {
        // A thread being torn down, or a re-entrant lookup, just skips the memo.
        let _ = RECENT.try_with(|memo| {
            if let Ok(mut memo) = memo.try_borrow_mut() {
                let slot = memo.next;
                memo.next = (slot + 1) % MEMO;
                let series: Arc<dyn Any + Send + Sync> = series.clone();
                memo.entries[slot] = Some((cache, Key::of(labels), series));
            }
        });
    }
}

/// `provider`, `model`, `tier`, `scene`: the switchboard counters' labels.
pub(crate) fn switchboard_labels(
    provider: &str,
    model: &str,
    tier: &'static str,
    scene: &str,
) -> Vec<KeyValue> {
    vec![
        KeyValue::new("provider", provider.to_owned()),
        KeyValue::new("model", model.to_owned()),
        KeyValue::new("tier", tier),
        KeyValue::new("scene", scene.to_owned()),
    ]
}

/// The GenAI semantic conventions' attributes, plus tier and scene.
pub(crate) fn gen_ai_labels(
    provider: &str,
    requested: &str,
    response_model: Option<&str>,
    tier: &'static str,
    scene: &str,
) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("gen_ai.operation.name", "chat"),
        KeyValue::new("gen_ai.provider.name", provider.to_owned()),
        KeyValue::new("gen_ai.request.model", requested.to_owned()),
        KeyValue::new("switchboard.tier", tier),
        KeyValue::new("switchboard.scene", scene.to_owned()),
    ];
    if let Some(model) = response_model {
        attrs.push(KeyValue::new("gen_ai.response.model", model.to_owned()));
    }
    attrs
}

/// `attrs` with `extra` appended.
pub(crate) fn with(
    mut attrs: Vec<KeyValue>,
    extra: impl IntoIterator<Item = KeyValue>,
) -> Vec<KeyValue> {
    attrs.extend(extra);
    attrs
}

/// An answered call's series: (tier, scene, requested model, provider, answering model).
pub(crate) struct CallSeries {
    /// `provider`, `model`, `tier`, `scene`.
    pub(crate) labels: Vec<KeyValue>,
    /// The GenAI attributes with `gen_ai.response.model`.
    pub(crate) gen_ai: Vec<KeyValue>,
    /// The answering model's price, if the table has it.
    pub(crate) price: Option<Price>,
    pub(crate) first_token: BoundHistogram<f64>,
    pub(crate) ok: BoundCounter<u64>,
    /// `gen_ai.client.operation.duration` for answered calls that did not fail.
    pub(crate) duration: BoundHistogram<f64>,
    /// Input, output, cached input.
    pub(crate) tokens: [BoundCounter<u64>; 3],
    /// Input, output.
    pub(crate) token_usage: [BoundHistogram<u64>; 2],
    pub(crate) cost: BoundCounter<u64>,
}

/// The token types, in the order of [`CallSeries::tokens`].
pub(crate) const TOKEN_TYPES: [&str; 3] = ["input", "output", "cached_input"];

impl CallSeries {
    pub(crate) fn bind(
        m: &Instruments,
        tier: &'static str,
        scene: &str,
        requested: &str,
        (provider, model): (&str, &str),
        price: Option<Price>,
    ) -> Self {
        let labels = switchboard_labels(provider, model, tier, scene);
        let gen_ai = gen_ai_labels(provider, requested, Some(model), tier, scene);
        let token = |kind: &'static str| {
            m.tokens
                .bind(&with(labels.clone(), [KeyValue::new("type", kind)]))
        };
        let usage = |kind: &'static str| {
            m.token_usage.bind(&with(
                gen_ai.clone(),
                [KeyValue::new("gen_ai.token.type", kind)],
            ))
        };
        Self {
            price,
            first_token: m.first_token.bind(&labels),
            ok: m
                .requests
                .bind(&with(labels.clone(), [KeyValue::new("outcome", "ok")])),
            duration: m.operation_duration.bind(&gen_ai),
            tokens: TOKEN_TYPES.map(token),
            token_usage: [usage(TOKEN_TYPES[0]), usage(TOKEN_TYPES[1])],
            cost: m.cost.bind(&labels),
            labels,
            gen_ai,
        }
    }
}

/// An attempt's series: (tier, scene, provider, model, kind).
pub(crate) struct AttemptSeries {
    /// `provider`, `model`, `tier`, `scene`.
    pub(crate) labels: Vec<KeyValue>,
    pub(crate) kind: &'static str,
    pub(crate) first_token: BoundHistogram<f64>,
    pub(crate) ok: BoundCounter<u64>,
    /// Another attempt won, or the call ended first: common under hedging.
    pub(crate) cancelled: BoundCounter<u64>,
    /// The unbound instruments a failed attempt records on (cloned once, at binding, so
    /// an attempt's record needs no handle on the whole telemetry).
    pub(crate) attempts: opentelemetry::metrics::Counter<u64>,
    pub(crate) timeouts: opentelemetry::metrics::Counter<u64>,
}

impl AttemptSeries {
    pub(crate) fn bind(
        m: &Instruments,
        tier: &'static str,
        scene: &str,
        provider: &str,
        model: &str,
        kind: &'static str,
    ) -> Self {
        let labels = switchboard_labels(provider, model, tier, scene);
        let attempts = |outcome: &'static str| {
            m.attempts.bind(&with(
                labels.clone(),
                [
                    KeyValue::new("kind", kind),
                    KeyValue::new("outcome", outcome),
                ],
            ))
        };
        Self {
            kind,
            first_token: m.attempt_first_token.bind(&labels),
            ok: attempts("ok"),
            cancelled: attempts("cancelled"),
            attempts: m.attempts.clone(),
            timeouts: m.timeouts.clone(),
            labels,
        }
    }

    /// The attempt counter's attributes for a failed attempt.
    pub(crate) fn error_labels(&self, reason: String) -> Vec<KeyValue> {
        with(
            self.labels.clone(),
            [
                KeyValue::new("kind", self.kind),
                KeyValue::new("outcome", "error"),
                KeyValue::new("reason", reason),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_set_is_bound_once_and_found_again() {
        let cache = Cache::<u32>::default();
        let mut built = 0;
        let a = cache.get(&["L1", "chat", "fast"], || {
            built += 1;
            1
        });
        let b = cache.get(&["L1", "chat", "fast"], || {
            built += 1;
            2
        });
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(built, 1);
    }

    #[test]
    fn the_memo_tells_caches_and_label_sets_apart() {
        let (a, b) = (Cache::<u32>::default(), Cache::<u32>::default());
        assert_eq!(*a.get(&["L1", "chat"], || 1), 1);
        // The same labels in another cache: that cache's own series, not the memo's.
        assert_eq!(*b.get(&["L1", "chat"], || 2), 2);
        assert_eq!(*a.get(&["L1", "chat"], || 9), 1);
        assert_eq!(*b.get(&["L1", "chat"], || 9), 2);
        assert_eq!(*a.get(&["L1", "code"], || 3), 3);
        // More label sets than the memo holds: the older ones come from the map again.
        for i in 0..(2 * MEMO as u32) {
            a.get(&["L2", &i.to_string()], || 100 + i);
        }
        assert_eq!(*a.get(&["L1", "chat"], || 9), 1);
        assert_eq!(*a.get(&["L2", "0"], || 9), 100);
    }

    #[test]
    fn a_cache_past_its_limit_still_answers_each_label_set() {
        let cache = Cache::<usize>::default();
        for i in 0..LIMIT {
            cache.get(&[&i.to_string()], || i);
        }
        // Not kept in the map; the memo may remember it, the answer is the same either way.
        let extra = cache.get(&["extra"], || 7);
        assert_eq!(*extra, 7);
        assert_eq!(cache.map.read().unwrap().len(), LIMIT);
    }

    #[test]
    fn label_boundaries_are_part_of_the_key() {
        // ("ab", "c") and ("a", "bc") must not share a series.
        let cache = Cache::<&str>::default();
        let first = cache.get(&["ab", "c"], || "first");
        let second = cache.get(&["a", "bc"], || "second");
        assert_eq!((*first, *second), ("first", "second"));
        let shorter = cache.get(&["ab"], || "shorter");
        assert_eq!(*shorter, "shorter");
    }
}
