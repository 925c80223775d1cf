//! Provider selection and dispatch: [`RouteLayer`] turns a tier and a model into a
//! [`Route`](switchboard_core::Route) of concrete models per provider, [`Dispatch`] sends
//! each attempt to the provider it names, and a [`Rollout`] moves traffic to a candidate
//! policy stage by stage, rolling it back on its own when it does worse than the baseline.
//!
//! ```
//! use switchboard_core::{
//!     ChatBody, ChatRequest, HealthBoard, Message, ProviderId, Route, RouteDecision, Tier,
//! };
//! use switchboard_route::{Dispatch, RouteLayer, RoutePolicy, TierPolicy};
//! use switchboard_sim::{SimConfig, SimProvider};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let openai = SimProvider::new(ProviderId::OPENAI, SimConfig::instant());
//! let anthropic = SimProvider::new(ProviderId::ANTHROPIC, SimConfig::instant());
//! let dispatch = Dispatch::new()
//!     .provider(ProviderId::OPENAI, openai.clone())
//!     .provider(ProviderId::ANTHROPIC, anthropic.clone());
//!
//! let policy = RoutePolicy::new([ProviderId::OPENAI, ProviderId::ANTHROPIC])
//!     .model("quality", [(ProviderId::OPENAI, "gpt-4o"), (ProviderId::ANTHROPIC, "claude-sonnet-4-5")])
//!     .model("fast", [(ProviderId::OPENAI, "gpt-4o-mini"), (ProviderId::ANTHROPIC, "claude-haiku-4-5")])
//!     .tier(Tier::L0, TierPolicy::pinned("quality", [ProviderId::ANTHROPIC, ProviderId::OPENAI]));
//! let board = HealthBoard::new(); // written by the breakers
//! let router = RouteLayer::new(policy).board(board.clone()).layer(dispatch);
//!
//! // An L0 request for `fast` is served from the quality pool, in configured order.
//! let mut request = ChatRequest::new(ChatBody::new("fast", vec![Message::user("hi")]));
//! request.extensions_mut().insert(Tier::L0);
//! let response = router.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.provider(), &ProviderId::ANTHROPIC);
//! assert_eq!(response.model(), "claude-sonnet-4-5");
//! let decision = response.extensions().get::<RouteDecision>().unwrap();
//! assert_eq!(decision.reason.code(), "pinned");
//!
//! // An open breaker takes a provider off the route.
//! board.provider(&ProviderId::OPENAI).force_open();
//! let request = ChatRequest::new(ChatBody::new("fast", vec![Message::user("hi")]));
//! let response = router.oneshot(request).await.unwrap();
//! assert_eq!(response.model(), "claude-haiku-4-5");
//! assert_eq!(openai.stats().calls(), 0);
//! # }
//! ```
//!
//! # Routing rules
//!
//! For each request, with its [`Tier`](switchboard_core::Tier) (the policy's default tier
//! when it has none) and the model in its body:
//!
//! 1. **Pool.** A logical model (`quality`, `value`, `fast`) maps to one concrete model per
//!    provider; a tier with a `pin` (L0 → `quality`) serves every logical model from its
//!    pin. A concrete model asked for directly maps to the provider(s) serving it. A tier's
//!    `providers` list restricts and orders its pool. Anything else is
//!    [`Error::ModelNotFound`](switchboard_core::Error::ModelNotFound).
//! 2. **Skip open breakers** ([`HealthBoard`](switchboard_core::HealthBoard) state open or
//!    forced open). If nothing is left: the tier's `last_resort`, else
//!    [`Error::NoProvider`](switchboard_core::Error::NoProvider).
//! 3. **Order.** Pinned: configured order, never reordered. Else, when the request's
//!    [`CostEstimate`](switchboard_core::CostEstimate) `expected` is over the tier's
//!    `cost_cap`: cheapest first, each provider's concrete model priced from the
//!    [`PriceTable`](switchboard_core::PriceTable) at the estimate's token counts (unpriced
//!    last). Else: providers with at least `min_samples` successes in the board's window
//!    are ordered by their first-token p95 among the places they hold; one passes a
//!    provider configured before it only when faster by more than `tolerance` (so ties and
//!    near-ties keep configured order); unmeasured providers keep their place.
//!
//! The chosen [`Route`](switchboard_core::Route) and a
//! [`RouteDecision`](switchboard_core::RouteDecision) (tier, pool, rule, skipped providers,
//! rollout arm) go into the request's extensions, the decision also into the response's,
//! and a `route decided` `tracing` event carries the same fields.
//!
//! # Progressive rollout
//!
//! [`Rollout::new`] takes a candidate [`RoutePolicy`] (a new concrete model behind a
//! logical name, or a whole new policy) and a [`RolloutConfig`]. Requests are assigned by a
//! stable hash of their session key (the `x-session-id` header from
//! [`RequestHead`](switchboard_core::RequestHead), else the
//! [`TenantId`](switchboard_core::TenantId)) into 10,000 buckets; the first `percent`% of
//! buckets go to the candidate, so a session stays on its side and a candidate session
//! stays a candidate as the stage grows. Each stage (1 → 10 → 50 → 100 %) is held for a
//! minimum of requests, candidate outcomes and tokio time; the [`Guard`] compares the
//! candidate with the baseline over the stage (error rate, first-token p95, cost per
//! request) and over the rollout (external quality scores fed through
//! [`RolloutHandle::report_quality`]), and the first breach rolls every request back to
//! the baseline. Promotions (`info`) and rollbacks (`warn`) are `tracing` events and
//! counters on the cloneable [`RolloutHandle`], which also reports the stage.
//!
//! # Knobs and defaults
//!
//! - [`TierPolicy`]: pool = the policy's providers, no pin, no cost cap, latency ranking
//!   on, no last resort. Default tier L1.
//! - [`LatencyRanking`]: p95, 50 samples, 10 % tolerance.
//! - [`RolloutConfig`]: stages 1/10/50/100 %, 1000 requests, 5 min and 50 candidate outcomes
//!   per stage; [`Guard`]: +2 points error rate, ×1.5 p95, ×1.25 cost, −0.05 quality, 50
//!   samples (10 for quality).
//!
//! # Differences from `tower::steer` and `tower::balance`
//!
//! `Steer` picks one of several services by a function of the request; `Dispatch` picks by
//! the `Target` extension and drives each provider's readiness inside the call, so one
//! provider's backpressure never blocks another. `balance` spreads load over equivalent
//! endpoints by their load; routing orders *different* providers by rules (tier, cost,
//! latency, health) and leaves the failover along that order to the hedge layer.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod dispatch;
mod future;
mod layer;
mod policy;
mod rollout;
mod select;
mod service;

pub use dispatch::{Dispatch, DispatchFuture};
pub use future::ResponseFuture;
pub use layer::RouteLayer;
pub use policy::{LatencyRanking, RoutePolicy, TierPolicy};
pub use rollout::{
    ArmStats, Breach, Guard, Rollout, RolloutConfig, RolloutHandle, RolloutPhase, RolloutStatus,
    StageSummary,
};
pub use service::Router;
