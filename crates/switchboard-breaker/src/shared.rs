//! State shared by every clone of one breaker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use switchboard_core::{BreakerState, CallClock, Error, Forced, ProviderHealth, ProviderId};
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
    /// Whether the machine is closed, written under the lock after every change: a closed
    /// breaker admits without taking the lock.
    closed: AtomicBool,
    /// The board's reset count last applied, written under the lock.
    resets_applied: AtomicU64,
}

struct Locked {
    machine: Machine,
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
                machine: Machine::new(config, Instant::now(), seed),
            }),
            closed: AtomicBool::new(true),
            resets_applied: AtomicU64::new(health.resets()),
            health,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Mirrors the machine's state for [`acquire`](Self::acquire)'s lock-free path.
    fn sync(&self, locked: &Locked) {
        self.closed
            .store(locked.machine.state() == State::Closed, Ordering::Release);
    }

    /// Admission, with operator overrides and resets from the board applied first.
    pub(crate) fn acquire(&self, now: Instant) -> Admission {
        // Closed, no override, no reset asked for: the machine would admit a normal call
        // and change nothing, so it is not asked. A change racing with this check is
        // ordered after it, as if this call had taken the lock first.
        if self.closed.load(Ordering::Acquire)
            && self.health.forced().is_none()
            && self.health.resets() == self.resets_applied.load(Ordering::Acquire)
        {
            return Admission::Admit(Ticket::Normal);
        }
        let mut transitions = [None, None];
        let admission = {
            let mut locked = self.lock();
            let resets = self.health.resets();
            if resets != self.resets_applied.load(Ordering::Acquire) {
                self.resets_applied.store(resets, Ordering::Release);
                transitions[0] = locked.machine.reset();
            }
            let admission = match self.health.forced() {
                Some(Forced::Open) => Admission::Reject { until: None },
                Some(Forced::Closed) => Admission::Admit(Ticket::Untracked),
                None => {
                    let (admission, t) = locked.machine.acquire(now);
                    transitions[1] = t;
                    admission
                }
            };
            self.sync(&locked);
            admission
        };
        for t in transitions.into_iter().flatten() {
            self.publish(t);
        }
        admission
    }

    /// Records how an admitted call ended, on the machine and on the board.
    pub(crate) fn finish(&self, ticket: Ticket, result: CallResult<'_>) {
        let now = CallClock::enter().now();
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
        let transition = {
            let mut locked = self.lock();
            let transition = locked.machine.finish(ticket, outcome, now);
            if transition.is_some() {
                self.sync(&locked);
            }
            transition
        };
        match transition {
            Some(t) => self.publish(t),
            // A probe slot may have been returned: let a waiting caller retry.
            None if matches!(ticket, Ticket::Probe(_)) => self.health.wake_watchers(),
            None => {}
        }
    }

    /// An active health probe answered while open.
    pub(crate) fn active_probe_succeeded(&self) {
        let t = {
            let mut locked = self.lock();
            let t = locked.machine.active_probe_succeeded();
            self.sync(&locked);
            t
        };
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
