use switchboard_core::ProviderId;
use tower::Layer;

use crate::{Scope, Timeout, TimeoutTiers};

/// Applies [`TimeoutTiers`] to a provider service. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    tiers: TimeoutTiers,
    scope: Scope,
    provider: Option<ProviderId>,
}

impl TimeoutLayer {
    /// Enforces every phase of `tiers` ([`Scope::Both`]).
    pub const fn new(tiers: TimeoutTiers) -> Self {
        Self {
            tiers,
            scope: Scope::Both,
            provider: None,
        }
    }

    /// Which phases this layer enforces. Default [`Scope::Both`].
    pub const fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// The provider named in first-token errors when the request carries no `Target`
    /// extension (a layer wrapping one provider directly).
    pub fn provider(mut self, provider: ProviderId) -> Self {
        self.provider = Some(provider);
        self
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.tiers, self.scope, self.provider.clone())
    }
}
