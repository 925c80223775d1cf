//! The one config file: serde types and their validation.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;
use switchboard_breaker::BreakerConfig;
use switchboard_core::{Cost, ProviderId, Scene, TenantId, Tier};
use switchboard_hedge::HedgeConfig;
use switchboard_providers::{AnthropicConfig, ClientConfig, OpenAiConfig};
use switchboard_route::{RolloutConfig, RoutePolicy};
use switchboard_sim::SimConfig;
use switchboard_timeout::TimeoutTiers;

/// Everything Switchboard runs from, as written in `switchboard.toml`. Unknown keys are
/// errors. See `docs/configuration.md` for every key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gateway's listener, keys and limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// The shared HTTP client of the real providers.
    #[serde(default)]
    pub client: ClientConfig,
    /// Providers by name.
    pub providers: BTreeMap<ProviderId, ProviderConfig>,
    /// Provider order, logical models and per-tier routing.
    pub routing: RoutePolicy,
    /// Who is which tier and scene.
    #[serde(default)]
    pub admission: AdmissionConfig,
    /// Deadlines per tier.
    #[serde(default)]
    pub timeouts: TimeoutTiers,
    /// Cross-provider hedging and failover.
    #[serde(default)]
    pub hedge: HedgeConfig,
    /// Circuit breakers (one per provider, all with these settings).
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Spend caps; absent means no budget gate.
    #[serde(default)]
    pub budget: Option<BudgetConfig>,
    /// A candidate routing policy rolled out stage by stage; absent means none.
    #[serde(default)]
    pub rollout: Option<RolloutSection>,
}

/// A progressive rollout of a candidate routing policy (a new concrete model behind a
/// logical name, or a whole new policy) against `[routing]` as the baseline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSection {
    /// The candidate policy, in the same shape as `[routing]`.
    pub candidate: RoutePolicy,
    /// Stages, hold times and the guard. Default: 1 → 10 → 50 → 100 %, each held for
    /// 1,000 requests, 5 minutes and 50 candidate outcomes.
    #[serde(default)]
    pub settings: RolloutConfig,
}

/// The gateway's listener and edge limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where to listen. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Larger request bodies get a 413. Default 4 MiB.
    pub body_limit_bytes: usize,
    /// How long in-flight requests may finish after a shutdown signal, in ms. Default 30 s.
    pub drain_ms: u64,
    /// Worker threads. Default 0: one per available core.
    pub workers: usize,
    /// How the workers share the work. Default [`ServerRuntime::ThreadPerCore`].
    pub runtime: ServerRuntime,
    /// Gateway keys and their tenants. Empty: no key needed (local use only).
    pub keys: BTreeMap<String, KeyConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 4 * 1024 * 1024,
            drain_ms: 30_000,
            workers: 0,
            runtime: ServerRuntime::ThreadPerCore,
            keys: BTreeMap::new(),
        }
    }
}

/// How the gateway's worker threads share the work (`server.runtime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerRuntime {
    /// Each worker is a single-threaded runtime that accepts from the one listener and
    /// serves its connections start to end: no task or wake-up crosses threads on the
    /// request path (the fastest for typical requests). A request that holds its worker's
    /// CPU for long (tokenizing a prompt of several MB for the cost estimate: ~25 ms per
    /// MB) delays the other connections of that worker meanwhile.
    #[default]
    ThreadPerCore,
    /// One tokio multi-thread runtime with `workers` threads: idle workers steal tasks from
    /// busy ones, so a long request never holds up another connection, at the price of
    /// cross-thread wake-ups on every request.
    WorkStealing,
}

/// One gateway key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The tenant its requests are billed to.
    pub tenant: TenantId,
    /// Its tier when nothing else decides. Default: the admission default.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// The most valuable tier its `x-switchboard-tier` header may ask for. Default: none
    /// above its own tier.
    #[serde(default)]
    pub allow_header_tier: Option<Tier>,
}

/// How a provider is reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// OpenAI or any OpenAI-compatible endpoint.
    Openai(OpenAiConfig),
    /// Anthropic Messages.
    Anthropic(AnthropicConfig),
    /// A simulated provider, in process: no keys, no network.
    Sim(Box<SimConfig>),
}

/// Admission: tiers and scenes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Honour `x-switchboard-tier` / `x-switchboard-scene` (promotion above a key's tier
    /// only where its `allow_header_tier` says). Default true.
    pub headers: bool,
    /// The tier when no rule decides. Default L1.
    pub default_tier: Tier,
    /// The scene when no rule decides. Default `chat`.
    pub default_scene: Scene,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            headers: true,
            default_tier: Tier::L1,
            default_scene: Scene::CHAT,
        }
    }
}

/// Spend control: a hard cap per minute, thresholds, and what degrading does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// The hard cap on all spend per minute (fixed one-minute windows), in dollars.
    pub global_per_minute: Cost,
    /// Caps per tier per minute.
    #[serde(default)]
    pub tier_per_minute: BTreeMap<Tier, Cost>,
    /// A cap every tenant gets per minute.
    #[serde(default)]
    pub tenant_per_minute: Option<Cost>,
    /// Warn / degrade / block as percent of a cap. Default 70 / 85 / 100.
    #[serde(default)]
    pub thresholds: ThresholdsConfig,
    /// What degrading does.
    #[serde(default)]
    pub degrade: DegradeConfig,
    /// Tiers never degraded. Default `["L0"]`.
    #[serde(default = "l0_only")]
    pub exempt_from_degrade: Vec<Tier>,
    /// A cap on one request's worst-case cost, in dollars; over it the request is refused.
    #[serde(default)]
    pub per_request: Option<Cost>,
    /// What a blocked request of each tier gets: `reject` (429 with Retry-After, the
    /// default) or `enqueue` (202 and a job id; a worker runs it as budget allows; the
    /// result is at `GET /v1/jobs/{id}`).
    #[serde(default)]
    pub on_block: BTreeMap<Tier, OnBlock>,
}

