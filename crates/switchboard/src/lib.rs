//! Switchboard: one control plane for several LLM providers, as tower layers.
//!
//! This facade re-exports every Switchboard crate and assembles the standard stack from
//! one config file ([`Config`], [`Switchboard::build`]). Each layer is also usable alone:
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`core`] | `switchboard-core` | requests, streamed responses, money, errors, the provider contract |
//! | [`tier`] | `switchboard-tier` | admission: tier, scene, tenant |
//! | [`budget`] | `switchboard-budget` | cost estimate and the hard per-minute spend cap |
//! | [`route`] | `switchboard-route` | provider selection, dispatch, progressive rollout |
//! | [`timeout`] | `switchboard-timeout` | first-token, idle and total deadlines per tier |
//! | [`hedge`] | `switchboard-hedge` | cross-provider hedging and failover under a budget |
//! | [`breaker`] | `switchboard-breaker` | circuit breakers and the shared health board |
//! | [`providers`] | `switchboard-providers` | OpenAI and Anthropic adapters |
//! | [`sim`] | `switchboard-sim` | simulated providers |
//! | [`telemetry`] | `switchboard-telemetry` | OpenTelemetry metrics, spans, Prometheus exposition |
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod build;
mod config;
pub mod eval;
pub mod simulate;

pub use build::Switchboard;
pub use config::{
    AdmissionConfig, BudgetConfig, Config, ConfigError, DegradeConfig, KeyConfig, OnBlock,
    ProviderConfig, RolloutSection, ServerConfig, ServerRuntime, ThresholdsConfig,
};

pub use switchboard_breaker as breaker;
pub use switchboard_budget as budget;
pub use switchboard_core as core;
pub use switchboard_hedge as hedge;
pub use switchboard_providers as providers;
pub use switchboard_route as route;
pub use switchboard_sim as sim;
pub use switchboard_telemetry as telemetry;
pub use switchboard_tier as tier;
pub use switchboard_timeout as timeout;

/// The demo configuration `switchboard serve --demo` runs: two simulated providers (one
/// fast, one flaky) behind current OpenAI and Anthropic model names, no keys, no network.
pub const DEMO_CONFIG: &str = include_str!("demo.toml");

/// The types most programs need.
pub mod prelude {
    pub use crate::{Config, Switchboard};
    pub use switchboard_core::{
        BoxProvider, ChatBody, ChatEvent, ChatRequest, ChatResponse, Cost, Error, Message,
        ProviderId, Scene, Tier,
    };
}
