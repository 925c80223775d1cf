//! The Switchboard gateway: OpenAI- and Anthropic-compatible HTTP endpoints over a
//! Switchboard provider stack.
//!
//! - `POST /v1/chat/completions` (OpenAI Chat Completions, streamed or not),
//! - `POST /v1/messages` (Anthropic Messages, streamed or not),
//! - `GET /v1/models`, `GET /healthz`, `GET /readyz`, `GET /switchboard/status`.
//!
//! Every answer says what happened: `x-switchboard-status` (`ok`, `degraded` or `error`),
//! `x-switchboard-provider`, `x-switchboard-reason`, `x-switchboard-trace-id` (and a W3C
//! `traceparent`), plus a `switchboard` object with the same fields in JSON bodies.
//! Errors come in the error shape of the API the caller used, with its status.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod auth;
mod edge;
mod trace_context;

pub use auth::{GatewayKeys, Unauthorized};
pub use edge::{DEFAULT_BODY_LIMIT, DEFAULT_DRAIN, Gateway};
