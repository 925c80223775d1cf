use std::task::{Context, Poll};
use std::time::Duration;

use switchboard_core::{
    CallClock, ChatRequest, ChatResponse, Deadline, Error, ProviderId, Target, Tier, TimeoutPhase,
};
use tokio::time::Instant;
use tower::Service;

use crate::future::{ResponseFuture, StreamDeadlines};
use crate::{Scope, TimeoutTiers};

/// Enforces timeout tiers on a provider service. Built by [`TimeoutLayer`](crate::TimeoutLayer).
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    tiers: TimeoutTiers,
    scope: Scope,
    provider: Option<ProviderId>,
}

impl<S> Timeout<S> {
    /// Wraps `inner`.
    pub const fn new(
        inner: S,
        tiers: TimeoutTiers,
        scope: Scope,
        provider: Option<ProviderId>,
    ) -> Self {
        Self {
            inner,
            tiers,
            scope,
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

impl<S> Service<ChatRequest> for Timeout<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: ChatRequest) -> Self::Future {
        let clock = CallClock::enter();
        let now = clock.now();
        let tier = request
            .extensions()
            .get::<Tier>()
            .copied()
            .unwrap_or(self.tiers.default_tier);
        let timeouts = self.tiers.for_tier(tier);
        let outer = request.extensions().get::<Deadline>().copied();

        // The total deadline: ours (when this layer owns the call phase) or the one an
        // outer layer set, whichever is earlier. An inner layer never extends it.
        let own = match (self.scope.call(), timeouts.total) {
            (true, Some(total)) => Some(Deadline::after_from(now, total)),
            _ => None,
        };
        let total = match (own, outer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let total = total.map(|d| (d.instant(), d.instant().saturating_duration_since(now)));
        if self.scope.call()
            && let Some((at, _)) = total
        {
            request.extensions_mut().insert(Deadline::at(at));
        }

        let first_token = if self.scope.attempt() {
            timeouts
                .first_token
                .map(|after| (now.checked_add(after).unwrap_or(far_future(now)), after))
        } else {
            None
        };
        // The earlier deadline arms the timer; a first-token deadline only names the phase
        // when it is strictly earlier than the caller's total.
        let timer = match (first_token, total) {
            (Some((ft_at, ft_after)), Some((t_at, t_after))) => {
                if ft_at < t_at {
                    Some((ft_at, TimeoutPhase::FirstToken, ft_after))
                } else {
                    Some((t_at, TimeoutPhase::Total, t_after))
                }
            }
            (Some((at, after)), None) => Some((at, TimeoutPhase::FirstToken, after)),
            (None, Some((at, after))) => Some((at, TimeoutPhase::Total, after)),
            (None, None) => None,
        };
        let provider = request
            .extensions()
            .get::<Target>()
            .map(|t| t.provider.clone())
            .or_else(|| self.provider.clone());

        let stream = StreamDeadlines {
            idle: if self.scope.call() {
                timeouts.idle
            } else {
                None
            },
            total: if self.scope.call() { total } else { None },
        };
        ResponseFuture::new(self.inner.call(request), timer, provider, stream)
    }
}

fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365)
}
