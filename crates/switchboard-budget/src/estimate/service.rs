use std::sync::Arc;
use std::task::{Context, Poll};

use switchboard_core::{ChatRequest, ChatResponse, CostEstimate, Error, Scene};
use tower::Service;

use crate::Estimator;
use crate::estimate::EstimateFuture;

/// The service [`EstimateLayer`](crate::EstimateLayer) builds.
#[derive(Debug, Clone)]
pub struct Estimate<S> {
    inner: S,
    estimator: Arc<Estimator>,
}

impl<S> Estimate<S> {
    pub(crate) fn new(inner: S, estimator: Arc<Estimator>) -> Self {
        Self { inner, estimator }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<ChatRequest> for Estimate<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = EstimateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: ChatRequest) -> Self::Future {
        // The scene's learner, looked up once: the estimate reads it, the answer feeds it.
        let learner = request
            .extensions()
            .get::<Scene>()
            .map(|scene| self.estimator.learner(scene));
        if request.extensions().get::<CostEstimate>().is_none() {
            let estimate = self
                .estimator
                .estimate_learned(request.body(), learner.as_deref());
            request.extensions_mut().insert(estimate);
        }
        EstimateFuture::new(self.inner.call(request), learner)
    }
}
