//! Ledgers: where spend is reserved, committed and refunded against per-window caps.

mod bucket;
mod lease;
mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use switchboard_core::{Cost, Error, TenantId, Tier};

#[cfg(feature = "redis")]
pub use self::redis::RedisLedger;
pub use lease::{LeasedLedger, LeasedReserve};
pub use memory::{Books, MemoryLedger, MemoryLedgerBuilder};

/// What a budget is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// All traffic.
    Global,
    /// One business tier.
    Tier(Tier),
    /// One tenant.
    Tenant(TenantId),
}

impl fmt::Display for Scope {
    /// `global`, `tier:L1`, `tenant:acme`: the `scope` of a `BudgetExceeded` error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Tenant(t) => write!(f, "tenant:{t}"),
            _ => f.write_str(&self.name()),
        }
    }
}

impl Scope {
    /// The scope's name as [`Display`](fmt::Display) writes it, without allocating for
    /// the global and tier scopes.
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            Scope::Global => Cow::Borrowed("global"),
            Scope::Tier(Tier::L0) => Cow::Borrowed("tier:L0"),
            Scope::Tier(Tier::L1) => Cow::Borrowed("tier:L1"),
            Scope::Tier(Tier::L2) => Cow::Borrowed("tier:L2"),
            Scope::Tenant(t) => Cow::Owned(format!("tenant:{t}")),
        }
    }
}

/// Who a request is charged to: every capped scope it falls in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    /// The request's tier.
    pub tier: Tier,
    /// The request's tenant, if admission named one.
    pub tenant: Option<TenantId>,
}

/// Per-window spend caps by scope. A scope without a cap is not tracked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    global: Option<Cost>,
    tiers: [Option<Cost>; 3],
    every_tenant: Option<Cost>,
    tenants: HashMap<TenantId, Cost>,
}

impl Caps {
    /// No caps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps all traffic.
    pub fn global(mut self, cap: Cost) -> Self {
        self.global = Some(cap);
        self
    }

    /// Caps one tier.
    pub fn tier(mut self, tier: Tier, cap: Cost) -> Self {
        self.tiers[tier.index()] = Some(cap);
        self
    }

    /// Caps each tenant without a cap of its own.
    pub fn every_tenant(mut self, cap: Cost) -> Self {
        self.every_tenant = Some(cap);
        self
    }

    /// Caps one tenant.
    pub fn tenant(mut self, tenant: TenantId, cap: Cost) -> Self {
        self.tenants.insert(tenant, cap);
        self
    }

    /// The capped scopes an account is charged to, with their caps: global, then tier,
    /// then tenant.
    pub fn scopes(&self, account: &Account) -> Vec<(Scope, Cost)> {
        self.each_scope(account).collect()
    }

    /// [`scopes`](Caps::scopes) without collecting them (the reservation path).
    pub(crate) fn each_scope<'a>(
        &'a self,
        account: &'a Account,
    ) -> impl Iterator<Item = (Scope, Cost)> + 'a {
        let global = self.global.map(|cap| (Scope::Global, cap));
        let tier = self.tiers[account.tier.index()].map(|cap| (Scope::Tier(account.tier), cap));
        let tenant = account.tenant.as_ref().and_then(|tenant| {
            let cap = self.tenants.get(tenant).copied().or(self.every_tenant)?;
            Some((Scope::Tenant(tenant.clone()), cap))
        });
        global.into_iter().chain(tier).chain(tenant)
    }
}

/// One scope's spend in the window right after a reservation, this one included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSpend {
    /// The scope.
    pub scope: Scope,
    /// Reserved plus committed spend in the window, the new hold included.
    pub spent: Cost,
    /// The scope's cap.
    pub cap: Cost,
}

/// The spends of a hold's scopes, kept inline: an account is charged to at most three
/// scopes (global, its tier, its tenant), so a hold needs no allocation of its own.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Spends {
    len: usize,
    items: [ScopeSpend; 3],
}

impl Spends {
    const UNUSED: ScopeSpend = ScopeSpend {
        scope: Scope::Global,
        spent: Cost::ZERO,
        cap: Cost::ZERO,
    };

    pub(crate) const fn new() -> Self {
        Self {
            len: 0,
            items: [Self::UNUSED; 3],
        }
    }

