//! One scope's spend in the current fixed window, in one atomic word.
//!
//! The word packs the window's number (low 16 bits of it) above 48 bits of spend in
//! nano-dollars (up to about $281,000 per window). A reservation is one compare-and-swap
//! of that word: the check against the cap and the add happen together or not at all,
//! which is what keeps the cap under any interleaving. A word whose window number is
//! stale counts as zero spend: the window rolled over.
//!
//! The code is written once in a macro and instantiated twice: over std's atomics for
//! the ledger, and over loom's in the `loom` feature's model checks, so the model checks
//! exactly this code and enabling the feature never changes the real ledger.

const SPEND_BITS: u32 = 48;
/// The largest spend a window can hold, in nano-dollars (about $281,474).
pub(crate) const MAX_SPEND: u64 = (1 << SPEND_BITS) - 1;
const TAG_MASK: u64 = 0xFFFF;

fn pack(window: u64, spend: u64) -> u64 {
    ((window & TAG_MASK) << SPEND_BITS) | spend
}

fn unpack(word: u64, window: u64) -> Option<u64> {
    (word >> SPEND_BITS == window & TAG_MASK).then_some(word & MAX_SPEND)
}

macro_rules! bucket {
    ($($atomic:tt)+) => {
        use $($atomic)+::{AtomicU64, Ordering};

        #[derive(Debug, Default)]
        pub(crate) struct Bucket {
            word: AtomicU64,
        }

        impl Bucket {
            pub(crate) fn new() -> Self {
                Self {
                    word: AtomicU64::new(0),
                }
            }

            /// Adds `amount` to the window's spend if the result stays within `cap`; returns the
            /// spend after, or the spend seen when refusing.
            pub(crate) fn try_reserve(&self, window: u64, amount: u64, cap: u64) -> Result<u64, u64> {
                let cap = cap.min(MAX_SPEND);
                let mut word = self.word.load(Ordering::Acquire);
                loop {
                    let spent = unpack(word, window).unwrap_or(0);
                    if amount > cap || spent > cap - amount {
                        return Err(spent);
                    }
                    let after = spent + amount;
                    match self.word.compare_exchange_weak(
                        word,
                        pack(window, after),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Ok(after),
                        Err(current) => word = current,
                    }
                }
            }

            /// Takes `amount` off the window's spend. A no-op once the window has rolled over:
            /// the old window's spend is gone with it.
            pub(crate) fn release(&self, window: u64, amount: u64) {
                self.adjust(window, |spent| spent.saturating_sub(amount));
            }

            /// Adds `amount` unconditionally (a call that cost more than its reservation: the
            /// money is spent either way).
            pub(crate) fn add(&self, window: u64, amount: u64) {
                self.adjust(window, |spent| spent.saturating_add(amount).min(MAX_SPEND));
            }

            fn adjust(&self, window: u64, f: impl Fn(u64) -> u64) {
                let mut word = self.word.load(Ordering::Acquire);
                loop {
                    let Some(spent) = unpack(word, window) else {
                        return;
                    };
                    match self.word.compare_exchange_weak(
                        word,
                        pack(window, f(spent)),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return,
                        Err(current) => word = current,
                    }
                }
            }

            /// The window's spend now.
            pub(crate) fn spent(&self, window: u64) -> u64 {
                unpack(self.word.load(Ordering::Acquire), window).unwrap_or(0)
            }
        }
    };
}

bucket!(std::sync::atomic);

#[cfg(all(test, feature = "loom"))]
mod loom_model {
    #![allow(
        dead_code,
        reason = "the model checks exercise reserve and release only"
    )]

    use super::{MAX_SPEND, pack, unpack};
    use loom::sync::Arc;
    use loom::thread;

    bucket!(loom::sync::atomic);

    /// Two callers race for a cap that fits only one of them: exactly one wins, in
    /// every interleaving loom can produce, and the spend never passes the cap.
    #[test]
    fn racing_reservations_never_pass_the_cap() {
        loom::model(|| {
            let bucket = Arc::new(Bucket::new());
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let b = bucket.clone();
                    thread::spawn(move || b.try_reserve(0, 60, 100).is_ok())
                })
                .collect();
            let wins = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|w| *w)
                .count();
            assert_eq!(wins, 1, "exactly one of two 60s fits a cap of 100");
            assert_eq!(bucket.spent(0), 60);
        });
    }

    /// A settlement releasing part of one hold races with a new reservation: the new
    /// one fits exactly when it sees the release, and the books balance either way.
    #[test]
    fn release_racing_a_reservation_keeps_the_books() {
        loom::model(|| {
            let bucket = Arc::new(Bucket::new());
            assert_eq!(bucket.try_reserve(0, 80, 100), Ok(80));
            let settle = {
                let b = bucket.clone();
                thread::spawn(move || b.release(0, 50)) // commit 30 of 80
            };
            let reserve = {
                let b = bucket.clone();
                thread::spawn(move || b.try_reserve(0, 40, 100))
            };
            settle.join().unwrap();
            let got = reserve.join().unwrap();
            match got {
                Ok(after) => {
                    assert_eq!(after, 70, "fits only after the release");
                    assert_eq!(bucket.spent(0), 70);
                }
                Err(seen) => {
                    assert_eq!(seen, 80, "refused only before the release");
                    assert_eq!(bucket.spent(0), 30);
                }
            }
            assert!(bucket.spent(0) <= 100 && bucket.spent(0) <= MAX_SPEND);
            let _ = (pack(0, 0), unpack(0, 0));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_refuses_past_the_cap_and_reports_the_spend() {
        let b = Bucket::new();
        assert_eq!(b.try_reserve(7, 60, 100), Ok(60));
        assert_eq!(b.try_reserve(7, 41, 100), Err(60));
        assert_eq!(b.try_reserve(7, 40, 100), Ok(100));
        assert_eq!(b.try_reserve(7, 1, 100), Err(100));
    }

    #[test]
    fn a_new_window_starts_empty_and_old_releases_are_ignored() {
        let b = Bucket::new();
        assert_eq!(b.try_reserve(1, 100, 100), Ok(100));
        assert_eq!(
            b.try_reserve(2, 100, 100),
            Ok(100),
            "window 2 starts at zero"
        );
        b.release(1, 100);
        assert_eq!(
            b.spent(2),
            100,
            "a release for window 1 does not touch window 2"
        );
        b.release(2, 30);
        assert_eq!(b.spent(2), 70);
        b.add(2, 50);
        assert_eq!(b.spent(2), 120);
    }
}
