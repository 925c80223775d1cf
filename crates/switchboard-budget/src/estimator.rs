//! [`Estimator`]: token counts, expected output and prices → [`CostEstimate`].

use hashbrown::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_core::{ChatBody, CostEstimate, ModelName, Price, PriceTable, Scene};

use crate::prices::{is_snapshot_of, shipped_max_output, shipped_prices};
use crate::tokenize::{TokenCounting, count_chat};

/// Estimates what a chat request will cost before it is sent.
///
/// - **Input tokens**: exact for OpenAI models (`bpe-openai`, the right encoding per
///   model), calibrated for Claude, a byte bound for unknown models; plus chat framing.
///   See [`TokenCounting`].
/// - **Output tokens**: the bound is `max_tokens`, else the model's output limit, else
///   [`default_max_output_tokens`](EstimatorBuilder::default_max_output_tokens). The
///   expected figure is the learned [percentile](EstimatorBuilder::output_percentile) of
///   the scene's observed output once it has
///   [enough samples](EstimatorBuilder::min_samples), capped by the bound; before that,
///   `max_tokens`, else [`default_expected_output_tokens`](EstimatorBuilder::default_expected_output_tokens).
/// - **Price**: the model's entry in the price table (a dated snapshot such as
///   `gpt-4o-mini-2024-07-18` uses its base model's price); a logical model (`fast`)
///   through its [alias](EstimatorBuilder::alias); an unknown model at the most expensive
///   price in the table, so the cap stays safe.
#[derive(Debug)]
pub struct Estimator {
    prices: PriceTable,
    /// The table's entries by name, and every alias's model (priced at build, by a scan
    /// if the table lacks it): the request path's lookup, a hash rather than a walk down a
    /// tree of string comparisons or the scan memo's lock.
    exact: HashMap<String, Option<Price>>,
    priciest: Price,
    max_output: HashMap<String, u64>,
    /// Logical name → the concrete model it is priced as, and how its tokens count.
    aliases: HashMap<String, (ModelName, TokenCounting)>,
    default_max_output: u64,
    default_expected_output: u64,
    percentile: u32,
    min_samples: u64,
    learned: RwLock<HashMap<Scene, Arc<OutputHistogram>>>,
    /// Prices found by scanning the table for a base model (dated snapshots, models the
    /// table lacks), by name: the scan reads every entry, and runs once per name.
    scanned: RwLock<HashMap<String, Option<Price>>>,
}

/// The price of the longest base name in `prices` that `model` is a snapshot of.
fn scan(prices: &PriceTable, model: &str) -> Option<Price> {
    prices
        .iter()
        .filter(|(base, _)| is_snapshot_of(model, base))
        .max_by_key(|(base, _)| base.len())
        .map(|(_, price)| *price)
}

/// The most names [`Estimator::known_price`] remembers a scan for; past it, it scans.
const MAX_SCANNED: usize = 1_024;

/// Builds an [`Estimator`].
#[derive(Debug, Clone)]
pub struct EstimatorBuilder {
    prices: PriceTable,
    max_output: HashMap<String, u64>,
    aliases: HashMap<String, ModelName>,
    default_max_output: u64,
    default_expected_output: u64,
    percentile: u32,
    min_samples: u64,
}

impl Default for Estimator {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl Estimator {
    /// A builder starting from the [shipped price table](crate::shipped_prices).
    pub fn builder() -> EstimatorBuilder {
        EstimatorBuilder {
            prices: shipped_prices(),
            max_output: HashMap::new(),
            aliases: HashMap::new(),
            default_max_output: 16_384,
            default_expected_output: 1_024,
            percentile: 90,
            min_samples: 50,
        }
    }

    /// The concrete model a (possibly logical) model name is priced as.
    pub fn resolve<'a>(&'a self, model: &'a str) -> &'a str {
        self.aliases
            .get(model)
            .map_or(model, |(concrete, _)| concrete.as_str())
    }

