//! Why a request was routed where it was: [`RouteDecision`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Cost, ModelName, ProviderId, Tier};

/// The rule that ordered a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RouteReason {
    /// The tier is pinned to a pool (L0 to its quality pool): configured order, never
    /// reordered by cost or latency.
    Pinned {
        /// The logical model of the pool.
        pool: ModelName,
    },
    /// The request's expected cost was over the tier's per-request cap: cheapest first.
    OverCostCap {
        /// The request's expected cost (from its `CostEstimate`).
        expected: Cost,
        /// The tier's per-request cap.
        cap: Cost,
        /// The expected cost at the chosen primary, when its price is known.
        chosen: Option<Cost>,
    },
    /// Providers with enough samples were ordered by observed first-token latency.
    LowestLatency {
        /// The primary's observed first-token quantile (p95 by default).
        p95: Duration,
    },
    /// Too few latency samples (or ranking off): the configured order.
    ConfiguredOrder,
    /// Every provider of the pool was skipped; the configured last resort.
    LastResort,
}

impl RouteReason {
    /// Stable snake_case code: `pinned`, `over_cost_cap`, `lowest_p95`,
    /// `configured_order`, `last_resort`.
    pub const fn code(&self) -> &'static str {
        match self {
            RouteReason::Pinned { .. } => "pinned",
            RouteReason::OverCostCap { .. } => "over_cost_cap",
            RouteReason::LowestLatency { .. } => "lowest_p95",
            RouteReason::ConfiguredOrder => "configured_order",
            RouteReason::LastResort => "last_resort",
        }
    }
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A provider left off a route, and why (`circuit_open`, `no_price`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedProvider {
    /// The provider.
    pub provider: ProviderId,
    /// Stable snake_case reason code.
    pub reason: String,
}

/// Which side of a progressive rollout served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutArm {
    /// The current model or policy.
    Baseline,
    /// The one being rolled out.
    Candidate,
}

impl RolloutArm {
    /// `baseline` or `candidate`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RolloutArm::Baseline => "baseline",
            RolloutArm::Candidate => "candidate",
        }
    }
}

impl fmt::Display for RolloutArm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Extension (request and response): how the route layer chose the request's `Route`.
/// Set by routing; read by the edge (to report it), metrics and tracing.
///
/// ```
/// use switchboard_core::{RolloutArm, RouteDecision, RouteReason, Tier};
///
/// let decision = RouteDecision::new(Tier::L0, "fast", "quality", RouteReason::Pinned { pool: "quality".into() });
/// assert_eq!(decision.reason.code(), "pinned");
/// assert_eq!(decision.arm, RolloutArm::Baseline);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// The tier the policy was chosen for.
    pub tier: Tier,
    /// The model the caller asked for (logical or concrete).
    pub requested: ModelName,
    /// The pool it resolved to: a logical model, or the concrete name asked for.
    pub pool: ModelName,
    /// The rule that ordered the route.
    pub reason: RouteReason,
    /// Providers of the pool left off the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedProvider>,
    /// The rollout side that routed it (`Baseline` when no rollout runs).
    pub arm: RolloutArm,
    /// The rollout's candidate share when it was routed, in percent (0 without a rollout).
    pub rollout_percent: u8,
}

impl RouteDecision {
    /// A baseline decision with nothing skipped.
    pub fn new(
        tier: Tier,
        requested: impl Into<ModelName>,
        pool: impl Into<ModelName>,
        reason: RouteReason,
    ) -> Self {
        Self {
            tier,
            requested: requested.into(),
            pool: pool.into(),
            reason,
            skipped: Vec::new(),
            arm: RolloutArm::Baseline,
            rollout_percent: 0,
        }
    }
}
