//! The in-memory ledger: the hard cap, settlement, scopes, windows, and why a
//! check-then-act gate is not enough.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use switchboard_budget::{Account, Caps, Hold, Ledger, MemoryLedger, Scope};
use switchboard_core::{Cost, TenantId, Tier};

fn n(nanos: u64) -> Cost {
    Cost::from_nanos(nanos)
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn acct(tier: Tier, tenant_name: Option<&str>) -> Account {
    Account {
        tier,
        tenant: tenant_name.map(tenant),
    }
}

#[tokio::test(start_paused = true)]
async fn reserves_up_to_the_cap_then_refuses_with_retry_after_to_the_window_end() {
    let ledger = MemoryLedger::new(Caps::new().global(n(1_000)));
    let a = acct(Tier::L1, None);
    let first = ledger.try_reserve(&a, n(600)).unwrap();
    assert_eq!(first.scopes()[0].spent, n(600));
    tokio::time::advance(Duration::from_secs(15)).await;
    let refusal = ledger.try_reserve(&a, n(401)).unwrap_err();
    assert_eq!(refusal.scope, Scope::Global);
    assert_eq!((refusal.spent, refusal.cap), (n(600), n(1_000)));
    assert_eq!(refusal.retry_after, Some(Duration::from_secs(45)));
    let error = refusal.into_error();
    assert_eq!(error.reason(), "budget_exceeded");
    assert_eq!(error.status().as_u16(), 429);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(45)));
    let second = ledger.try_reserve(&a, n(400)).unwrap();
    assert_eq!(
        ledger.spent(&Scope::Global),
        n(1_000),
        "exactly at the cap is allowed"
    );
    ledger.settle(first, n(600));
    ledger.settle(second, n(400));
}

#[tokio::test(start_paused = true)]
async fn an_amount_over_the_cap_alone_is_refused_without_retry_after() {
    let ledger = MemoryLedger::new(Caps::new().global(n(100)));
    let refusal = ledger
        .try_reserve(&acct(Tier::L1, None), n(101))
        .unwrap_err();
    assert_eq!(refusal.retry_after, None, "waiting will not help");
}

