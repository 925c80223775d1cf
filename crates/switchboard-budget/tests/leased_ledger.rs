//! `LeasedLedger`: replicas serving reservations from slices leased from one shared
//! ledger. The shared ledger here is a `MemoryLedger` behind a simulated round trip, on
//! tokio's paused clock (the Redis runs are in `redis_ledger.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use switchboard_budget::{Account, Caps, Hold, LeasedLedger, Ledger, MemoryLedger, Refusal, Scope};
use switchboard_core::{Cost, TenantId, Tier};
use tokio::sync::Barrier;

fn n(nanos: u64) -> Cost {
    Cost::from_nanos(nanos)
}

fn account(i: usize) -> Account {
    Account {
        tier: Tier::ALL[i % 3],
        tenant: Some(TenantId::new(["acme", "beta"][i % 2]).unwrap()),
    }
}

/// The shared ledger seen over a network: each reservation takes a (pseudo-random)
/// round trip before it reaches the ledger, so concurrent refills really interleave.
#[derive(Clone)]
struct Remote {
    ledger: MemoryLedger,
    calls: Arc<AtomicU64>,
}

impl Remote {
    fn new(ledger: MemoryLedger) -> Self {
        Self {
            ledger,
            calls: Arc::default(),
        }
    }
}

impl Ledger for Remote {
    type Reserve = Pin<Box<dyn Future<Output = Result<Hold, Refusal>> + Send>>;

    fn reserve(&self, account: &Account, amount: Cost) -> Self::Reserve {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let delay = Duration::from_micros(100 + (call.wrapping_mul(2_654_435_761) % 2_900));
        let ledger = self.ledger.clone();
        let account = account.clone();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            ledger.try_reserve(&account, amount)
        })
    }

    fn shrink(&self, hold: &mut Hold, to: Cost) {
        self.ledger.shrink(hold, to);
    }

    fn settle(&self, hold: Hold, actual: Cost) {
        self.ledger.settle(hold, actual);
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn four_replicas_and_a_thousand_concurrent_leased_reservations_never_overshoot() {
    let amount = 1_000u64;
    let cap = 300 * amount;
    let slice = 10 * amount;
    let shared = MemoryLedger::builder(Caps::new().global(n(cap)).every_tenant(n(cap)))
        .window(HOUR)
        .build();
    let remote = Remote::new(shared.clone());
    let replicas: Vec<_> = (0..4)
        .map(|_| LeasedLedger::new(remote.clone(), n(slice)))
        .collect();
    let acme = account(0);
    let barrier = Arc::new(Barrier::new(1_000));
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let ledger = replicas[i % 4].clone();
            let barrier = barrier.clone();
            let acme = acme.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                ledger
                    .reserve(&acme, n(amount))
                    .await
                    .ok()
                    .map(|h| (i % 4, h))
            })
        })
        .collect();
    let mut holds = Vec::new();
    for t in tasks {
        if let Some(h) = t.await.unwrap() {
            holds.push(h);
        }
    }
    let admitted = holds.len() as u64 * amount;
    let unused: u64 = replicas.iter().map(|r| r.unused().as_nanos()).sum();
    assert!(shared.spent(&Scope::Global) <= n(cap), "zero overshoot");
    assert!(
        admitted + unused <= cap,
        "admitted {admitted} + unused slices {unused} within the cap {cap}"
    );
    assert!(
        admitted >= cap - 4 * slice,
        "early refusals bounded by slice × replicas: admitted {admitted} of {cap}"
    );
    for (_, hold) in &holds {
        for s in hold.scopes() {
            assert!(s.spent <= s.cap, "{} at {:?}", s.scope, s.spent);
        }
    }
    let mut committed = 0;
    for (k, (replica, hold)) in holds.into_iter().enumerate() {
        let actual = (k as u64 * 7) % (amount + 1);
        committed += actual;
        replicas[replica].settle(hold, n(actual));
    }
    for r in &replicas {
        r.return_leases();
    }
    let books = shared.books();
    assert_eq!(
        books.outstanding,
        Cost::ZERO,
        "nothing stays reserved at rest"
    );
    assert_eq!(books.open_holds, 0);
    assert_eq!(books.committed, n(committed), "committed = sum of actuals");
    assert_eq!(books.overrun, Cost::ZERO);
    assert_eq!(shared.spent(&Scope::Global), n(committed));
}

