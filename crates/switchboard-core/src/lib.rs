//! The shared vocabulary of Switchboard: what a chat request and its streamed answer are,
//! what money and errors are, and the one contract every provider fulfils.
//!
//! Every value that crosses a layer boundary lives here, so that layer crates depend on
//! this crate and never on each other: a [`Tier`] and [`Scene`] set at admission, a
//! [`Degraded`] list that budget and hedging append to, the [`Disposition`] an edge reports.
//! They travel in [`Extensions`] (a type map with a typed slot for each of them), names are
//! cheap to copy ([`ModelName`], [`ProviderId`]: static or shared, and interned when
//! deserialized), and a synchronous chain of `call`s reads the clock once ([`CallClock`]).
//!
//! # The provider contract
//!
//! A [`Provider`] is a `tower::Service<ChatRequest, Response = ChatResponse, Error = Error>`
//! whose future resolves **at the first content event**; the rest of the answer is the
//! response's event stream. Any closure can be one:
//!
//! ```
//! use futures_util::{StreamExt, stream};
//! use switchboard_core::{
//!     ChatBody, ChatEvent, ChatRequest, ChatResponse, Error, FinishReason, Message, ProviderId, Usage,
//! };
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! let mut echo = service_fn(|req: ChatRequest| async move {
//!     let text = req.body().last_user_text().unwrap_or_default();
//!     let events = vec![
//!         Ok(ChatEvent::text(text)),
//!         Ok(ChatEvent::Usage(Usage::new(3, 1))),
//!         Ok(ChatEvent::Finish(FinishReason::Stop)),
//!     ];
//!     Ok::<_, Error>(ChatResponse::new(ProviderId::from_static("echo"), "echo-1", stream::iter(events)))
//! });
//!
//! let request = ChatRequest::new(ChatBody::new("echo-1", vec![Message::user("ping")]));
//! let response = echo.ready().await?.call(request).await?; // resolves at the first token
//! let answer = response.collect().await?;
//! assert_eq!(answer.text, "ping");
//! assert_eq!(answer.finish, Some(FinishReason::Stop));
//! # Ok(()) }
//! ```
//!
//! # Money
//!
//! [`Cost`] is an integer count of nano-dollars with checked arithmetic; [`Price`] is per
//! million tokens. No float ever enters a ledger.
//!
//! # Errors
//!
//! [`Error`] is one non-exhaustive enum. Each variant has a stable snake_case reason code
//! (`openai_first_token_timeout`), and answers the two questions resilience layers ask:
//! [`Error::is_retryable`] and [`Error::counts_against_provider`].
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod attempts;
mod clock;
mod deadline;
mod decision;
mod disposition;
mod error;
mod estimate;
mod extensions;
mod head;
mod health;
mod job;
mod model;
mod money;
mod name;
mod provider;
mod request;
mod response;
mod route;
mod shared;
mod spend;
mod tier;
mod trace;
mod usage;

pub use attempts::{Attempt, AttemptKind, AttemptOutcome, Attempts, WinReason};
pub use clock::{CallClock, ClockScope};
pub use deadline::Deadline;
pub use decision::{RolloutArm, RouteDecision, RouteReason, SkippedProvider};
pub use disposition::{Degradation, Degraded, Disposition, Status};
pub use error::{Error, TimeoutPhase};
pub use estimate::CostEstimate;
pub use extensions::Extensions;
pub use head::RequestHead;
pub use health::{
    BreakerState, Forced, HealthBoard, HealthSnapshot, InFlight, LatencySummary, ProviderHealth,
};
pub use job::JobTicket;
pub use model::ModelName;
pub use money::{Cost, InvalidCost, Price, PriceTable};
pub use name::{InvalidName, ProviderId, Scene, TenantId};
pub use provider::{BoxProvider, Provider, boxed};
pub use request::{
    ChatBody, ChatRequest, Content, ContentPart, Message, Role, Tool, ToolCall, ToolChoice,
};
pub use response::{ChatEvent, ChatResponse, Completion, EventStream, FinishReason, FirstTokenAt};
pub use route::{Route, Target};
pub use shared::{SharedFuture, SharedService};
pub use spend::{BudgetStatus, SpendLevel};
pub use tier::{InvalidTier, Tier};
pub use trace::{InvalidTraceId, TraceId};
pub use usage::Usage;
