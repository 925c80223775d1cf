//! The [`Deadline`] extension: how much time the whole call has left.

use std::time::Duration;

use tokio::time::Instant;

/// Request extension: the instant by which the whole call (every attempt included) must
/// have produced its answer. Set by the timeout layer from the caller's total deadline;
/// inner layers read it to avoid starting work that cannot finish (hedging does not start
/// an attempt once it has passed).
///
/// Times are `tokio::time` instants, so paused-time tests see virtual time.
///
/// ```
/// use std::time::Duration;
/// use switchboard_core::Deadline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let deadline = Deadline::after(Duration::from_secs(30));
/// tokio::time::sleep(Duration::from_secs(10)).await;
/// assert_eq!(deadline.remaining(), Duration::from_secs(20));
/// assert!(!deadline.is_expired());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline at an instant.
    pub const fn at(at: Instant) -> Self {
        Self { at }
    }

    /// A deadline `timeout` from now. Saturates far in the future instead of overflowing.
    pub fn after(timeout: Duration) -> Self {
        Self::after_from(Instant::now(), timeout)
    }

    /// A deadline `timeout` after `now` (a clock reading the caller already has).
    /// Saturates far in the future instead of overflowing.
    pub fn after_from(now: Instant, timeout: Duration) -> Self {
        Self {
            at: now
                .checked_add(timeout)
                .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365)),
        }
    }

    /// The instant.
    pub const fn instant(&self) -> Instant {
        self.at
    }

    /// Time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The earlier of two deadlines: an inner layer never extends an outer deadline.
    pub fn min(self, other: Deadline) -> Deadline {
        if other.at < self.at { other } else { self }
    }
}
