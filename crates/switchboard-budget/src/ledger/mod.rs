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

/// Budget held for one call until it settles. Give it back to the ledger that made it
/// with [`Ledger::settle`] exactly once.
#[derive(Debug, PartialEq, Eq)]
pub struct Hold {
    pub(crate) window: u64,
    pub(crate) amount: Cost,
    pub(crate) scopes: Vec<ScopeSpend>,
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
