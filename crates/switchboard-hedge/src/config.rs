//! When to hedge, how often, and how much extra load is allowed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long an attempt may go without a first token before the next provider is started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SoftTimeout {
    /// Always the same.
    Fixed {
        /// The soft timeout.
        #[serde(with = "ms", rename = "ms")]
        after: Duration,
    },
    /// A quantile of the waited-on provider's observed first-token latency, read from the
    /// `HealthBoard`, clamped; `fallback` until the board has `min_samples` for it.
    Adaptive {
        /// The quantile, 0.0–1.0 (e.g. 0.95).
        quantile: f64,
        /// Successful calls the board must have seen in its window.
        min_samples: u64,
        /// Lower clamp.
        #[serde(with = "ms", rename = "min_ms")]
        min: Duration,
        /// Upper clamp.
        #[serde(with = "ms", rename = "max_ms")]
        max: Duration,
        /// Used with too few samples or without a board.
        #[serde(with = "ms", rename = "fallback_ms")]
        fallback: Duration,
    },
}

impl SoftTimeout {
    /// A fixed soft timeout.
    pub const fn fixed(after: Duration) -> Self {
        SoftTimeout::Fixed { after }
    }

    /// The adaptive default: p95, at least 100 samples, clamped to 250 ms–5 s, 1200 ms
    /// before enough is known.
    pub const fn adaptive_p95() -> Self {
        SoftTimeout::Adaptive {
            quantile: 0.95,
            min_samples: 100,
            min: Duration::from_millis(250),
            max: Duration::from_secs(5),
            fallback: Duration::from_millis(1200),
        }
    }
}

impl Default for SoftTimeout {
    fn default() -> Self {
        SoftTimeout::fixed(Duration::from_millis(1200))
    }
}

/// The hedge budget, a token bucket in the manner of gRPC's retry throttling and
/// Finagle's `RetryBudget`: every request deposits `ratio` of a token, every extra attempt
/// (a hedge or a failover actually sent) withdraws one. The balance starts at `reserve`
/// (so a cold service can still fail over) and never exceeds `cap`, so in the long run
/// extra calls are at most `ratio` of requests plus `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Extra attempts allowed per request, on average (0.1 = 10 %).
    pub ratio: f64,
    /// Tokens at start.
    pub reserve: u32,
    /// Most tokens ever held.
    pub cap: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.1,
            reserve: 10,
            cap: 100,
        }
    }
}

/// The hedge layer's knobs.
///
/// | knob | default |
/// |---|---|
/// | `soft_timeout` | fixed 1200 ms |
/// | `max_attempts` | 3 (attempts actually sent, the first included) |
/// | `budget` | 10 % extra, 10 in reserve, cap 100 ([`BudgetConfig`]) |
/// | `skip_open_circuits` | true |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HedgeConfig {
    /// When to start the next provider while the current ones keep running.
    pub soft_timeout: SoftTimeout,
    /// Most attempts sent per call (at least 1).
    pub max_attempts: u32,
    /// The extra-load budget.
    pub budget: BudgetConfig,
    /// Skip providers whose breaker the `HealthBoard` shows open.
    pub skip_open_circuits: bool,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            soft_timeout: SoftTimeout::default(),
            max_attempts: 3,
            budget: BudgetConfig::default(),
            skip_open_circuits: true,
        }
    }
}

impl HedgeConfig {
    /// Sets the soft timeout.
    pub fn soft_timeout(mut self, soft_timeout: SoftTimeout) -> Self {
        self.soft_timeout = soft_timeout;
        self
    }

    /// Sets the maximum number of attempts.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets the budget.
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.budget = budget;
        self
    }
}

mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