#[tokio::test(start_paused = true)]
async fn settle_commits_the_actual_cost_and_frees_the_rest() {
    let ledger = MemoryLedger::new(Caps::new().global(n(1_000)));
    let hold = ledger.try_reserve(&acct(Tier::L1, None), n(800)).unwrap();
    assert_eq!(ledger.books().outstanding, n(800));
    ledger.settle(hold, n(250));
    assert_eq!(ledger.spent(&Scope::Global), n(250));
    let books = ledger.books();
    assert_eq!(
        (books.outstanding, books.committed, books.open_holds),
        (n(0), n(250), 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_refund_returns_the_whole_hold() {
    let ledger = MemoryLedger::new(Caps::new().global(n(1_000)));
    let hold = ledger.try_reserve(&acct(Tier::L1, None), n(800)).unwrap();
    ledger.settle(hold, Cost::ZERO);
    assert_eq!(ledger.spent(&Scope::Global), n(0));
    assert_eq!(ledger.books().committed, n(0));
}

#[tokio::test(start_paused = true)]
async fn shrinking_a_hold_frees_the_difference_at_once() {
    let ledger = MemoryLedger::new(Caps::new().global(n(1_000)));
    let mut hold = ledger.try_reserve(&acct(Tier::L1, None), n(900)).unwrap();
    assert!(ledger.try_reserve(&acct(Tier::L1, None), n(300)).is_err());
    ledger.shrink(&mut hold, n(500));
    assert_eq!(hold.amount(), n(500));
    let other = ledger.try_reserve(&acct(Tier::L1, None), n(300)).unwrap();
    ledger.shrink(&mut hold, n(700)); // not lower: no-op
    assert_eq!(hold.amount(), n(500));
    ledger.settle(hold, n(500));
    ledger.settle(other, n(300));
    assert_eq!(ledger.books().committed, n(800));
}

#[tokio::test(start_paused = true)]
async fn a_new_fixed_window_starts_with_a_fresh_budget() {
    let ledger = MemoryLedger::new(Caps::new().global(n(1_000)));
    let a = acct(Tier::L1, None);
    let old = ledger.try_reserve(&a, n(1_000)).unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(ledger.spent(&Scope::Global), n(0));
    let new = ledger.try_reserve(&a, n(1_000)).unwrap();
    // Settling the old window's hold leaves the new window alone.
    ledger.settle(old, n(10));
    assert_eq!(ledger.spent(&Scope::Global), n(1_000));
    ledger.settle(new, n(1_000));
    assert_eq!(ledger.books().committed, n(1_010));
}

#[tokio::test(start_paused = true)]
async fn a_refused_scope_rolls_back_the_scopes_already_taken() {
    let caps = Caps::new()
        .global(n(10_000))
        .tier(Tier::L2, n(5_000))
        .every_tenant(n(300));
    let ledger = MemoryLedger::new(caps);
    let refusal = ledger
        .try_reserve(&acct(Tier::L2, Some("acme")), n(400))
        .unwrap_err();
    assert_eq!(refusal.scope, Scope::Tenant(tenant("acme")));
    assert_eq!(
        refusal.into_error().to_string(),
        "budget exceeded for tenant:acme"
    );
    assert_eq!(ledger.spent(&Scope::Global), n(0));
    assert_eq!(ledger.spent(&Scope::Tier(Tier::L2)), n(0));
    assert_eq!(ledger.books().outstanding, n(0));
}

#[tokio::test(start_paused = true)]
async fn tenants_and_tiers_have_their_own_caps() {
    let caps = Caps::new()
        .tier(Tier::L2, n(500))
        .every_tenant(n(1_000))
        .tenant(tenant("big"), n(5_000));
    let ledger = MemoryLedger::new(caps);
    let acme = ledger
        .try_reserve(&acct(Tier::L1, Some("acme")), n(1_000))
        .unwrap();
    assert!(
        ledger
            .try_reserve(&acct(Tier::L1, Some("acme")), n(1))
            .is_err()
    );
    let beta = ledger
        .try_reserve(&acct(Tier::L1, Some("beta")), n(1_000))
        .unwrap();
    let big = ledger
        .try_reserve(&acct(Tier::L1, Some("big")), n(4_000))
        .unwrap();
    let l2 = ledger.try_reserve(&acct(Tier::L2, None), n(500)).unwrap();
    let refusal = ledger
        .try_reserve(&acct(Tier::L2, Some("gamma")), n(1))
        .unwrap_err();
    assert_eq!(refusal.scope, Scope::Tier(Tier::L2));
    for h in [acme, beta, big, l2] {
        ledger.settle(h, Cost::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn tenants_past_the_slot_table_share_a_conservative_overflow_slot() {
    let ledger = MemoryLedger::builder(Caps::new().every_tenant(n(1_000)))
        .tenant_slots(1)
        .build();
    let a = ledger
        .try_reserve(&acct(Tier::L1, Some("a")), n(700))
        .unwrap();
    // "b" cannot get a slot of its own and shares the overflow slot with any other
    // latecomer: never over a cap, possibly refused early.
    let b = ledger
        .try_reserve(&acct(Tier::L1, Some("b")), n(700))
        .unwrap();
    assert!(
        ledger
            .try_reserve(&acct(Tier::L1, Some("c")), n(700))
            .is_err()
    );
    assert!(ledger.spent(&Scope::Tenant(tenant("a"))) <= n(1_000));
    ledger.settle(a, Cost::ZERO);
    ledger.settle(b, Cost::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_call_costing_more_than_its_hold_is_charged_in_full_and_counted_as_overrun() {
    let ledger = MemoryLedger::new(Caps::new().global(n(1_000)));
    let hold = ledger.try_reserve(&acct(Tier::L1, None), n(100)).unwrap();
    ledger.settle(hold, n(150));
    let books = ledger.books();
    assert_eq!((books.committed, books.overrun), (n(150), n(50)));
    assert_eq!(ledger.spent(&Scope::Global), n(150));
}

#[test]
fn threads_racing_for_the_cap_never_cross_it_and_the_books_balance() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _guard = rt.enter();
    let cap = 1_000_000u64;
    let ledger = MemoryLedger::new(Caps::new().global(n(cap)).every_tenant(n(cap / 2)));
    let committed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let ledger = ledger.clone();
            let committed = committed.clone();
            std::thread::spawn(move || {
                let mut held: Vec<Hold> = Vec::new();
                for i in 0..20_000u64 {
                    let who = if i % 3 == 0 { "a" } else { "b" };
                    if let Ok(hold) = ledger
                        .try_reserve(&acct(Tier::L1, Some(who)), n(1_000 + (i * 7 + t) % 5_000))
                    {
                        for s in hold.scopes() {
                            assert!(s.spent <= s.cap, "{} over its cap: {:?}", s.scope, s.spent);
                        }
                        held.push(hold);
                    }
                    if held.len() > 50 || i % 7 == 0 {
                        if let Some(hold) = held.pop() {
                            let actual = hold.amount().as_nanos() * (i % 4) / 4;
                            committed.fetch_add(actual, Ordering::Relaxed);
                            ledger.settle(hold, n(actual));
                        }
                    }
                }
                for hold in held {
                    ledger.settle(hold, Cost::ZERO);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let books = ledger.books();
    assert_eq!(books.outstanding, n(0), "nothing stays reserved at rest");
    assert_eq!(books.open_holds, 0);
    assert_eq!(
        books.committed,
        n(committed.load(Ordering::Relaxed)),
        "committed = sum of actuals"
    );
    assert!(ledger.spent(&Scope::Global) <= n(cap));
}

/// The gate we do not build: read the spend, compare, then add. Between the read and the
/// add (a Redis GET and INCRBY, or just two atomics) other callers read the same total.
struct CheckThenAct {
    spent: AtomicU64,
    cap: u64,
}

impl CheckThenAct {
    async fn admit(&self, amount: u64) -> bool {
        let spent = self.spent.load(Ordering::SeqCst);
        tokio::task::yield_now().await; // the round trip between the read and the write
        if spent + amount <= self.cap {
            self.spent.fetch_add(amount, Ordering::SeqCst);
            true
        } else {
            false
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_check_then_act_gate_overshoots_where_the_ledger_holds_the_cap() {
    let cap = 10_000;
    let naive = Arc::new(CheckThenAct {
        spent: AtomicU64::new(0),
        cap,
    });
    let ledger = MemoryLedger::new(Caps::new().global(n(cap)));
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let naive = naive.clone();
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let naive_ok = naive.admit(100).await;
                let hold = ledger.reserve(&acct(Tier::L1, None), n(100)).await;
                tokio::task::yield_now().await;
                (naive_ok, hold)
            })
        })
        .collect();
    let mut ledger_admitted = 0;
    let mut holds = Vec::new();
    for t in tasks {
        let (_, hold) = t.await.unwrap();
        if let Ok(hold) = hold {
            ledger_admitted += 1;
            holds.push(hold);
        }
    }
    let naive_spent = naive.spent.load(Ordering::SeqCst);
    assert!(
        naive_spent > cap,
        "check-then-act admitted {naive_spent} n$ against a cap of {cap}: it overshoots"
    );
    assert_eq!(
        naive_spent, 100_000,
        "every caller read 0 before anyone added"
    );
    assert_eq!(
        ledger_admitted, 100,
        "the ledger admits exactly cap / amount"
    );
    assert_eq!(ledger.spent(&Scope::Global), n(cap));
    for h in holds {
        ledger.settle(h, n(100));
    }
}

/// The cap of one scope, if it has one.
fn cap_of(caps: &Caps, scope: &Scope) -> Option<Cost> {
    let account = match scope {
        Scope::Global => acct(Tier::L0, None),
        Scope::Tier(t) => acct(*t, None),
        Scope::Tenant(t) => Account {
            tier: Tier::L0,
            tenant: Some(t.clone()),
        },
    };
    caps.scopes(&account)
        .into_iter()
        .find(|(s, _)| s == scope)
        .map(|(_, cap)| cap)
}

#[derive(Debug, Clone)]
enum Op {
    Reserve { tier: u8, tenant: u8, amount: u64 },
    Commit { which: usize, percent: u64 },
    Refund { which: usize },
    Abandon { which: usize },
    Shrink { which: usize, percent: u64 },
    Tick { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..4, 1u64..4_000).prop_map(|(tier, tenant, amount)| Op::Reserve { tier, tenant, amount }),
        2 => (any::<usize>(), 0u64..=100).prop_map(|(which, percent)| Op::Commit { which, percent }),
        1 => any::<usize>().prop_map(|which| Op::Refund { which }),
        1 => any::<usize>().prop_map(|which| Op::Abandon { which }),
        1 => (any::<usize>(), 0u64..=100).prop_map(|(which, percent)| Op::Shrink { which, percent }),
        1 => (0u64..40).prop_map(|secs| Op::Tick { secs }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any interleaving of reserve / commit / refund / abandon (what the drop guard
    /// does) / shrink / time passing: every scope's spend matches the model exactly and
    /// stays within its cap; at rest nothing is reserved and committed = sum of actuals.
    #[test]
    fn random_interleavings_never_exceed_a_cap_and_the_books_balance(ops in proptest::collection::vec(op(), 1..200)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let tiers = [Tier::L0, Tier::L1, Tier::L2];
            let tenants = ["a", "b", "c", "d"];
            let caps = Caps::new().global(n(20_000)).tier(Tier::L2, n(6_000)).every_tenant(n(8_000)).tenant(tenant("a"), n(3_000));
            let ledger = MemoryLedger::new(caps.clone());
            // Model: per (window, scope) the spend we expect.
            let mut model: HashMap<(u64, String), u64> = HashMap::new();
            let mut open: Vec<(Hold, Account)> = Vec::new();
            let mut actuals = 0u64;
            let settle = |ledger: &MemoryLedger, model: &mut HashMap<(u64, String), u64>, hold: Hold, account: &Account, actual: u64| {
                for (scope, _) in caps.scopes(account) {
                    let e = model.entry((hold.window(), scope.to_string())).or_default();
                    *e = *e - hold.amount().as_nanos() + actual;
                }
                ledger.settle(hold, n(actual));
                actual
            };
            for op in ops {
                match op {
                    Op::Reserve { tier, tenant: t, amount } => {
                        let account = acct(tiers[tier as usize], Some(tenants[t as usize]));
                        let (window, _) = ledger.now();
                        let fits = caps.scopes(&account).iter().all(|(scope, cap)| {
                            model.get(&(window, scope.to_string())).copied().unwrap_or(0) + amount <= cap.as_nanos()
                        });
                        match ledger.try_reserve(&account, n(amount)) {
                            Ok(hold) => {
                                prop_assert!(fits, "admitted a reservation the model refuses");
                                for (scope, _) in caps.scopes(&account) {
                                    *model.entry((window, scope.to_string())).or_default() += amount;
                                }
                                open.push((hold, account));
                            }
                            Err(_) => prop_assert!(!fits, "refused a reservation that fits"),
                        }
                    }
                    Op::Commit { which, percent } if !open.is_empty() => {
                        let (hold, account) = open.swap_remove(which % open.len());
                        let actual = hold.amount().as_nanos() * percent / 100;
                        actuals += settle(&ledger, &mut model, hold, &account, actual);
                    }
                    Op::Refund { which } if !open.is_empty() => {
                        let (hold, account) = open.swap_remove(which % open.len());
                        settle(&ledger, &mut model, hold, &account, 0);
                    }
                    Op::Abandon { which } if !open.is_empty() => {
                        // The drop guard commits a partial cost: here a third of the hold.
                        let (hold, account) = open.swap_remove(which % open.len());
                        let actual = hold.amount().as_nanos() / 3;
                        actuals += settle(&ledger, &mut model, hold, &account, actual);
                    }
                    Op::Shrink { which, percent } if !open.is_empty() => {
                        let i = which % open.len();
                        let (hold, account) = &mut open[i];
                        let to = hold.amount().as_nanos() * percent / 100;
                        let freed = hold.amount().as_nanos() - to;
                        for (scope, _) in caps.scopes(account) {
                            *model.get_mut(&(hold.window(), scope.to_string())).unwrap() -= freed;
                        }
                        ledger.shrink(hold, n(to));
                    }
                    Op::Tick { secs } => tokio::time::advance(Duration::from_secs(secs)).await,
                    _ => {}
                }
                let (window, _) = ledger.now();
                let mut scopes = vec![Scope::Global];
                scopes.extend(tiers.iter().map(|t| Scope::Tier(*t)));
                scopes.extend(tenants.iter().map(|t| Scope::Tenant(tenant(t))));
                for scope in scopes {
                    let spent = ledger.spent(&scope).as_nanos();
                    let expected = model.get(&(window, scope.to_string())).copied().unwrap_or(0);
                    prop_assert_eq!(spent, expected, "{} spend matches the model", scope);
                    if let Some(cap) = cap_of(&caps, &scope) {
                        prop_assert!(spent <= cap.as_nanos(), "{} spent {} over its cap {}", scope, spent, cap.as_nanos());
                    }
                }
            }
            for (hold, account) in open.drain(..) {
                actuals += settle(&ledger, &mut model, hold, &account, 0);
            }
            let books = ledger.books();
            prop_assert_eq!(books.outstanding, n(0));
            prop_assert_eq!(books.open_holds, 0);
            prop_assert_eq!(books.committed, n(actuals));
            Ok(())
        })?;
    }
}
