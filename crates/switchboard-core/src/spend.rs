//! Where a request stood against its budgets: [`SpendLevel`] and [`BudgetStatus`].

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::Cost;

/// How close a budget is to its cap, by the thresholds of the request's tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendLevel {
    /// Below every threshold.
    Normal,
    /// Past the warn threshold: recorded and emitted, nothing else.
    Warn,
    /// Past the degrade threshold: the request may have been made cheaper.
    Degrade,
    /// Past the block threshold or the hard cap: the request was not sent upstream.
    Block,
}

impl SpendLevel {
    /// `normal`, `warn`, `degrade` or `block`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SpendLevel::Normal => "normal",
            SpendLevel::Warn => "warn",
            SpendLevel::Degrade => "degrade",
            SpendLevel::Block => "block",
        }
    }
}

/// Extension (request and response): the budget verdict for a request, for metrics and
/// the edge. Set by the budget layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetStatus {
    /// The most severe level over all scopes the request was charged to.
    pub level: SpendLevel,
    /// The scope that set the level (`global`, `tenant:acme`, `tier:L2`): static for
    /// the global and tier scopes, so the common verdict allocates nothing.
    pub scope: Cow<'static, str>,
    /// That scope's spend in the current window, this request's expected cost included.
    pub spent: Cost,
    /// That scope's cap for the window.
    pub cap: Cost,
    /// The amount held for this request (its cost upper bound) until it settles.
    pub reserved: Cost,
}
