//! OpenTelemetry metrics, tracing spans and a Prometheus exposition for a Switchboard stack.
//!
//! [`MetricsLayer`] records every call's outcome, latencies, tokens, cost, hedges,
//! failovers and degradations per provider, model, tier and scene; [`AttemptMetricsLayer`]
//! records every upstream attempt. Both write into one [`Telemetry`], whose
//! [`render`](Telemetry::render) is the Prometheus text a `GET /metrics` serves.
//!
//! ```
//! use futures_util::stream;
//! use switchboard_core::{
//!     ChatBody, ChatEvent, ChatRequest, ChatResponse, Error, FinishReason, Message, ProviderId,
//!     Tier, Usage,
//! };
//! use switchboard_telemetry::Telemetry;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Error> {
//! let telemetry = Telemetry::new();
//! let provider = service_fn(|_req: ChatRequest| async {
//!     let events = vec![
//!         Ok(ChatEvent::text("pong")),
//!         Ok(ChatEvent::Usage(Usage::new(12, 1))),
//!         Ok(ChatEvent::Finish(FinishReason::Stop)),
//!     ];
//!     Ok::<_, Error>(ChatResponse::new(ProviderId::OPENAI, "gpt-4o-mini", stream::iter(events)))
//! });
//! let stack = ServiceBuilder::new().layer(telemetry.layer()).service(provider);
//!
//! let mut request = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("ping")]));
//! request.extensions_mut().insert(Tier::L1);
//! stack.oneshot(request).await?.collect().await?;
//!
//! let text = telemetry.render();
//! assert!(text.contains(r#"switchboard_requests_total{model="gpt-4o-mini",outcome="ok",provider="openai",scene="none",tier="L1"} 1"#));
//! assert!(text.contains(r#"switchboard_tokens_total{model="gpt-4o-mini",provider="openai",scene="none",tier="L1",type="input"} 12"#));
//! # Ok(()) }
//! ```
//!
//! # Metrics
//!
//! | Prometheus name | type | labels |
//! |---|---|---|
//! | `gen_ai_client_operation_duration_seconds` | histogram | `gen_ai_operation_name`, `gen_ai_provider_name`, `gen_ai_request_model`, `gen_ai_response_model`, `error_type`, `switchboard_tier`, `switchboard_scene` |
//! | `gen_ai_client_token_usage` | histogram | the same plus `gen_ai_token_type` (`input`, `output`) |
//! | `switchboard_first_token_duration_seconds` | histogram | `provider`, `model`, `tier`, `scene` |
//! | `switchboard_attempt_first_token_duration_seconds` | histogram | `provider`, `model`, `tier`, `scene` |
//! | `switchboard_requests_total` | counter | `provider`, `model`, `tier`, `scene`, `outcome` (`ok`, `degraded`, `error`, `cancelled`), `reason` |
//! | `switchboard_attempts_total` | counter | `provider`, `model`, `tier`, `scene`, `kind` (`primary`, `hedge`, `failover`), `outcome` (`ok`, `error`, `cancelled`), `reason` |
//! | `switchboard_timeouts_total` | counter | `provider`, `model`, `tier`, `scene`, `phase`, `scope` (`attempt`, `call`) |
//! | `switchboard_hedges_total` | counter | `provider`, `model`, `tier`, `scene`, `won` |
//! | `switchboard_fallbacks_total` | counter | `provider`, `model`, `tier`, `scene`, `reason` |
//! | `switchboard_degraded_total` | counter | `provider`, `model`, `tier`, `scene`, `reason` |
//! | `switchboard_tokens_total` | counter | `provider`, `model`, `tier`, `scene`, `type` (`input`, `output`, `cached_input`) |
//! | `switchboard_cost_microdollars_total` | counter | `provider`, `model`, `tier`, `scene` |
//! | `switchboard_breaker_open` | gauge | `provider` |
//! | `switchboard_provider_in_flight` | gauge | `provider` |
//! | `switchboard_budget_spent_microdollars`, `switchboard_budget_cap_microdollars` | gauge | `scope` |
//!
//! Time is `tokio::time`, so paused-time tests see exact latencies. Costs are integer
//! micro-dollars, each call's cost rounded up. `docs/operations.md` explains each metric,
//! the shipped recording and alert rules, and the Grafana dashboard.
//!
//! # Spans
//!
//! `switchboard.request` (fields `tier`, `scene`, `model`, `trace_id`, then `provider`,
//! `outcome`, `reason`) lives from the call to the end of the answer's stream;
//! `switchboard.attempt` (`provider`, `model`, `kind`, `tier`, `outcome`, `reason`) from an
//! attempt's start to its first token, as a child of the request's span.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod future;
mod layer;
mod record;
mod series;
mod service;
mod telemetry;

pub use future::{AttemptFuture, MeteredEvents, ResponseFuture};
pub use layer::{AttemptMetricsLayer, MetricsLayer};
pub use service::{AttemptMetrics, Metrics};
pub use telemetry::{CONTENT_TYPE, LATENCY_BUCKETS, TOKEN_BUCKETS, Telemetry, TelemetryBuilder};
