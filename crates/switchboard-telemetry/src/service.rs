//! The services: [`Metrics`] and [`AttemptMetrics`].

use std::task::{Context, Poll};

use switchboard_core::{CallClock, ChatRequest, ChatResponse, Error, ProviderId};
use tower::Service;

use crate::Telemetry;
use crate::future::{AttemptFuture, ResponseFuture};
use crate::record::{AttemptRecord, CallRecord};

// ===== impl Metrics =====

/// Records each call's metrics; see [`MetricsLayer`](crate::MetricsLayer).
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    telemetry: Telemetry,
}

impl<S> Metrics<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S, telemetry: Telemetry) -> Self {
        Self { inner, telemetry }
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

impl<S> Service<ChatRequest> for Metrics<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        // The call's start, lent to the layers below for the rest of this `call`.
        let clock = CallClock::enter();
        let record = CallRecord::start(self.telemetry.clone(), &request, clock.now());
        // Inner layers' spans (routing, hedging, attempts) are children of the call's.
        let inner = record.span().in_scope(|| self.inner.call(request));
        ResponseFuture::new(inner, record)
    }
}

// ===== impl AttemptMetrics =====

/// Records each upstream attempt; see [`AttemptMetricsLayer`](crate::AttemptMetricsLayer).
#[derive(Debug, Clone)]
pub struct AttemptMetrics<S> {
    inner: S,
    telemetry: Telemetry,
    provider: ProviderId,
}

impl<S> AttemptMetrics<S> {
    /// Wraps `inner`, the stack of `provider`.
    pub const fn new(inner: S, telemetry: Telemetry, provider: ProviderId) -> Self {
        Self {
            inner,
            telemetry,
            provider,
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

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<ChatRequest> for AttemptMetrics<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let clock = CallClock::enter();
        let record = AttemptRecord::start(&self.telemetry, &self.provider, &request, clock.now());
        let inner = record.span().in_scope(|| self.inner.call(request));
        AttemptFuture::new(inner, record)
    }
}
