//! What-if runs: a scenario of traffic through the configured stack, on simulated
//! providers, in virtual time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use switchboard_core::{
    AttemptKind, Attempts, ChatBody, ChatRequest, Cost, Degraded, Message, PriceTable, ProviderId,
    Scene, Tier, Usage,
};
use switchboard_sim::SimConfig;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::{Config, ConfigError, ProviderConfig, Switchboard};

/// A scenario file: how much traffic, of which kinds, and (optionally) how each provider
/// behaves.
///
/// ```toml
/// requests = 10000
/// rate_per_second = 50
///
/// [[mix]]
/// weight = 80
/// tier = "L1"
/// model = "fast"
///
/// [[mix]]
/// weight = 20
/// tier = "L0"
/// model = "quality"
///
/// [providers.openai]            # what-if: openai slows down
/// first_token = { kind = "log_normal", p50_ms = 900, p99_ms = 6000 }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// How many requests.
    pub requests: u64,
    /// Arrivals per second of virtual time, evenly spaced.
    pub rate_per_second: f64,
    /// The kinds of request, drawn round-robin by weight.
    pub mix: Vec<Mix>,
    /// Simulated behaviour per provider; replaces the config's provider of that name.
    /// Every provider must end up simulated.
    #[serde(default)]
    pub providers: BTreeMap<ProviderId, SimConfig>,
}

/// One kind of request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Relative weight.
    pub weight: u32,
    /// Its tier.
    pub tier: Tier,
    /// The model asked for.
    pub model: String,
    /// Its scene. Default `chat`.
    #[serde(default)]
    pub scene: Option<Scene>,
    /// The prompt. Default `"Hello"`.
    #[serde(default = "hello")]
    pub prompt: String,
    /// `max_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

fn hello() -> String {
    "Hello".to_owned()
}

impl Scenario {
    /// Parses a scenario file.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| {
            ConfigError::new("scenario", e.message().to_owned(), "see the Scenario docs")
        })?;
        if scenario.mix.is_empty() || scenario.mix.iter().all(|m| m.weight == 0) {
            return Err(ConfigError::new(
                "scenario.mix",
                "no request kinds with weight",
                "add a [[mix]] with weight > 0",
            ));
        }
        if !(scenario.rate_per_second.is_finite() && scenario.rate_per_second > 0.0) {
            return Err(ConfigError::new(
                "scenario.rate_per_second",
                "must be a positive number",
                "e.g. rate_per_second = 50",
            ));
        }
        Ok(scenario)
    }
}

/// What one simulated request did.
#[derive(Debug, Clone)]
struct Outcome {
    tier: Tier,
    first_token: Option<Duration>,
    total: Option<Duration>,
    status: Status,
    fallback: bool,
    hedged: bool,
    extra_calls: usize,
    cost: Cost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Ok,
    Degraded,
    Error(String),
}

/// The results of a run, per tier and overall.
#[derive(Debug, Clone)]
pub struct Report {
    outcomes: Vec<Outcome>,
    virtual_time: Duration,
}

