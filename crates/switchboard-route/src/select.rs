//! Provider selection: from a tier, a model and the board to a `Route` and its reason.

use hashbrown::HashMap;
use std::time::Duration;

use switchboard_core::{
    Cost, CostEstimate, Error, HealthBoard, ModelName, PriceTable, ProviderId, Route,
    RouteDecision, RouteReason, SkippedProvider, Target, Tier, Usage,
};

use crate::policy::{LatencyRanking, RoutePolicy, TierPolicy};

/// A [`RoutePolicy`] compiled for lookups: per-tier rules resolved, concrete models
/// indexed by name.
#[derive(Debug)]
pub(crate) struct Selector {
    policy: RoutePolicy,
    tiers: [TierPolicy; 3],
    /// Concrete model → the providers serving it, in name order.
    concrete: HashMap<ModelName, Vec<ProviderId>>,
}

/// What the selector reads besides the policy.
pub(crate) struct Inputs<'a> {
    pub(crate) tier: Option<Tier>,
    pub(crate) model: &'a str,
    pub(crate) estimate: Option<&'a CostEstimate>,
    pub(crate) board: Option<&'a HealthBoard>,
    pub(crate) prices: &'a PriceTable,
}

impl Selector {
    pub(crate) fn new(policy: RoutePolicy) -> Self {
        let tiers = Tier::ALL.map(|t| policy.tier_policy(t));
        let mut concrete: HashMap<ModelName, Vec<ProviderId>> = HashMap::new();
        for per_provider in policy.models.values() {
            for (provider, model) in per_provider {
                let serving = concrete.entry(model.clone()).or_default();
                if !serving.contains(provider) {
                    serving.push(provider.clone());
                }
            }
        }
        for serving in concrete.values_mut() {
            serving.sort();
        }
        Self {
            policy,
            tiers,
            concrete,
        }
    }

    pub(crate) fn policy(&self) -> &RoutePolicy {
        &self.policy
    }

    /// Whether `model` names a logical or concrete model of this policy.
    pub(crate) fn knows(&self, model: &str) -> bool {
        self.policy.models.contains_key(model) || self.concrete.contains_key(model)
    }

    /// The route for one request, and why.
    pub(crate) fn select(&self, input: &Inputs<'_>) -> Result<(Route, RouteDecision), Error> {
        let tier = input.tier.unwrap_or(self.policy.default_tier);
        let rules = &self.tiers[tier.index()];
        let order: &[ProviderId] = rules.providers.as_deref().unwrap_or(&self.policy.providers);

        // 1. The pool: a logical model (or the tier's pin), else a concrete model.
        // The names come from the policy's maps: the decision and targets share them.
        let (requested, pool, mut candidates, pinned) = if let Some((requested, _)) =
            self.policy.models.get_key_value(input.model)
        {
            let pool = rules.pin.as_ref().unwrap_or(requested);
            let Some(per_provider) = self.policy.models.get(pool) else {
                return Err(Error::NoProvider {
                    message: format!("tier {tier} is pinned to {pool:?}, which no provider serves"),
                });
            };
            let candidates = in_order(order, per_provider.keys())
                .filter_map(|p| {
                    per_provider
                        .get(p)
                        .map(|m| Target::new(p.clone(), m.clone()))
                })
                .collect::<Candidates>();
            (requested, pool, candidates, rules.pin.is_some())
        } else if let Some((model, serving)) = self.concrete.get_key_value(input.model) {
            let candidates = in_order(order, serving.iter())
                .filter(|p| serving.contains(p))
                .map(|p| Target::new(p.clone(), model.clone()))
                .collect::<Candidates>();
            (model, model, candidates, false)
        } else {
            return Err(Error::ModelNotFound {
                model: input.model.to_owned(),
            });
        };

        // 2. Skip providers whose breaker is open.
        let mut skipped = Vec::new();
        if let Some(board) = input.board {
            candidates.retain(|t| {
                let open = board.state(&t.provider).is_open();
                if open {
                    skipped.push(SkippedProvider {
                        provider: t.provider.clone(),
                        reason: "circuit_open".into(),
                    });
                }
                !open
            });
        }
        let decision = |reason| {
            let mut d = RouteDecision::new(tier, requested.clone(), pool.clone(), reason);
            d.skipped = skipped.clone();
            d
        };
        if candidates.is_empty() {
            if let Some(last) = &rules.last_resort {
                return Ok((Route::new(last.clone()), decision(RouteReason::LastResort)));
            }
            let message = if skipped.is_empty() {
                format!("no provider of tier {tier}'s pool serves {:?}", input.model)
            } else {
                let names: Vec<&str> = skipped.iter().map(|s| s.provider.as_str()).collect();
                format!(
                    "every provider serving {:?} for tier {tier} has an open circuit breaker ({})",
                    input.model,
                    names.join(", ")
                )
            };
            return Err(Error::NoProvider { message });
        }

        // 3. Order.
        let over_cap = rules
            .cost_cap
            .zip(input.estimate)
            .filter(|(cap, estimate)| estimate.expected > *cap);
        let reason = if pinned {
            RouteReason::Pinned { pool: pool.clone() }
        } else if let Some((cap, estimate)) = over_cap {
            let chosen = cheapest_first(candidates.as_mut_slice(), estimate, input.prices);
            RouteReason::OverCostCap {
                expected: estimate.expected,
                cap,
                chosen,
            }
        } else if let (true, Some(board)) = (rules.rank_by_latency, input.board) {
            match fastest_first(candidates.as_mut_slice(), board, &self.policy.latency) {
                Some(p95) => RouteReason::LowestLatency { p95 },
                None => RouteReason::ConfiguredOrder,
            }
        } else {
            RouteReason::ConfiguredOrder
        };

        let Some(route) = candidates.into_route() else {
            return Err(Error::NoProvider {
                message: format!("no provider serves {:?}", input.model),
            });
        };
        Ok((route, decision(reason)))
    }
}

