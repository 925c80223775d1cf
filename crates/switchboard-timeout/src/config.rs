//! The deadlines of one tier and of every tier.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_core::Tier;

/// The deadlines that apply to one request. `None` disables a phase.
///
/// In config files the durations are written in milliseconds:
/// `{"first_token_ms": 2000, "idle_ms": 10000, "total_ms": 60000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Per attempt: from the call to the first content event.
    #[serde(default, with = "opt_ms", rename = "first_token_ms")]
    pub first_token: Option<Duration>,
    /// The longest gap between two stream events after the first.
    #[serde(default, with = "opt_ms", rename = "idle_ms")]
    pub idle: Option<Duration>,
    /// The whole call, every attempt and the whole stream included.
    #[serde(default, with = "opt_ms", rename = "total_ms")]
    pub total: Option<Duration>,
}

impl Timeouts {
    /// No deadlines.
    pub const NONE: Timeouts = Timeouts {
        first_token: None,
        idle: None,
        total: None,
    };

    /// All three deadlines.
    pub const fn new(first_token: Duration, idle: Duration, total: Duration) -> Self {
        Self {
            first_token: Some(first_token),
            idle: Some(idle),
            total: Some(total),
        }
    }

    /// Sets the first-token deadline.
    pub const fn first_token(mut self, d: Duration) -> Self {
        self.first_token = Some(d);
        self
    }

    /// Sets the idle deadline.
    pub const fn idle(mut self, d: Duration) -> Self {
        self.idle = Some(d);
        self
    }

    /// Sets the total deadline.
    pub const fn total(mut self, d: Duration) -> Self {
        self.total = Some(d);
        self
    }
}

/// Deadlines per traffic [`Tier`], plus the tier assumed for requests that carry none.
///
/// Defaults (first token / idle / total): L0 8 s / 20 s / 120 s, L1 15 s / 30 s / 180 s,
/// L2 30 s / 60 s / 600 s; untiered requests are treated as L1. The most valuable tier
/// gives up on a silent provider soonest, so that a fallback still has time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutTiers {
    /// For `L0`.
    #[serde(rename = "L0", alias = "l0", default = "l0")]
    pub l0: Timeouts,
    /// For `L1`.
    #[serde(rename = "L1", alias = "l1", default = "l1")]
    pub l1: Timeouts,
    /// For `L2`.
    #[serde(rename = "L2", alias = "l2", default = "l2")]
    pub l2: Timeouts,
    /// The tier of requests without a `Tier` extension. Default `L1`.
    #[serde(default = "default_tier")]
    pub default_tier: Tier,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn l0() -> Timeouts {
    TimeoutTiers::DEFAULT.l0
}
fn l1() -> Timeouts {
    TimeoutTiers::DEFAULT.l1
}
fn l2() -> Timeouts {
    TimeoutTiers::DEFAULT.l2
}
fn default_tier() -> Tier {
    Tier::L1
}

impl TimeoutTiers {
    /// The documented defaults.
    pub const DEFAULT: TimeoutTiers = TimeoutTiers {
        l0: Timeouts::new(secs(8), secs(20), secs(120)),
        l1: Timeouts::new(secs(15), secs(30), secs(180)),
        l2: Timeouts::new(secs(30), secs(60), secs(600)),
        default_tier: Tier::L1,
    };

    /// The same deadlines for every tier.
    pub const fn uniform(timeouts: Timeouts) -> Self {
        Self {
            l0: timeouts,
            l1: timeouts,
            l2: timeouts,
            default_tier: Tier::L1,
        }
    }

    /// Sets one tier's deadlines.
    pub const fn tier(mut self, tier: Tier, timeouts: Timeouts) -> Self {
        match tier {
            Tier::L0 => self.l0 = timeouts,
            Tier::L1 => self.l1 = timeouts,
            Tier::L2 => self.l2 = timeouts,
        }
        self
    }

    /// The deadlines of a tier.
    pub const fn for_tier(&self, tier: Tier) -> Timeouts {
        match tier {
            Tier::L0 => self.l0,
            Tier::L1 => self.l1,
            Tier::L2 => self.l2,
        }
    }
}

impl Default for TimeoutTiers {
    fn default() -> Self {
        Self::DEFAULT
    }
}

mod opt_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Which phases a [`TimeoutLayer`](crate::TimeoutLayer) enforces where it sits.
///
/// Over a single provider, [`Both`](Scope::Both). In the standard stack the call-level
/// layer sits outside hedging ([`Call`](Scope::Call): total and idle, and it publishes the
/// `Deadline`), and each provider's stack in the dispatcher has an
/// [`Attempt`](Scope::Attempt) layer (first token, capped by that `Deadline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Total and idle deadlines; sets the `Deadline` extension.
    Call,
    /// The first-token deadline of one attempt, never past an outer `Deadline`.
    Attempt,
    /// All three phases.
    #[default]
    Both,
}

impl Scope {
    pub(crate) const fn call(self) -> bool {
        matches!(self, Scope::Call | Scope::Both)
    }

    pub(crate) const fn attempt(self) -> bool {
        matches!(self, Scope::Attempt | Scope::Both)
    }
}
