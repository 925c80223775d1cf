//! Spend control for Switchboard: estimate each request's cost before the call
//! ([`EstimateLayer`]), and hold spend under a hard per-window cap with warn / degrade /
//! block policies per tier ([`BudgetLayer`] over a [`Ledger`]).
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
mod ledger;
mod policy;
mod prices;
mod tokenize;

pub use budget::{Budget, BudgetLayer, BudgetLayerBuilder, ResponseFuture, SettledEvents};
pub use cache::ResponseCache;
pub use estimate::{Estimate, EstimateFuture, EstimateLayer, ObservedEvents};
pub use estimator::{Estimator, EstimatorBuilder};
#[cfg(feature = "redis")]
pub use ledger::RedisLedger;
pub use ledger::{
    Account, Books, Caps, Hold, Ledger, MemoryLedger, MemoryLedgerBuilder, Refusal, Scope,
    ScopeSpend,
};
pub use policy::{
    BlockAction, CACHED_ANSWER, CHEAPER_MODEL, CONTEXT_TRIMMED, CapAction, Degrade,
    MAX_TOKENS_CAPPED, RequestCap, TEMPERATURE_LOWERED, Thresholds,
};
pub use prices::shipped_prices;
pub use tokenize::{TokenCounting, count_chat};
