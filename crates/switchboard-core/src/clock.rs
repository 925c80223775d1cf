//! [`CallClock`]: one clock reading for a synchronous chain of `call`s.

use std::cell::Cell;

use tokio::time::Instant;

/// What the current thread lends.
#[derive(Clone, Copy)]
enum Lent {
    /// No scope: each `enter` outside one reads the clock and lends it.
    Nothing,
    /// A [`ClockScope`] nobody has asked in yet.
    Unread,
    At(Instant),
}

thread_local! {
    static NOW: Cell<Lent> = const { Cell::new(Lent::Nothing) };
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
/// The same holds for one `poll` of a stack of futures or streams: the layers that time an
/// event (the first token, the end of an answer) each ask in the same synchronous pass. A
/// layer's `poll` opens a [`ClockScope`] around its inner poll; the first layer inside that
/// asks reads the clock, right when the event came back, and the rest share the reading.
/// A pass in which nobody asks reads nothing.
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
            Lent::At(now) => Self { now, owner: false },
            lent => {
                let now = Instant::now();
                NOW.set(Lent::At(now));
                // Inside a scope the scope owns the reading and ends the loan.
                Self {
                    now,
                    owner: matches!(lent, Lent::Nothing),
                }
            }
        }
    }

    /// Opens a scope in which the first [`enter`](Self::enter) reads the clock and every
    /// later one shares that reading, until the scope is dropped. Nested in another scope
    /// or a chain's reading, it changes nothing.
    pub fn scope() -> ClockScope {
        let owner = matches!(NOW.get(), Lent::Nothing);
        if owner {
            NOW.set(Lent::Unread);
        }
        ClockScope { owner }
    }

    /// The reading.
    pub fn now(&self) -> Instant {
        self.now
    }
}

impl Drop for CallClock {
    fn drop(&mut self) {
        if self.owner {
            NOW.set(Lent::Nothing);
        }
    }
}

/// A scope of [`CallClock`] readings that reads the clock only if something in it asks:
/// see [`CallClock::scope`].
#[derive(Debug)]
#[must_use = "readings are shared only while the scope is held"]
pub struct ClockScope {
    owner: bool,
}

impl Drop for ClockScope {
    fn drop(&mut self) {
        if self.owner {
            NOW.set(Lent::Nothing);
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

    #[tokio::test(start_paused = true)]
    async fn a_scope_reads_at_the_first_ask_and_shares_that_reading() {
        let start = Instant::now();
        {
            let _scope = CallClock::scope();
            tokio::time::advance(Duration::from_millis(3)).await;
            // Nobody asked before this: the reading is taken now, not at the scope's start.
            let first = CallClock::enter().now();
            assert_eq!(first - start, Duration::from_millis(3));
            tokio::time::advance(Duration::from_millis(3)).await;
            assert_eq!(CallClock::enter().now(), first);
            // A nested scope changes nothing.
            let inner = CallClock::scope();
            assert_eq!(CallClock::enter().now(), first);
            drop(inner);
            assert_eq!(CallClock::enter().now(), first);
        }
        // The scope is gone: readings are fresh again.
        assert_eq!(CallClock::enter().now() - start, Duration::from_millis(6));
        // A scope inside a chain's reading shares it.
        let chain = CallClock::enter();
        tokio::time::advance(Duration::from_millis(1)).await;
        {
            let _scope = CallClock::scope();
            assert_eq!(CallClock::enter().now(), chain.now());
        }
        assert_eq!(CallClock::enter().now(), chain.now());
    }
}
