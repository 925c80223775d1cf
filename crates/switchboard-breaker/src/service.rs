use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use switchboard_core::{CallClock, ChatRequest, ChatResponse, Error, ProviderHealth, ProviderId};
use tokio::time::{Instant, Sleep, sleep_until};
use tower::Service;

use crate::Mode;
use crate::future::{CallGuard, ResponseFuture};
use crate::machine::{Admission, Ticket};
use crate::shared::Shared;

/// A circuit breaker in front of one provider. Built by
/// [`BreakerLayer`](crate::BreakerLayer); clones share one state machine.
pub struct Breaker<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Backpressure mode: the admission won in `poll_ready`, spent by `call`.
    permit: Option<Permit>,
    sleep: Option<Pin<Box<Sleep>>>,
}

/// An admission taken but not yet used; returned (as a cancelled call) when dropped.
struct Permit {
    shared: Arc<Shared>,
    ticket: Option<Ticket>,
}

impl Permit {
    fn take(mut self) -> Ticket {
        self.ticket.take().unwrap_or(Ticket::Untracked)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            // Reuse the guard's bookkeeping: an unused admission is a cancelled call.
            drop(CallGuard::new(self.shared.clone(), ticket, Instant::now()));
        }
    }
}

impl<S> Breaker<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            permit: None,
            sleep: None,
        }
    }

    /// The provider this breaker guards.
    pub fn provider(&self) -> &ProviderId {
        &self.shared.provider
    }

    /// The provider's entry on the health board: read its state and statistics, or
    /// force it open or closed, or reset it.
    pub fn handle(&self) -> &ProviderHealth {
        &self.shared.health
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

impl<S: Clone> Clone for Breaker<S> {
    fn clone(&self) -> Self {
        Self::from_shared(self.inner.clone(), self.shared.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for Breaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("provider", &self.shared.provider)
            .field("state", &self.shared.health.state())
            .field("mode", &self.shared.mode)
            .finish()
    }
}

impl<S> Service<ChatRequest> for Breaker<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.mode == Mode::Backpressure {
            while self.permit.is_none() {
                // Watch before asking, so a transition in between still wakes us.
                self.shared.health.watch(cx.waker());
                match self.shared.acquire(Instant::now()) {
                    Admission::Admit(ticket) => {
                        self.permit = Some(Permit {
                            shared: self.shared.clone(),
                            ticket: Some(ticket),
                        });
                        self.sleep = None;
                    }
                    Admission::Reject { until: Some(until) } => {
                        match &mut self.sleep {
                            Some(sleep) => sleep.as_mut().reset(until),
                            None => self.sleep = Some(Box::pin(sleep_until(until))),
                        }
                        if let Some(sleep) = &mut self.sleep
                            && sleep.as_mut().poll(cx).is_ready()
                        {
                            continue; // the open period is over: ask again
                        }
                        return Poll::Pending;
                    }
                    // Half-open with every probe out, or forced open: a finishing probe
                    // or an operator wakes us.
                    Admission::Reject { until: None } => return Poll::Pending,
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        // One clock reading for the admission and the call's start (the enclosing
        // `call`'s, when there is one).
        let clock = CallClock::enter();
        let now = clock.now();
        let ticket = match self.permit.take() {
            Some(permit) => permit.take(),
            None => match self.shared.acquire(now) {
                Admission::Admit(ticket) => ticket,
                Admission::Reject { until } => {
                    return ResponseFuture::rejected(self.shared.circuit_open(until));
                }
            },
        };
        let guard = CallGuard::new(self.shared.clone(), ticket, now);
        ResponseFuture::called(self.inner.call(request), guard)
    }
}
