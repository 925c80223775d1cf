//! Cross-provider hedging: if the provider on the route has produced no first token after
//! a soft timeout, start the next provider while the first keeps running; the first
//! *success* wins and the loser is dropped, which cancels its upstream request.
//!
//! ```
//! use std::time::Duration;
//! use switchboard_core::{
//!     AttemptKind, Attempts, ChatBody, ChatRequest, Error, Message, ProviderId, Route, Target, WinReason,
//! };
//! use switchboard_hedge::{HedgeConfig, HedgeLayer, SoftTimeout};
//! use switchboard_sim::{Latency, SimConfig, SimProvider};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slow = SimProvider::new(ProviderId::OPENAI, SimConfig::instant().first_token(Latency::fixed_ms(10_000)));
//! let fast = SimProvider::new(ProviderId::ANTHROPIC, SimConfig::instant().first_token(Latency::fixed_ms(600)));
//! // A dispatcher sends each attempt where its `Target` extension says.
//! let (a, b) = (slow.clone(), fast.clone());
//! let dispatch = service_fn(move |req: ChatRequest| {
//!     let provider = req.extensions().get::<Target>().map(|t| t.provider.clone());
//!     let (mut a, mut b) = (a.clone(), b.clone());
//!     async move {
//!         if provider == Some(ProviderId::OPENAI) { a.call(req).await } else { b.call(req).await }
//!     }
//! });
//! let route = Route::new(Target::new(ProviderId::OPENAI, "gpt-4o-mini"))
//!     .fallback(Target::new(ProviderId::ANTHROPIC, "claude-haiku-4-5"));
//! let config = HedgeConfig::default().soft_timeout(SoftTimeout::fixed(Duration::from_millis(1200)));
//! let mut hedged = HedgeLayer::new(config).route(route).layer(dispatch);
//!
//! let start = tokio::time::Instant::now();
//! let request = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("hi")]));
//! let response = hedged.ready().await.unwrap().call(request).await.unwrap();
//! assert_eq!(start.elapsed(), Duration::from_millis(1800)); // 1200 ms soft timeout + 600 ms
//! assert_eq!(response.provider(), &ProviderId::ANTHROPIC);
//! let attempts = response.extensions().get::<Attempts>().unwrap();
//! assert_eq!(attempts.why(), Some(&WinReason::HedgeFaster));
//! assert_eq!(attempts.get(1).unwrap().kind, AttemptKind::Hedge);
//! drop(response);
//! assert_eq!(slow.stats().cancelled(), 1, "the loser was dropped");
//! # }
//! ```
//!
//! # Contract
//!
//! - **Route.** Attempts follow the request's [`Route`](switchboard_core::Route) extension
//!   (primary, then fallbacks), or the route configured with [`HedgeLayer::route`]. Each
//!   attempt's request carries its [`Target`](switchboard_core::Target) as an extension and
//!   the target's model in its body; the inner service (a dispatcher) sends it there.
//!   Providers whose breaker the [`HealthBoard`](switchboard_core::HealthBoard) shows open
//!   are skipped; an attempt refused by a breaker (`circuit_open`) is not counted as sent.
//! - **Soft timeout.** Fixed, or adaptive: a quantile of the waited-on provider's observed
//!   first-token latency from the board, once it has a minimum number of samples, clamped.
//!   When it fires with no first token yet, the next provider starts and the earlier
//!   attempts keep running.
//! - **First success wins.** Unlike `tower::hedge`, which returns whichever attempt
//!   finishes first, even with an error: here a retryable error
//!   ([`Error::is_retryable`](switchboard_core::Error::is_retryable)) starts the next
//!   provider at once (gRPC's non-fatal codes) and a non-retryable one ends the call. The
//!   losers are dropped, which cancels their upstream requests.
//! - **Bounded.** At most `max_attempts` attempts are sent, none after the request's
//!   [`Deadline`](switchboard_core::Deadline), and every extra attempt needs a token from
//!   the shared [`HedgeBudget`] (default ≤ 10 % extra calls), so hedges and failovers
//!   cannot multiply load during an outage. A skipped attempt says why
//!   (`circuit_open`, `hedge_budget_exhausted`).
//! - **Says what happened.** The response carries an
//!   [`Attempts`](switchboard_core::Attempts) extension (provider, kind
//!   primary/hedge/failover, start offset, outcome won/failed/cancelled/skipped) with the
//!   winner and why (`primary`, `hedge_faster`, `fallback_after_<reason>`); when the answer
//!   is not the primary's, that code is also pushed onto the response's
//!   [`Degraded`](switchboard_core::Degraded) list.
//!
//! # Knobs and defaults
//!
//! [`HedgeConfig`]: soft timeout fixed 1200 ms ([`SoftTimeout::adaptive_p95`]: p95 of the
//! last minute, ≥ 100 samples, clamped to 250 ms–5 s), 3 attempts, budget 10 % with a
//! reserve of 10 tokens and a cap of 100 ([`BudgetConfig`]), skip open circuits.
//!
//! # Differences from `tower::hedge`
//!
//! - tower's hedge retries the *same* service; ours moves along a route to a *different*
//!   provider, whose failure modes are independent.
//! - tower's returns the first result, error or not; ours returns the first success and
//!   fails over at once on a retryable error.
//! - tower's latency percentile comes from its own histogram of whole-response latency;
//!   ours is first-token latency from the shared board, per provider.
//! - tower's budget is a `TpsBudget` on the same service; ours is a token bucket shared by
//!   every clone of the layer, counting failovers as well as hedges.
//! - Ours records every attempt in the response.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod budget;
mod config;
mod future;
mod layer;
mod service;

pub use budget::HedgeBudget;
pub use config::{BudgetConfig, HedgeConfig, SoftTimeout};
pub use future::ResponseFuture;
pub use layer::HedgeLayer;
pub use service::Hedge;
