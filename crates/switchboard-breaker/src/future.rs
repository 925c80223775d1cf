use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use switchboard_core::{CallClock, ChatEvent, ChatResponse, Error, EventStream, InFlight};
use tokio::time::Instant;

use crate::machine::Ticket;
use crate::shared::{CallResult, Shared};

/// One admitted call until its verdict: a success when the stream ends cleanly (or the
/// caller drops it after the first token), a failure on the first error, nothing when it
/// is cancelled before the first token.
pub(crate) struct CallGuard {
    shared: Arc<Shared>,
    ticket: Ticket,
    start: Instant,
    first_token: Option<std::time::Duration>,
    done: bool,
    _in_flight: InFlight,
}

impl CallGuard {
    pub(crate) fn new(shared: Arc<Shared>, ticket: Ticket, start: Instant) -> Self {
        let in_flight = shared.health.call_started();
        Self {
            shared,
            ticket,
            start,
            first_token: None,
            done: false,
            _in_flight: in_flight,
        }
    }

    fn end(&mut self, result: CallResult<'_>) {
        if !self.done {
            self.done = true;
            self.shared.finish(self.ticket, result);
        }
    }

    fn failed(&mut self, error: &Error) {
        self.end(CallResult::Failed(error));
    }

    fn succeeded(&mut self) {
        let first_token = self.first_token.unwrap_or_else(|| {
            CallClock::enter()
                .now()
                .saturating_duration_since(self.start)
        });
        self.end(CallResult::Success { first_token });
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.first_token.is_some() {
            self.succeeded();
        } else {
            self.end(CallResult::Cancelled);
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Breaker`](crate::Breaker).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Rejected { error: Option<Error> },
        Called { #[pin] future: F, guard: Option<CallGuard> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn rejected(error: Error) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }

    pub(crate) fn called(future: F, guard: CallGuard) -> Self {
        Self {
            kind: Kind::Called {
                future,
                guard: Some(guard),
            },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, Error>>,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // One clock reading for every layer inside that times this pass.
        let _clock = CallClock::scope();
        match self.project().kind.project() {
            KindProj::Rejected { error } => {
                Poll::Ready(Err(error.take().unwrap_or_else(|| Error::NoProvider {
                    message: "breaker future polled after completion".into(),
                })))
            }
            KindProj::Called { future, guard } => {
                let result = std::task::ready!(future.poll(cx));
                let Some(mut guard) = guard.take() else {
                    return Poll::Ready(result);
                };
                Poll::Ready(match result {
                    Ok(mut response) => {
                        let at = response.first_token_at();
                        guard.first_token = Some(at.saturating_duration_since(guard.start));
                        Ok(response.map_events(|events| GuardedEvents {
                            events,
                            guard: Some(guard),
                        }))
                    }
                    Err(error) => {
                        guard.failed(&error);
                        Err(error)
                    }
                })
            }
        }
    }
}

/// The response stream, carrying the call's verdict to its end.
struct GuardedEvents {
    events: EventStream,
    guard: Option<CallGuard>,
}

impl Stream for GuardedEvents {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // One clock reading for every layer inside that times this pass.
        let _clock = CallClock::scope();
        let item = std::task::ready!(self.events.as_mut().poll_next(cx));
        match &item {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if let Some(mut g) = self.guard.take() {
                    g.failed(e);
                }
            }
            None => {
                if let Some(mut g) = self.guard.take() {
                    g.succeeded();
                }
            }
        }
        Poll::Ready(item)
    }
}
