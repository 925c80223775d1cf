//! The response futures and the metered event stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use pin_project_lite::pin_project;
use switchboard_core::{CallClock, ChatEvent, ChatResponse, Error, EventStream};

use crate::record::{AttemptRecord, CallRecord};

pin_project! {
    /// The [`Metrics`](crate::Metrics) future: resolves with the inner answer, its stream
    /// wrapped so the call's outcome is recorded when the stream ends, breaks or is dropped.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        record: Option<CallRecord>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, record: CallRecord) -> Self {
        Self {
            inner,
            record: Some(record),
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
        let this = self.project();
        let result = {
            let _entered = this.record.as_ref().map(|r| r.span().enter());
            ready!(this.inner.poll(cx))
        };
        let mut record = this.record.take().expect("polled after completion");
        Poll::Ready(match result {
            Ok(mut response) => {
                record.answered(&mut response);
                Ok(response.map_events(|events| MeteredEvents::new(events, record)))
            }
            Err(error) => {
                record.failed(&error);
                Err(error)
            }
        })
    }
}

pin_project! {
    /// An answer's events, passed through unchanged; usage is noted as it streams and the
    /// call's outcome is recorded when the stream ends, breaks, or is dropped (`cancelled`).
    pub struct MeteredEvents {
        #[pin]
        events: EventStream,
        record: Option<CallRecord>,
    }
}

impl MeteredEvents {
    fn new(events: EventStream, record: CallRecord) -> Self {
        Self {
            events,
            record: Some(record),
        }
    }
}

impl std::fmt::Debug for MeteredEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredEvents").finish_non_exhaustive()
    }
}

impl Stream for MeteredEvents {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // One clock reading for every layer inside that times this pass.
        let _clock = CallClock::scope();
        let this = self.project();
        let item = {
            let _entered = this.record.as_ref().map(|r| r.span().enter());
            ready!(this.events.poll_next(cx))
        };
        match &item {
            Some(Ok(event)) => {
                if let Some(record) = this.record.as_mut() {
                    record.observe(event);
                }
            }
            // An `Err` item is terminal: the call failed mid-stream.
            Some(Err(error)) => {
                if let Some(mut record) = this.record.take() {
                    record.failed(error);
                }
            }
            None => {
                if let Some(mut record) = this.record.take() {
                    record.completed();
                }
            }
        }
        Poll::Ready(item)
    }
}

pin_project! {
    /// The [`AttemptMetrics`](crate::AttemptMetrics) future: records the attempt's outcome
    /// when it resolves, or `cancelled` when dropped first (another attempt won).
    pub struct AttemptFuture<F> {
        #[pin]
        inner: F,
        record: AttemptRecord,
    }
}

impl<F> AttemptFuture<F> {
    pub(crate) fn new(inner: F, record: AttemptRecord) -> Self {
        Self { inner, record }
    }
}

impl<F> std::fmt::Debug for AttemptFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptFuture").finish_non_exhaustive()
    }
}

impl<F> Future for AttemptFuture<F>
where
    F: Future<Output = Result<ChatResponse, Error>>,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // One clock reading for every layer inside that times this pass.
        let _clock = CallClock::scope();
        let this = self.project();
        let result = {
            let _entered = this.record.span().enter();
            ready!(this.inner.poll(cx))
        };
        match result {
            Ok(mut response) => {
                this.record.finished(Ok(response.first_token_at()));
                Poll::Ready(Ok(response))
            }
            Err(error) => {
                this.record.finished(Err(&error));
                Poll::Ready(Err(error))
            }
        }
    }
}
