//! Spend control for Switchboard: [`EstimateLayer`] prices each request before the
//! call, and [`BudgetLayer`] holds spend under a hard per-window cap in a [`Ledger`],
//! with warn / degrade / block thresholds per tier, a per-request cost cap, and
//! settlement of the real cost when the answer's stream ends.
//!
//! ```
//! use std::sync::Arc;
//! use switchboard_budget::{BudgetLayer, Caps, Degrade, EstimateLayer, Estimator, MemoryLedger, Scope, Thresholds};
//! use switchboard_core::{BudgetStatus, ChatBody, ChatRequest, Cost, Message, ProviderId, SpendLevel, Tier};
//! use switchboard_sim::{Answer, SimConfig, SimProvider};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let estimator = Arc::new(Estimator::default()); // shipped OpenAI + Anthropic prices
//! let ledger = MemoryLedger::new(Caps::new().global("0.50".parse().unwrap()).tier(Tier::L2, "0.10".parse().unwrap()));
//! let sim = SimProvider::new(ProviderId::OPENAI, SimConfig::instant().answer(Answer::Words { count: 40 }));
//! let mut stack = ServiceBuilder::new()
//!     .layer(EstimateLayer::new(estimator.clone()))
//!     .layer(
//!         BudgetLayer::builder(ledger.clone())
//!             .estimator(estimator)
//!             .thresholds_all(Thresholds::percent(80, 90, 100))
//!             .degrade(Degrade::new().cheaper_model("gpt-4o", "gpt-4o-mini").max_tokens(256))
//!             .build(),
//!     )
//!     .service(sim);
//!
//! let mut request = ChatRequest::new(ChatBody::new("gpt-4o", vec![Message::user("hi")]).max_tokens(1_000));
//! request.extensions_mut().insert(Tier::L1);
//! let response = stack.ready().await.unwrap().call(request).await.unwrap();
//! assert_eq!(response.extensions().get::<BudgetStatus>().unwrap().level, SpendLevel::Normal);
//! let held = ledger.books().outstanding; // the request's cost upper bound, while it streams
//! assert!(held > Cost::ZERO);
//! let answer = response.collect().await.unwrap();
//! // Settled at the end of the stream: the real cost of the reported usage.
//! let books = ledger.books();
//! assert_eq!(books.outstanding, Cost::ZERO);
//! let price = Estimator::default().price_of("gpt-4o");
//! assert_eq!(books.committed, price.cost_of(&answer.usage.unwrap()).unwrap());
//! assert_eq!(ledger.spent(&Scope::Global), books.committed);
//! # }
//! ```
//!
//! # How a request goes through
//!
//! 1. **Estimate** ([`Estimator`]): input tokens with the model's real tokenizer
//!    (`bpe-openai`, exact for OpenAI encodings; calibrated for Claude; see
//!    [`TokenCounting`]) plus chat framing; expected output from a learned per-scene
//!    percentile or `max_tokens`; the model's price → a
//!    [`CostEstimate`](switchboard_core::CostEstimate) with `expected` and `upper_bound`.
//! 2. **Per-request cap** ([`RequestCap`]): an upper bound over the cap is rejected,
//!    routed to the cheaper model, or degraded until it fits.
//! 3. **Reserve** the upper bound in every capped scope (global, tier, tenant) at once,
//!    or refuse: the hard cap cannot be crossed by any interleaving.
//! 4. **Judge** each scope on its spend plus the *expected* cost against the tier's
//!    [`Thresholds`]: warn (log + [`BudgetStatus`](switchboard_core::BudgetStatus)),
//!    degrade ([`Degrade`] steps, each recorded in
//!    [`Degraded`](switchboard_core::Degraded) with its reason code; the hold shrinks to
//!    the degraded bound), or block ([`BlockAction`]: 429 with Retry-After from the
//!    window, an answer from the [`ResponseCache`], or a job on a [`JobQueue`] that a
//!    [`JobWorker`] drains as budget allows).
//! 5. **Settle** when the stream ends: commit the cost of the reported usage and free the
//!    rest. A call that fails before its first token is refunded; a broken or abandoned
//!    stream (the response dropped) commits the estimated input plus the output seen.
//!
//! # Knobs and defaults
//!
//! | knob | default |
//! |---|---|
//! | [`Caps`] (global, per tier, per tenant, every tenant) | none: uncapped scopes are not tracked |
//! | window ([`MemoryLedgerBuilder::window`], `RedisLedger::window`) | 1 minute, fixed |
//! | lease of budget slices ([`LeasedLedger`], `RedisLedger::leased`) | off: each reservation goes to the ledger; no default slice when on (≈ cap / (10 × replicas) bounds early refusals at 10 %) |
//! | [`Thresholds`] per tier (warn / degrade / block, % of cap) | 80 / 90 / 100 (100 = only the hard cap blocks) |
//! | [`Degrade`] steps | none |
//! | [`exempt_from_degrade`](BudgetLayerBuilder::exempt_from_degrade) | L0 exempt |
//! | [`on_block`](BudgetLayerBuilder::on_block) | [`BlockAction::Reject`] |
//! | [`RequestCap`] | none |
//! | [`cache`](BudgetLayerBuilder::cache), [`jobs`](BudgetLayerBuilder::jobs) | none (`Cache` / `Enqueue` then reject) |
//! | prices ([`shipped_prices`], [`EstimatorBuilder::prices`]) | shipped table; unknown models at the priciest entry |
//! | output bound without `max_tokens` | the model's limit, else 16,384 tokens |
//! | expected output | learned p90 per scene after 50 samples, else `max_tokens`, else 1,024 |
//!
//! # Several gateway replicas
//!
//! `RedisLedger` (feature `redis`) keeps one ledger for every replica: one Lua script
//! round trip per reservation. For more admissions per second than that allows, wrap
//! it in a [`LeasedLedger`] (`RedisLedger::leased(slice)`): each replica reserves a slice
//! of the cap in one round trip and serves the reservations that fit from it in process
//! (one compare-and-swap), returning what it did not use when the slice retires (a new
//! slice, the window's end, [`LeasedLedger::return_leases`], or drop). The hard cap still
//! holds across replicas; the cost is that an unused slice can make another replica
//! refuse early, by at most about slice × replicas.
//!
//! Money is integer nano-dollars ([`Cost`](switchboard_core::Cost)) throughout.
//!
//! # Features
//!
//! - `tokenizer` (default): exact OpenAI counts with `bpe-openai`. Without it every
//!   count is the byte length (a bound that never undercounts).
//! - `redis`: `RedisLedger`, shared by gateway replicas (optionally leased in slices),
//!   `RedisJobQueue`, and `RedisResponseCache` (the exact-match cache shared by
//!   replicas: TTL by Redis expiry, a maximum entry size; any [`AnswerCache`] plugs into
//!   [`BudgetLayerBuilder::cache`]).
//! - `loom`: the loom model checks of the ledger's atomics
//!   (`cargo test -p switchboard-budget --features loom --lib loom`).
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod budget;
mod cache;
mod estimate;
mod estimator;
mod jobs;
mod ledger;
mod policy;
mod prices;
#[cfg(feature = "redis")]
mod redis_cache;
#[cfg(feature = "redis")]
mod redis_jobs;
mod tokenize;

