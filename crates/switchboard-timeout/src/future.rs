use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use switchboard_core::{ChatResponse, Error, ProviderId, TimeoutPhase};
use tokio::time::{Instant, Sleep, sleep_until};

use crate::stream::TimedEvents;

/// What keeps running over the response stream after the first token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamDeadlines {
    pub(crate) idle: Option<Duration>,
    pub(crate) total: Option<(Instant, Duration)>,
}

pin_project_lite::pin_project! {
    /// The future of [`Timeout`](crate::Timeout): the inner call raced against the
    /// earlier of the first-token and total deadlines.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Made at the first `Pending`: an answer ready at once never registers a timer.
        // Boxed, so the futures built around this one stay small.
        sleep: Option<Pin<Box<Sleep>>>,
        deadline: Option<Instant>,
        phase: TimeoutPhase,
        after: Duration,
        provider: Option<ProviderId>,
        stream: StreamDeadlines,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        timer: Option<(Instant, TimeoutPhase, Duration)>,
        provider: Option<ProviderId>,
        stream: StreamDeadlines,
    ) -> Self {
        let (deadline, phase, after) = match timer {
            Some((at, phase, after)) => (Some(at), phase, after),
            None => (None, TimeoutPhase::Total, Duration::ZERO),
        };
        Self {
            inner,
            sleep: None,
            deadline,
            phase,
            after,
            provider,
            stream,
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, Error>>,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();

        // The response first: a first token that arrives in the same instant as the
        // deadline is a success, not a timeout.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            let stream = *this.stream;
            return Poll::Ready(result.map(|response| {
                if stream.idle.is_none() && stream.total.is_none() {
                    response
                } else {
                    let provider = response.provider().clone();
                    response.map_events(|events| {
                        TimedEvents::new(events, stream.idle, stream.total, provider)
                    })
                }
            }));
        }

        if this.sleep.is_none() {
            match *this.deadline {
                Some(at) => *this.sleep = Some(Box::pin(sleep_until(at))),
                None => return Poll::Pending,
            }
        }
        match this.sleep.as_mut() {
            Some(sleep) => {
                std::task::ready!(sleep.as_mut().poll(cx));
                let provider = match this.phase {
                    TimeoutPhase::Total => None,
                    _ => this.provider.clone(),
                };
                Poll::Ready(Err(Error::Timeout {
                    phase: *this.phase,
                    provider,
                    after: *this.after,
                }))
            }
            None => Poll::Pending,
        }
    }
}
