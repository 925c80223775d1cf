//! What a simulated provider does: latency, streaming speed, answers and faults.
//!
//! Every type here is serde, so scenarios and the gateway's demo config can write them in
//! TOML or JSON. Durations are written in milliseconds (`*_ms` keys).

use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

/// Serde for `Duration` as (possibly fractional) milliseconds.
mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        if !ms.is_finite() || !(0.0..=1e12).contains(&ms) {
            return Err(serde::de::Error::custom(
                "expected a non-negative number of milliseconds",
            ));
        }
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }
}

/// The behaviour of one simulated provider.
///
/// ```
/// use switchboard_sim::{Answer, Latency, SimConfig};
/// let config: SimConfig = serde_json::from_value(serde_json::json!({
///     "seed": 7,
///     "first_token": {"kind": "log_normal", "p50_ms": 400, "p99_ms": 2500},
///     "first_token_stall": {"probability": 0.03, "duration_ms": 10000},
///     "tokens_per_second": 80,
///     "answer": {"kind": "fixed", "text": "Hello there"},
///     "faults": {"errors": [{"status": 529, "probability": 0.01}]}
/// })).unwrap();
/// assert!(matches!(config.first_token, Latency::LogNormal { .. }));
/// assert!(matches!(config.answer, Answer::Fixed { .. }));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Seed of the pseudo-random draws. The same seed and the same order of calls give the
    /// same latencies, faults and answers.
    #[serde(default)]
    pub seed: u64,
    /// Time from the call to the first content event. Default: zero.
    #[serde(default)]
    pub first_token: Latency,
    /// With this probability the first token comes only after a stall instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_stall: Option<Stall>,
    /// Output speed after the first token; absent means every token at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// What the provider answers. Default: echo the last user message.
    #[serde(default)]
    pub answer: Answer,
    /// Scripted failures.
    #[serde(default)]
    pub faults: Faults,
    /// Settings that only the HTTP servers use.
    #[serde(default)]
    pub http: HttpConfig,
}

impl SimConfig {
    /// A provider that answers at once, echoing the last user message.
    pub fn instant() -> Self {
        Self::default()
    }

    /// Sets the first-token latency.
    pub fn first_token(mut self, latency: Latency) -> Self {
        self.first_token = latency;
        self
    }

    /// Sets the answer.
    pub fn answer(mut self, answer: Answer) -> Self {
        self.answer = answer;
        self
    }

    /// Sets the output speed.
    pub fn tokens_per_second(mut self, tps: f64) -> Self {
        self.tokens_per_second = Some(tps);
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the faults.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}

/// A latency distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always the same.
    Fixed {
        /// The latency.
        #[serde(with = "ms", rename = "ms")]
        value: Duration,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Lower bound.
        #[serde(with = "ms", rename = "min_ms")]
        min: Duration,
        /// Upper bound.
        #[serde(with = "ms", rename = "max_ms")]
        max: Duration,
    },
    /// Log-normal with the given median and 99th percentile, the usual shape of service
    /// latency: `μ = ln p50`, `σ = (ln p99 − ln p50) / z₀.₉₉`.
    LogNormal {
        /// Median.
        #[serde(with = "ms", rename = "p50_ms")]
        p50: Duration,
        /// 99th percentile (≥ p50).
        #[serde(with = "ms", rename = "p99_ms")]
        p99: Duration,
    },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed {
            value: Duration::ZERO,
        }
    }
}

/// z such that Φ(z) = 0.99.
const Z_99: f64 = 2.326_347_874_040_841;

impl Latency {
    /// Fixed latency in milliseconds.
    pub const fn fixed_ms(ms: u64) -> Self {
        Latency::Fixed {
            value: Duration::from_millis(ms),
        }
    }

    /// Log-normal latency from its p50 and p99 in milliseconds.
    pub const fn log_normal_ms(p50: u64, p99: u64) -> Self {
        Latency::LogNormal {
            p50: Duration::from_millis(p50),
            p99: Duration::from_millis(p99),
        }
    }

