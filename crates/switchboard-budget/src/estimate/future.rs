use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use pin_project_lite::pin_project;
use switchboard_core::{ChatEvent, ChatResponse, Error, EventStream, Usage};

use crate::estimator::OutputHistogram;

pin_project! {
    /// The future of [`Estimate`](crate::Estimate): the inner future, whose answer's
    /// stream is wrapped to learn the scene's output.
    pub struct EstimateFuture<F> {
        #[pin]
        inner: F,
        learn: Option<Arc<OutputHistogram>>,
    }
}

impl<F> EstimateFuture<F> {
    pub(crate) fn new(inner: F, learn: Option<Arc<OutputHistogram>>) -> Self {
        Self { inner, learn }
    }
}

impl<F> std::fmt::Debug for EstimateFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstimateFuture").finish_non_exhaustive()
    }
}

impl<F> Future for EstimateFuture<F>
where
    F: Future<Output = Result<ChatResponse, Error>>,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        Poll::Ready(Ok(match this.learn.take() {
            Some(learner) => response.map_events(|events| ObservedEvents {
                events,
                learner,
                usage: None,
            }),
            None => response,
        }))
    }
}

pin_project! {
    /// An answer's events, passed through unchanged; the final usage's output tokens are
    /// recorded for the scene when the stream ends cleanly.
    pub struct ObservedEvents {
        #[pin]
        events: EventStream,
        // The scene's output histogram.
        learner: Arc<OutputHistogram>,
        usage: Option<Usage>,
    }
}

impl std::fmt::Debug for ObservedEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedEvents")
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

impl Stream for ObservedEvents {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let item = ready!(this.events.poll_next(cx));
        match &item {
            Some(Ok(ChatEvent::Usage(u))) => {
                this.usage.get_or_insert_with(Usage::default).merge_max(*u)
            }
            Some(Err(_)) => *this.usage = None, // a broken answer teaches nothing
            None => {
                if let Some(usage) = this.usage.take() {
                    this.learner.record(usage.output_tokens);
                }
            }
            Some(Ok(_)) => {}
        }
        Poll::Ready(item)
    }
}
