//! Where a request may go: a [`Route`] of [`Target`]s, and the [`Target`] each attempt is
//! sent to.

use serde::{Deserialize, Serialize};

use crate::{ModelName, ProviderId};

/// One provider and the concrete model to ask it for.
///
/// As a request extension it tells a dispatcher which provider *this attempt* goes to: the
/// hedge layer inserts one into each attempt's extensions (and sets the body's `model` to
/// [`Target::model`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The provider.
    pub provider: ProviderId,
    /// The concrete model name at that provider.
    pub model: ModelName,
}

impl Target {
    /// A target.
    pub fn new(provider: ProviderId, model: impl Into<ModelName>) -> Self {
        Self {
            provider,
            model: model.into(),
        }
    }
}

/// Request extension: the providers a request may be served by, in order of preference.
/// The route layer produces it; the hedge layer walks it (primary first, then fallbacks).
///
/// ```
/// use switchboard_core::{ProviderId, Route, Target};
///
/// let route = Route::new(Target::new(ProviderId::OPENAI, "gpt-4o-mini"))
///     .fallback(Target::new(ProviderId::ANTHROPIC, "claude-haiku-4-5"));
/// let order: Vec<&str> = route.targets().map(|t| t.provider.as_str()).collect();
/// assert_eq!(order, ["openai", "anthropic"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The preferred target.
    pub primary: Target,
    /// The others, in order.
    #[serde(default)]
    pub fallbacks: Vec<Target>,
}

impl Route {
    /// A route with only a primary.
    pub fn new(primary: Target) -> Self {
        Self {
            primary,
            fallbacks: Vec::new(),
        }
    }

    /// Appends a fallback.
    pub fn fallback(mut self, target: Target) -> Self {
        self.fallbacks.push(target);
        self
    }

    /// Primary first, then the fallbacks.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        std::iter::once(&self.primary).chain(self.fallbacks.iter())
    }

    /// How many targets the route has (at least one).
    pub fn len(&self) -> usize {
        1 + self.fallbacks.len()
    }

    /// Always false: a route has a primary.
    pub fn is_empty(&self) -> bool {
        false
    }
}
