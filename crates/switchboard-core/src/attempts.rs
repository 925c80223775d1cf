//! The [`Attempts`] response extension: every attempt a call made, and why the winner won.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ModelName, ProviderId};

/// Why an attempt was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// The first attempt of the call.
    Primary,
    /// Started because the previous attempts had no first token after the soft timeout;
    /// they kept running.
    Hedge,
    /// Started because the previous attempt failed with a retryable error.
    Failover,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Still running when the call ended (only seen while a call is in progress).
    Pending,
    /// Its answer was returned to the caller.
    Won,
    /// It failed; `reason` is the error's [`reason`](crate::Error::reason) code.
    Failed {
        /// The reason code (`openai_first_token_timeout`).
        reason: String,
    },
    /// Dropped because another attempt won or the call ended (which cancels its upstream
    /// request).
    Cancelled,
    /// Not sent; `reason` says why (`circuit_open`, `hedge_budget_exhausted`,
    /// `deadline_passed`).
    Skipped {
        /// The reason code.
        reason: String,
    },
}

/// One attempt of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The provider it went (or would have gone) to.
    pub provider: ProviderId,
    /// The concrete model asked for.
    pub model: ModelName,
    /// Why it was started.
    pub kind: AttemptKind,
    /// When it started, measured from the start of the call.
    pub started_after: Duration,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

/// Why the answer came from the provider it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum WinReason {
    /// The primary answered first; nothing unusual.
    Primary,
    /// A hedge started after the soft timeout beat the slower attempts.
    HedgeFaster,
    /// Earlier providers failed (`reason` is the last failure's reason code) or were
    /// skipped (`circuit_open`).
    Failover {
        /// The reason code of the failure or skip that moved the call on.
        reason: String,
    },
}

impl WinReason {
    /// The reason code used in degraded blocks and metrics: `primary`, `hedge_faster`,
    /// `fallback_after_<reason>`.
    pub fn code(&self) -> String {
        match self {
            WinReason::Primary => "primary".to_owned(),
            WinReason::HedgeFaster => "hedge_faster".to_owned(),
            WinReason::Failover { reason } => format!("fallback_after_{reason}"),
        }
    }
}

/// Response extension set by the hedge layer: every attempt in the order started, the
/// winner, and why. Feeds `fallback_trigger_count` and the degraded block.
///
/// ```
/// use std::time::Duration;
/// use switchboard_core::{Attempt, AttemptKind, AttemptOutcome, Attempts, ProviderId, WinReason};
///
/// let mut attempts = Attempts::default();
/// attempts.push(Attempt {
///     provider: ProviderId::OPENAI,
///     model: "gpt-4o-mini".into(),
///     kind: AttemptKind::Primary,
///     started_after: Duration::ZERO,
///     outcome: AttemptOutcome::Cancelled,
/// });
/// attempts.push(Attempt {
///     provider: ProviderId::ANTHROPIC,
///     model: "claude-haiku-4-5".into(),
///     kind: AttemptKind::Hedge,
///     started_after: Duration::from_millis(1200),
///     outcome: AttemptOutcome::Won,
/// });
/// attempts.set_winner(1, WinReason::HedgeFaster);
/// assert_eq!(attempts.winner().unwrap().provider, ProviderId::ANTHROPIC);
/// assert_eq!(attempts.extra_calls(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    attempts: Vec<Attempt>,
    winner: Option<usize>,
    why: Option<WinReason>,
}

impl Attempts {
    /// Records an attempt; returns its index.
    pub fn push(&mut self, attempt: Attempt) -> usize {
        self.attempts.push(attempt);
        self.attempts.len() - 1
    }

    /// Sets an attempt's outcome; out-of-range indices are ignored.
    pub fn set_outcome(&mut self, index: usize, outcome: AttemptOutcome) {
        if let Some(a) = self.attempts.get_mut(index) {
            a.outcome = outcome;
        }
    }

    /// Marks the winner and why it won.
    pub fn set_winner(&mut self, index: usize, why: WinReason) {
        if index < self.attempts.len() {
            self.attempts[index].outcome = AttemptOutcome::Won;
            self.winner = Some(index);
            self.why = Some(why);
        }
    }

    /// All attempts, in the order they were started or skipped.
    pub fn iter(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts.iter()
    }

    /// How many attempts were recorded (skipped ones included).
    pub fn len(&self) -> usize {
        self.attempts.len()
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.attempts.is_empty()
    }

    /// The attempt at `index`.
    pub fn get(&self, index: usize) -> Option<&Attempt> {
        self.attempts.get(index)
    }

    /// The winning attempt, if the call succeeded.
    pub fn winner(&self) -> Option<&Attempt> {
        self.winner.and_then(|i| self.attempts.get(i))
    }

    /// Why the winner won.
    pub fn why(&self) -> Option<&WinReason> {
        self.why.as_ref()
    }

    /// Upstream calls beyond the first: attempts actually sent, minus one.
    pub fn extra_calls(&self) -> usize {
        self.sent().saturating_sub(1)
    }

    /// Attempts actually sent upstream (not skipped).
    pub fn sent(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| !matches!(a.outcome, AttemptOutcome::Skipped { .. }))
            .count()
    }
}