pub use budget::{Budget, BudgetLayer, BudgetLayerBuilder, ResponseFuture, SettledEvents};
pub use cache::{AnswerCache, CacheFuture, ResponseCache};
pub use estimate::{Estimate, EstimateFuture, EstimateLayer, ObservedEvents};
pub use estimator::{Estimator, EstimatorBuilder};
pub use jobs::{Job, JobFuture, JobQueue, JobStatus, JobWorker, MemoryJobQueue, QueueError, Step};
#[cfg(feature = "redis")]
pub use ledger::RedisLedger;
pub use ledger::{
    Account, Books, Caps, Hold, LeasedLedger, LeasedReserve, Ledger, MemoryLedger,
    MemoryLedgerBuilder, Refusal, Scope, ScopeSpend,
};
pub use policy::{
    BlockAction, CACHED_ANSWER, CHEAPER_MODEL, CONTEXT_TRIMMED, CapAction, Degrade, ENQUEUED,
    MAX_TOKENS_CAPPED, RequestCap, TEMPERATURE_LOWERED, Thresholds,
};
pub use prices::shipped_prices;
#[cfg(feature = "redis")]
pub use redis_cache::RedisResponseCache;
#[cfg(feature = "redis")]
pub use redis_jobs::RedisJobQueue;
pub use tokenize::{TokenCounting, count_chat};
