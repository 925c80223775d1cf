use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use switchboard_core::{
    ChatEvent, ChatResponse, Error, EventStream, PriceTable, RouteDecision, Usage,
};
use tokio::time::Instant;

use crate::rollout::{Assignment, Outcome, RolloutHandle, counts_for_rollout};

/// Reports one request's outcome to the rollout.
#[derive(Clone)]
pub(crate) struct Observer {
    pub(crate) handle: RolloutHandle,
    pub(crate) assignment: Assignment,
    pub(crate) prices: Arc<PriceTable>,
    /// When the call was routed: the rollout compares first-token times.
    pub(crate) start: Instant,
}

pin_project_lite::pin_project! {
    /// The future of [`Router`](crate::Router): the inner call, or the routing error.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            decision: Option<RouteDecision>,
            observer: Option<Observer>,
        },
        Failed {
            error: Option<Error>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, decision: RouteDecision, observer: Option<Observer>) -> Self {
        Self {
            kind: Kind::Called {
                future,
                decision: Some(decision),
                observer,
            },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, Error>>,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Failed { error } => {
                Poll::Ready(Err(error.take().unwrap_or_else(|| Error::NoProvider {
                    message: "route future polled after completion".into(),
                })))
            }
            KindProj::Called {
                future,
                decision,
                observer,
            } => {
                let result = std::task::ready!(future.poll(cx));
                let observer = observer.take();
                match result {
                    Ok(mut response) => {
                        if let Some(decision) = decision.take() {
                            response.extensions_mut().insert(decision);
                        }
                        if let Some(o) = observer {
                            o.handle
                                .observe(o.assignment, Outcome::FirstToken(o.start.elapsed()));
                            let model = response.model().to_owned();
                            response = response.map_events(move |events| ObservedEvents {
                                events,
                                usage: None,
                                model,
                                observer: Some(o),
                            });
                        }
                        Poll::Ready(Ok(response))
                    }
                    Err(error) => {
                        if let Some(o) = observer
                            && counts_for_rollout(&error)
                        {
                            o.handle.observe(o.assignment, Outcome::Failed);
                        }
                        Poll::Ready(Err(error))
                    }
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response's events, watched for the rollout: the cost of the final usage when the
    /// stream ends, or the failure when it breaks.
    struct ObservedEvents {
        #[pin]
        events: EventStream,
        usage: Option<Usage>,
        model: String,
        observer: Option<Observer>,
    }
}

impl Stream for ObservedEvents {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let item = std::task::ready!(this.events.poll_next(cx));
        match &item {
            Some(Ok(ChatEvent::Usage(u))) => match this.usage {
                Some(total) => total.merge_max(*u),
                None => *this.usage = Some(*u),
            },
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                if let Some(o) = this.observer.take()
                    && counts_for_rollout(error)
                {
                    o.handle.observe(o.assignment, Outcome::StreamFailed);
                }
            }
            None => {
                if let Some(o) = this.observer.take() {
                    let cost = this
                        .usage
                        .as_ref()
                        .zip(o.prices.get(this.model))
                        .and_then(|(usage, price)| price.cost_of(usage));
                    if let Some(cost) = cost {
                        o.handle.observe(o.assignment, Outcome::Cost(cost));
                    }
                }
            }
        }
        Poll::Ready(item)
    }
}
