//! Spend-control benchmarks: estimator throughput (MB/s) and ledger reserve + settle
//! (ops/s, one and two threads; Redis with `--features redis` and a reachable server;
//! the same through a `LeasedLedger` of budget slices).
//!
//! `cargo bench -p switchboard-budget --bench budget`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, Throughput, criterion_main};
use switchboard_budget::{
    Account, Caps, Estimator, Hold, LeasedLedger, Ledger, MemoryLedger, TokenCounting,
};
use switchboard_core::{ChatBody, Cost, Message, TenantId, Tier};

fn text(bytes: usize) -> String {
    let words = [
        "The",
        " budget",
        " ledger",
        " reserves",
        " an",
        " upper",
        " bound",
        ",",
        " then",
        " commits",
        " the",
        " real",
        " cost",
        ".\n",
        " fn",
        " main()",
        " {",
        " }",
        " 2026",
        " 東京",
        " 🎉",
    ];
    let mut out = String::new();
    let mut x: u64 = 1;
    while out.len() < bytes {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(words[(x >> 33) as usize % words.len()]);
    }
    out
}

fn estimator(c: &mut Criterion) {
    let doc = text(64 * 1024);
    let mut group = c.benchmark_group("estimator");
    group.throughput(Throughput::Bytes(doc.len() as u64));
    for (name, counting) in [
        ("cl100k", TokenCounting::Cl100k),
        ("o200k", TokenCounting::O200k),
        ("claude", TokenCounting::Claude),
    ] {
        group.bench_function(format!("count_{name}_64KiB"), |b| {
            b.iter(|| counting.count(black_box(&doc)))
        });
    }
    // The reference implementation the choice of bpe-openai was measured against.
    let cl100k = tiktoken_rs::cl100k_base().unwrap();
    let o200k = tiktoken_rs::o200k_base().unwrap();
    group.bench_function("tiktoken_rs_cl100k_64KiB", |b| {
        b.iter(|| cl100k.encode_ordinary(black_box(&doc)).len())
    });
    group.bench_function("tiktoken_rs_o200k_64KiB", |b| {
        b.iter(|| o200k.encode_ordinary(black_box(&doc)).len())
    });
    let estimator = Estimator::default();
    let body = ChatBody::new("gpt-4o-mini", vec![Message::user(doc.clone())])
        .system("You are a helpful assistant.")
        .max_tokens(512);
    group.bench_function("estimate_chat_64KiB", |b| {
        b.iter(|| estimator.estimate(black_box(&body), None))
    });
    group.finish();
}

fn account(i: u64) -> Account {
    Account {
        tier: Tier::ALL[(i % 3) as usize],
        tenant: Some(TenantId::new(["acme", "beta", "gamma", "delta"][(i % 4) as usize]).unwrap()),
    }
}

fn ledger(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let caps = Caps::new()
        .global(Cost::from_usd(1_000).unwrap())
        .tier(Tier::L2, Cost::from_usd(500).unwrap())
        .every_tenant(Cost::from_usd(400).unwrap());
    let amount = Cost::from_nanos(50_000);
    let actual = Cost::from_nanos(20_000);
    let mut group = c.benchmark_group("ledger_memory");
    group.throughput(Throughput::Elements(1));
    let memory = MemoryLedger::new(caps.clone());
    let mut i = 0u64;
    group.bench_function("reserve_settle_1_thread", |b| {
        b.iter(|| {
            i += 1;
            let hold = memory.try_reserve(&account(i), amount).unwrap();
            memory.settle(hold, actual);
        })
    });
    // Two threads: this thread is measured while a second one hammers the same ledger.
    let memory = MemoryLedger::new(caps);
    let stop = Arc::new(AtomicBool::new(false));
    let rival = {
        let memory = memory.clone();
        let stop = stop.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            let _guard = handle.enter();
            let mut j = 1u64;
            while !stop.load(Ordering::Relaxed) {
                j += 1;
                if let Ok(hold) = memory.try_reserve(&account(j), amount) {
                    memory.settle(hold, actual);
                }
            }
        })
    };
    group.bench_function("reserve_settle_2_threads", |b| {
        b.iter(|| {
            i += 1;
            let hold = memory.try_reserve(&account(i), amount).unwrap();
            memory.settle(hold, actual);
        })
    });
    stop.store(true, Ordering::Relaxed);
    rival.join().unwrap();
    group.finish();
}

/// Polls a leased reservation once (served from a slice it is ready at once) and only
/// blocks on the runtime when it has to fetch a new slice.
fn reserve_now<L: Ledger>(
    rt: &tokio::runtime::Handle,
    ledger: &LeasedLedger<L>,
    account: &Account,
    amount: Cost,
) -> Hold {
    let mut future = ledger.reserve(account, amount);
    match Pin::new(&mut future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(hold) => hold.unwrap(),
        Poll::Pending => rt.block_on(future).unwrap(),
    }
}