    /// The price used for `model`: its own, its base model's for a snapshot, else the
    /// most expensive in the table.
    pub fn price_of(&self, model: &str) -> Price {
        self.known_price(model).unwrap_or(self.priciest)
    }

    /// The price of `model` or of the model it is a snapshot of, if the table has one.
    pub fn known_price(&self, model: &str) -> Option<Price> {
        let model = self.resolve(model);
        if let Some(price) = self.exact.get(model) {
            return *price;
        }
        if let Some(found) = self
            .scanned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
        {
            return *found;
        }
        let found = scan(&self.prices, model);
        let mut scanned = self.scanned.write().unwrap_or_else(|e| e.into_inner());
        if scanned.len() < MAX_SCANNED {
            scanned.insert(model.to_owned(), found);
        }
        found
    }

    /// The most output tokens `model` may produce when a request does not say.
    pub fn max_output_of(&self, model: &str) -> u64 {
        let model = self.resolve(model);
        if let Some(n) = self.max_output.get(model) {
            return *n;
        }
        let base = self
            .prices
            .iter()
            .filter(|(base, _)| is_snapshot_of(model, base))
            .max_by_key(|(base, _)| base.len())
            .map(|(base, _)| base);
        base.and_then(|b| {
            self.max_output
                .get(b)
                .copied()
                .or_else(|| shipped_max_output(b))
        })
        .unwrap_or(self.default_max_output)
    }

    /// Input tokens of `body`: `(estimate, bound)`.
    pub fn input_tokens(&self, body: &ChatBody) -> (u64, u64) {
        let counting = match self.aliases.get(&body.model) {
            Some(&(_, counting)) => counting,
            None => TokenCounting::for_model(&body.model),
        };
        count_chat(counting, body)
    }

    /// The learned expected output for `scene`, once it has enough samples.
    pub fn learned_output(&self, scene: &Scene) -> Option<u64> {
        let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
        self.learned_from(learned.get(scene)?)
    }

    fn learned_from(&self, histogram: &OutputHistogram) -> Option<u64> {
        // A scene's histogram exists from its first estimate: nothing is learned from it
        // before its first sample, whatever the minimum.
        (histogram.count() >= self.min_samples.max(1))
            .then(|| histogram.cached_percentile(self.percentile))
    }

    /// Records a call's real output tokens for its scene.
    pub fn observe_output(&self, scene: &Scene, output_tokens: u64) {
        self.learner(scene).record(output_tokens);
    }

    /// The histogram `scene`'s outputs are learned in, made at the scene's first use. A
    /// call holds it from its estimate to its end: one lookup per call, and its record
    /// needs no lock (the histogram's counters are atomic).
    pub(crate) fn learner(&self, scene: &Scene) -> Arc<OutputHistogram> {
        if let Some(histogram) = self
            .learned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(scene)
        {
            return Arc::clone(histogram);
        }
        Arc::clone(
            self.learned
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(scene.clone())
                .or_default(),
        )
    }

    /// The estimate for `body` in `scene`.
    pub fn estimate(&self, body: &ChatBody, scene: Option<&Scene>) -> CostEstimate {
        let learned = scene.and_then(|s| self.learned_output(s));
        self.estimate_with(body, learned)
    }

    /// The estimate for `body`, with the scene's learner already in hand.
    pub(crate) fn estimate_learned(
        &self,
        body: &ChatBody,
        learner: Option<&OutputHistogram>,
    ) -> CostEstimate {
        let learned = learner.and_then(|h| self.learned_from(h));
        self.estimate_with(body, learned)
    }