    /// Adds a scope's spend; a fourth is ignored (no account has one).
    pub(crate) fn push(&mut self, spend: ScopeSpend) {
        debug_assert!(self.len < self.items.len(), "more than three scopes");
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = spend;
            self.len += 1;
        }
    }
}

impl Default for Spends {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for Spends {
    type Target = [ScopeSpend];
    fn deref(&self) -> &[ScopeSpend] {
        &self.items[..self.len]
    }
}

impl std::ops::DerefMut for Spends {
    fn deref_mut(&mut self) -> &mut [ScopeSpend] {
        &mut self.items[..self.len]
    }
}

impl<'a> IntoIterator for &'a Spends {
    type Item = &'a ScopeSpend;
    type IntoIter = std::slice::Iter<'a, ScopeSpend>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut Spends {
    type Item = &'a mut ScopeSpend;
    type IntoIter = std::slice::IterMut<'a, ScopeSpend>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl FromIterator<ScopeSpend> for Spends {
    fn from_iter<I: IntoIterator<Item = ScopeSpend>>(iter: I) -> Self {
        let mut spends = Self::new();
        for spend in iter.into_iter().take(3) {
            spends.push(spend);
        }
        spends
    }
}

impl fmt::Debug for Spends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Budget held for one call until it settles. Give it back to the ledger that made it
/// with [`Ledger::settle`] exactly once.
#[derive(Debug, PartialEq, Eq)]
pub struct Hold {
    pub(crate) window: u64,
    pub(crate) amount: Cost,
    pub(crate) scopes: Spends,
    pub(crate) resets_in: Duration,
    /// The lease a [`LeasedLedger`] served the hold from.
    pub(crate) lease: Option<lease::LeaseRef>,
}

impl Hold {
    /// The amount held.
    pub fn amount(&self) -> Cost {
        self.amount
    }

    /// Each charged scope's spend right after the reservation.
    pub fn scopes(&self) -> &[ScopeSpend] {
        &self.scopes
    }

    /// Time left in the window the hold was made in.
    pub fn resets_in(&self) -> Duration {
        self.resets_in
    }

    /// The window's number.
    pub fn window(&self) -> u64 {
        self.window
    }
}

/// A reservation the ledger refused: it would have crossed a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The first scope whose cap it would have crossed.
    pub scope: Scope,
    /// That scope's spend in the window.
    pub spent: Cost,
    /// That scope's cap.
    pub cap: Cost,
    /// When the window resets; `None` if the amount exceeds the cap on its own.
    pub retry_after: Option<Duration>,
    /// The ledger could not be reached and refused to be safe (fail closed); `scope`,
    /// `spent` and `cap` are then meaningless.
    pub unavailable: bool,
}

impl Refusal {
    /// The refusal of a ledger that cannot be reached: retry in a second.
    pub fn unavailable() -> Self {
        Self {
            scope: Scope::Global,
            spent: Cost::ZERO,
            cap: Cost::ZERO,
            retry_after: Some(Duration::from_secs(1)),
            unavailable: true,
        }
    }

    /// The `BudgetExceeded` error (429, `budget_exceeded`) for this refusal; its scope is
    /// `ledger_unavailable` when the ledger could not be reached.
    pub fn into_error(self) -> Error {
        let scope = if self.unavailable {
            "ledger_unavailable".to_owned()
        } else {
            self.scope.to_string()
        };
        Error::BudgetExceeded {
            scope,
            retry_after: self.retry_after,
        }
    }
}

