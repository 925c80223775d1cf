use std::sync::Arc;

use tower::Layer;

use crate::Estimator;
use crate::estimate::Estimate;

/// Estimates each request's cost before the call and leaves a
/// [`CostEstimate`](switchboard_core::CostEstimate) in its extensions (a request that
/// already carries one keeps it). When the answer's stream ends with usage, the real
/// output tokens are recorded for the request's scene, so the estimator learns the
/// scene's expected output.
#[derive(Debug, Clone)]
pub struct EstimateLayer {
    estimator: Arc<Estimator>,
}

impl EstimateLayer {
    /// A layer estimating with `estimator` (share it with the budget layer).
    pub const fn new(estimator: Arc<Estimator>) -> Self {
        Self { estimator }
    }
}

impl<S> Layer<S> for EstimateLayer {
    type Service = Estimate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Estimate::new(inner, self.estimator.clone())
    }
}
