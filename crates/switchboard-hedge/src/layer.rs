use std::sync::Arc;

use switchboard_core::{HealthBoard, Route};
use tower::Layer;

use crate::budget::HedgeBudget;
use crate::service::Shared;
use crate::{Hedge, HedgeConfig};

/// Hedges calls across providers. See the [crate docs](crate).
///
/// Every service this layer builds shares one budget.
#[derive(Debug, Clone)]
pub struct HedgeLayer {
    shared: Arc<Shared>,
}

impl HedgeLayer {
    /// A hedge layer with this configuration, no fixed route and no board.
    pub fn new(config: HedgeConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                budget: Arc::new(HedgeBudget::new(config.budget)),
                config,
                route: None,
                board: None,
            }),
        }
    }

    /// The shared part for editing: copied first if a service already holds it.
    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// The route for requests that carry no `Route` extension.
    pub fn route(mut self, route: Route) -> Self {
        self.shared_mut().route = Some(route);
        self
    }

    /// Reads breaker states (to skip open providers) and first-token latency (for an
    /// adaptive soft timeout) from this board.
    pub fn board(mut self, board: HealthBoard) -> Self {
        self.shared_mut().board = Some(board);
        self
    }

    /// The shared budget.
    pub fn budget(&self) -> &HedgeBudget {
        &self.shared.budget
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(inner, self.shared.clone())
    }
}
