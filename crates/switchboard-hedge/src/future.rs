use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use switchboard_core::{
    Attempt, AttemptKind, AttemptOutcome, Attempts, CallClock, ChatRequest, ChatResponse, Deadline,
    Degraded, Error, HealthBoard, ProviderId, Route, Target, TimeoutPhase, WinReason,
};
use tokio::time::{Instant, Sleep, sleep_until};
use tower::Service;

use crate::service::Shared;
use crate::{HedgeConfig, SoftTimeout};

/// What the call keeps of an attempt under way.
#[derive(Clone, Copy)]
struct Slot {
    /// Index into `Attempts`.
    index: usize,
    /// Paid for from the budget (not the first attempt sent).
    extra: bool,
}

/// An attempt under way beside the lead.
struct Running<F> {
    slot: Slot,
    future: Pin<Box<F>>,
}

pin_project_lite::pin_project! {
    /// The future of [`Hedge`](crate::Hedge): runs attempts along the route until one
    /// produces a first token.
    pub struct ResponseFuture<S, F> {
        service: S,
        // The first attempt's service was made ready by the caller's `poll_ready`.
        service_ready: bool,
        // Taken by the attempt to the route's last target: no attempt can follow it, so
        // the request moves instead of being cloned.
        request: Option<ChatRequest>,
        primary: Option<ProviderId>,
        targets: Remaining,
        attempts: Attempts,
        // The attempt in the lead, inline: most calls make only this one. An attempt
        // started while it runs (a hedge) waits in `running`, boxed; a failover takes the
        // lead's place once it is free.
        #[pin]
        lead: Option<F>,
        lead_slot: Option<Slot>,
        running: Vec<Running<F>>,
        sent: u32,
        next: Option<AttemptKind>,
        last_error: Option<Error>,
        hedging_stopped: bool,
        start: Instant,
        // Made the first time a hedge is possible: a call with one target never needs it.
        soft: Option<Pin<Box<Sleep>>>,
        soft_armed: bool,
        deadline: Option<Deadline>,
        shared: Arc<Shared>,
        done: bool,
    }
}

impl<S, F> std::fmt::Debug for ResponseFuture<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .field(
                "running",
                &(usize::from(self.lead_slot.is_some()) + self.running.len()),
            )
            .finish_non_exhaustive()
    }
}

/// The targets not tried yet, in order: the route's own, not copied into a queue (a route
/// without fallbacks costs no allocation).
#[derive(Debug, Default)]
pub(crate) struct Remaining {
    primary: Option<Target>,
    fallbacks: std::vec::IntoIter<Target>,
}

impl Remaining {
    pub(crate) fn new(route: Route) -> Self {
        Self {
            primary: Some(route.primary),
            fallbacks: route.fallbacks.into_iter(),
        }
    }

    fn front(&self) -> Option<&Target> {
        self.primary
            .as_ref()
            .or_else(|| self.fallbacks.as_slice().first())
    }

    fn pop_front(&mut self) -> Option<Target> {
        self.primary.take().or_else(|| self.fallbacks.next())
    }

