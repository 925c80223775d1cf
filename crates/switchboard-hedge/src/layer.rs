use std::sync::Arc;

use switchboard_core::{HealthBoard, Route};
use tower::Layer;

use crate::budget::HedgeBudget;
use crate::{Hedge, HedgeConfig};

/// Hedges calls across providers. See the [crate docs](crate).
///
/// Every service this layer builds shares one budget.
#[derive(Debug, Clone)]
pub struct HedgeLayer {
    config: Arc<HedgeConfig>,
    route: Option<Route>,
    board: Option<HealthBoard>,
    budget: Arc<HedgeBudget>,
}

impl HedgeLayer {
    /// A hedge layer with this configuration, no fixed route and no board.
    pub fn new(config: HedgeConfig) -> Self {
        Self {
            budget: Arc::new(HedgeBudget::new(config.budget)),
            config: Arc::new(config),
            route: None,
            board: None,
        }
    }

    /// The route for requests that carry no `Route` extension.
    pub fn route(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }

    /// Reads breaker states (to skip open providers) and first-token latency (for an
    /// adaptive soft timeout) from this board.
    pub fn board(mut self, board: HealthBoard) -> Self {
        self.board = Some(board);
        self
    }

    /// The shared budget.
    pub fn budget(&self) -> &HedgeBudget {
        &self.budget
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(
            inner,
            self.config.clone(),
            self.route.clone(),
            self.board.clone(),
            self.budget.clone(),
        )
    }
}
