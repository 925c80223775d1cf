//! A per-provider circuit breaker that stops sending calls to a sick provider, lets a few
//! probe calls test it, and publishes its state and latency to a shared
//! [`HealthBoard`](switchboard_core::HealthBoard).
//!
//! ```
//! use switchboard_core::{BreakerState, ChatBody, ChatRequest, Error, HealthBoard, Message, ProviderId};
//! use switchboard_sim::{ErrorFault, Faults, SimConfig, SimProvider};
//! use switchboard_breaker::BreakerLayer;
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let always_503 = Faults {
//!     errors: vec![ErrorFault { status: 503, probability: 1.0, after: Default::default(), retry_after_secs: None }],
//!     ..Faults::default()
//! };
//! let sim = SimProvider::new(ProviderId::OPENAI, SimConfig::instant().faults(always_503));
//! let board = HealthBoard::new();
//! let mut openai = BreakerLayer::new(ProviderId::OPENAI).board(board.clone()).layer(sim.clone());
//!
//! let request = || ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("hi")]));
//! for _ in 0..5 {
//!     let e = openai.ready().await.unwrap().call(request()).await.unwrap_err();
//!     assert_eq!(e.reason(), "openai_upstream_server_error");
//! }
//! assert_eq!(board.state(&ProviderId::OPENAI), BreakerState::Open);
//! let e = openai.ready().await.unwrap().call(request()).await.unwrap_err();
//! assert!(matches!(e, Error::CircuitOpen { .. }));
//! assert_eq!(e.reason(), "openai_circuit_open");
//! assert_eq!(sim.stats().calls(), 5, "the sixth call never reached the provider");
//! # }
//! ```
//!
//! # States
//!
//! - **closed**: calls flow. Each call's verdict is counted when it ends: a success when
//!   its stream ends cleanly (or the caller drops it after the first token), a failure at
//!   its first error that the classifier counts (default
//!   [`Error::counts_against_provider`](switchboard_core::Error::counts_against_provider):
//!   a caller's 400, a spent budget or the caller's total deadline never count). A call
//!   cancelled before its first token counts as nothing. Triggers: N consecutive failures;
//!   a failure rate over a sliding window once it holds a minimum number of calls; a
//!   slow-call rate (first-token latency above a threshold).
//! - **open**: calls are refused for the open period, which starts at `open_base`, grows by
//!   `backoff` on each re-open without a close in between, is stretched by a random
//!   `jitter` and capped at `open_max`.
//! - **half-open**: exactly `half_open_probes` calls are admitted, across every clone (the
//!   count lives under the shared lock); all must succeed (and not be slow) to close, one
//!   failure re-opens. Other calls are refused meanwhile.
//!
//! Every transition is a `tracing` event (`warn` when opening, `info` otherwise) with the
//! provider, both states and the cause (`failure_rate`, `consecutive_failures`,
//! `slow_call_rate`, `probe_failed`, `probes_succeeded`, `open_period_over`,
//! `active_probe_succeeded`, `reset`).
//!
//! # Modes
//!
//! [`Mode::Reject`] (default): `call` fails at once with
//! [`Error::CircuitOpen`](switchboard_core::Error) (`retry_after` = the rest of the open
//! period): cheap, and a hedge or router fails over on it. [`Mode::Backpressure`]:
//! `poll_ready` stays pending until the breaker admits a call (the open period ends, a
//! probe slot frees, an operator acts), so the breaker works under `tower::balance`, whose
//! ready cache evicts a service that returns an error from `poll_ready`.
//!
//! # The health board and the operator handle
//!
//! Each breaker writes its provider's entry on a [`HealthBoard`](switchboard_core::HealthBoard):
//! state, successes, failures, timeouts, first-token latency percentiles over a rotating
//! window, and in-flight calls. Hedging and routing read it. The same entry is the operator
//! handle ([`Breaker::handle`], or `board.provider(&id)`): `force_open`, `force_closed`,
//! `clear_force` and `reset` take effect on the next call.
//!
//! # Active health probes
//!
//! [`BreakerLayer::active_probe`] sends a small real request (bypassing the breaker)
//! every interval while the breaker is open; a first token moves it to half-open early,
//! so a recovered provider gets traffic back without waiting out a long backed-off period.
//!
//! # Knobs and defaults
//!
//! See [`BreakerConfig`]: 5 consecutive failures; window 30 s, 5 calls minimum, 50 % failure
//! rate (so 5 failures in 30 s open a provider that had nothing else); slow-call trigger
//! off; 3 half-open probes; open 5 s doubling to 60 s with 20 % jitter; reject mode.
//!
//! # Differences from other breakers
//!
//! tower has no circuit breaker. Compared with Resilience4j's `CircuitBreaker`, which
//! this follows (sliding time window, minimum calls, slow-call rate, permitted half-open
//! calls): a call's verdict comes from the end of its *stream*, not of the future; open
//! periods back off exponentially with jitter; overrides come from a shared board; and
//! rejecting versus backpressure is a mode, because tower's load balancers need the latter.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod config;
mod future;
mod layer;
mod machine;
mod probe;
mod service;
mod shared;

pub use config::{BreakerConfig, Mode, SlowCalls};
pub use future::ResponseFuture;
pub use layer::BreakerLayer;
pub use service::Breaker;
pub use shared::Classifier;

#[cfg(test)]
mod machine_props;
