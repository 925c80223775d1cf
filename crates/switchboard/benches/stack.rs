//! The cost of the standard stack per request, in process, over an instant provider, layer
//! group by layer group.
//!
//! `cargo bench -p switchboard --bench stack` (the system allocator) and
//! `cargo bench -p switchboard --bench stack_mimalloc` (the same rows under mimalloc).
#![allow(missing_docs)] // criterion_group! generates an undocumented public fn

use criterion::{Criterion, criterion_group, criterion_main};

mod common;

fn stack(c: &mut Criterion) {
    common::stack(c, "stack_per_request");
}

criterion_group!(benches, stack);
criterion_main!(benches);
