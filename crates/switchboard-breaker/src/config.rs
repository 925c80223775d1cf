//! What trips a breaker and how long it stays open.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a breaker refuses calls while open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `poll_ready` is ready; `call` fails at once with `Error::CircuitOpen`. For a
    /// breaker in front of one provider that a hedge or router fails over from.
    #[default]
    Reject,
    /// `poll_ready` stays `Pending` while the breaker admits nothing, and wakes when it
    /// does again. For use under `tower::balance`, whose ready cache drops a service whose
    /// `poll_ready` returns an error, but simply skips one that is not ready.
    ///
    /// A service that is ready holds its admission (in half-open, one of the probe
    /// slots) until it is called or dropped, as tower's concurrency limits hold permits.
    Backpressure,
}

/// The slow-call trigger: open when at least `rate` of the calls in the window took longer
/// than `threshold` to their first token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowCalls {
    /// First-token latency above which a call is slow.
    #[serde(with = "ms", rename = "threshold_ms")]
    pub threshold: Duration,
    /// Fraction of calls (0.0–1.0) that must be slow.
    pub rate: f64,
}

/// The breaker's knobs. Durations are written in milliseconds in config files.
///
/// | knob | default | meaning |
/// |---|---|---|
/// | `consecutive_failures` | 5 | open after this many failures in a row (`None`: off) |
/// | `window` | 30 s | the sliding window of the rate triggers |
/// | `min_calls` | 5 | calls in the window before a rate trigger may open |
/// | `failure_rate` | 0.5 | open when this fraction of the window's calls failed |
/// | `slow_calls` | `None` (off) | open when too many calls were slow ([`SlowCalls`]) |
/// | `half_open_probes` | 3 | probe calls admitted in half-open; all must succeed to close |
/// | `open_base` | 5 s | the first open period |
/// | `open_max` | 60 s | the cap of the backed-off open period |
/// | `backoff` | 2.0 | factor per consecutive re-open |
/// | `jitter` | 0.2 | open periods are stretched by a random 0–20 % (never past the cap) |
/// | `mode` | `reject` | [`Mode`] |
///
/// With the defaults a provider opens after 5 failures in a row, or after 5 failures within
/// 30 s when they are at least half of its calls there. The consecutive trigger matters at
/// volume: a provider that served 600 calls in the last 30 s and then fails completely
/// needs 15 s of failures to reach a 50 % rate, but only 5 calls to fail 5 times in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Open after this many failures in a row (`None`: off).
    pub consecutive_failures: Option<u32>,
    /// The sliding window.
    #[serde(with = "ms", rename = "window_ms")]
    pub window: Duration,
    /// Minimum calls in the window before a rate trigger may open.
    pub min_calls: u32,
    /// Failure fraction that opens (0.0–1.0; above 1.0 disables).
    pub failure_rate: f64,
    /// The slow-call trigger.
    pub slow_calls: Option<SlowCalls>,
    /// Probe calls admitted in half-open (at least 1).
    pub half_open_probes: u32,
    /// First open period.
    #[serde(with = "ms", rename = "open_base_ms")]
    pub open_base: Duration,
    /// Cap of the open period.
    #[serde(with = "ms", rename = "open_max_ms")]
    pub open_max: Duration,
    /// Growth factor of the open period per consecutive re-open.
    pub backoff: f64,
    /// Random stretch of the open period, as a fraction (0.0–1.0).
    pub jitter: f64,
    /// Reject or backpressure.
    pub mode: Mode,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            window: Duration::from_secs(30),
            min_calls: 5,
            failure_rate: 0.5,
            slow_calls: None,
            half_open_probes: 3,
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(60),
            backoff: 2.0,
            jitter: 0.2,
            mode: Mode::Reject,
        }
    }
}

impl BreakerConfig {
    /// Sets the consecutive-failure trigger.
    pub fn consecutive_failures(mut self, n: Option<u32>) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Sets the window, its minimum number of calls and the failure rate that opens.
    pub fn failure_rate(mut self, window: Duration, min_calls: u32, rate: f64) -> Self {
        self.window = window;
        self.min_calls = min_calls;
        self.failure_rate = rate;
        self
    }

    /// Sets the slow-call trigger.
    pub fn slow_calls(mut self, slow: Option<SlowCalls>) -> Self {
        self.slow_calls = slow;
        self
    }

    /// Sets the number of half-open probes.
    pub fn half_open_probes(mut self, k: u32) -> Self {
        self.half_open_probes = k;
        self
    }

    /// Sets the open period: first, cap, growth factor and jitter.
    pub fn open_period(mut self, base: Duration, max: Duration, backoff: f64, jitter: f64) -> Self {
        self.open_base = base;
        self.open_max = max;
        self.backoff = backoff;
        self.jitter = jitter;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
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
