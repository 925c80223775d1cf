use std::sync::Arc;
use std::task::{Context, Poll};

use switchboard_core::{
    CallClock, ChatRequest, ChatResponse, CostEstimate, Error, HealthBoard, PriceTable,
    RequestHead, TenantId, Tier,
};
use tower::Service;

use crate::future::{Observer, ResponseFuture};
use crate::rollout::{Outcome, Rollout, counts_for_rollout};
use crate::select::{Inputs, Selector};

#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) baseline: Arc<Selector>,
    pub(crate) board: Option<HealthBoard>,
    pub(crate) prices: Arc<PriceTable>,
    pub(crate) rollout: Option<Rollout>,
}

/// Inserts a [`Route`](switchboard_core::Route) and a
/// [`RouteDecision`](switchboard_core::RouteDecision) into each request, then calls the
/// inner service. Built by [`RouteLayer`](crate::RouteLayer).
#[derive(Debug, Clone)]
pub struct Router<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Router<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
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

/// The rollout's sticky key: the session header, else the tenant.
fn sticky_key<'a>(request: &'a ChatRequest, header: Option<&str>) -> Option<&'a [u8]> {
    let ext = request.extensions();
    header
        .and_then(|h| ext.get::<RequestHead>().and_then(|head| head.header(h)))
        .filter(|v| !v.is_empty())
        .map(str::as_bytes)
        .or_else(|| ext.get::<TenantId>().map(|t| t.as_str().as_bytes()))
}

impl<S> Service<ChatRequest> for Router<S>
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
        let shared = &self.shared;
        let assignment = shared.rollout.as_ref().map(|r| {
            let key = sticky_key(&request, r.handle.session_header());
            (r, r.handle.assign(key))
        });
        let selector = match &assignment {
            Some((r, a)) if a.arm == switchboard_core::RolloutArm::Candidate => &r.candidate,
            _ => &shared.baseline,
        };
        let ext = request.extensions();
        let selected = selector.select(&Inputs {
            tier: ext.get::<Tier>().copied(),
            model: &request.body().model,
            estimate: ext.get::<CostEstimate>(),
            board: shared.board.as_ref(),
            prices: &shared.prices,
        });
        let observer = assignment.map(|(r, a)| Observer {
            handle: r.handle.clone(),
            assignment: a,
            prices: shared.prices.clone(),
            start: CallClock::enter().now(),
        });
        match selected {
            Ok((route, mut decision)) => {
                if let Some(o) = &observer {
                    decision.arm = o.assignment.arm;
                    decision.rollout_percent = o.assignment.percent;
                }
                tracing::debug!(
                    tier = %decision.tier,
                    model = %decision.requested,
                    pool = %decision.pool,
                    reason = decision.reason.code(),
                    primary = %route.primary.provider,
                    primary_model = %route.primary.model,
                    fallbacks = route.fallbacks.len(),
                    skipped = decision.skipped.len(),
                    arm = decision.arm.as_str(),
                    "route decided"
                );
                let ext = request.extensions_mut();
                ext.insert(route);
                ext.insert(decision.clone());
                ResponseFuture::called(self.inner.call(request), decision, observer)
            }
            Err(error) => {
                tracing::debug!(
                    model = %request.body().model,
                    reason = error.code(),
                    error = %error,
                    "no route"
                );
                // A model the baseline serves but the candidate does not is the
                // candidate's failure, not the caller's.
                let candidate_lost_model = matches!(error, Error::ModelNotFound { .. })
                    && shared.baseline.knows(&request.body().model);
                if let Some(o) = observer
                    && (counts_for_rollout(&error) || candidate_lost_model)
                {
                    o.handle.observe(o.assignment, Outcome::Failed);
                }
                ResponseFuture::failed(error)
            }
        }
    }
}
