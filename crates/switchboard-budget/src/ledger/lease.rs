//! [`LeasedLedger`]: serves reservations from slices of budget leased from a shared
//! ledger, so that most admissions never leave the process.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use switchboard_core::Cost;
use tokio::time::Instant;

use super::bucket::MAX_SPEND;
use super::{Account, Hold, Ledger, Refusal, ScopeSpend, Spends};

/// The lease word: 48 bits of unspent slice (nano-dollars), 15 bits of open local holds,
/// and a retired bit.
const FREE_MASK: u64 = MAX_SPEND;
const OPEN_SHIFT: u32 = 48;
const OPEN_ONE: u64 = 1 << OPEN_SHIFT;
const MAX_OPEN: u64 = (1 << 15) - 1;
const RETIRED: u64 = 1 << 63;

fn free_of(word: u64) -> u64 {
    word & FREE_MASK
}

fn open_of(word: u64) -> u64 {
    (word >> OPEN_SHIFT) & MAX_OPEN
}

/// The lease word's operations, written once and instantiated over std's atomics for the
/// ledger and over loom's for the model checks (as in `bucket.rs`).
macro_rules! lease_word {
    ($($atomic:tt)+) => {
        use $($atomic)+::{AtomicU64, Ordering};

        /// A slice's free budget, open local holds and retired bit, in one word.
        #[derive(Debug)]
        pub(crate) struct LeaseWord {
            word: AtomicU64,
        }

        impl LeaseWord {
            pub(crate) fn new(slice: u64) -> Self {
                Self {
                    word: AtomicU64::new(slice.min(FREE_MASK)),
                }
            }

            /// Takes `amount` from the free slice: the free slice left, or `None`
            /// (retired, too little left, or too many open holds).
            pub(crate) fn take(&self, amount: u64) -> Option<u64> {
                let mut word = self.word.load(Ordering::Acquire);
                loop {
                    if word & RETIRED != 0 || free_of(word) < amount || open_of(word) >= MAX_OPEN {
                        return None;
                    }
                    let next = word - amount + OPEN_ONE;
                    match self
                        .word
                        .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return Some(free_of(next)),
                        Err(current) => word = current,
                    }
                }
            }

            /// Gives `freed` back to the free slice (dropped if retired: the lease's
            /// settlement returns it).
            pub(crate) fn give_back(&self, freed: u64) {
                let mut word = self.word.load(Ordering::Acquire);
                loop {
                    if word & RETIRED != 0 {
                        return;
                    }
                    let free = free_of(word).saturating_add(freed).min(FREE_MASK);
                    let next = (word & !FREE_MASK) | free;
                    match self
                        .word
                        .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return,
                        Err(current) => word = current,
                    }
                }
            }

            /// Closes one local hold of `held` that cost `actual`: the rest goes back to
            /// the free slice (an overrun is taken from it as far as it goes). True if
            /// it was the last open hold of a retired lease: the caller settles it.
            pub(crate) fn close(&self, held: u64, actual: u64) -> bool {
                let mut word = self.word.load(Ordering::Acquire);
                loop {
                    let free = if word & RETIRED != 0 {
                        0
                    } else if actual <= held {
                        free_of(word).saturating_add(held - actual).min(FREE_MASK)
                    } else {
                        free_of(word).saturating_sub(actual - held)
                    };
                    let open = open_of(word).saturating_sub(1);
                    let next = (word & RETIRED) | (open << OPEN_SHIFT) | free;
                    match self
                        .word
                        .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return next == RETIRED,
                        Err(current) => word = current,
                    }
                }
            }

            /// Stops lending. `None` if it already was retired; else the free slice it
            /// had (to return now) and whether no hold is open (the caller settles).
            pub(crate) fn retire(&self) -> Option<(u64, bool)> {
                let mut word = self.word.load(Ordering::Acquire);
                loop {
                    if word & RETIRED != 0 {
                        return None;
                    }
                    let next = RETIRED | (word & !FREE_MASK);
                    match self
                        .word
                        .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return Some((free_of(word), open_of(word) == 0)),
                        Err(current) => word = current,
                    }
                }
            }

            /// The free slice, 0 once retired.
            pub(crate) fn unused(&self) -> u64 {
                let word = self.word.load(Ordering::Acquire);
                if word & RETIRED == 0 { free_of(word) } else { 0 }
            }
        }
    };
}

