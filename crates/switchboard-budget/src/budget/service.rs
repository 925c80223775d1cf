use std::sync::Arc;
use std::task::{Context, Poll};

use switchboard_core::{ChatRequest, ChatResponse, Error};
use tower::Service;

use crate::Ledger;
use crate::budget::admit::Policy;
use crate::budget::future::ResponseFuture;

/// The service [`BudgetLayer`](crate::BudgetLayer) builds.
#[derive(Debug, Clone)]
pub struct Budget<S, L> {
    inner: S,
    ledger: L,
    policy: Arc<Policy>,
}

impl<S, L> Budget<S, L> {
    pub(crate) fn new(inner: S, ledger: L, policy: Arc<Policy>) -> Self {
        Self {
            inner,
            ledger,
            policy,
        }
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

impl<S, L> Service<ChatRequest> for Budget<S, L>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone,
    L: Ledger,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture<S, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: ChatRequest) -> Self::Future {
        let prepared = match self.policy.prepare(&mut request) {
            Ok(prepared) => prepared,
            Err(error) => return ResponseFuture::done(Err(error)),
        };
        let (account, amount) = (&prepared.account, prepared.estimate.upper_bound);
        if let Some(reserved) = self.ledger.reserve_now(account, amount) {
            // Decided at once: call the service our caller made ready.
            let verdict = self.policy.admit(&self.ledger, reserved, request, prepared);
            return ResponseFuture::admitted(verdict, &mut self.inner, self.policy.clone());
        }
        // The reservation waits (Redis): take the service that was made ready and leave
        // a fresh clone, as tower's buffer-free middleware do.
        let reserve = self.ledger.reserve(account, amount);
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::reserving(
            reserve,
            inner,
            request,
            prepared,
            self.ledger.clone(),
            self.policy.clone(),
        )
    }
}
