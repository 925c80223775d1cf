//! The breaker's state machine. Pure: every method takes `now`, so property tests can
//! drive it with arbitrary event sequences.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::BreakerConfig;

/// The machine's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { issued: u32, succeeded: u32 },
}

/// What a call was admitted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// An ordinary call while closed.
    Normal,
    /// One of the half-open probes of the given half-open episode. A probe that ends after
    /// its episode (the breaker re-opened, was reset, or opened again since) changes nothing.
    Probe(u64),
    /// Admitted by an operator's force-closed; never changes the state.
    Untracked,
}

/// How a call ended, as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success {
        slow: bool,
    },
    Failure,
    /// Ended without a verdict: cancelled, or an error that does not count.
    Ignored,
}

/// Why the machine moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    ConsecutiveFailures,
    FailureRate,
    SlowCallRate,
    ProbeFailed,
    ProbesSucceeded,
    OpenPeriodOver,
    ActiveProbeSucceeded,
    Reset,
}

impl Cause {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Cause::ConsecutiveFailures => "consecutive_failures",
            Cause::FailureRate => "failure_rate",
            Cause::SlowCallRate => "slow_call_rate",
            Cause::ProbeFailed => "probe_failed",
            Cause::ProbesSucceeded => "probes_succeeded",
            Cause::OpenPeriodOver => "open_period_over",
            Cause::ActiveProbeSucceeded => "active_probe_succeeded",
            Cause::Reset => "reset",
        }
    }
}

/// A state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) cause: Cause,
}

/// Admission decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Admit(Ticket),
    /// Refused; `until` is when the open period ends (None in half-open with every probe
    /// out).
    Reject {
        until: Option<Instant>,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    index: Option<u64>,
    calls: u32,
    failures: u32,
    slow: u32,
}

const BUCKETS: usize = 30;

/// Calls, failures and slow calls over the sliding window, in 30 buckets.
#[derive(Debug, Clone)]
struct Window {
    epoch: Instant,
    /// A bucket's length in nanoseconds (at least 1 ms).
    bucket_nanos: u64,
    buckets: [Bucket; BUCKETS],
    /// The bucket of the latest failure or slow call: while it is out of the window, no
    /// rate can trip and `totals` need not be summed.
    last_bad: Option<u64>,
}

impl Window {
    fn new(window: Duration, epoch: Instant) -> Self {
        let bucket_len = (window / BUCKETS as u32).max(Duration::from_millis(1));
        Self {
            epoch,
            bucket_nanos: u64::try_from(bucket_len.as_nanos()).unwrap_or(u64::MAX),
            buckets: [Bucket::default(); BUCKETS],
            last_bad: None,
        }
    }

    fn index(&self, now: Instant) -> u64 {
        let e = now.saturating_duration_since(self.epoch);
        // Whole seconds and the rest apart: 64-bit arithmetic, no 128-bit division.
        let nanos = e
            .as_secs()
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(u64::from(e.subsec_nanos())))
            .unwrap_or(u64::MAX);
        nanos / self.bucket_nanos
    }

    fn record(&mut self, now: Instant, failure: bool, slow: bool) {
        let index = self.index(now);
        let b = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if b.index != Some(index) {
            *b = Bucket {
                index: Some(index),
                ..Bucket::default()
            };
        }
        b.calls = b.calls.saturating_add(1);
        b.failures = b.failures.saturating_add(u32::from(failure));
        b.slow = b.slow.saturating_add(u32::from(slow));
        if failure || slow {
            self.last_bad = Some(index);
        }
    }

    /// Whether the window holds no failure and no slow call.
    fn clean(&self, now: Instant) -> bool {
        self.last_bad
            .is_none_or(|bad| self.index(now).saturating_sub(bad) >= BUCKETS as u64)
    }

    /// (calls, failures, slow) in the window ending now.
    fn totals(&self, now: Instant) -> (u64, u64, u64) {
        let index = self.index(now);
        let mut t = (0u64, 0u64, 0u64);
        for b in &self.buckets {
            if let Some(i) = b.index
                && i <= index
                && index - i < BUCKETS as u64
            {
                t.0 += u64::from(b.calls);
                t.1 += u64::from(b.failures);
                t.2 += u64::from(b.slow);
            }
        }
        t
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
        self.last_bad = None;
    }
}

