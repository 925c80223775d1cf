//! [`MemoryLedger`]: a lock-free in-process ledger.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_core::{CallClock, Cost, Tier};
use tokio::time::Instant;

use super::bucket::{Bucket, MAX_SPEND};
use super::{Account, Caps, Hold, Ledger, Refusal, Scope, ScopeSpend, Spends, window_of};

/// A lock-free in-process ledger with **fixed** windows.
///
/// Windows are `window` long (default one minute), counted from the ledger's creation in
/// tokio time. Each scope's spend in the current window is one atomic word, reserved by
/// compare-and-swap (check and add in one step), so no interleaving of callers can cross
/// a cap. A fixed window rather than a sliding one: one word per scope, an exact
/// Retry-After (the window's end), and a cap that bounds what is *admitted* in each
/// window. A call admitted near a window's end may still be streaming in the next one;
/// its spend stays with the window that admitted it.
///
/// Tenants live in a fixed table of `tenant_slots` lock-free slots (default 4,096);
/// tenants beyond that share one overflow slot, each still checked against its own cap,
/// which is conservative (never over a cap, possibly refusing early).
#[derive(Debug, Clone)]
pub struct MemoryLedger {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    caps: Caps,
    window: Duration,
    origin: Instant,
    global: Bucket,
    tiers: [Bucket; 3],
    tenant_tags: Box<[AtomicU64]>,
    tenants: Box<[Bucket]>,
    overflow: Bucket,
    outstanding: AtomicU64,
    committed: AtomicU64,
    overrun: AtomicU64,
    holds: AtomicU64,
}

/// The ledger's running totals (all windows), for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Books {
    /// Held and not yet settled.
    pub outstanding: Cost,
    /// Committed real cost.
    pub committed: Cost,
    /// Cost committed beyond the holds (calls that cost more than their bound).
    pub overrun: Cost,
    /// Holds not yet settled.
    pub open_holds: u64,
}

/// Builds a [`MemoryLedger`].
#[derive(Debug, Clone)]
pub struct MemoryLedgerBuilder {
    caps: Caps,
    window: Duration,
    tenant_slots: usize,
}

impl MemoryLedgerBuilder {
    /// The window length. Default: one minute.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window.max(Duration::from_millis(1));
        self
    }

    /// Lock-free tenant slots before tenants share the overflow slot. Default: 4,096.
    pub fn tenant_slots(mut self, slots: usize) -> Self {
        self.tenant_slots = slots.max(1);
        self
    }

    /// The ledger; its first window starts now.
    pub fn build(self) -> MemoryLedger {
        MemoryLedger {
            inner: Arc::new(Inner {
                caps: self.caps,
                window: self.window,
                origin: Instant::now(),
                global: Bucket::new(),
                tiers: [Bucket::new(), Bucket::new(), Bucket::new()],
                tenant_tags: (0..self.tenant_slots).map(|_| AtomicU64::new(0)).collect(),
                tenants: (0..self.tenant_slots).map(|_| Bucket::new()).collect(),
                overflow: Bucket::new(),
                outstanding: AtomicU64::new(0),
                committed: AtomicU64::new(0),
                overrun: AtomicU64::new(0),
                holds: AtomicU64::new(0),
            }),
        }
    }
}

/// A tenant's slot tag: 64-bit FNV-1a of its name, never 0 (0 marks a free slot).
fn tenant_tag(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash | 1
}

/// Slots probed for a tenant before it falls back to the overflow slot.
const PROBES: usize = 16;

impl MemoryLedger {
    /// A ledger with one-minute windows. Caps above $281,474 per window are held at that.
    pub fn new(caps: Caps) -> Self {
        Self::builder(caps).build()
    }

    /// A builder.
    pub fn builder(caps: Caps) -> MemoryLedgerBuilder {
        MemoryLedgerBuilder {
            caps,
            window: Duration::from_secs(60),
            tenant_slots: 4_096,
        }
    }

    /// The caps.
    pub fn caps(&self) -> &Caps {
        &self.inner.caps
    }

    /// The running totals.
    pub fn books(&self) -> Books {
        let i = &self.inner;
        Books {
            outstanding: Cost::from_nanos(i.outstanding.load(Ordering::Acquire)),
            committed: Cost::from_nanos(i.committed.load(Ordering::Acquire)),
            overrun: Cost::from_nanos(i.overrun.load(Ordering::Acquire)),
            open_holds: i.holds.load(Ordering::Acquire),
        }
    }

    /// A scope's reserved plus committed spend in the current window.
    pub fn spent(&self, scope: &Scope) -> Cost {
        let (window, _) = self.now();
        Cost::from_nanos(self.bucket(scope).spent(window))
    }