/// Reserve + settle through a `LeasedLedger` over a `MemoryLedger` (slices of $1, so a
/// slice serves 50,000 of these operations before the next is fetched).
fn ledger_leased(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let caps = Caps::new()
        .global(Cost::from_usd(200_000).unwrap())
        .tier(Tier::L2, Cost::from_usd(100_000).unwrap())
        .every_tenant(Cost::from_usd(80_000).unwrap());
    let slice = Cost::from_usd(1).unwrap();
    let amount = Cost::from_nanos(50_000);
    let actual = Cost::from_nanos(20_000);
    let mut group = c.benchmark_group("ledger_leased");
    group.throughput(Throughput::Elements(1));
    let leased = LeasedLedger::new(MemoryLedger::new(caps.clone()), slice);
    let handle = rt.handle().clone();
    let mut i = 0u64;
    group.bench_function("memory_reserve_settle_1_thread", |b| {
        b.iter(|| {
            i += 1;
            let hold = reserve_now(&handle, &leased, &account(i), amount);
            leased.settle(hold, actual);
        })
    });
    let leased = LeasedLedger::new(MemoryLedger::new(caps), slice);
    let stop = Arc::new(AtomicBool::new(false));
    let rival = {
        let leased = leased.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let _guard = rt.enter();
            let mut j = 1u64;
            while !stop.load(Ordering::Relaxed) {
                j += 1;
                let hold = reserve_now(rt.handle(), &leased, &account(j), amount);
                leased.settle(hold, actual);
            }
        })
    };
    group.bench_function("memory_reserve_settle_2_threads", |b| {
        b.iter(|| {
            i += 1;
            let hold = reserve_now(&handle, &leased, &account(i), amount);
            leased.settle(hold, actual);
        })
    });
    stop.store(true, Ordering::Relaxed);
    rival.join().unwrap();
    group.finish();
}

/// Reserve + settle on Redis, when `SWITCHBOARD_BENCH_REDIS_URL` names a server:
/// one at a time (round-trip bound) and 32 in flight from one client, then the same
/// through a `LeasedLedger`.
#[cfg(feature = "redis")]
fn ledger_redis(c: &mut Criterion) {
    use std::time::{Duration, Instant};
    use switchboard_budget::RedisLedger;

    let Ok(url) = std::env::var("SWITCHBOARD_BENCH_REDIS_URL") else {
        eprintln!("ledger_redis skipped: set SWITCHBOARD_BENCH_REDIS_URL=redis://127.0.0.1:PORT");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let caps = Caps::new()
        .global(Cost::from_usd(100_000).unwrap())
        .every_tenant(Cost::from_usd(50_000).unwrap());
    let ledger = rt
        .block_on(RedisLedger::connect(&url, caps))
        .unwrap()
        .prefix(format!("sbbench:{}", std::process::id()));
    let amount = Cost::from_nanos(50_000);
    let actual = Cost::from_nanos(20_000);
    let mut group = c.benchmark_group("ledger_redis");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("reserve_settle_sequential", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let hold = ledger.reserve(&account(i), amount).await.unwrap();
                    ledger.settle(hold, actual);
                }
                ledger.settled().await;
                start.elapsed()
            })
        })
    });
    group.bench_function("reserve_settle_32_in_flight", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..32u64)
                    .map(|t| {
                        let ledger = ledger.clone();
                        tokio::spawn(async move {
                            let mut i = t;
                            while i < iters {
                                let hold = ledger.reserve(&account(i), amount).await.unwrap();
                                ledger.settle(hold, actual);
                                i += 32;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                ledger.settled().await;
                start.elapsed()
            })
        })
    });
    // The same through slices of $1 leased from Redis (one round trip per 50,000 ops).
    let leased = ledger
        .clone()
        .prefix(format!("sbbench:{}:leased", std::process::id()))
        .leased(Cost::from_usd(1).unwrap());
    group.bench_function("leased_reserve_settle_sequential", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let hold = leased.reserve(&account(i), amount).await.unwrap();
                    leased.settle(hold, actual);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("leased_reserve_settle_32_in_flight", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..32u64)
                    .map(|t| {
                        let leased = leased.clone();
                        tokio::spawn(async move {
                            let mut i = t;
                            while i < iters {
                                let hold = leased.reserve(&account(i), amount).await.unwrap();
                                leased.settle(hold, actual);
                                i += 32;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    rt.block_on(async {
        leased.return_leases();
        leased.inner().settled().await;
    });
    group.finish();
}

#[cfg(not(feature = "redis"))]
fn ledger_redis(_: &mut Criterion) {}

#[allow(missing_docs, unreachable_pub)]
mod group {
    use super::{estimator, ledger, ledger_leased, ledger_redis};
    criterion::criterion_group!(benches, estimator, ledger, ledger_leased, ledger_redis);
}

criterion_main!(group::benches);