/// Real threads racing on the same leases (no paused clock here): the cap is sampled
/// while they run, and the books balance afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_two_threads_racing_reserve_and_settle_keep_the_cap_and_the_books() {
    let amount = 700u64;
    let cap = 200 * amount;
    let shared = MemoryLedger::builder(Caps::new().global(n(cap)).tier(Tier::L1, n(cap / 2)))
        .window(HOUR)
        .build();
    let replicas: Vec<_> = (0..4)
        .map(|_| LeasedLedger::new(shared.clone(), n(8 * amount)))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let shared = shared.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut max = Cost::ZERO;
            while !done.load(Ordering::Relaxed) {
                max = max.max(shared.spent(&Scope::Global));
                std::thread::yield_now();
            }
            max
        })
    };
    let committed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..1_000usize)
        .map(|i| {
            let ledger = replicas[i % 4].clone();
            let committed = committed.clone();
            tokio::spawn(async move {
                let mut admitted = 0;
                for round in 0..20u64 {
                    let who = account(i + round as usize);
                    if let Ok(hold) = ledger.reserve(&who, n(amount)).await {
                        admitted += 1;
                        tokio::task::yield_now().await;
                        let actual = (i as u64 + round) % (amount + 1);
                        committed.fetch_add(actual, Ordering::Relaxed);
                        ledger.settle(hold, n(actual));
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let max = watcher.join().unwrap();
    assert!(max <= n(cap), "spent peaked at {max:?} against {cap}");
    assert!(admitted > 0);
    for r in &replicas {
        r.return_leases();
    }
    let books = shared.books();
    assert_eq!(books.outstanding, Cost::ZERO);
    assert_eq!(books.open_holds, 0);
    assert_eq!(books.committed, n(committed.load(Ordering::Relaxed)));
    assert_eq!(shared.spent(&Scope::Global), books.committed);
    assert!(shared.spent(&Scope::Tier(Tier::L1)) <= n(cap / 2));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_round_trip_per_slice_and_the_last_slice_is_reserved_request_by_request() {
    let shared = MemoryLedger::builder(Caps::new().global(n(25)))
        .window(HOUR)
        .build();
    let remote = Remote::new(shared.clone());
    let ledger = LeasedLedger::new(remote.clone(), n(10));
    let acme = account(0);
    let mut holds = Vec::new();
    for _ in 0..25 {
        holds.push(ledger.reserve(&acme, n(1)).await.expect("fits the cap"));
    }
    let refusal = ledger.reserve(&acme, n(1)).await.unwrap_err();
    assert_eq!(
        (refusal.scope, refusal.spent, refusal.cap),
        (Scope::Global, n(25), n(25))
    );
    assert!(refusal.retry_after.is_some());
    // Two slices (10 + 10), one refused slice, then five direct reservations and the
    // refused one.
    assert_eq!(remote.calls.load(Ordering::Relaxed), 2 + 1 + 5 + 1);
    assert_eq!(shared.spent(&Scope::Global), n(25));
    // A request larger than the slice goes straight to the shared ledger.
    for hold in holds {
        ledger.settle(hold, n(1));
    }
    let big = ledger.reserve(&account(1), n(11)).await;
    assert!(big.is_err(), "the cap is spent");
    assert_eq!(shared.books().committed, n(25));
    assert_eq!(remote.calls.load(Ordering::Relaxed), 10);
    // The next window: slices again.
    tokio::time::sleep(HOUR).await;
    assert_eq!(ledger.leases(), 0);
    let hold = ledger.reserve(&acme, n(1)).await.unwrap();
    assert_eq!((hold.window(), ledger.leases()), (1, 1));
    assert_eq!(
        shared.spent(&Scope::Global),
        n(10),
        "one slice in the new window"
    );
    ledger.settle(hold, n(1));
    assert_eq!(remote.calls.load(Ordering::Relaxed), 11);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unused_slices_are_returned_on_demand_and_on_drop() {
    let shared = MemoryLedger::builder(Caps::new().global(n(100)))
        .window(HOUR)
        .build();
    let a = LeasedLedger::new(shared.clone(), n(60));
    let b = LeasedLedger::new(shared.clone(), n(60));
    let acme = account(0);
    let hold = a.reserve(&acme, n(5)).await.unwrap();
    assert_eq!(a.unused(), n(55));
    assert_eq!(
        shared.spent(&Scope::Global),
        n(60),
        "the whole slice is reserved"
    );
    // B's slice does not fit beside A's; B's own request does, directly.
    let direct = b.reserve(&acme, n(40)).await.unwrap();
    // A's unused slice makes B refuse early: 45 would fit the cap's real spend.
    assert!(b.reserve(&acme, n(1)).await.is_err());
    a.return_leases();
    assert_eq!(a.leases(), 0);
    assert_eq!(
        shared.spent(&Scope::Global),
        n(45),
        "A's unused 55 came back while its hold is open"
    );
    let late = b
        .reserve(&acme, n(10))
        .await
        .expect("fits once A returned its slice");
    a.settle(hold, n(3));
    b.settle(direct, n(40));
    b.settle(late, n(10));
    assert_eq!(b.leases(), 0, "B went direct after its slice was refused");
    assert_eq!(
        shared.spent(&Scope::Global),
        n(53),
        "A's lease settled at rest"
    );
    // Dropping the last clone returns its slices too.
    let c = LeasedLedger::new(shared.clone(), n(20));
    let hold = c.reserve(&acme, n(5)).await.unwrap();
    c.settle(hold, n(2));
    assert_eq!(shared.spent(&Scope::Global), n(73));
    let c2 = c.clone();
    drop(c);
    assert_eq!(
        (c2.leases(), c2.unused()),
        (1, n(18)),
        "a clone keeps the lease"
    );
    drop(c2);
    let books = shared.books();
    assert_eq!(books.outstanding, Cost::ZERO);
    assert_eq!(books.open_holds, 0);
    assert_eq!(books.committed, n(55));
    assert_eq!(shared.spent(&Scope::Global), n(55));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_window_roll_over_retires_the_lease_and_the_next_slice_is_in_the_new_window() {
    let window = Duration::from_secs(60);
    let shared = MemoryLedger::builder(Caps::new().global(n(100)))
        .window(window)
        .build();
    let ledger = LeasedLedger::new(Remote::new(shared.clone()), n(30));
    let acme = account(0);
    let first = ledger.reserve(&acme, n(10)).await.unwrap();
    let streaming = ledger.reserve(&acme, n(10)).await.unwrap();
    assert_eq!(first.window(), 0);
    assert!(first.resets_in() <= window);
    ledger.settle(first, n(4));
    assert_eq!(ledger.leases(), 1);
    // Past the window's end: the timer retired the lease.
    tokio::time::sleep(window).await;
    assert_eq!(ledger.leases(), 0, "the lease ended with its window");
    assert_eq!(
        shared.spent(&Scope::Global),
        Cost::ZERO,
        "a new window starts empty"
    );
    let books = shared.books();
    assert_eq!(
        books.open_holds, 1,
        "the lease settles when its streaming hold does"
    );
    assert_eq!(
        books.outstanding,
        n(14),
        "the unused 16 came back; the open hold's 10 and the 4 committed locally are booked when the lease settles"
    );
    let next = ledger.reserve(&acme, n(25)).await.unwrap();
    assert_eq!(next.window(), 1, "a fresh slice in the new window");
    assert_eq!(shared.spent(&Scope::Global), n(30));
    // The hold admitted in window 0 settles into window 0.
    ledger.settle(streaming, n(7));
    ledger.settle(next, n(25));
    ledger.return_leases();
    let books = shared.books();
    assert_eq!(books.outstanding, Cost::ZERO);
    assert_eq!(books.open_holds, 0);
    assert_eq!(books.committed, n(4 + 7 + 25));
    assert_eq!(shared.spent(&Scope::Global), n(25));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shrink_returns_budget_to_the_slice() {
    let shared = MemoryLedger::builder(Caps::new().global(n(100)))
        .window(HOUR)
        .build();
    let ledger = LeasedLedger::new(shared.clone(), n(50));
    let acme = account(0);
    let mut hold = ledger.reserve(&acme, n(40)).await.unwrap();
    assert_eq!(ledger.unused(), n(10));
    ledger.shrink(&mut hold, n(15));
    assert_eq!(hold.amount(), n(15));
    assert_eq!(ledger.unused(), n(35));
    let other = ledger.reserve(&acme, n(35)).await.unwrap();
    assert_eq!(
        shared.spent(&Scope::Global),
        n(50),
        "served from the same slice"
    );
    ledger.settle(hold, n(20)); // 5 over its (shrunk) bound: taken from the slice
    ledger.settle(other, n(35));
    ledger.return_leases();
    let books = shared.books();
    assert_eq!((books.outstanding, books.committed), (Cost::ZERO, n(55)));
    assert_eq!(
        books.overrun,
        n(5),
        "the slice had nothing left to absorb it"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        replica: usize,
        who: usize,
        amount: u64,
    },
    Settle {
        pick: usize,
        percent: u64,
    },
    Shrink {
        pick: usize,
        percent: u64,
    },
    Drop {
        pick: usize,
    },
    Return {
        replica: usize,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..3usize, 1..400u64).prop_map(|(replica, who, amount)| Op::Reserve { replica, who, amount }),
        2 => (any::<usize>(), 0..=100u64).prop_map(|(pick, percent)| Op::Settle { pick, percent }),
        1 => (any::<usize>(), 0..=100u64).prop_map(|(pick, percent)| Op::Shrink { pick, percent }),
        1 => any::<usize>().prop_map(|pick| Op::Drop { pick }),
        1 => (0..4usize).prop_map(|replica| Op::Return { replica }),
        1 => (0..40_000u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random interleavings of reserve / shrink / settle / refund / lease returns and
    /// window roll-overs across four replicas: never over any cap, and the books
    /// balance at rest.
    #[test]
    fn leased_replicas_never_cross_a_cap_and_the_books_balance(ops in proptest::collection::vec(op(), 1..120)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let caps = Caps::new().global(n(2_000)).tier(Tier::L0, n(900)).every_tenant(n(1_200));
            let shared = MemoryLedger::builder(caps).window(Duration::from_secs(60)).build();
            let replicas: Vec<_> = (0..4)
                .map(|r| LeasedLedger::new(Remote::new(shared.clone()), n(100 + 50 * r as u64)))
                .collect();
            let mut holds: Vec<(usize, Hold)> = Vec::new();
            let mut committed = 0u64;
            for op in ops {
                match op {
                    Op::Reserve { replica, who, amount } => {
                        if let Ok(hold) = replicas[replica].reserve(&account(who), n(amount)).await {
                            holds.push((replica, hold));
                        }
                    }
                    Op::Settle { pick, percent } if !holds.is_empty() => {
                        let (r, hold) = holds.swap_remove(pick % holds.len());
                        let actual = hold.amount().as_nanos() * percent / 100;
                        committed += actual;
                        replicas[r].settle(hold, n(actual));
                    }
                    Op::Shrink { pick, percent } if !holds.is_empty() => {
                        let i = pick % holds.len();
                        let (r, hold) = &mut holds[i];
                        let to = hold.amount().as_nanos() * percent / 100;
                        replicas[*r].shrink(hold, n(to));
                    }
                    Op::Drop { pick } if !holds.is_empty() => {
                        let (r, hold) = holds.swap_remove(pick % holds.len());
                        replicas[r].settle(hold, Cost::ZERO);
                    }
                    Op::Return { replica } => replicas[replica].return_leases(),
                    Op::Advance { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
                    _ => {}
                }
                prop_assert!(shared.spent(&Scope::Global) <= n(2_000));
                prop_assert!(shared.spent(&Scope::Tier(Tier::L0)) <= n(900));
                for who in 0..2 {
                    let tenant = account(who).tenant.unwrap();
                    prop_assert!(shared.spent(&Scope::Tenant(tenant)) <= n(1_200));
                }
            }
            for (r, hold) in holds.drain(..) {
                let actual = hold.amount().as_nanos() / 2;
                committed += actual;
                replicas[r].settle(hold, n(actual));
            }
            drop(replicas);
            let books = shared.books();
            prop_assert_eq!(books.outstanding, Cost::ZERO);
            prop_assert_eq!(books.open_holds, 0);
            prop_assert_eq!(books.committed, n(committed));
            prop_assert_eq!(books.overrun, Cost::ZERO);
            Ok(())
        })?;
    }
}