    fn estimate_with(&self, body: &ChatBody, learned: Option<u64>) -> CostEstimate {
        // An alias's concrete name is shared; a concrete name asked for is copied once.
        let model = match self.aliases.get(&body.model) {
            Some((concrete, _)) => concrete.clone(),
            None => ModelName::from(&body.model),
        };
        let price = self.price_of(&model);
        let (input, input_bound) = self.input_tokens(body);
        let max_output = body
            .max_tokens
            .map_or_else(|| self.max_output_of(&model), u64::from);
        let expected_output = learned
            .or(body.max_tokens.map(u64::from))
            .unwrap_or(self.default_expected_output)
            .min(max_output);
        CostEstimate::new(
            model,
            price,
            input,
            input_bound,
            expected_output,
            max_output,
        )
    }
}

impl EstimatorBuilder {
    /// Entries of `prices` replace or add to the shipped table (from config).
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices.merge(prices);
        self
    }

    /// Prices a logical model name (`fast`, `quality`) as a concrete model.
    pub fn alias(mut self, logical: impl Into<String>, concrete: impl Into<ModelName>) -> Self {
        self.aliases.insert(logical.into(), concrete.into());
        self
    }

    /// Sets a model's output limit, the bound when a request has no `max_tokens`.
    pub fn max_output_tokens(mut self, model: impl Into<String>, tokens: u64) -> Self {
        self.max_output.insert(model.into(), tokens);
        self
    }

    /// Output bound for models without a known limit. Default: 16,384 tokens.
    pub fn default_max_output_tokens(mut self, tokens: u64) -> Self {
        self.default_max_output = tokens;
        self
    }

    /// Expected output when neither a learned figure nor `max_tokens` is there.
    /// Default: 1,024 tokens.
    pub fn default_expected_output_tokens(mut self, tokens: u64) -> Self {
        self.default_expected_output = tokens;
        self
    }

    /// The percentile of a scene's observed output used as its expected output
    /// (1–100). Default: 90.
    pub fn output_percentile(mut self, percentile: u32) -> Self {
        self.percentile = percentile.clamp(1, 100);
        self
    }

    /// Observations a scene needs before its learned figure is used. Default: 50.
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples.max(1);
        self
    }

    /// The estimator.
    pub fn build(self) -> Estimator {
        let priciest = self
            .prices
            .iter()
            .map(|(_, p)| *p)
            .max_by_key(|p| (p.output, p.input))
            .unwrap_or(Price {
                input: switchboard_core::Cost::ZERO,
                output: switchboard_core::Cost::ZERO,
                cached_input: None,
            });
        let mut exact: HashMap<String, Option<Price>> = self
            .prices
            .iter()
            .map(|(model, price)| (model.to_owned(), Some(*price)))
            .collect();
        for concrete in self.aliases.values() {
            if !exact.contains_key(concrete.as_str()) {
                exact.insert(concrete.to_string(), scan(&self.prices, concrete));
            }
        }
        Estimator {
            exact,
            prices: self.prices,
            priciest,
            max_output: self.max_output,
            aliases: self
                .aliases
                .into_iter()
                .map(|(logical, concrete)| {
                    let counting = TokenCounting::for_model(&concrete);
                    (logical, (concrete, counting))
                })
                .collect(),
            default_max_output: self.default_max_output,
            default_expected_output: self.default_expected_output,
            percentile: self.percentile,
            min_samples: self.min_samples,
            learned: RwLock::new(HashMap::new()),
            scanned: RwLock::new(HashMap::new()),
        }
    }
}

/// Bucket upper bounds grow by 1/8 (so a percentile is at most 12.5 % high), exact
/// below 16.
const BUCKETS: usize = 128;

/// A lock-free histogram of output token counts.
#[derive(Debug)]
pub(crate) struct OutputHistogram {
    counts: [AtomicU64; BUCKETS],
    total: AtomicU64,
    /// The last percentile worked out (`cached_value`), and the total it was worked out
    /// at (`cached_at`, 0 = never): reused until the total grows by more than 1/64.
    cached_value: AtomicU64,
    cached_at: AtomicU64,
}