mod word {
    use super::{FREE_MASK, MAX_OPEN, OPEN_ONE, OPEN_SHIFT, RETIRED, free_of, open_of};
    lease_word!(std::sync::atomic);
}
use word::LeaseWord;

/// How long an account whose slice was refused goes straight to the shared ledger when
/// the refusal names no window end.
const DIRECT_WITHOUT_RETRY: Duration = Duration::from_secs(1);

/// A slice of budget reserved in the shared ledger for one account and spent locally.
struct Lease<L: Ledger> {
    ledger: L,
    /// Free slice, open local holds, retired: one word, moved by compare-and-swap.
    word: LeaseWord,
    /// Real cost committed by the local holds settled so far.
    committed: AtomicU64,
    /// The shared ledger's hold: shrunk once when the lease retires, settled once when
    /// its last local hold settles. Never touched on the reservation path.
    hold: Mutex<Option<Hold>>,
    window: u64,
    /// No later than the shared ledger's window end (measured from before the request).
    expires: Instant,
    scopes: Spends,
}

impl<L: Ledger> Lease<L> {
    fn new(ledger: L, hold: Hold, sent: Instant) -> Self {
        let slice = hold.amount.as_nanos().min(MAX_SPEND);
        Self {
            ledger,
            word: LeaseWord::new(slice),
            committed: AtomicU64::new(0),
            window: hold.window,
            expires: sent + hold.resets_in,
            scopes: hold.scopes.clone(),
            hold: Mutex::new(Some(hold)),
        }
    }

    fn lock_hold(&self) -> std::sync::MutexGuard<'_, Option<Hold>> {
        self.hold.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Settles one local hold of `held`: commits `actual`, returns the rest to the free
    /// slice, and settles the lease if it was the last hold of a retired lease.
    fn settle_local(&self, held: u64, actual: u64) {
        // Counted before the hold closes, so whoever settles the lease sees it.
        self.committed.fetch_add(actual, Ordering::AcqRel);
        if self.word.close(held, actual) {
            self.finish();
        }
    }

    /// Stops lending: the free slice goes back to the shared ledger now, the rest when
    /// the last open local hold settles. Idempotent.
    fn retire(&self) {
        let Some((unused, idle)) = self.word.retire() else {
            return;
        };
        if idle {
            self.finish();
            return;
        }
        if unused > 0 {
            let mut guard = self.lock_hold();
            if let Some(hold) = guard.as_mut() {
                let to = hold.amount.saturating_sub(Cost::from_nanos(unused));
                self.ledger.shrink(hold, to);
            }
        }
    }

    /// Settles the shared hold with what the local holds committed; once.
    fn finish(&self) {
        let hold = self.lock_hold().take();
        if let Some(hold) = hold {
            let committed = Cost::from_nanos(self.committed.load(Ordering::Acquire));
            self.ledger.settle(hold, committed);
        }
    }
}

impl<L: Ledger> Drop for Lease<L> {
    /// A lease nobody refers to has no open local hold: make sure it is settled.
    fn drop(&mut self) {
        self.finish();
    }
}

/// A local hold's way back to its lease, type-erased so [`Hold`] stays one type.
pub(crate) trait LocalLease: Send + Sync {
    fn settle_local(&self, held: u64, actual: u64);
    fn give_back(&self, freed: u64);
}

impl<L: Ledger> LocalLease for Lease<L> {
    fn settle_local(&self, held: u64, actual: u64) {
        Lease::settle_local(self, held, actual);
    }

    fn give_back(&self, freed: u64) {
        self.word.give_back(freed);
    }
}

/// The lease a [`Hold`] was served from.
#[derive(Clone)]
pub(crate) struct LeaseRef(Arc<dyn LocalLease>);

