//! The hedge budget: a lock-free token bucket shared by every clone of a hedge layer.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::BudgetConfig;

const MILLI: i64 = 1000;

/// Tokens for extra attempts, in thousandths. See [`BudgetConfig`].
#[derive(Debug)]
pub struct HedgeBudget {
    balance: AtomicI64,
    deposit: i64,
    cap: i64,
}

impl HedgeBudget {
    /// A budget at its reserve.
    pub fn new(config: BudgetConfig) -> Self {
        let ratio = if config.ratio.is_finite() {
            config.ratio.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let cap = i64::from(config.cap) * MILLI;
        Self {
            balance: AtomicI64::new((i64::from(config.reserve) * MILLI).min(cap)),
            deposit: (ratio * MILLI as f64).round() as i64,
            cap,
        }
    }

    /// A request arrived: deposit its share.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((b + self.deposit).min(self.cap))
            });
    }

    /// Takes one token for an extra attempt; false when there is none.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b >= MILLI).then_some(b - MILLI)
            })
            .is_ok()
    }

    /// Gives back a token whose attempt was never sent (its breaker refused it).
    pub fn refund(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((b + MILLI).min(self.cap))
            });
    }

    /// Whole tokens available now.
    pub fn available(&self) -> u64 {
        u64::try_from(self.balance.load(Ordering::Acquire) / MILLI).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_percent_allows_one_extra_per_ten_requests() {
        let b = HedgeBudget::new(BudgetConfig {
            ratio: 0.1,
            reserve: 0,
            cap: 100,
        });
        assert!(!b.withdraw(), "empty at start without a reserve");
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(!b.withdraw());
        b.refund();
        assert_eq!(b.available(), 1);
    }

    #[test]
    fn the_cap_bounds_saved_tokens() {
        let b = HedgeBudget::new(BudgetConfig {
            ratio: 1.0,
            reserve: 500,
            cap: 3,
        });
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(b.available(), 3);
    }

    proptest::proptest! {
        #[test]
        fn extra_attempts_never_exceed_ratio_times_requests_plus_reserve(
            ratio in 0.0f64..1.0,
            reserve in 0u32..20,
            cap in 0u32..200,
            ops in proptest::collection::vec(0u8..3, 0..2000),
        ) {
            let b = HedgeBudget::new(BudgetConfig { ratio, reserve, cap });
            let (mut requests, mut extra) = (0u64, 0i64);
            for op in ops {
                match op {
                    0 => { b.deposit(); requests += 1; }
                    1 => if b.withdraw() { extra += 1 },
                    _ => if extra > 0 { b.refund(); extra -= 1 },
                }
                let bound = f64::from(reserve.min(cap)) + ratio * requests as f64 + 1e-6
                    + requests as f64 * 0.0005; // deposits are rounded to thousandths
                proptest::prop_assert!((extra as f64) <= bound, "{} extra for {} requests", extra, requests);
                proptest::prop_assert!(b.available() <= u64::from(cap));
            }
        }
    }
}