/// The targets a request may go to, in order. A pool of one provider (the common case)
/// keeps its target inline; a route is made without copying either way.
enum Candidates {
    Few(Option<Target>),
    Many(Vec<Target>),
}

impl FromIterator<Target> for Candidates {
    fn from_iter<I: IntoIterator<Item = Target>>(iter: I) -> Self {
        let mut iter = iter.into_iter();
        let Some(first) = iter.next() else {
            return Self::Few(None);
        };
        let Some(second) = iter.next() else {
            return Self::Few(Some(first));
        };
        let mut many = Vec::with_capacity(2 + iter.size_hint().0);
        many.extend([first, second]);
        many.extend(iter);
        Self::Many(many)
    }
}

impl Candidates {
    fn as_mut_slice(&mut self) -> &mut [Target] {
        match self {
            Self::Few(target) => target.as_mut_slice(),
            Self::Many(targets) => targets,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Few(target) => target.is_none(),
            Self::Many(targets) => targets.is_empty(),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Target) -> bool) {
        match self {
            Self::Few(target) => {
                if target.as_ref().is_some_and(|t| !keep(t)) {
                    *target = None;
                }
            }
            Self::Many(targets) => targets.retain(keep),
        }
    }

    /// The first target is the primary, the rest (in order) the fallbacks.
    fn into_route(self) -> Option<Route> {
        match self {
            Self::Few(target) => target.map(Route::new),
            Self::Many(mut targets) => {
                if targets.is_empty() {
                    return None;
                }
                let primary = targets.remove(0);
                Some(Route {
                    primary,
                    fallbacks: targets,
                })
            }
        }
    }
}

/// The providers of `order` first, in that order; then any others in `available`, in
/// their own order, when `order` is empty (no pool configured: everything serves).
fn in_order<'a>(
    order: &'a [ProviderId],
    available: impl Iterator<Item = &'a ProviderId>,
) -> impl Iterator<Item = &'a ProviderId> {
    let rest: Vec<&ProviderId> = if order.is_empty() {
        available.collect()
    } else {
        Vec::new()
    };
    order.iter().chain(rest)
}