impl PartialEq for LeaseRef {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl Eq for LeaseRef {}

impl fmt::Debug for LeaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeaseRef")
    }
}

/// What an account is served from now.
enum Current<L: Ledger> {
    None,
    Lease(Arc<Lease<L>>),
    /// A slice was refused: reserve each request in the shared ledger until then.
    Direct(Instant),
}

struct Slot<L: Ledger> {
    current: Current<L>,
    /// One refill per account at a time; the others wait for it and use its slice.
    refill: Arc<tokio::sync::Mutex<()>>,
}

struct Shared<L: Ledger> {
    ledger: L,
    slice: u64,
    accounts: RwLock<HashMap<Account, Slot<L>>>,
}

impl<L: Ledger> Shared<L> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Account, Slot<L>>> {
        self.accounts.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Account, Slot<L>>> {
        self.accounts.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets what the account is served from if `is_it` still says it is current;
    /// the slot goes with it unless a refill holds its lock.
    fn clear(&self, account: &Account, is_it: impl Fn(&Current<L>) -> bool) {
        let mut accounts = self.write();
        let Some(slot) = accounts.get_mut(account) else {
            return;
        };
        if is_it(&slot.current) {
            // Nobody can clone the refill lock while we hold the map for writing.
            if Arc::strong_count(&slot.refill) == 1 {
                accounts.remove(account);
            } else {
                slot.current = Current::None;
            }
        }
    }
}

impl<L: Ledger> Drop for Shared<L> {
    /// The last clone is gone: every lease's unused slice goes back.
    fn drop(&mut self) {
        let accounts = std::mem::take(self.accounts.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (_, slot) in accounts {
            if let Current::Lease(lease) = slot.current {
                lease.retire();
            }
        }
    }
}

/// A [`Ledger`] that leases slices of budget from a shared ledger (typically a
/// [`RedisLedger`](crate::RedisLedger)) and serves reservations from them in process.
///
/// Per account (tier and tenant, so the same set of capped scopes), the first
/// reservation reserves a **slice** in the shared ledger (one round trip: the slice is
/// reserved in every capped scope of the account, or refused). Reservations that fit in
/// what is left of the slice are then served locally by one compare-and-swap on the
/// lease's word, and settlements return their unused part to the slice. The lease
/// table is a read-mostly `RwLock` (readers never wait for each other; it is written
/// only when a slice is installed or retired), the money moves only by atomics.
///
/// **The hard cap still holds across replicas**: every local hold is carved out of a
/// slice the shared ledger reserved atomically against the cap, so the sum of leased
/// slices, and of everything served from them, never exceeds it.
///
/// - A request larger than the slice goes to the shared ledger directly.
/// - A request larger than what is left of the slice takes a new slice (one refill per
///   account at a time; concurrent requests wait for it); the old slice retires and its
///   unused part is returned at once.
/// - When a slice is refused (the cap is nearly spent), the account's requests are
///   reserved in the shared ledger one by one until the window ends, so the last
///   slice's worth of the cap is still usable.
/// - A slice lives in the window it was reserved in: it expires no later than that
///   window's end (the end the shared ledger reported, counted from before the request
///   was sent); a timer then retires it (with a tokio runtime; otherwise the next
///   reservation does). Holds still open settle into their own window as usual.
/// - Unused slices go back when they retire, when [`return_leases`](Self::return_leases)
///   is called, or when the last clone of the ledger is dropped (inside the tokio
///   runtime, for a Redis ledger, which settles in the background).
///
/// **The trade-off**: a slice is spent budget as far as the other replicas can tell
/// until it is used or returned, so a replica sitting on an unused slice can make
/// another replica refuse early. Per capped scope, at most one slice per account and
/// replica is outstanding (plus slices retiring while their last holds stream), so the
/// early refusals are bounded by about `slice × replicas` (× accounts sharing a scope,
/// for the global and tier caps). The spend a local hold reports for thresholds is the
/// scope's spend when its slice was leased, minus the slice this replica has not handed
/// out: it does not see the other replicas' spend since that lease.
///
/// **Defaults**: none beyond the slice, which must be chosen: a slice of about a tenth
/// of the smallest cap divided by the number of replicas keeps the early refusals
/// under 10 % of the cap; a slice larger than a scope's cap is always refused, so that
/// account goes to the shared ledger for every request. Holds are the shared ledger's
/// [`Hold`]s: give each back to the `LeasedLedger` that made it.
pub struct LeasedLedger<L: Ledger> {
    shared: Arc<Shared<L>>,
}

impl<L: Ledger> Clone for LeasedLedger<L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<L: Ledger + fmt::Debug> fmt::Debug for LeasedLedger<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedLedger")
            .field("ledger", &self.shared.ledger)
            .field("slice", &Cost::from_nanos(self.shared.slice))
            .field("leases", &self.leases())
            .finish()
    }
}