/// The state machine of one provider's breaker.
#[derive(Debug)]
pub(crate) struct Machine {
    config: BreakerConfig,
    state: State,
    window: Window,
    consecutive: u32,
    /// Opens since the breaker last closed: the backoff exponent.
    reopens: u32,
    /// Counts entries into half-open, so stale probes are recognised.
    episode: u64,
    rng: SmallRng,
}

impl Machine {
    pub(crate) fn new(config: BreakerConfig, now: Instant, seed: u64) -> Self {
        Self {
            window: Window::new(config.window, now),
            config,
            state: State::Closed,
            consecutive: 0,
            reopens: 0,
            episode: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    #[cfg(test)]
    pub(crate) fn episode(&self) -> u64 {
        self.episode
    }

    fn probes(&self) -> u32 {
        self.config.half_open_probes.max(1)
    }

    /// Decides whether a call may go now. Moves open → half-open once the open period is
    /// over.
    pub(crate) fn acquire(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        let mut transition = None;
        if let State::Open { until } = self.state
            && now >= until
        {
            transition = Some(self.go(
                State::HalfOpen {
                    issued: 0,
                    succeeded: 0,
                },
                Cause::OpenPeriodOver,
            ));
        }
        let admission = match &mut self.state {
            State::Closed => Admission::Admit(Ticket::Normal),
            State::Open { until } => Admission::Reject {
                until: Some(*until),
            },
            State::HalfOpen { issued, .. } => {
                if *issued < self.config.half_open_probes.max(1) {
                    *issued += 1;
                    Admission::Admit(Ticket::Probe(self.episode))
                } else {
                    Admission::Reject { until: None }
                }
            }
        };
        (admission, transition)
    }

    /// Records how an admitted call ended.
    pub(crate) fn finish(
        &mut self,
        ticket: Ticket,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Transition> {
        match ticket {
            Ticket::Untracked => None,
            Ticket::Normal => {
                if outcome == Outcome::Ignored {
                    return None;
                }
                let failure = outcome == Outcome::Failure;
                let slow = outcome == Outcome::Success { slow: true };
                self.window.record(now, failure, slow);
                self.consecutive = if failure { self.consecutive + 1 } else { 0 };
                // Late results of calls admitted before the breaker opened only count.
                if self.state != State::Closed {
                    return None;
                }
                let cause = self.trip_cause(now)?;
                Some(self.open(now, cause))
            }
            Ticket::Probe(episode) => {
                let State::HalfOpen { issued, succeeded } = self.state else {
                    // The episode is over (re-opened, closed or reset) without it.
                    return None;
                };
                if episode != self.episode {
                    return None;
                }
                match outcome {
                    Outcome::Ignored => {
                        self.state = State::HalfOpen {
                            issued: issued.saturating_sub(1),
                            succeeded,
                        };
                        None
                    }
                    Outcome::Failure | Outcome::Success { slow: true } => {
                        Some(self.open(now, Cause::ProbeFailed))
                    }
                    Outcome::Success { slow: false } => {
                        let succeeded = succeeded + 1;
                        if succeeded >= self.probes() {
                            Some(self.close(Cause::ProbesSucceeded))
                        } else {
                            self.state = State::HalfOpen { issued, succeeded };
                            None
                        }
                    }
                }
            }
        }
    }

    /// An active health probe succeeded while open: admit probes now.
    pub(crate) fn active_probe_succeeded(&mut self) -> Option<Transition> {
        match self.state {
            State::Open { .. } => Some(self.go(
                State::HalfOpen {
                    issued: 0,
                    succeeded: 0,
                },
                Cause::ActiveProbeSucceeded,
            )),
            _ => None,
        }
    }

    /// Forgets everything and closes.
    pub(crate) fn reset(&mut self) -> Option<Transition> {
        self.window.clear();
        self.consecutive = 0;
        self.reopens = 0;
        (self.state != State::Closed).then(|| self.go(State::Closed, Cause::Reset))
    }

    fn trip_cause(&self, now: Instant) -> Option<Cause> {
        if let Some(n) = self.config.consecutive_failures
            && n > 0
            && self.consecutive >= n
        {
            return Some(Cause::ConsecutiveFailures);
        }
        // Rates of zero trip nothing (unless a threshold is zero itself).
        let slow_rate = self.config.slow_calls.map_or(1.0, |s| s.rate);
        if self.config.failure_rate > 0.0 && slow_rate > 0.0 && self.window.clean(now) {
            return None;
        }
        let (calls, failures, slow) = self.window.totals(now);
        if calls == 0 || calls < u64::from(self.config.min_calls) {
            return None;
        }
        let rate = |n: u64| n as f64 / calls as f64;
        if self.config.failure_rate <= 1.0 && rate(failures) >= self.config.failure_rate {
            return Some(Cause::FailureRate);
        }
        if let Some(s) = self.config.slow_calls
            && s.rate <= 1.0
            && rate(slow) >= s.rate
        {
            return Some(Cause::SlowCallRate);
        }
        None
    }

    fn open(&mut self, now: Instant, cause: Cause) -> Transition {
        let period = self.open_period();
        self.reopens = self.reopens.saturating_add(1);
        // A period past the clock's range is taken as a year.
        let until = now
            .checked_add(period)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
            .unwrap_or(now);
        self.go(State::Open { until }, cause)
    }

    fn close(&mut self, cause: Cause) -> Transition {
        self.window.clear();
        self.consecutive = 0;
        self.reopens = 0;
        self.go(State::Closed, cause)
    }

    /// `open_base × backoff^reopens`, stretched by up to `jitter`, capped at `open_max`.
    pub(crate) fn open_period(&mut self) -> Duration {
        let base = self.config.open_base.as_secs_f64();
        let max = self.config.open_max.as_secs_f64().max(base);
        let factor = if self.config.backoff.is_finite() {
            self.config.backoff.max(1.0)
        } else {
            1.0
        };
        let mut secs = base * factor.powi(self.reopens.min(64) as i32);
        let jitter = if self.config.jitter.is_finite() {
            self.config.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if jitter > 0.0 {
            secs *= 1.0 + self.rng.random_range(0.0..jitter);
        }
        let secs = if secs.is_finite() { secs.min(max) } else { max };
        Duration::try_from_secs_f64(secs).unwrap_or(self.config.open_max)
    }

    fn go(&mut self, to: State, cause: Cause) -> Transition {
        let from = self.state;
        self.state = to;
        if matches!(to, State::HalfOpen { .. }) {
            self.episode += 1;
        }
        if to == State::Closed {
            self.window.clear();
            self.consecutive = 0;
        }
        Transition { from, to, cause }
    }
}

#[cfg(test)]
mod window_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The shortcut `clean` never hides a failure or a slow call that `totals` counts.
        #[test]
        fn a_clean_window_counts_no_failure_and_no_slow_call(
            events in prop::collection::vec((0u64..3_000, any::<bool>(), any::<bool>()), 0..60),
            window_ms in 30u64..60_000,
        ) {
            let epoch = Instant::now();
            let mut window = Window::new(Duration::from_millis(window_ms), epoch);
            let mut now = epoch;
            for (advance_ms, failure, slow) in events {
                now += Duration::from_millis(advance_ms);
                window.record(now, failure, slow);
                let (_, failures, slow_calls) = window.totals(now);
                prop_assert_eq!(window.clean(now), failures == 0 && slow_calls == 0);
                let later = now + Duration::from_millis(advance_ms * 7);
                let (_, failures, slow_calls) = window.totals(later);
                if window.clean(later) {
                    prop_assert_eq!((failures, slow_calls), (0, 0));
                }
            }
        }
    }
}
