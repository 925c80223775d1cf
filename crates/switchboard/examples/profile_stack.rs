//! Runs one row of the `stack` bench in a loop, for profilers:
//! `valgrind --tool=callgrind target/release/examples/profile_stack 20000 [row]`.
//!
//! `row` is a prefix of a bench row's name (`00` the provider alone … `12` the full standard
//! stack, the default). Subtract two runs with different counts to remove the set-up, or
//! profile only the measured loop (after 200 warm-up requests):
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*profile_stack::measured*'`.
//! `SB_OWNED=1` calls one owned stack (`ready`, `call`) instead of a clone per request.

#[path = "../benches/common/mod.rs"]
mod common;

use tower::{Service, ServiceExt};

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

/// Each request clones the boxed stack and calls the clone (`oneshot`), as axum and tonic
/// servers do; with `SB_OWNED` set, one owned stack is made ready and called instead.
async fn run(service: &switchboard_core::BoxProvider, n: usize) -> usize {
    let owned = std::env::var_os("SB_OWNED").is_some();
    let mut stack = service.clone();
    let mut answered = 0;
    for _ in 0..n {
        let called = if owned {
            match stack.ready().await {
                Ok(ready) => ready.call(common::request()).await,
                Err(error) => Err(error),
            }
        } else {
            service.clone().oneshot(common::request()).await
        };
        if let Ok(response) = called {
            if response.collect().await.is_ok() {
                answered += 1;
            }
        }
    }
    answered
}