/// Sorts by expected cost at each target's price (unpriced last, configured order on
/// ties); returns the primary's cost.
fn cheapest_first(
    candidates: &mut [Target],
    estimate: &CostEstimate,
    prices: &PriceTable,
) -> Option<Cost> {
    let usage = Usage::new(estimate.input_tokens, estimate.expected_output_tokens);
    let mut keyed: Vec<(Option<Cost>, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, t)| (prices.get(&t.model).and_then(|p| p.cost_of(&usage)), i))
        .collect();
    keyed.sort_by_key(|&(cost, i)| (cost.is_none(), cost, i));
    let chosen = keyed.first().and_then(|(cost, _)| *cost);
    reorder(candidates, keyed.iter().map(|&(_, i)| i));
    chosen
}

/// Orders the providers with enough samples by their first-token quantile, in the slots
/// they occupy; unmeasured providers keep their configured place. A provider moves ahead
/// of one configured before it only when it is faster by more than the tolerance, so
/// near-equal providers keep configured order. Returns the primary's quantile when at
/// least two providers were compared and the primary is one of them.
fn fastest_first(
    candidates: &mut [Target],
    board: &HealthBoard,
    ranking: &LatencyRanking,
) -> Option<Duration> {
    // One candidate has nothing to be ranked against; skip reading the board's quantiles.
    if candidates.len() < 2 {
        return None;
    }
    let measured: Vec<(usize, Duration)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            board
                .get(&t.provider)
                .and_then(|h| h.first_token_quantile(ranking.quantile, ranking.min_samples))
                .map(|d| (i, d))
        })
        .collect();
    if measured.len() < 2 {
        return None;
    }
    let keep = 1.0 - tolerance(ranking.tolerance);
    // Insertion in configured order: each provider goes before the first one it clearly
    // beats. No comparator, so no total order is needed and nothing can panic.
    let mut ranked: Vec<(usize, Duration)> = Vec::with_capacity(measured.len());
    for &(i, d) in &measured {
        let at = ranked
            .iter()
            .position(|&(_, other)| d.as_secs_f64() < other.as_secs_f64() * keep)
            .unwrap_or(ranked.len());
        ranked.insert(at, (i, d));
    }
    let mut permutation: Vec<usize> = (0..candidates.len()).collect();
    for (&(slot, _), &(from, _)) in measured.iter().zip(ranked.iter()) {
        permutation[slot] = from;
    }
    reorder(candidates, permutation.into_iter());
    let primary_measured = measured.first().is_some_and(|&(slot, _)| slot == 0);
    primary_measured.then(|| ranked[0].1)
}

/// The tolerance as a fraction in [0, 0.99]; anything else (NaN, negative) is 0.
fn tolerance(t: f64) -> f64 {
    if t.is_finite() {
        t.clamp(0.0, 0.99)
    } else {
        0.0
    }
}

/// Rearranges `items` so that position k holds the item that was at `order[k]`.
fn reorder(items: &mut [Target], order: impl Iterator<Item = usize>) {
    let old: Vec<Target> = items.to_vec();
    for (slot, from) in order.enumerate() {
        if let (Some(dst), Some(src)) = (items.get_mut(slot), old.get(from)) {
            *dst = src.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(p: &'static str) -> Target {
        Target::new(ProviderId::from_static(p), "m")
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_passes_another_only_when_clearly_faster() {
        let board = HealthBoard::new();
        for (p, ms) in [("a", 1000), ("b", 960), ("c", 850), ("d", 10)] {
            for _ in 0..5 {
                board
                    .provider(&ProviderId::from_static(p))
                    .record_success(Duration::from_millis(ms));
            }
        }
        let ranking = LatencyRanking {
            min_samples: 5,
            ..LatencyRanking::default()
        };
        // d is unmeasured here (not on the board under that name): it keeps slot 1.
        let mut c = vec![target("a"), target("x"), target("b"), target("c")];
        let p95 = fastest_first(&mut c, &board, &ranking);
        let order: Vec<&str> = c.iter().map(|t| t.provider.as_str()).collect();
        assert_eq!(
            order,
            ["c", "x", "a", "b"],
            "b is within 10 % of a and stays behind it"
        );
        assert!(p95.is_some());
        assert_eq!(tolerance(f64::NAN), 0.0);
        assert_eq!(tolerance(-1.0), 0.0);
    }
}
