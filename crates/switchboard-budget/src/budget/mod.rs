//! [`BudgetLayer`]: reserve, judge, degrade or block, and settle at the end of the stream.

mod admit;
mod future;
mod layer;
mod service;
mod settle;

pub use future::ResponseFuture;
pub use layer::{BudgetLayer, BudgetLayerBuilder};
pub use service::Budget;
pub use settle::SettledEvents;