    /// The current window's number and the time left in it.
    pub fn now(&self) -> (u64, Duration) {
        // Within a `call` (a reservation), the chain's reading.
        let now = CallClock::enter().now();
        window_of(
            now.saturating_duration_since(self.inner.origin),
            self.inner.window,
        )
    }

    /// Reserves synchronously: what [`Ledger::reserve`] resolves to at once.
    pub fn try_reserve(&self, account: &Account, amount: Cost) -> Result<Hold, Refusal> {
        let (window, resets_in) = self.now();
        let mut taken = Spends::new();
        for (scope, cap) in self.inner.caps.each_scope(account) {
            match self
                .bucket(&scope)
                .try_reserve(window, amount.as_nanos(), cap.as_nanos())
            {
                Ok(after) => taken.push(ScopeSpend {
                    scope,
                    spent: Cost::from_nanos(after),
                    cap,
                }),
                Err(spent) => {
                    // Undo the scopes already taken: each release only lowers a spend,
                    // so the rollback can never push another caller over a cap.
                    for done in &taken {
                        self.bucket(&done.scope).release(window, amount.as_nanos());
                    }
                    let fits_alone = amount.as_nanos() <= cap.as_nanos().min(MAX_SPEND);
                    return Err(Refusal {
                        scope,
                        spent: Cost::from_nanos(spent),
                        cap,
                        retry_after: fits_alone.then_some(resets_in),
                        unavailable: false,
                    });
                }
            }
        }
        self.inner
            .outstanding
            .fetch_add(amount.as_nanos(), Ordering::AcqRel);
        self.inner.holds.fetch_add(1, Ordering::AcqRel);
        Ok(Hold {
            window,
            amount,
            scopes: taken,
            resets_in,
            lease: None,
        })
    }

    fn bucket(&self, scope: &Scope) -> &Bucket {
        match scope {
            Scope::Global => &self.inner.global,
            Scope::Tier(t) => &self.inner.tiers[t.index()],
            Scope::Tenant(tenant) => {
                let tag = tenant_tag(tenant.as_str());
                let slots = self.inner.tenants.len();
                for probe in 0..PROBES.min(slots) {
                    let i = (tag as usize).wrapping_add(probe) % slots;
                    let slot = &self.inner.tenant_tags[i];
                    // Read before writing: a claimed slot is never written again, so the
                    // common case shares the cache line instead of bouncing it.
                    let mut current = slot.load(Ordering::Acquire);
                    if current == 0 {
                        current = match slot.compare_exchange(
                            0,
                            tag,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => tag,
                            Err(existing) => existing,
                        };
                    }
                    if current == tag {
                        return &self.inner.tenants[i];
                    }
                }
                &self.inner.overflow
            }
        }
    }
}

impl Ledger for MemoryLedger {
    type Reserve = std::future::Ready<Result<Hold, Refusal>>;

    fn reserve(&self, account: &Account, amount: Cost) -> Self::Reserve {
        std::future::ready(self.try_reserve(account, amount))
    }

    fn reserve_now(&self, account: &Account, amount: Cost) -> Option<Result<Hold, Refusal>> {
        Some(self.try_reserve(account, amount))
    }

    fn shrink(&self, hold: &mut Hold, to: Cost) {
        let Some(freed) = hold.amount.checked_sub(to) else {
            return;
        };
        if freed.is_zero() {
            return;
        }
        for s in &mut hold.scopes {
            self.bucket(&s.scope).release(hold.window, freed.as_nanos());
            s.spent = s.spent.saturating_sub(freed);
        }
        self.inner
            .outstanding
            .fetch_sub(freed.as_nanos(), Ordering::AcqRel);
        hold.amount = to;
    }

    fn settle(&self, hold: Hold, actual: Cost) {
        let held = hold.amount.as_nanos();
        let actual = actual.as_nanos();
        for s in &hold.scopes {
            let bucket = self.bucket(&s.scope);
            if actual <= held {
                bucket.release(hold.window, held - actual);
            } else {
                bucket.add(hold.window, actual - held);
            }
        }
        let i = &self.inner;
        i.outstanding.fetch_sub(held, Ordering::AcqRel);
        i.committed.fetch_add(actual, Ordering::AcqRel);
        if actual > held {
            i.overrun.fetch_add(actual - held, Ordering::AcqRel);
        }
        i.holds.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The tier scope of an account, for callers building accounts by hand.
impl From<Tier> for Account {
    fn from(tier: Tier) -> Self {
        Account { tier, tenant: None }
    }
}
