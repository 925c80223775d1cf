//! Simulated LLM providers: the demo's embedded upstream, the tests' upstream, and a
//! what-if tool for policies.
//!
//! Two forms, one behaviour ([`SimConfig`]):
//!
//! - [`SimProvider`]: an in-process `tower::Service` implementing the provider contract
//!   (its future resolves at the first token). Everything waits on tokio time, so under
//!   `tokio::time::pause` an hour of traffic runs in seconds, deterministically for a seed.
//! - [`SimServer`]: a real HTTP server on a loopback port that speaks the OpenAI Chat
//!   Completions (`POST /v1/chat/completions`) and Anthropic Messages
//!   (`POST /v1/messages`) wire formats: JSON or SSE streams, the real error bodies and
//!   statuses, `retry-after` on 429. It counts requests per route and observes client
//!   disconnects, so tests can assert that a dropped response cancels the upstream call.
//!
//! The knobs: first-token latency (fixed, uniform, log-normal from p50/p99) plus a stall
//! probability; output speed in tokens per second; answers (echo, fixed, generated words,
//! a rule table keyed by prompt); faults (error statuses with a probability, outage
//! windows, a stall mid-stream, a truncated stream, a malformed event, an `error` event).
//!
//! ```
//! use std::time::Duration;
//! use switchboard_core::{ChatBody, ChatRequest, Error, Message, ProviderId};
//! use switchboard_sim::{ErrorFault, Faults, SimConfig, SimProvider};
//! use tower::{Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // A provider that always answers 529 overloaded.
//! let faults = Faults {
//!     errors: vec![ErrorFault { status: 529, probability: 1.0, after: Duration::ZERO, retry_after_secs: None }],
//!     ..Faults::default()
//! };
//! let mut sim = SimProvider::new(ProviderId::ANTHROPIC, SimConfig::instant().faults(faults));
//! let request = ChatRequest::new(ChatBody::new("claude-haiku-4-5", vec![Message::user("hi")]));
//! let error = sim.ready().await.unwrap().call(request).await.unwrap_err();
//! assert!(matches!(error, Error::Overloaded { .. }));
//! assert_eq!(error.reason(), "anthropic_overloaded");
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod config;
mod http;
mod plan;
mod provider;

pub use config::{
    Answer, ErrorFault, Faults, HttpConfig, Latency, MidStream, MidStreamStall, Outage, Rule,
    SimConfig, Stall, Truncate,
};
pub use http::{ApiRoute, RecordedRequest, ServerStats, SimServer, router};
pub use plan::{input_tokens, split_tokens};
pub use provider::{SimProvider, SimStats};