/// A spend ledger: atomic check-and-reserve of an amount against the caps of every scope
/// an account is charged to, then settlement with the real cost.
///
/// The hard cap is the invariant: in every window and scope, reserved plus committed
/// spend never exceeds the cap (a call that costs more than its hold is charged in full
/// and counted as an overrun; holds are upper bounds, so that does not happen while
/// estimates are bounds). Settlement is synchronous and infallible so that a drop guard
/// can settle; a ledger with I/O does it in the background.
pub trait Ledger: Clone + Send + Sync + 'static {
    /// The future of a reservation.
    type Reserve: Future<Output = Result<Hold, Refusal>> + Send + 'static;

    /// Reserves `amount` in every capped scope of `account`, or in none.
    fn reserve(&self, account: &Account, amount: Cost) -> Self::Reserve;

    /// Reserves at once, when this ledger can decide without waiting (an in-memory
    /// ledger always can; a leased one while its lease covers the amount). `None` means
    /// "await [`reserve`](Ledger::reserve)", and is the default.
    ///
    /// The budget layer tries this first: a reservation decided in `call` lets it call
    /// the inner service it was made ready on, instead of keeping a clone of it for
    /// later. Its verdict is then taken in `call` too (a blocked request is queued, or
    /// looked up in the answer cache, from there), and a future dropped unpolled settles
    /// its hold through the settlement guard.
    fn reserve_now(&self, account: &Account, amount: Cost) -> Option<Result<Hold, Refusal>> {
        let _ = (account, amount);
        None
    }

    /// Lowers a hold to `to` (no-op if it is not lower), freeing the difference now.
    fn shrink(&self, hold: &mut Hold, to: Cost);

    /// Settles a hold: commits `actual` and frees the rest. `Cost::ZERO` is a refund.
    fn settle(&self, hold: Hold, actual: Cost);
}

/// Window arithmetic shared by ledgers: fixed windows of `len` counted from an origin.
pub(crate) fn window_of(elapsed: Duration, len: Duration) -> (u64, Duration) {
    // In 64-bit nanoseconds (584 years) when both fit: a 128-bit division is a library
    // call, and this runs twice per request.
    if let (Ok(at), Ok(len_ns)) = (
        u64::try_from(elapsed.as_nanos()),
        u64::try_from(len.as_nanos()),
    ) {
        let len_ns = len_ns.max(1);
        return (at / len_ns, Duration::from_nanos(len_ns - at % len_ns));
    }
    let len_ns = len.as_nanos().max(1);
    let at = elapsed.as_nanos();
    let window = (at / len_ns) as u64;
    let resets_in = Duration::from_nanos((len_ns - at % len_ns) as u64);
    (window, resets_in)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_are_what_display_writes() {
        let tenant = TenantId::new("acme").unwrap();
        for (scope, name) in [
            (Scope::Global, "global"),
            (Scope::Tier(Tier::L0), "tier:L0"),
            (Scope::Tier(Tier::L1), "tier:L1"),
            (Scope::Tier(Tier::L2), "tier:L2"),
            (Scope::Tenant(tenant), "tenant:acme"),
        ] {
            assert_eq!(scope.name(), name);
            assert_eq!(scope.to_string(), name);
            assert_eq!(
                matches!(scope.name(), Cow::Borrowed(_)),
                !matches!(scope, Scope::Tenant(_)),
                "only a tenant's name is built"
            );
        }
    }
}

#[cfg(test)]
mod spends_tests {
    use super::*;

    fn spend(scope: Scope, nanos: u64) -> ScopeSpend {
        ScopeSpend {
            scope,
            spent: Cost::from_nanos(nanos),
            cap: Cost::from_nanos(10 * nanos),
        }
    }

    #[test]
    fn spends_keep_up_to_three_scopes_in_order() {
        let mut spends = Spends::new();
        assert!(spends.is_empty());
        spends.push(spend(Scope::Global, 1));
        spends.push(spend(Scope::Tier(Tier::L1), 2));
        assert_eq!(spends.len(), 2);
        assert_eq!(spends[1].scope, Scope::Tier(Tier::L1));
        for s in &mut spends {
            s.spent = s.spent.saturating_sub(Cost::from_nanos(1));
        }
        let spent: Vec<u64> = spends.iter().map(|s| s.spent.as_nanos()).collect();
        assert_eq!(spent, [0, 1]);
        assert_eq!(format!("{spends:?}"), format!("{:?}", &spends[..]));

        // Collected from more than three, the first three are kept.
        let tenant = Scope::Tenant(TenantId::new("acme").unwrap());
        let collected: Spends = [
            spend(Scope::Global, 1),
            spend(Scope::Tier(Tier::L0), 2),
            spend(tenant.clone(), 3),
            spend(Scope::Global, 4),
        ]
        .into_iter()
        .take(3)
        .collect();
        assert_eq!(collected.len(), 3);
        assert_eq!(collected[2].scope, tenant);
        assert_eq!(collected.clone(), collected);
    }
}
