//! Runnable examples of Switchboard in other programs; see the `[[example]]`s of this
//! package and the Examples section of the repository's README:
//!
//! - `axum_app`: an axum app whose handler calls LLMs through the standard stack;
//! - `tonic_app`: a gRPC service (tonic, no protoc) that takes the tier from gRPC metadata;
//! - `custom_stack`: a hand-composed `ServiceBuilder` stack with a subset of the layers;
//! - `breaker_http_client`: the circuit breaker and timeout tiers over a non-LLM HTTP client.
//!
//! Run one with `cargo run -p switchboard-examples --example axum_app`.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
