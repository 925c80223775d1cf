use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use switchboard_core::{
    BudgetStatus, ChatRequest, ChatResponse, Degraded, Error, JobTicket, ProviderId,
};
use tower::Service;

use crate::Ledger;
use crate::budget::admit::{Policy, Prepared, Verdict};
use crate::budget::settle::{SettledEvents, Settlement};
use crate::cache::{CacheFuture, Replay};
use crate::jobs::{JobFuture, QueueError};
use crate::policy::{CACHED_ANSWER, ENQUEUED};

/// The future of [`Budget`](crate::Budget): the reservation, then the inner call; its
/// answer's stream settles the hold.
///
/// Everything lives in one box, the routed stack's future included: that future and the
/// hold are most of the size, and every layer above would otherwise move them again as it
/// builds its own future around this one.
pub struct ResponseFuture<S, L>
where
    S: Service<ChatRequest>,
    L: Ledger,
{
    inner: Pin<Box<Inner<S, L>>>,
}

pin_project! {
    struct Inner<S, L>
    where
        S: Service<ChatRequest>,
        L: Ledger,
    {
        #[pin]
        state: State<S::Future, L::Reserve, S, L>,
        ledger: Option<L>,
        policy: Option<Arc<Policy>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R, S, L: Ledger> {
        Reserving {
            #[pin]
            reserve: R,
            pending: Option<(S, ChatRequest, Prepared)>,
        },
        Calling {
            #[pin]
            call: F,
            settlement: Option<Settlement<L>>,
            status: Option<BudgetStatus>,
            degraded: Degraded,
        },
        Enqueuing {
            submit: JobFuture<Result<String, QueueError>>,
            blocked: Option<(String, Degraded, Error)>,
        },
        LookingUp {
            lookup: CacheFuture,
            blocked: Option<(Degraded, Error)>,
        },
        Done {
            result: Option<Result<ChatResponse, Error>>,
        },
    }
}

impl<S, L> ResponseFuture<S, L>
where
    S: Service<ChatRequest>,
    L: Ledger,
{
    pub(crate) fn reserving(
        reserve: L::Reserve,
        inner: S,
        request: ChatRequest,
        prepared: Prepared,
        ledger: L,
        policy: Arc<Policy>,
    ) -> Self {
        Self::boxed(Inner {
            state: State::Reserving {
                reserve,
                pending: Some((inner, request, prepared)),
            },
            ledger: Some(ledger),
            policy: Some(policy),
        })
    }

    fn boxed(inner: Inner<S, L>) -> Self {
        Self {
            inner: Box::pin(inner),
        }
    }

    /// A reservation decided in `call`: the verdict's state, calling `inner` (ready) to
    /// send.
    pub(crate) fn admitted(verdict: Verdict<L>, inner: &mut S, policy: Arc<Policy>) -> Self {
        Self::boxed(Inner {
            state: State::after(verdict, inner),
            // Only a pending reservation needs the ledger; the settlement has its own.
            ledger: None,
            policy: Some(policy),
        })
    }

    pub(crate) fn done(result: Result<ChatResponse, Error>) -> Self {
        Self::boxed(Inner {
            state: State::Done {
                result: Some(result),
            },
            ledger: None,
            policy: None,
        })
    }
}

impl<F, R, S, L> State<F, R, S, L>
where
    S: Service<ChatRequest, Future = F>,
    L: Ledger,
{
    /// The state a verdict leads to. Sending calls `inner` at once: it was made ready by
    /// the caller's `poll_ready`, and nothing was awaited since.
    fn after(verdict: Verdict<L>, inner: &mut S) -> Self {
        match verdict {
            Verdict::Send(request, settlement, status, degraded) => State::Calling {
                call: inner.call(request),
                settlement: Some(settlement),
                status,
                degraded,
            },
            Verdict::Answer(result) => State::Done {
                result: Some(result),
            },
            Verdict::Enqueue(submit, model, degraded, error) => State::Enqueuing {
                submit,
                blocked: Some((model, degraded, error)),
            },
            Verdict::Lookup(lookup, degraded, error) => State::LookingUp {
                lookup,
                blocked: Some((degraded, error)),
            },
        }
    }
}

impl<S, L> std::fmt::Debug for ResponseFuture<S, L>
where
    S: Service<ChatRequest>,
    L: Ledger,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, L> Future for ResponseFuture<S, L>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
    L: Ledger,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.get_mut().inner.as_mut().project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reserving { reserve, pending } => {
                    let reserved = ready!(reserve.poll(cx));
                    let (mut inner, request, prepared) = pending
                        .take()
                        .expect("polled after the reservation resolved");
                    let (Some(ledger), Some(policy)) = (this.ledger.as_ref(), this.policy.as_ref())
                    else {
                        unreachable!("a reserving future has a ledger and a policy");
                    };
                    let verdict = policy.admit(ledger, reserved, request, prepared);
                    this.state.set(State::after(verdict, &mut inner));
                }
                StateProj::Calling {
                    call,
                    settlement,
                    status,
                    degraded,
                } => {
                    let result = ready!(call.poll(cx));
                    let mut settlement = settlement.take().expect("polled after completion");
                    return Poll::Ready(match result {
                        Ok(mut response) => {
                            // A failover may have answered with another model: its price.
                            let price = this
                                .policy
                                .as_ref()
                                .filter(|_| !settlement.priced(response.model()))
                                .and_then(|p| p.estimator.known_price(response.model()));
                            settlement.answered_by(
                                response.provider().clone(),
                                response.model(),
                                price,
                            );
                            let ext = response.extensions_mut();
                            if !degraded.is_empty() {
                                // Ours first: they happened before anything inner did.
                                let mut all = std::mem::take(degraded);
                                if let Some(inner) = ext.remove::<Degraded>() {
                                    for d in inner.iter() {
                                        if !all.iter().any(|x| x == d) {
                                            all.push(d.reason.clone(), d.detail.clone());
                                        }
                                    }
                                }
                                ext.insert(all);
                            }
                            if let Some(status) = status.take() {
                                ext.insert(status);
                            }
                            Ok(
                                response
                                    .map_events(|events| SettledEvents::new(events, settlement)),
                            )
                        }
                        Err(error) => {
                            settlement.refund();
                            Err(error)
                        }
                    });
                }
                StateProj::Enqueuing { submit, blocked } => {
                    let submitted = ready!(submit.as_mut().poll(cx));
                    let (model, mut degraded, error) =
                        blocked.take().expect("polled after completion");
                    return Poll::Ready(match submitted {
                        Ok(id) => {
                            degraded.push(ENQUEUED, format!("queued as {id}: {error}"));
                            let mut response = ChatResponse::new(
                                ProviderId::from_static("switchboard"),
                                model,
                                Replay::empty(),
                            );
                            response.extensions_mut().insert(JobTicket { id });
                            response.extensions_mut().insert(degraded);
                            Ok(response)
                        }
                        Err(queue_error) => {
                            tracing::error!(%queue_error, "could not enqueue a blocked request: rejecting it");
                            Err(error)
                        }
                    });
                }
                StateProj::LookingUp { lookup, blocked } => {
                    let found = ready!(lookup.as_mut().poll(cx));
                    let (mut degraded, error) = blocked.take().expect("polled after completion");
                    return Poll::Ready(match found {
                        Some(mut answer) => {
                            degraded.push(
                                CACHED_ANSWER,
                                format!("answered from the response cache: {error}"),
                            );
                            answer.extensions_mut().insert(degraded);
                            Ok(answer)
                        }
                        None => Err(error),
                    });
                }
                StateProj::Done { result } => {
                    return Poll::Ready(result.take().expect("polled after completion"));
                }
            }
        }
    }
}