    /// Draws one latency.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        match *self {
            Latency::Fixed { value } => value,
            Latency::Uniform { min, max } => {
                if max <= min {
                    min
                } else {
                    rng.random_range(min..=max)
                }
            }
            Latency::LogNormal { p50, p99 } => {
                let p50 = p50.as_secs_f64().max(1e-9);
                let p99 = p99.as_secs_f64().max(p50);
                let sigma = (p99.ln() - p50.ln()) / Z_99;
                match LogNormal::new(p50.ln(), sigma) {
                    Ok(dist) => Duration::from_secs_f64(dist.sample(rng).min(1e9)),
                    Err(_) => Duration::from_secs_f64(p50),
                }
            }
        }
    }
}

/// A stall: with `probability`, wait `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stall {
    /// Chance per request, 0.0 to 1.0.
    pub probability: f64,
    /// How long.
    #[serde(with = "ms", rename = "duration_ms")]
    pub duration: Duration,
}

/// What the provider answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Answer {
    /// The last user message, back.
    #[default]
    Echo,
    /// Always this text.
    Fixed {
        /// The text.
        text: String,
    },
    /// `count` generated words (`token0 token1 ...`), for load and cost scenarios.
    Words {
        /// How many.
        count: u32,
    },
    /// The first rule whose `contains` occurs in the last user message, else `default`.
    Rules {
        /// Rules, tried in order.
        rules: Vec<Rule>,
        /// The answer when no rule matches.
        default: String,
    },
}

/// One entry of a rule table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Substring of the last user message that selects this rule.
    pub contains: String,
    /// The answer.
    pub reply: String,
}

/// Scripted failures. Each is drawn independently per request with its probability.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Error statuses, tried in order; the first that fires answers the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorFault>,
    /// Time windows, from the provider's creation, in which every request fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<Outage>,
    /// A pause in the middle of the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_mid_stream: Option<MidStreamStall>,
    /// The stream ends before its terminal event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<Truncate>,
    /// A malformed event in the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<MidStream>,
    /// An `error` event in the stream (`overloaded_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_event: Option<MidStream>,
}

/// Answer with an error status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorFault {
    /// HTTP status: 400, 401, 404, 429, 500, 503, 529, ...
    pub status: u16,
    /// Chance per request.
    pub probability: f64,
    /// Delay before the error.
    #[serde(default, with = "ms", rename = "after_ms")]
    pub after: Duration,
    /// `retry-after` seconds sent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// A window in which the provider is down.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// Start, from the provider's creation.
    #[serde(with = "ms", rename = "start_ms")]
    pub start: Duration,
    /// Length.
    #[serde(with = "ms", rename = "duration_ms")]
    pub duration: Duration,
    /// The status answered during the outage. Default 503.
    #[serde(default = "default_outage_status")]
    pub status: u16,
}

fn default_outage_status() -> u16 {
    503
}

impl Outage {
    /// Whether `elapsed` (since the provider's creation) falls in the window.
    pub fn contains(&self, elapsed: Duration) -> bool {
        elapsed >= self.start && elapsed < self.start.saturating_add(self.duration)
    }
}

/// A pause after some tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MidStreamStall {
    /// Chance per request.
    pub probability: f64,
    /// Content tokens sent before the pause.
    pub after_tokens: u32,
    /// How long.
    #[serde(with = "ms", rename = "duration_ms")]
    pub duration: Duration,
}

/// A fault after some tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MidStream {
    /// Chance per request.
    pub probability: f64,
    /// Content tokens sent first.
    pub after_tokens: u32,
}

/// The stream stops before its terminal event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truncate {
    /// Chance per request.
    pub probability: f64,
    /// Content tokens sent first.
    pub after_tokens: u32,
    /// HTTP only: abort the connection (no final chunk) instead of ending the body cleanly.
    #[serde(default)]
    pub reset: bool,
}

/// Settings of the HTTP servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// When set, requests must carry this key (`Authorization: Bearer` for OpenAI,
    /// `x-api-key` for Anthropic) or get a 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// When non-empty, other model names get a 404.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Larger bodies get a 413. Default 1 MiB.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Send Anthropic `ping` events after `content_block_start`. Default true.
    #[serde(default = "default_true")]
    pub ping: bool,
}

fn default_max_body() -> usize {
    1024 * 1024
}

fn default_true() -> bool {
    true
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            models: Vec::new(),
            max_body_bytes: default_max_body(),
            ping: true,
        }
    }
}
