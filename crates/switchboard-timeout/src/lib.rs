//! Timeout tiers for provider calls: a first-token deadline per attempt, an idle deadline
//! between stream events, and a total deadline for the whole call, chosen by the request's
//! [`Tier`](switchboard_core::Tier).
//!
//! ```
//! use std::time::Duration;
//! use switchboard_core::{ChatBody, ChatRequest, Error, Message, ProviderId, Tier, TimeoutPhase};
//! use switchboard_sim::{Latency, SimConfig, SimProvider};
//! use switchboard_timeout::{TimeoutLayer, TimeoutTiers, Timeouts};
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slow = SimProvider::new(ProviderId::OPENAI, SimConfig::instant().first_token(Latency::fixed_ms(5_000)));
//! let tiers = TimeoutTiers::default().tier(
//!     Tier::L0,
//!     Timeouts::new(Duration::from_secs(2), Duration::from_secs(10), Duration::from_secs(60)),
//! );
//! let mut service = TimeoutLayer::new(tiers).provider(ProviderId::OPENAI).layer(slow);
//!
//! let mut request = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("hi")]));
//! request.extensions_mut().insert(Tier::L0);
//! let error = service.ready().await.unwrap().call(request).await.unwrap_err();
//! assert!(matches!(error, Error::Timeout { phase: TimeoutPhase::FirstToken, .. }));
//! assert_eq!(error.reason(), "openai_first_token_timeout");
//! # }
//! ```
//!
//! # Phases
//!
//! | phase | measured | error reason | retryable |
//! |---|---|---|---|
//! | `first_token` | from the attempt's call to its future resolving (the first content event) | `<provider>_first_token_timeout` | yes |
//! | `idle` | between two events of the response stream | `<provider>_idle_timeout` | no |
//! | `total` | from the call to the end of the stream, all attempts included | `total_timeout` | no |
//!
//! The idle and total deadlines keep running over the response stream after the first
//! token: when one expires the stream yields one [`Error::Timeout`](switchboard_core::Error)
//! and ends, and the upstream stream is dropped, which cancels the HTTP request.
//!
//! The total deadline is published to inner layers as a
//! [`Deadline`](switchboard_core::Deadline) request extension (the earlier of this layer's
//! and any outer one). A layer with [`Scope::Attempt`] caps its first-token timer at that
//! deadline; when the deadline is what expires the error says `total`.
//!
//! The **connect** timeout belongs to the provider adapter's connector (it is per TCP/TLS
//! connection, not per request; a pooled connection has none to wait for). A connect
//! timeout is counted inside the first-token phase of the attempt that waited for it and
//! surfaces as `TimeoutPhase::Connect` from the adapter.
//!
//! # Knobs and defaults
//!
//! - [`TimeoutTiers`]: per-tier [`Timeouts`] (first token / idle / total): L0 8 s / 20 s /
//!   120 s, L1 15 s / 30 s / 180 s, L2 30 s / 60 s / 600 s; requests without a tier are L1.
//!   Any phase can be `None`. Serde: `{"L0": {"first_token_ms": 2000, ...}, "default_tier": "L1"}`.
//! - [`Scope`]: which phases this instance enforces; default [`Scope::Both`].
//! - [`TimeoutLayer::provider`]: the provider named in first-token errors when the request
//!   has no `Target` extension.
//!
//! # Differences from `tower::timeout` and tower-http's `TimeoutLayer`
//!
//! - `tower::timeout::Timeout` has one duration and ends when the response future resolves;
//!   here the future resolves at the *first token*, and the idle and total deadlines go on
//!   over the response stream, which tower's cannot see.
//! - tower-http's `TimeoutLayer` answers `408` with an empty body (and its
//!   `RequestBodyTimeout` covers only the request body); ours returns the core
//!   [`Error::Timeout`](switchboard_core::Error) with the phase and provider, so the reason
//!   code says exactly what expired (`openai_first_token_timeout`).
//! - The duration depends on the request's tier, and the deadline is published to inner
//!   layers instead of being private to the timer.
//! - Like tower's, the inner future is polled before the timer, so a response that is ready
//!   at the deadline wins.
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
mod service;
mod stream;

pub use config::{Scope, TimeoutTiers, Timeouts};
pub use future::ResponseFuture;
pub use layer::TimeoutLayer;
pub use service::Timeout;
pub use stream::TimedEvents;
