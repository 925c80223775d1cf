//! The standard stack per request, as `benches/stack.rs`, under mimalloc: what an
//! application that sets it as its global allocator (the `switchboard` gateway does) gets.
//!
//! `cargo bench -p switchboard --bench stack_mimalloc`
#![allow(missing_docs)] // criterion_group! generates an undocumented public fn

use criterion::{Criterion, criterion_group, criterion_main};

mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn stack(c: &mut Criterion) {
    common::stack(c, "stack_per_request_mimalloc");
}

criterion_group!(benches, stack);
criterion_main!(benches);
