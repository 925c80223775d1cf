use std::sync::Arc;

use switchboard_core::{HealthBoard, PriceTable};
use tower::Layer;

use crate::policy::RoutePolicy;
use crate::rollout::{Rollout, RolloutHandle};
use crate::select::Selector;
use crate::service::{Router, Shared};

/// Chooses each request's providers. See the [crate docs](crate).
///
/// Every service this layer builds shares the policy, the board, the prices and the
/// rollout.
#[derive(Debug, Clone)]
pub struct RouteLayer {
    shared: Arc<Shared>,
}

impl RouteLayer {
    /// Routes by `policy`, with no board (no breaker skipping, no latency ranking), no
    /// prices and no rollout.
    pub fn new(policy: RoutePolicy) -> Self {
        Self {
            shared: Arc::new(Shared {
                baseline: Arc::new(Selector::new(policy)),
                board: None,
                prices: Arc::new(PriceTable::new()),
                rollout: None,
            }),
        }
    }

    /// Reads breaker states (to skip open providers) and first-token latency (to rank)
    /// from this board.
    pub fn board(mut self, board: HealthBoard) -> Self {
        Arc::make_mut(&mut self.shared).board = Some(board);
        self
    }

    /// Prices concrete models: the cost cap's cheapest-first ordering and the rollout's
    /// cost guard read them.
    pub fn prices(mut self, prices: PriceTable) -> Self {
        Arc::make_mut(&mut self.shared).prices = Arc::new(prices);
        self
    }

    /// Splits traffic between this layer's policy (the baseline) and the rollout's
    /// candidate.
    pub fn rollout(mut self, rollout: Rollout) -> Self {
        Arc::make_mut(&mut self.shared).rollout = Some(rollout);
        self
    }

    /// The rollout's handle, if one runs.
    pub fn rollout_handle(&self) -> Option<RolloutHandle> {
        self.shared.rollout.as_ref().map(Rollout::handle)
    }

    /// The baseline policy.
    pub fn policy(&self) -> &RoutePolicy {
        self.shared.baseline.policy()
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Router<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Router::new(inner, self.shared.clone())
    }
}
