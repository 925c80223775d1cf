use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use switchboard_core::{ChatRequest, ChatResponse, Error, HealthBoard, Route};
use tower::Service;

use crate::HedgeConfig;
use crate::budget::HedgeBudget;
use crate::future::{ResponseFuture, Start};

/// Hedges calls across the providers of a route. Built by
/// [`HedgeLayer`](crate::HedgeLayer); clones share the budget.
#[derive(Debug, Clone)]
pub struct Hedge<S> {
    inner: S,
    config: Arc<HedgeConfig>,
    route: Option<Route>,
    board: Option<HealthBoard>,
    budget: Arc<HedgeBudget>,
}

impl<S> Hedge<S> {
    pub(crate) fn new(
        inner: S,
        config: Arc<HedgeConfig>,
        route: Option<Route>,
        board: Option<HealthBoard>,
        budget: Arc<HedgeBudget>,
    ) -> Self {
        Self {
            inner,
            config,
            route,
            board,
            budget,
        }
    }

    /// The shared budget.
    pub fn budget(&self) -> &HedgeBudget {
        &self.budget
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
        self.budget.deposit();
        let route = request.extensions().get::<Route>().or(self.route.as_ref());
        let start = match route {
            Some(route) => Start::Route(route.targets().cloned().collect::<VecDeque<_>>()),
            None => Start::Fail(Error::NoProvider {
                message:
                    "no Route extension on the request and no route configured on the hedge layer"
                        .into(),
            }),
        };
        ResponseFuture::new(
            service,
            request,
            start,
            self.config.clone(),
            self.board.clone(),
            self.budget.clone(),
        )
    }
}