impl<L: Ledger> LeasedLedger<L> {
    /// Leases slices of `slice` (at most about $281,474) from `ledger`.
    pub fn new(ledger: L, slice: Cost) -> Self {
        Self {
            shared: Arc::new(Shared {
                ledger,
                slice: slice.as_nanos().min(MAX_SPEND),
                accounts: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The shared ledger.
    pub fn inner(&self) -> &L {
        &self.shared.ledger
    }

    /// The slice size.
    pub fn slice(&self) -> Cost {
        Cost::from_nanos(self.shared.slice)
    }

    /// Leases currently lending (not retired).
    pub fn leases(&self) -> usize {
        self.shared
            .read()
            .values()
            .filter(|s| matches!(s.current, Current::Lease(_)))
            .count()
    }

    /// Budget leased and not handed out, summed over the current leases: what this
    /// replica holds back from the others.
    pub fn unused(&self) -> Cost {
        let nanos = self
            .shared
            .read()
            .values()
            .map(|s| match &s.current {
                Current::Lease(l) => l.word.unused(),
                _ => 0,
            })
            .fold(0u64, u64::saturating_add);
        Cost::from_nanos(nanos)
    }

    /// Retires every lease now: unused slices go back to the shared ledger at once, the
    /// rest as the open holds settle (for a Redis ledger, in the background:
    /// [`RedisLedger::settled`](crate::RedisLedger::settled) waits for it).
    pub fn return_leases(&self) {
        let taken: Vec<Arc<Lease<L>>> = {
            let mut accounts = self.shared.write();
            accounts
                .values_mut()
                .filter_map(
                    |slot| match std::mem::replace(&mut slot.current, Current::None) {
                        Current::Lease(l) => Some(l),
                        _ => None,
                    },
                )
                .collect()
        };
        for lease in taken {
            lease.retire();
        }
    }

    /// Serves `amount` from the account's current lease, if it can.
    fn try_local(&self, account: &Account, amount: u64, now: Instant) -> Option<Hold> {
        let accounts = self.shared.read();
        let Current::Lease(lease) = &accounts.get(account)?.current else {
            return None;
        };
        if now >= lease.expires {
            return None;
        }
        let free = lease.word.take(amount)?;
        Some(local_hold(lease, amount, free, now))
    }

    /// Whether the account is reserving directly (its last slice was refused).
    fn direct_until(&self, account: &Account, now: Instant) -> bool {
        matches!(
            self.shared.read().get(account).map(|s| &s.current),
            Some(Current::Direct(until)) if now < *until
        )
    }

    fn refill_lock(&self, account: &Account) -> Arc<tokio::sync::Mutex<()>> {
        if let Some(slot) = self.shared.read().get(account) {
            return slot.refill.clone();
        }
        self.shared
            .write()
            .entry(account.clone())
            .or_insert_with(|| Slot {
                current: Current::None,
                refill: Arc::default(),
            })
            .refill
            .clone()
    }

    fn install(&self, account: &Account, current: Current<L>) {
        let old = {
            let mut accounts = self.shared.write();
            let slot = accounts.entry(account.clone()).or_insert_with(|| Slot {
                current: Current::None,
                refill: Arc::default(),
            });
            std::mem::replace(&mut slot.current, current)
        };
        if let Current::Lease(old) = old {
            old.retire();
        }
    }

    /// The slow path: a new slice, or the shared ledger directly.
    async fn reserve_slow(self, account: Account, amount: Cost) -> Result<Hold, Refusal> {
        let ledger = &self.shared.ledger;
        let slice = self.shared.slice;
        if amount.as_nanos() > slice || self.direct_until(&account, Instant::now()) {
            return ledger.reserve(&account, amount).await;
        }
        let refill = self.refill_lock(&account);
        let _refilling = refill.lock().await;
        // Someone may have refilled while this one waited.
        let now = Instant::now();
        if let Some(hold) = self.try_local(&account, amount.as_nanos(), now) {
            return Ok(hold);
        }
        if self.direct_until(&account, now) {
            return ledger.reserve(&account, amount).await;
        }
        let sent = Instant::now();
        match ledger.reserve(&account, Cost::from_nanos(slice)).await {
            Ok(hold) => {
                let lease = Arc::new(Lease::new(ledger.clone(), hold, sent));
                let now = Instant::now();
                let local = lease
                    .word
                    .take(amount.as_nanos())
                    .map(|free| local_hold(&lease, amount.as_nanos(), free, now));
                self.install(&account, Current::Lease(lease.clone()));
                self.clear_later(account.clone(), lease.expires, Some(&lease));
                match local {
                    Some(hold) => Ok(hold),
                    // Only if the slice is already past its window: reserve directly.
                    None => ledger.reserve(&account, amount).await,
                }
            }
            Err(refusal) if refusal.unavailable => Err(refusal),
            Err(refusal) => {
                let until = sent + refusal.retry_after.unwrap_or(DIRECT_WITHOUT_RETRY);
                self.install(&account, Current::Direct(until));
                self.clear_later(account.clone(), until, None);
                ledger.reserve(&account, amount).await
            }
        }
    }

    /// Retires the lease at its window's end, or forgets the account's direct mode at
    /// its end (needs a tokio runtime; without one the next reservation after the end
    /// replaces either).
    fn clear_later(&self, account: Account, at: Instant, lease: Option<&Arc<Lease<L>>>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared: Weak<Shared<L>> = Arc::downgrade(&self.shared);
        let lease: Option<Weak<Lease<L>>> = lease.map(Arc::downgrade);
        runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            let Some(shared) = shared.upgrade() else {
                return; // dropped: every lease was retired then
            };
            match lease {
                Some(lease) => {
                    let Some(lease) = lease.upgrade() else { return };
                    shared.clear(
                        &account,
                        |c| matches!(c, Current::Lease(l) if Arc::ptr_eq(l, &lease)),
                    );
                    lease.retire();
                }
                None => shared.clear(
                    &account,
                    |c| matches!(c, Current::Direct(until) if *until == at),
                ),
            }
        });
    }
}

fn local_hold<L: Ledger>(lease: &Arc<Lease<L>>, amount: u64, free: u64, now: Instant) -> Hold {
    let unused = Cost::from_nanos(free);
    let amount = Cost::from_nanos(amount);
    Hold {
        window: lease.window,
        amount,
        scopes: lease
            .scopes
            .iter()
            .map(|s| ScopeSpend {
                scope: s.scope.clone(),
                spent: s.spent.saturating_sub(unused),
                cap: s.cap,
            })
            .collect(),
        resets_in: lease.expires.saturating_duration_since(now),
        lease: Some(LeaseRef(lease.clone())),
    }
}

/// The future of a [`LeasedLedger`] reservation: ready at once when served from a
/// slice.
pub struct LeasedReserve {
    state: ReserveState,
}

enum ReserveState {
    Ready(Option<Result<Hold, Refusal>>),
    Waiting(Pin<Box<dyn Future<Output = Result<Hold, Refusal>> + Send>>),
}

impl fmt::Debug for LeasedReserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ReserveState::Ready(_) => "ready",
            ReserveState::Waiting(_) => "waiting",
        };
        f.debug_struct("LeasedReserve")
            .field("state", &state)
            .finish()
    }
}

