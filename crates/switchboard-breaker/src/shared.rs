//! State shared by every clone of one breaker.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use switchboard_core::{BreakerState, Error, Forced, ProviderHealth, ProviderId};
use tokio::time::Instant;

use crate::machine::{Admission, Machine, Outcome, State, Ticket, Transition};
use crate::{BreakerConfig, Mode};

/// Decides whether an error counts against the provider.
pub type Classifier = Arc<dyn Fn(&Error) -> bool + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) provider: ProviderId,
    pub(crate) health: ProviderHealth,
    pub(crate) mode: Mode,
    slow_threshold: Option<Duration>,
    classifier: Classifier,
    locked: Mutex<Locked>,
}

struct Locked {
    machine: Machine,
    resets_applied: u64,
}

impl Shared {
    pub(crate) fn new(
        provider: ProviderId,
        config: BreakerConfig,
        health: ProviderHealth,
        classifier: Classifier,
    ) -> Self {
        // Jitter differs per provider but replays for a name.
        let seed = provider
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        health.set_state(BreakerState::Closed);
        Self {
            provider,
            mode: config.mode,
            slow_threshold: config.slow_calls.map(|s| s.threshold),
            classifier,
            locked: Mutex::new(Locked {
                resets_applied: health.resets(),
                machine: Machine::new(config, Instant::now(), seed),
            }),
            health,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admission, with operator overrides and resets from the board applied first.
    pub(crate) fn acquire(&self, now: Instant) -> Admission {
        let mut transitions = [None, None];
        let admission = {
            let mut locked = self.lock();
            let resets = self.health.resets();
            if resets != locked.resets_applied {
                locked.resets_applied = resets;
                transitions[0] = locked.machine.reset();
            }
            match self.health.forced() {
                Some(Forced::Open) => Admission::Reject { until: None },
                Some(Forced::Closed) => Admission::Admit(Ticket::Untracked),
                None => {
                    let (admission, t) = locked.machine.acquire(now);
                    transitions[1] = t;
                    admission
                }
            }
        };
        for t in transitions.into_iter().flatten() {
            self.publish(t);
        }
        admission
    }

    /// Records how an admitted call ended, on the machine and on the board.
    pub(crate) fn finish(&self, ticket: Ticket, result: CallResult<'_>) {
        let now = Instant::now();
        let outcome = match result {
            CallResult::Success { first_token } => {
                self.health.record_success(first_token);
                let slow = self.slow_threshold.is_some_and(|t| first_token > t);
                Outcome::Success { slow }
            }
            CallResult::Failed(error) if (self.classifier)(error) => {
                self.health
                    .record_failure(matches!(error, Error::Timeout { .. }));
                Outcome::Failure
            }
            CallResult::Failed(_) | CallResult::Cancelled => Outcome::Ignored,
        };
        let transition = self.lock().machine.finish(ticket, outcome, now);
        match transition {
            Some(t) => self.publish(t),
            // A probe slot may have been returned: let a waiting caller retry.
            None if matches!(ticket, Ticket::Probe(_)) => self.health.wake_watchers(),
            None => {}
        }
    }

    /// An active health probe answered while open.
    pub(crate) fn active_probe_succeeded(&self) {
        let t = self.lock().machine.active_probe_succeeded();
        if let Some(t) = t {
            self.publish(t);
        }
    }

    /// Whether the machine itself is open (not an override): active probes run then.
    pub(crate) fn is_open(&self) -> bool {
        self.health.forced().is_none() && matches!(self.lock().machine.state(), State::Open { .. })
    }

    fn publish(&self, t: Transition) {
        let name = |s: State| match s {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        match t.to {
            State::Open { until } => {
                self.health.set_open(until);
                tracing::warn!(
                    provider = %self.provider,
                    from = name(t.from).as_str(),
                    to = "open",
                    cause = t.cause.as_str(),
                    open_for_ms = until.saturating_duration_since(Instant::now()).as_millis() as u64,
                    "circuit breaker opened"
                );
            }
            to => {
                self.health.set_state(name(to));
                tracing::info!(
                    provider = %self.provider,
                    from = name(t.from).as_str(),
                    to = name(to).as_str(),
                    cause = t.cause.as_str(),
                    "circuit breaker transition"
                );
            }
        }
        self.health.wake_watchers();
    }

    pub(crate) fn circuit_open(&self, until: Option<Instant>) -> Error {
        Error::CircuitOpen {
            provider: self.provider.clone(),
            retry_after: until.map(|u| u.saturating_duration_since(Instant::now())),
        }
    }
}

/// How a call ended, before classification.
pub(crate) enum CallResult<'a> {
    Success { first_token: Duration },
    Failed(&'a Error),
    Cancelled,
}
