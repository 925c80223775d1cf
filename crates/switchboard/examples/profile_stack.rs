//! Runs one row of the `stack` bench in a loop, for profilers:
//! `valgrind --tool=callgrind target/release/examples/profile_stack 20000 [row]`.
//!
//! `row` is a prefix of a bench row's name (`00` the provider alone … `12` the full standard
//! stack, the default). Subtract two runs with different counts to remove the set-up, or
//! profile only the measured loop (after 200 warm-up requests):
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*profile_stack::measured*'`.

#[path = "../benches/common/mod.rs"]
mod common;

use tower::ServiceExt;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let row = args.next().unwrap_or_else(|| "12".to_owned());
    let Some((name, service)) = common::stacks()
        .into_iter()
        .find(|(name, _)| name.starts_with(&row))
    else {
        eprintln!("no row {row:?}: use 00 to 13 (see benches/common/mod.rs)");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(run(&service, 200));
    let answered = measured(&rt, &service, n);
    println!("{name}: {answered} answered");
}

/// The measured requests, in a function of their own for `--toggle-collect`.
#[inline(never)]
fn measured(
    rt: &tokio::runtime::Runtime,
    service: &switchboard_core::BoxProvider,
    n: usize,
) -> usize {
    rt.block_on(run(service, n))
}

async fn run(service: &switchboard_core::BoxProvider, n: usize) -> usize {
    let mut answered = 0;
    for _ in 0..n {
        if let Ok(response) = service.clone().oneshot(common::request()).await {
            if response.collect().await.is_ok() {
                answered += 1;
            }
        }
    }
    answered
}