/// Runs `scenario` through the stack `config` describes. Call it on a current-thread tokio
/// runtime with paused time (`switchboard simulate` does): an hour of traffic takes
/// seconds, and a run is deterministic for its seeds.
pub async fn run(config: &Config, scenario: &Scenario) -> Result<Report, ConfigError> {
    let mut config = config.clone();
    for (id, sim) in &scenario.providers {
        config
            .providers
            .insert(id.clone(), ProviderConfig::Sim(Box::new(sim.clone())));
    }
    if let Some((id, _)) = config
        .providers
        .iter()
        .find(|(_, p)| !matches!(p, ProviderConfig::Sim(_)))
    {
        return Err(ConfigError::new(
            format!("providers.{id}"),
            "a simulation cannot call a real provider",
            format!("describe its behaviour in the scenario: [providers.{id}] first_token = ..."),
        ));
    }
    let switchboard = Switchboard::build(&config)?;
    let prices = switchboard_budget::shipped_prices();
    let schedule = weighted_round_robin(&scenario.mix);
    let gap = Duration::from_secs_f64(1.0 / scenario.rate_per_second);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(scenario.requests as usize);
    for i in 0..scenario.requests {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let mix = &scenario.mix[schedule[(i as usize) % schedule.len()]];
        let mut body = ChatBody::new(mix.model.clone(), vec![Message::user(mix.prompt.clone())]);
        body.max_tokens = mix.max_tokens;
        let mut request = ChatRequest::new(body);
        request.extensions_mut().insert(mix.tier);
        request
            .extensions_mut()
            .insert(mix.scene.clone().unwrap_or(Scene::CHAT));
        let service = switchboard.service();
        let prices = prices.clone();
        let tier = mix.tier;
        tasks.push(tokio::spawn(async move {
            one(service, request, tier, &prices).await
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(outcome) = task.await {
            outcomes.push(outcome);
        }
    }
    Ok(Report {
        outcomes,
        virtual_time: start.elapsed(),
    })
}

async fn one(
    service: switchboard_core::BoxProvider,
    request: ChatRequest,
    tier: Tier,
    prices: &PriceTable,
) -> Outcome {
    let start = Instant::now();
    let mut outcome = Outcome {
        tier,
        first_token: None,
        total: None,
        status: Status::Ok,
        fallback: false,
        hedged: false,
        extra_calls: 0,
        cost: Cost::ZERO,
    };
    let response = match service.oneshot(request).await {
        Ok(response) => response,
        Err(error) => {
            outcome.status = Status::Error(error.reason());
            return outcome;
        }
    };
    outcome.first_token = Some(start.elapsed());
    if let Some(attempts) = response.extensions().get::<Attempts>() {
        outcome.extra_calls = attempts.extra_calls();
        outcome.hedged = attempts.iter().any(|a| a.kind == AttemptKind::Hedge);
        outcome.fallback = attempts
            .winner()
            .is_some_and(|w| w.kind != AttemptKind::Primary);
    }
    let degraded = response
        .extensions()
        .get::<Degraded>()
        .is_some_and(|d| !d.is_empty());
    let model = response.model().to_owned();
    match response.collect().await {
        Ok(done) => {
            outcome.total = Some(start.elapsed());
            outcome.status = if degraded {
                Status::Degraded
            } else {
                Status::Ok
            };
            let usage = done.usage.unwrap_or(Usage::default());
            outcome.cost = prices
                .get(&model)
                .and_then(|p| p.cost_of(&usage))
                .unwrap_or(Cost::ZERO);
        }
        Err(error) => outcome.status = Status::Error(error.reason()),
    }
    outcome
}

/// Indices of `mix` in a fixed interleaved order, each appearing `weight` times.
fn weighted_round_robin(mix: &[Mix]) -> Vec<usize> {
    let total: u32 = mix.iter().map(|m| m.weight).sum();
    let mut credit = vec![0i64; mix.len()];
    (0..total)
        .map(|_| {
            for (c, m) in credit.iter_mut().zip(mix) {
                *c += i64::from(m.weight);
            }
            let (best, _) = credit
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
                .unwrap_or((0, &0));
            credit[best] -= i64::from(total);
            best
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.0}", d.as_secs_f64() * 1000.0),
    )
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `L0`, `L1`, `L2` or `all`.
    pub label: String,
    /// Requests.
    pub requests: usize,
    /// Answered as asked.
    pub ok: usize,
    /// Answered, degraded.
    pub degraded: usize,
    /// Not answered.
    pub errors: usize,
    /// First-token latency p50 / p95 / p99.
    pub first_token: [Option<Duration>; 3],
    /// Total latency p50 / p95 / p99.
    pub total: [Option<Duration>; 3],
    /// Answers served by another provider than the route's first.
    pub fallbacks: usize,
    /// Requests that sent a hedge.
    pub hedged: usize,
    /// Upstream calls beyond one per request.
    pub extra_calls: usize,
    /// Spend at the shipped prices.
    pub cost: Cost,
}

impl Report {
    /// Rows per tier present, then `all`.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = Tier::ALL
            .iter()
            .filter(|t| self.outcomes.iter().any(|o| o.tier == **t))
            .map(|t| self.row(t.as_str(), |o| o.tier == *t))
            .collect();
        rows.push(self.row("all", |_| true));
        rows
    }

    fn row(&self, label: &str, keep: impl Fn(&Outcome) -> bool) -> Row {
        let picked: Vec<&Outcome> = self.outcomes.iter().filter(|o| keep(o)).collect();
        let mut first: Vec<Duration> = picked.iter().filter_map(|o| o.first_token).collect();
        let mut total: Vec<Duration> = picked.iter().filter_map(|o| o.total).collect();
        first.sort();
        total.sort();
        let q = |v: &[Duration]| {
            [
                percentile(v, 50.0),
                percentile(v, 95.0),
                percentile(v, 99.0),
            ]
        };
        Row {
            label: label.to_owned(),
            requests: picked.len(),
            ok: picked.iter().filter(|o| o.status == Status::Ok).count(),
            degraded: picked
                .iter()
                .filter(|o| o.status == Status::Degraded)
                .count(),
            errors: picked
                .iter()
                .filter(|o| matches!(o.status, Status::Error(_)))
                .count(),
            first_token: q(&first),
            total: q(&total),
            fallbacks: picked.iter().filter(|o| o.fallback).count(),
            hedged: picked.iter().filter(|o| o.hedged).count(),
            extra_calls: picked.iter().map(|o| o.extra_calls).sum(),
            cost: picked
                .iter()
                .fold(Cost::ZERO, |sum, o| sum.saturating_add(o.cost)),
        }
    }

    /// Error reasons and their counts, most frequent first.
    pub fn error_reasons(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for o in &self.outcomes {
            if let Status::Error(reason) = &o.status {
                *counts.entry(reason.clone()).or_default() += 1;
            }
        }
        let mut out: Vec<(String, usize)> = counts.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// The report as a Markdown table.
    pub fn table(&self) -> String {
        let pct = |n: usize, of: usize| {
            if of == 0 {
                0.0
            } else {
                100.0 * n as f64 / of as f64
            }
        };
        let mut out = format!(
            "virtual time {:.1} s\n\n| tier | requests | ok | degraded | errors | first token p50 / p95 / p99 ms | total p50 / p95 / p99 ms | fallback | hedged | extra calls | cost |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
            self.virtual_time.as_secs_f64()
        );
        for r in self.rows() {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} % | {:.1} % | {:.1} % | {} / {} / {} | {} / {} / {} | {:.1} % | {:.1} % | {:.1} % | {} |",
                r.label,
                r.requests,
                pct(r.ok, r.requests),
                pct(r.degraded, r.requests),
                pct(r.errors, r.requests),
                ms(r.first_token[0]),
                ms(r.first_token[1]),
                ms(r.first_token[2]),
                ms(r.total[0]),
                ms(r.total[1]),
                ms(r.total[2]),
                pct(r.fallbacks, r.requests),
                pct(r.hedged, r.requests),
                pct(r.extra_calls, r.requests),
                r.cost,
            );
        }
        let reasons = self.error_reasons();
        if !reasons.is_empty() {
            out.push_str("\nerrors by reason:\n");
            for (reason, n) in reasons {
                let _ = writeln!(out, "  {reason}: {n}");
            }
        }
        out
    }
}
