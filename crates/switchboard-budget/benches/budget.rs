//! Spend-control benchmarks: estimator throughput (MB/s) and ledger reserve + settle
//! (ops/s, one and two threads; Redis with `--features redis` and a reachable server).
//!
//! `cargo bench -p switchboard-budget --bench budget`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, Throughput, criterion_main};
use switchboard_budget::{Account, Caps, Estimator, Ledger, MemoryLedger, TokenCounting};
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

#[allow(missing_docs, unreachable_pub)]
mod group {
    use super::{estimator, ledger};
    criterion::criterion_group!(benches, estimator, ledger);
}

criterion_main!(group::benches);
