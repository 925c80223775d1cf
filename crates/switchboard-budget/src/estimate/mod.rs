//! [`EstimateLayer`]: puts a [`CostEstimate`](switchboard_core::CostEstimate) on every
//! request and learns each scene's output from real usage.

mod future;
mod layer;
mod service;

pub use future::{EstimateFuture, ObservedEvents};
pub use layer::EstimateLayer;
pub use service::Estimate;
