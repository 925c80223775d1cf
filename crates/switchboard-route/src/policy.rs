//! The routing policy: models, pools and per-tier rules (serde).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchboard_core::{Cost, ModelName, ProviderId, Target, Tier};

/// How a tier's requests are routed.
///
/// | knob | default | meaning |
/// |---|---|---|
/// | `providers` | the policy's `providers` | the tier's pool, in order of preference |
/// | `pin` | none | serve every logical model of the tier from this one (L0 → `quality`), in configured order, never reordered |
/// | `cost_cap` | none | per-request cap; a `CostEstimate` over it routes cheapest first |
/// | `rank_by_latency` | true | order measured providers by first-token latency |
/// | `last_resort` | none | the target used when every provider of the pool is skipped |
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierPolicy {
    /// The tier's providers in order of preference; `None` uses the policy's order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<ProviderId>>,
    /// A logical model every request of the tier is served from (except requests naming
    /// a concrete model), in configured order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<ModelName>,
    /// The most one request may be expected to cost before it is routed cheapest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_cap: Option<Cost>,
    /// Order providers with enough samples by observed first-token latency.
    #[serde(default = "yes")]
    pub rank_by_latency: bool,
    /// Where to go when every provider of the pool is skipped (open breakers), instead of
    /// failing with `no_provider_available`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_resort: Option<Target>,
}

fn yes() -> bool {
    true
}

impl TierPolicy {
    /// The default: the policy's providers, ranked by latency, no cap, no pin.
    pub fn new() -> Self {
        Self {
            rank_by_latency: true,
            ..Self::default()
        }
    }

    /// Pinned to `pool` (a logical model), in the order of `providers`.
    pub fn pinned(
        pool: impl Into<ModelName>,
        providers: impl IntoIterator<Item = ProviderId>,
    ) -> Self {
        Self::new().providers(providers).pin(pool)
    }

    /// Sets the pool's providers, in order of preference.
    pub fn providers(mut self, providers: impl IntoIterator<Item = ProviderId>) -> Self {
        self.providers = Some(providers.into_iter().collect());
        self
    }

    /// Pins the tier to a logical model.
    pub fn pin(mut self, pool: impl Into<ModelName>) -> Self {
        self.pin = Some(pool.into());
        self
    }

    /// Sets the per-request cost cap.
    pub fn cost_cap(mut self, cap: Cost) -> Self {
        self.cost_cap = Some(cap);
        self
    }

    /// Turns latency ranking on or off.
    pub fn rank_by_latency(mut self, on: bool) -> Self {
        self.rank_by_latency = on;
        self
    }

    /// Sets the last resort.
    pub fn last_resort(mut self, target: Target) -> Self {
        self.last_resort = Some(target);
        self
    }
}

/// How observed latency orders providers.
///
/// The board's first-token quantile over its rotating window (default 60 s) is the
/// smoothed figure. A provider moves ahead of one configured before it only when its
/// quantile is lower by more than `tolerance`, so near-equal providers keep their
/// configured order instead of flapping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyRanking {
    /// The first-token quantile compared, 0.0–1.0. Default 0.95.
    pub quantile: f64,
    /// Successful calls a provider needs in the board's window before its latency counts.
    /// Default 50.
    pub min_samples: u64,
    /// Relative step under which latencies count as equal. Default 0.10 (10 %).
    pub tolerance: f64,
}

impl Default for LatencyRanking {
    fn default() -> Self {
        Self {
            quantile: 0.95,
            min_samples: 50,
            tolerance: 0.10,
        }
    }
}

