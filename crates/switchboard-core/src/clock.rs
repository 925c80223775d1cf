//! [`CallClock`]: one clock reading for a synchronous chain of `call`s.

use std::cell::Cell;

use tokio::time::Instant;

thread_local! {
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The instant a chain of `Service::call`s runs at, read once for the whole chain.
///
/// A request passes through a dozen layers in one synchronous descent of `call`s, and
/// several of them need "now" (a deadline, a call's start, a budget window). Reading the
/// clock is not free (tens of nanoseconds in a virtual machine), and all those readings
/// would agree to the nanosecond anyway. The first layer to [`enter`](CallClock::enter)
/// reads the clock and lends the reading to every `enter` nested inside it on the same
/// thread, until it is dropped at the end of its `call`.
///
/// Nothing awaits inside a `call`, so the lent reading is never stale: a layer that calls
/// its inner service later (after awaiting something) does so outside the first layer's
/// scope and reads the clock afresh. Under tokio's paused clock the reading is the virtual
/// time, like [`Instant::now`].
///
/// ```
/// use switchboard_core::CallClock;
///
/// let outer = CallClock::enter();
/// let inner = CallClock::enter(); // nested: the same reading
/// assert_eq!(inner.now(), outer.now());
/// ```
#[derive(Debug)]
#[must_use = "the reading is lent only while the clock is held"]
pub struct CallClock {
    now: Instant,
    owner: bool,
}

impl CallClock {
    /// The enclosing chain's reading, or a fresh one lent to the chain from here on.
    pub fn enter() -> Self {
        match NOW.get() {
            Some(now) => Self { now, owner: false },
            None => {
                let now = Instant::now();
                NOW.set(Some(now));
                Self { now, owner: true }
            }
        }
    }

    /// The reading.
    pub fn now(&self) -> Instant {
        self.now
    }
}

impl Drop for CallClock {
    fn drop(&mut self) {
        if self.owner {
            NOW.set(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reading_is_lent_to_nested_scopes_only() {
        let first = {
            let outer = CallClock::enter();
            let inner = CallClock::enter();
            assert_eq!(inner.now(), outer.now());
            drop(inner);
            // The inner scope did not own the reading: still lent.
            assert_eq!(CallClock::enter().now(), outer.now());
            outer.now()
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        // The owner is gone: the next scope reads the clock again.
        let later = CallClock::enter();
        assert_eq!(later.now() - first, Duration::from_millis(5));
    }
}