/// What a request blocked by the budget gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBlock {
    /// 429 with Retry-After.
    Reject,
    /// Queued as a job, run when the budget allows.
    Enqueue,
}

fn l0_only() -> Vec<Tier> {
    vec![Tier::L0]
}

/// Thresholds as percent of a cap.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsConfig {
    /// Record and emit.
    pub warn: u32,
    /// Degrade the request.
    pub degrade: u32,
    /// Refuse (or serve from cache).
    pub block: u32,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        Self {
            warn: 70,
            degrade: 85,
            block: 100,
        }
    }
}

/// The degrade steps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DegradeConfig {
    /// Model → cheaper model (`quality = "fast"`).
    pub cheaper_model: BTreeMap<String, String>,
    /// Cap on `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Cap on temperature.
    pub temperature: Option<f32>,
    /// Trim the context (oldest non-system turns first) to this many tokens.
    pub context_tokens: Option<u64>,
}

/// A config that cannot run: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key (`providers.openai.base_url`), or the file position for syntax errors.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl ConfigError {
    pub(crate) fn new(
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n  fix: {}", self.key, self.problem, self.fix)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "config".to_owned());
            ConfigError::new(
                key,
                e.message().to_owned(),
                "check the key's spelling and type against docs/configuration.md",
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: names refer to configured providers, models are
    /// servable, percentages are ordered.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.providers.is_empty() {
            return Err(ConfigError::new(
                "providers",
                "no providers are configured",
                "add at least one [providers.NAME] table (kind = \"openai\", \"anthropic\" or \"sim\")",
            ));
        }
        let known = |p: &ProviderId| self.providers.contains_key(p);
        let names = || {
            self.providers
                .keys()
                .map(ProviderId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.routing.providers.is_empty() {
            return Err(ConfigError::new(
                "routing.providers",
                "the provider order is empty",
                format!(
                    "list the providers in order of preference, e.g. providers = [{}]",
                    quoted(&names())
                ),
            ));
        }
        for (i, p) in self.routing.providers.iter().enumerate() {
            if !known(p) {
                return Err(ConfigError::new(
                    format!("routing.providers[{i}]"),
                    format!("provider {p:?} is not configured"),
                    format!("use one of: {}, or add [providers.{p}]", names()),
                ));
            }
        }
        if self.routing.models.is_empty() {
            return Err(ConfigError::new(
                "routing.models",
                "no models are configured, so every request would be a 404",
                "add a logical model, e.g. [routing.models.fast] openai = \"gpt-4o-mini\"",
            ));
        }
        for (model, per_provider) in &self.routing.models {
            for p in per_provider.keys() {
                if !known(p) {
                    return Err(ConfigError::new(
                        format!("routing.models.{model}.{p}"),
                        format!("provider {p:?} is not configured"),
                        format!("use one of: {}", names()),
                    ));
                }
            }
        }
        for (tier, policy) in &self.routing.tiers {
            if let Some(pin) = &policy.pin {
                if !self.routing.models.contains_key(pin) {
                    return Err(ConfigError::new(
                        format!("routing.tiers.{tier}.pin"),
                        format!("logical model {pin:?} is not in routing.models"),
                        "pin a logical model defined under [routing.models]",
                    ));
                }
            }
            for p in policy.providers.iter().flatten() {
                if !known(p) {
                    return Err(ConfigError::new(
                        format!("routing.tiers.{tier}.providers"),
                        format!("provider {p:?} is not configured"),
                        format!("use one of: {}", names()),
                    ));
                }
            }
        }
        if let Some(rollout) = &self.rollout {
            for (i, p) in rollout.candidate.providers.iter().enumerate() {
                if !known(p) {
                    return Err(ConfigError::new(
                        format!("rollout.candidate.providers[{i}]"),
                        format!("provider {p:?} is not configured"),
                        format!("use one of: {}", names()),
                    ));
                }
            }
            for (model, per_provider) in &rollout.candidate.models {
                for p in per_provider.keys() {
                    if !known(p) {
                        return Err(ConfigError::new(
                            format!("rollout.candidate.models.{model}.{p}"),
                            format!("provider {p:?} is not configured"),
                            format!("use one of: {}", names()),
                        ));
                    }
                }
            }
        }
        if self.hedge.max_attempts == 0 {
            return Err(ConfigError::new(
                "hedge.max_attempts",
                "0 attempts would send nothing",
                "set max_attempts to 1 (no hedging) or more",
            ));
        }
        if let Some(budget) = &self.budget {
            let t = budget.thresholds;
            if !(t.warn <= t.degrade && t.degrade <= t.block && t.block <= 100) {
                return Err(ConfigError::new(
                    "budget.thresholds",
                    format!(
                        "warn {} / degrade {} / block {} are not in order",
                        t.warn, t.degrade, t.block
                    ),
                    "use warn <= degrade <= block <= 100 (percent of the cap)",
                ));
            }
            if budget.global_per_minute.is_zero() {
                return Err(ConfigError::new(
                    "budget.global_per_minute",
                    "a zero cap blocks every request",
                    "set a positive dollar amount such as \"5.00\", or remove [budget]",
                ));
            }
        }
        Ok(())
    }
}

fn quoted(names: &str) -> String {
    names
        .split(", ")
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