impl Future for LeasedReserve {
    type Output = Result<Hold, Refusal>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            ReserveState::Ready(result) => match result.take() {
                Some(result) => Poll::Ready(result),
                // Polled again after completion: refuse rather than panic.
                None => Poll::Ready(Err(Refusal::unavailable())),
            },
            ReserveState::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

impl<L: Ledger> Ledger for LeasedLedger<L> {
    type Reserve = LeasedReserve;

    fn reserve(&self, account: &Account, amount: Cost) -> Self::Reserve {
        if let Some(reserved) = self.reserve_now(account, amount) {
            return LeasedReserve {
                state: ReserveState::Ready(Some(reserved)),
            };
        }
        LeasedReserve {
            state: ReserveState::Waiting(Box::pin(
                self.clone().reserve_slow(account.clone(), amount),
            )),
        }
    }

    fn reserve_now(&self, account: &Account, amount: Cost) -> Option<Result<Hold, Refusal>> {
        // Within the lease it is a local decision; otherwise the remote ledger decides.
        (amount.as_nanos() <= self.shared.slice)
            .then(|| self.try_local(account, amount.as_nanos(), Instant::now()))
            .flatten()
            .map(Ok)
    }

    fn shrink(&self, hold: &mut Hold, to: Cost) {
        let Some(lease) = hold.lease.clone() else {
            return self.shared.ledger.shrink(hold, to);
        };
        let Some(freed) = hold.amount.checked_sub(to).filter(|f| !f.is_zero()) else {
            return;
        };
        lease.0.give_back(freed.as_nanos());
        for s in &mut hold.scopes {
            s.spent = s.spent.saturating_sub(freed);
        }
        hold.amount = to;
    }

