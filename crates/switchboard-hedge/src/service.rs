use std::sync::Arc;
use std::task::{Context, Poll};

use switchboard_core::{ChatRequest, ChatResponse, Error, HealthBoard, Route};
use tower::Service;

use crate::HedgeConfig;
use crate::budget::HedgeBudget;
use crate::future::{Remaining, ResponseFuture, Start};

/// Hedges calls across the providers of a route. Built by
/// [`HedgeLayer`](crate::HedgeLayer); clones share the budget.
#[derive(Debug, Clone)]
pub struct Hedge<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What a hedge service and each of its calls share: one reference count per clone
/// and per call, not one per part.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) config: HedgeConfig,
    pub(crate) route: Option<Route>,
    pub(crate) board: Option<HealthBoard>,
    pub(crate) budget: Arc<HedgeBudget>,
}

impl<S> Hedge<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The shared budget.
    pub fn budget(&self) -> &HedgeBudget {
        &self.shared.budget
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<ChatRequest> for Hedge<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        // The ready service goes with the call; a clone stays for the next one (tower's
        // usual dance).
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        self.shared.budget.deposit();
        let route = request
            .extensions()
            .get::<Route>()
            .or(self.shared.route.as_ref());
        let start = match route {
            Some(route) => Start::Route(Remaining::new(route.clone())),
            None => Start::Fail(Error::NoProvider {
                message:
                    "no Route extension on the request and no route configured on the hedge layer"
                        .into(),
            }),
        };
        ResponseFuture::new(service, request, start, self.shared.clone())
    }
}
