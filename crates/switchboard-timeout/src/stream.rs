use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use switchboard_core::{CallClock, ChatEvent, Error, EventStream, ProviderId, TimeoutPhase};
use tokio::time::{Instant, Sleep, sleep_until};

pin_project_lite::pin_project! {
    /// A response stream under the idle and total deadlines. When one expires it yields
    /// one `Timeout` error, drops the upstream stream (cancelling the call) and ends.
    pub struct TimedEvents {
        events: Option<EventStream>,
        // Armed at the earlier deadline as of `last`; not moved on each event (moving a
        // timer re-registers it with the driver). When it fires, the deadline is worked
        // out again from the latest event and the timer moves only if that is later.
        // Made when the stream first goes quiet: a stream that never waits never
        // registers a timer.
        #[pin]
        sleep: Option<Sleep>,
        idle: Option<Duration>,
        total: Option<(Instant, Duration)>,
        // When the stream last went quiet after events; `None` until it first does.
        last: Option<Instant>,
        // Events came since `last`: the next `Pending` starts a new quiet spell.
        fresh: bool,
        provider: ProviderId,
    }
}

impl std::fmt::Debug for TimedEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedEvents")
            .field("idle", &self.idle)
            .field("total", &self.total)
            .field("last", &self.last)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl TimedEvents {
    pub(crate) fn new(
        events: EventStream,
        idle: Option<Duration>,
        total: Option<(Instant, Duration)>,
        provider: ProviderId,
    ) -> Self {
        Self {
            events: Some(events),
            sleep: None,
            idle,
            total,
            last: None,
            // The answer's first event has just been delivered.
            fresh: true,
            provider,
        }
    }
}

/// The earlier of "idle from now" and the total deadline; with neither, far away.
fn next_deadline(
    now: Instant,
    idle: Option<Duration>,
    total: Option<(Instant, Duration)>,
) -> (Instant, TimeoutPhase, Duration) {
    let far = now + Duration::from_secs(86_400 * 365);
    let idle_at = idle.map(|d| (now.checked_add(d).unwrap_or(far), d));
    match (idle_at, total) {
        (Some((i_at, _)), Some((t_at, t))) if t_at <= i_at => (t_at, TimeoutPhase::Total, t),
        (Some((i_at, i)), _) => (i_at, TimeoutPhase::Idle, i),
        (None, Some((t_at, t))) => (t_at, TimeoutPhase::Total, t),
        (None, None) => (far, TimeoutPhase::Idle, Duration::ZERO),
    }
}

impl Stream for TimedEvents {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // One clock reading for every layer inside that times this pass.
        let _clock = CallClock::scope();
        let mut this = self.project();
        let Some(events) = this.events.as_mut() else {
            return Poll::Ready(None);
        };
        // The stream first: an event that arrives at the deadline still counts.
        match events.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                if item.is_err() {
                    *this.events = None; // an error is terminal
                } else {
                    *this.fresh = true;
                }
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                *this.events = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {
                // The upstream went quiet: the idle time counts from the poll that found
                // it so. That is the instant of the last event when the consumer polls
                // straight on (as the gateway's writer does), and costs one clock read per
                // quiet spell instead of one per event. A consumer that pauses between
                // polls delays the timeout by its pause; it never brings it forward.
                // `fresh` starts true: the first quiet spell always sets `last`.
                if std::mem::take(this.fresh) {
                    *this.last = Some(CallClock::enter().now());
                }
            }
        }
        let last = this.last.unwrap_or_else(|| CallClock::enter().now());
        if this.sleep.is_none() {
            let (at, _, _) = next_deadline(last, *this.idle, *this.total);
            this.sleep.set(Some(sleep_until(at)));
        }
        let Some(mut sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        loop {
            std::task::ready!(sleep.as_mut().poll(cx));
            let (at, phase, after) = next_deadline(last, *this.idle, *this.total);
            if at > CallClock::enter().now() {
                // Events came since the timer was armed: the deadline moved on.
                sleep.as_mut().reset(at);
                continue;
            }
            *this.events = None; // drop the upstream stream: cancels the call
            let provider = match phase {
                TimeoutPhase::Total => None,
                _ => Some(this.provider.clone()),
            };
            return Poll::Ready(Some(Err(Error::Timeout {
                phase,
                provider,
                after,
            })));
        }
    }
}