    fn is_empty(&self) -> bool {
        self.front().is_none()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

pub(crate) enum Start {
    /// Route known: try these targets in order.
    Route(Remaining),
    /// No route: fail with this error.
    Fail(Error),
}

impl<S, F> ResponseFuture<S, F> {
    pub(crate) fn new(service: S, request: ChatRequest, start: Start, shared: Arc<Shared>) -> Self {
        let (targets, last_error) = match start {
            Start::Route(t) => (t, None),
            Start::Fail(e) => (Remaining::default(), Some(e)),
        };
        // Made in the hedge's `call`: the enclosing chain's reading.
        let now = CallClock::enter().now();
        Self {
            service,
            service_ready: true,
            deadline: request.extensions().get::<Deadline>().copied(),
            request: Some(request),
            primary: targets.front().map(|t| t.provider.clone()),
            targets,
            attempts: Attempts::default(),
            lead: None,
            lead_slot: None,
            running: Vec::new(),
            sent: 0,
            next: Some(AttemptKind::Primary),
            last_error,
            hedging_stopped: false,
            start: now,
            soft: None,
            soft_armed: false,
            shared,
            done: false,
        }
    }
}

fn soft_timeout(
    config: &HedgeConfig,
    board: Option<&HealthBoard>,
    provider: &ProviderId,
) -> Duration {
    match config.soft_timeout {
        SoftTimeout::Fixed { after } => after,
        SoftTimeout::Adaptive {
            quantile,
            min_samples,
            min,
            max,
            fallback,
        } => board
            .and_then(|b| b.get(provider))
            .and_then(|h| h.first_token_quantile(quantile, min_samples))
            .map_or(fallback, |d| d.clamp(min, max.max(min))),
    }
}

/// Drops every attempt still running (which cancels its upstream call) and records it as
/// cancelled.
fn cancel_all<F>(
    lead: &mut Pin<&mut Option<F>>,
    lead_slot: &mut Option<Slot>,
    running: &mut Vec<Running<F>>,
    attempts: &mut Attempts,
) {
    lead.set(None);
    let others = running.drain(..).map(|r| r.slot);
    for slot in lead_slot.take().into_iter().chain(others) {
        attempts.set_outcome(slot.index, AttemptOutcome::Cancelled);
    }
}

/// Whether a hedge could still start after `sent` attempts: hedging not stopped by the
/// budget, a target left, and room under `max_attempts`.
fn can_hedge(stopped: bool, targets: &Remaining, sent: u32, config: &HedgeConfig) -> bool {
    !stopped && !targets.is_empty() && sent < config.max_attempts.max(1)
}

impl<S, F> Future for ResponseFuture<S, F>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error, Future = F>,
    F: Future<Output = Result<ChatResponse, Error>>,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(Err(Error::NoProvider {
                message: "hedge future polled after completion".into(),
            }));
        }
        // An attempt started below is polled in this same `poll`, where its layers' `call`s
        // run: they share the reading its start was timed with.
        let mut clock: Option<CallClock> = None;
        loop {
            // 1. Attempts under way, the lead first. A first token wins; polled before
            // the soft timer, so an answer that arrives with the timer is taken rather
            // than hedged.
            let mut lead_pending = false;
            let mut i = 0;
            loop {
                let (finished, result) =
                    if !lead_pending && let Some(future) = this.lead.as_mut().as_pin_mut() {
                        let Poll::Ready(result) = future.poll(cx) else {
                            lead_pending = true;
                            continue;
                        };
                        this.lead.set(None);
                        let Some(slot) = this.lead_slot.take() else {
                            continue; // unreachable: the lead and its slot go together
                        };
                        (slot, result)
                    } else if i < this.running.len() {
                        let Poll::Ready(result) = this.running[i].future.as_mut().poll(cx) else {
                            i += 1;
                            continue;
                        };
                        (this.running.swap_remove(i).slot, result)
                    } else {
                        break;
                    };
                match result {
                    Ok(mut response) => {
                        // Dropping the others cancels their upstream calls.
                        cancel_all(&mut this.lead, this.lead_slot, this.running, this.attempts);
                        let why = match this.attempts.get(finished.index).map(|a| a.kind) {
                            Some(AttemptKind::Primary) => WinReason::Primary,
                            Some(AttemptKind::Hedge) => WinReason::HedgeFaster,
                            Some(AttemptKind::Failover) | None => WinReason::Failover {
                                reason: this
                                    .last_error
                                    .as_ref()
                                    .map_or_else(|| "circuit_open".to_owned(), Error::reason),
                            },
                        };
                        let why = match (&why, this.last_error.as_ref()) {
                            // A hedge that won after the primary failed is a failover.
                            (WinReason::HedgeFaster, Some(e)) => {
                                WinReason::Failover { reason: e.reason() }
                            }
                            _ => why,
                        };
                        this.attempts.set_winner(finished.index, why.clone());
                        let not_primary = Some(response.provider()) != this.primary.as_ref();
                        if not_primary || why != WinReason::Primary {
                            let detail = format!(
                                "answered by {} after {} attempt(s)",
                                response.provider(),
                                this.attempts.sent()
                            );
                            response
                                .extensions_mut()
                                .get_or_insert_default::<Degraded>()
                                .push(why.code(), detail);
                        }
                        tracing::debug!(
                            winner = %response.provider(),
                            why = %why.code(),
                            attempts = this.attempts.len(),
                            "hedge call answered"
                        );
                        response
                            .extensions_mut()
                            .insert(std::mem::take(this.attempts));
                        *this.done = true;
                        return Poll::Ready(Ok(response));
                    }
                    Err(error) => {
                        if matches!(error, Error::CircuitOpen { .. }) {
                            // Refused by the provider's breaker: nothing was sent.
                            this.attempts.set_outcome(
                                finished.index,
                                AttemptOutcome::Skipped {
                                    reason: "circuit_open".into(),
                                },
                            );
                            *this.sent = this.sent.saturating_sub(1);
                            if finished.extra {
                                this.shared.budget.refund();
                            }
                        } else {
                            this.attempts.set_outcome(
                                finished.index,
                                AttemptOutcome::Failed {
                                    reason: error.reason(),
                                },
                            );
                        }
                        if !error.is_retryable() {
                            cancel_all(&mut this.lead, this.lead_slot, this.running, this.attempts);
                            *this.done = true;
                            return Poll::Ready(Err(error));
                        }
                        // gRPC's non-fatal codes: the next provider starts at once.
                        if this.next.is_none() {
                            *this.next = Some(AttemptKind::Failover);
                        }
                        if !matches!(error, Error::CircuitOpen { .. }) || this.last_error.is_none()
                        {
                            *this.last_error = Some(error);
                        }
                    }
                }
            }

            // 2. Start the next attempt when one is wanted and allowed.
            if let Some(kind) = *this.next {
                // One clock reading for the deadline check and the attempt's start.
                let now = clock.get_or_insert_with(CallClock::enter).now();
                let deadline_passed = this.deadline.is_some_and(|d| now >= d.instant());
                let max = this.shared.config.max_attempts.max(1);
                let exhausted = *this.sent >= max || this.targets.is_empty() || deadline_passed;
                if exhausted || (kind == AttemptKind::Hedge && *this.hedging_stopped) {
                    *this.next = None;
                } else {
                    let Some(target) = this.targets.front() else {
                        *this.next = None;
                        continue;
                    };
                    let skip_open = this.shared.config.skip_open_circuits
                        && this
                            .shared
                            .board
                            .as_ref()
                            .is_some_and(|b| b.state(&target.provider).is_open());
                    if skip_open {
                        let Some(target) = this.targets.pop_front() else {
                            continue;
                        };
                        this.attempts.push(Attempt {
                            provider: target.provider.clone(),
                            model: target.model.clone(),
                            kind,
                            started_after: now.saturating_duration_since(*this.start),
                            outcome: AttemptOutcome::Skipped {
                                reason: "circuit_open".into(),
                            },
                        });
                        if this.last_error.is_none() {
                            *this.last_error = Some(Error::CircuitOpen {
                                provider: target.provider.clone(),
                                retry_after: None,
                            });
                        }
                        // The next provider stands in for the skipped one.
                        if kind == AttemptKind::Primary {
                            *this.next = Some(AttemptKind::Failover);
                        }
                        continue;
                    }
                    let extra = *this.sent > 0;
                    if extra && !this.shared.budget.withdraw() {
                        this.attempts.push(Attempt {
                            provider: target.provider.clone(),
                            model: target.model.clone(),
                            kind,
                            started_after: now.saturating_duration_since(*this.start),
                            outcome: AttemptOutcome::Skipped {
                                reason: "hedge_budget_exhausted".into(),
                            },
                        });
                        tracing::debug!(provider = %target.provider, "hedge budget exhausted");
                        *this.hedging_stopped = true;
                        *this.next = None;
                        // Without a running attempt the call has no way left to succeed.
                        if this.lead_slot.is_none() && this.running.is_empty() {
                            this.targets.clear();
                        }
                        continue;
                    }
                    if !*this.service_ready {
                        match this.service.poll_ready(cx) {
                            Poll::Ready(Ok(())) => *this.service_ready = true,
                            Poll::Ready(Err(error)) => {
                                if extra {
                                    this.shared.budget.refund();
                                }
                                *this.done = true;
                                return Poll::Ready(Err(error));
                            }
                            Poll::Pending => {
                                if extra {
                                    this.shared.budget.refund();
                                }
                                // Woken by the service when it is ready, or by a running
                                // attempt; the token is taken again then.
                                return Poll::Pending;
                            }
                        }
                    }
                    let Some(target) = this.targets.pop_front() else {
                        continue;
                    };
                    let request = if this.targets.is_empty() {
                        this.request.take()
                    } else {
                        this.request.clone()
                    };
                    let Some(mut request) = request else {
                        // Unreachable: the last target took the request and none is left.
                        *this.next = None;
                        continue;
                    };
                    if request.body().model != target.model {
                        request.body_mut().model = target.model.to_string();
                    }
                    let index = this.attempts.push(Attempt {
                        provider: target.provider.clone(),
                        model: target.model.clone(),
                        kind,
                        started_after: now.saturating_duration_since(*this.start),
                        outcome: AttemptOutcome::Pending,
                    });
                    // A hedge may follow this attempt (counted as sent): arm the soft timer.
                    let may_hedge = can_hedge(
                        *this.hedging_stopped,
                        this.targets,
                        *this.sent + 1,
                        &this.shared.config,
                    );
                    let soft = may_hedge.then(|| {
                        soft_timeout(
                            &this.shared.config,
                            this.shared.board.as_ref(),
                            &target.provider,
                        )
                    });
                    if kind != AttemptKind::Primary {
                        tracing::debug!(provider = %target.provider, kind = ?kind, "hedge attempt started");
                    }
                    request.extensions_mut().insert(target);
                    // Per-attempt layers (metrics) tell hedges and failovers apart by it.
                    request.extensions_mut().insert(kind);
                    *this.service_ready = false;
                    let future = this.service.call(request);
                    let slot = Slot { index, extra };
                    if this.lead_slot.is_none() {
                        this.lead.set(Some(future));
                        *this.lead_slot = Some(slot);
                    } else {
                        this.running.push(Running {
                            slot,
                            future: Box::pin(future),
                        });
                    }
                    *this.sent += 1;
                    *this.next = None;
                    *this.soft_armed = false;
                    if let Some(soft) = soft {
                        if let Some(at) = now.checked_add(soft) {
                            match this.soft.as_mut() {
                                Some(timer) => timer.as_mut().reset(at),
                                None => *this.soft = Some(Box::pin(sleep_until(at))),
                            }
                            *this.soft_armed = true;
                        }
                    }
                    continue; // poll the new attempt at once
                }
            }

            // 3. Nothing running and nothing left to start: the call failed.
            if this.lead_slot.is_none() && this.running.is_empty() {
                *this.done = true;
                let deadline_passed = this.deadline.is_some_and(|d| d.is_expired());
                let error = match this.last_error.take() {
                    Some(e) => e,
                    // Nothing was tried: the caller's deadline had already passed.
                    None if deadline_passed => Error::Timeout {
                        phase: TimeoutPhase::Total,
                        provider: None,
                        after: this.start.elapsed(),
                    },
                    None => Error::NoProvider {
                        message: "the route has no target".into(),
                    },
                };
                let every_skip_was_open = !this.attempts.is_empty()
                    && this.attempts.iter().all(|a| {
                        matches!(&a.outcome, AttemptOutcome::Skipped { reason } if reason == "circuit_open")
                    });
                return Poll::Ready(Err(if every_skip_was_open {
                    Error::NoProvider {
                        message: "every provider on the route has an open circuit breaker".into(),
                    }
                } else {
                    error
                }));
            }

            // 4. The soft timer: no first token yet, so start the next provider beside the
            // running ones.
            if *this.soft_armed
                && can_hedge(
                    *this.hedging_stopped,
                    this.targets,
                    *this.sent,
                    &this.shared.config,
                )
                && this
                    .soft
                    .as_mut()
                    .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
            {
                *this.soft_armed = false;
                *this.next = Some(AttemptKind::Hedge);
                continue;
            }
            return Poll::Pending;
        }
    }
}