impl Default for OutputHistogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            total: AtomicU64::new(0),
            cached_value: AtomicU64::new(0),
            cached_at: AtomicU64::new(0),
        }
    }
}

/// Each bucket's upper bound: `b[i + 1] = max(b[i] + 1, b[i] × 9/8)`, from 0.
const BOUNDS: [u64; BUCKETS] = {
    let mut bounds = [0u64; BUCKETS];
    let mut i = 1;
    while i < BUCKETS {
        let b = bounds[i - 1];
        let grown = b + b / 8;
        bounds[i] = if grown > b + 1 { grown } else { b + 1 };
        i += 1;
    }
    bounds
};

fn bucket_bound(i: usize) -> u64 {
    BOUNDS[i.min(BUCKETS - 1)]
}

fn bucket_of(value: u64) -> usize {
    BOUNDS.partition_point(|&b| b < value).min(BUCKETS - 1)
}

impl OutputHistogram {
    pub(crate) fn record(&self, value: u64) {
        self.counts[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// [`percentile`](Self::percentile), worked out again only once the histogram has
    /// grown by more than 1/64 since the last time (always, below 64 samples): one
    /// estimate per request would otherwise scan every bucket.
    pub(crate) fn cached_percentile(&self, percentile: u32) -> u64 {
        let total = self.count();
        let at = self.cached_at.load(Ordering::Acquire);
        if at != 0 && total.saturating_sub(at) <= at / 64 {
            return self.cached_value.load(Ordering::Relaxed);
        }
        let value = self.percentile(percentile);
        // Racing writers store values for nearly the same total: either is fine.
        self.cached_value.store(value, Ordering::Relaxed);
        self.cached_at.store(total.max(1), Ordering::Release);
        value
    }

    /// The bucket bound at or above which `percentile` % of observations lie below.
    pub(crate) fn percentile(&self, percentile: u32) -> u64 {
        let counts: [u64; BUCKETS] =
            std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed));
        let total: u64 = counts.iter().sum();
        let rank = (total * u64::from(percentile)).div_ceil(100).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_bound(i);
            }
        }
        bucket_bound(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_percentile_follows_the_histogram_within_a_64th() {
        let h = OutputHistogram::default();
        for _ in 0..640 {
            h.record(10);
        }
        assert_eq!(h.cached_percentile(90), bucket_bound(bucket_of(10)));
        // 10 more samples (under 1/64 of 640): the cached figure stands.
        for _ in 0..10 {
            h.record(5_000);
        }
        assert_eq!(h.cached_percentile(90), bucket_bound(bucket_of(10)));
        assert_eq!(h.count(), 650);
        // Past 1/64: worked out again, and now the large outputs show.
        for _ in 0..2_000 {
            h.record(5_000);
        }
        assert_eq!(h.cached_percentile(90), h.percentile(90));
        assert!(h.cached_percentile(90) >= 5_000);
    }

    #[test]
    fn bucket_bounds_grow_by_an_eighth_and_values_land_at_or_under_their_bound() {
        let mut bound = 0u64;
        for (i, b) in BOUNDS.iter().enumerate() {
            assert_eq!(*b, bound, "bucket {i}");
            bound = (bound + 1).max(bound + bound / 8);
        }
        for value in [0, 1, 15, 16, 17, 100, 4_096, 100_000, BOUNDS[BUCKETS - 1]] {
            let i = bucket_of(value);
            assert!(value <= BOUNDS[i]);
            assert!(i == 0 || value > BOUNDS[i - 1], "{value} in bucket {i}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn below_64_samples_every_sample_counts() {
        let h = OutputHistogram::default();
        h.record(10);
        assert_eq!(h.cached_percentile(50), bucket_bound(bucket_of(10)));
        h.record(1_000);
        h.record(1_000);
        assert_eq!(h.cached_percentile(50), h.percentile(50));
        assert!(h.cached_percentile(50) >= 1_000);
    }
}