    fn settle(&self, hold: Hold, actual: Cost) {
        match &hold.lease {
            Some(lease) => lease
                .0
                .settle_local(hold.amount.as_nanos(), actual.as_nanos()),
            None => self.shared.ledger.settle(hold, actual),
        }
    }
}

#[cfg(all(test, feature = "loom"))]
mod loom_model {
    #![allow(
        dead_code,
        reason = "the model checks exercise some of the word's operations"
    )]

    use super::{FREE_MASK, MAX_OPEN, OPEN_ONE, OPEN_SHIFT, RETIRED, free_of, open_of};
    use loom::sync::Arc;
    use loom::thread;

    lease_word!(loom::sync::atomic);

    /// Two local holds race for a slice that fits only one of them: exactly one wins.
    #[test]
    fn racing_takes_never_lend_more_than_the_slice() {
        loom::model(|| {
            let word = Arc::new(LeaseWord::new(100));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let w = word.clone();
                    thread::spawn(move || w.take(60).is_some())
                })
                .collect();
            let wins = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|w| *w)
                .count();
            assert_eq!(wins, 1);
            assert_eq!(word.unused(), 40);
        });
    }

    /// A retirement races with a hold being taken and one being closed: the lease is
    /// settled exactly once (by whoever sees it retired with no hold open), and a take
    /// after the retirement never succeeds.
    #[test]
    fn a_retired_lease_is_settled_exactly_once() {
        loom::model(|| {
            let word = Arc::new(LeaseWord::new(100));
            assert_eq!(word.take(30), Some(70));
            let closer = {
                let w = word.clone();
                thread::spawn(move || usize::from(w.close(30, 10)))
            };
            let taker = {
                let w = word.clone();
                thread::spawn(move || match w.take(50) {
                    Some(_) => usize::from(w.close(50, 50)),
                    None => 0,
                })
            };
            let retired = match word.retire() {
                Some((_, idle)) => usize::from(idle),
                None => 0,
            };
            let settles = retired + closer.join().unwrap() + taker.join().unwrap();
            assert_eq!(settles, 1, "settled exactly once");
            assert_eq!(word.take(1), None, "nothing is lent once retired");
            assert_eq!(word.unused(), 0);
            assert_eq!(word.retire(), None, "retiring twice is a no-op");
        });
    }
}