/// The routing policy: which concrete model each provider serves for each logical model,
/// the default provider order, and per-tier rules.
///
/// ```
/// use switchboard_core::{Cost, ProviderId, Tier};
/// use switchboard_route::{RoutePolicy, TierPolicy};
///
/// let policy: RoutePolicy = serde_json::from_value(serde_json::json!({
///     "providers": ["openai", "anthropic"],
///     "models": {
///         "quality": {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5"},
///         "fast": {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
///     },
///     "tiers": {
///         "L0": {"providers": ["anthropic", "openai"], "pin": "quality"},
///         "L1": {"cost_cap": "0.02"}
///     }
/// })).unwrap();
/// assert_eq!(policy.tier_policy(Tier::L1).cost_cap, Some("0.02".parse::<Cost>().unwrap()));
///
/// // The same in code.
/// let built = RoutePolicy::new([ProviderId::OPENAI, ProviderId::ANTHROPIC])
///     .model("quality", [(ProviderId::OPENAI, "gpt-4o"), (ProviderId::ANTHROPIC, "claude-sonnet-4-5")])
///     .model("fast", [(ProviderId::OPENAI, "gpt-4o-mini"), (ProviderId::ANTHROPIC, "claude-haiku-4-5")])
///     .tier(Tier::L0, TierPolicy::pinned("quality", [ProviderId::ANTHROPIC, ProviderId::OPENAI]))
///     .tier(Tier::L1, TierPolicy::new().cost_cap("0.02".parse().unwrap()));
/// assert_eq!(built, policy);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePolicy {
    /// Default order of preference for tiers that do not list their own. When it (or a
    /// tier's list) is non-empty, providers not in it are not used; when both are empty,
    /// every provider of a model serves, in name order.
    #[serde(default)]
    pub providers: Vec<ProviderId>,
    /// Logical model → provider → concrete model. Every concrete model named here may
    /// also be asked for directly; it maps to the provider(s) serving it.
    #[serde(default)]
    pub models: BTreeMap<ModelName, BTreeMap<ProviderId, ModelName>>,
    /// Per-tier rules; a tier not listed gets [`TierPolicy::new`].
    #[serde(default)]
    pub tiers: BTreeMap<Tier, TierPolicy>,
    /// The tier of a request that carries no `Tier` extension. Default L1.
    #[serde(default = "default_tier")]
    pub default_tier: Tier,
    /// Latency ranking.
    #[serde(default)]
    pub latency: LatencyRanking,
}

fn default_tier() -> Tier {
    Tier::L1
}

impl Default for RoutePolicy {
    fn default() -> Self {
        Self::new([])
    }
}

impl RoutePolicy {
    /// A policy with this default provider order and nothing else.
    pub fn new(providers: impl IntoIterator<Item = ProviderId>) -> Self {
        Self {
            providers: providers.into_iter().collect(),
            models: BTreeMap::new(),
            tiers: BTreeMap::new(),
            default_tier: default_tier(),
            latency: LatencyRanking::default(),
        }
    }

    /// Adds (or replaces) a logical model: the concrete model each provider serves for it.
    pub fn model<M: Into<ModelName>>(
        mut self,
        logical: impl Into<ModelName>,
        per_provider: impl IntoIterator<Item = (ProviderId, M)>,
    ) -> Self {
        self.models.insert(
            logical.into(),
            per_provider
                .into_iter()
                .map(|(p, m)| (p, m.into()))
                .collect(),
        );
        self
    }

    /// Sets a tier's rules.
    pub fn tier(mut self, tier: Tier, policy: TierPolicy) -> Self {
        self.tiers.insert(tier, policy);
        self
    }

    /// Sets the tier used for requests without a `Tier` extension.
    pub fn default_tier(mut self, tier: Tier) -> Self {
        self.default_tier = tier;
        self
    }

    /// Sets latency ranking.
    pub fn latency(mut self, latency: LatencyRanking) -> Self {
        self.latency = latency;
        self
    }

    /// A tier's rules (the default ones when it is not listed).
    pub fn tier_policy(&self, tier: Tier) -> TierPolicy {
        self.tiers
            .get(&tier)
            .cloned()
            .unwrap_or_else(TierPolicy::new)
    }
}
