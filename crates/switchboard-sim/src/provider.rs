//! [`SimProvider`]: an in-process simulated provider implementing the provider contract.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream;
use switchboard_core::{ChatEvent, ChatRequest, ChatResponse, Error, ModelName, ProviderId};
use tokio::time::Instant;
use tower::Service;

use crate::config::SimConfig;
use crate::plan::{self, AnswerPlan, Ending, Plan};

/// A simulated provider as an in-process `tower::Service`: it sleeps (in tokio time) for
/// the drawn first-token latency, resolves with the first token, then streams the rest at
/// the configured speed, injecting the configured faults.
///
/// Clones share the configuration, the call counter (so draws stay deterministic for a
/// seed) and the [`SimStats`].
///
/// ```
/// use std::time::Duration;
/// use switchboard_core::{ChatBody, ChatRequest, Message, ProviderId};
/// use switchboard_sim::{Latency, SimConfig, SimProvider};
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut sim = SimProvider::new(
///     ProviderId::OPENAI,
///     SimConfig::instant().first_token(Latency::fixed_ms(300)),
/// );
/// let start = tokio::time::Instant::now();
/// let request = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("hi there")]));
/// let response = sim.ready().await.unwrap().call(request).await.unwrap();
/// assert_eq!(start.elapsed(), Duration::from_millis(300)); // virtual time
/// let answer = response.collect().await.unwrap();
/// assert_eq!(answer.text, "hi there");
/// assert_eq!(sim.stats().completed(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct SimProvider {
    inner: Arc<Inner>,
}

struct Inner {
    id: ProviderId,
    config: SimConfig,
    epoch: Instant,
    seq: AtomicU64,
    stats: SimStats,
}

impl SimProvider {
    /// A provider named `id` behaving as `config`. Outage windows count from now.
    pub fn new(id: ProviderId, config: SimConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                config,
                epoch: Instant::now(),
                seq: AtomicU64::new(0),
                stats: SimStats::default(),
            }),
        }
    }

    /// The provider's name.
    pub fn id(&self) -> &ProviderId {
        &self.inner.id
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Counters shared by all clones.
    pub fn stats(&self) -> &SimStats {
        &self.inner.stats
    }

    /// Starts a call: counts it and draws its plan.
    pub(crate) fn begin(&self, body: &switchboard_core::ChatBody) -> (Plan, CallGuard) {
        let guard = CallGuard::new(self.inner.stats.clone());
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let plan = plan::draw(&self.inner.config, seq, self.inner.epoch.elapsed(), body);
        (plan, guard)
    }
}

impl fmt::Debug for SimProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimProvider")
            .field("id", &self.inner.id)
            .field("stats", &self.inner.stats)
            .finish_non_exhaustive()
    }
}

impl Service<ChatRequest> for SimProvider {
    type Response = ChatResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let (plan, guard) = self.begin(request.body());
        let model = ModelName::from(&request.body().model);
        let id = self.inner.id.clone();
        Box::pin(respond(id, model, plan, guard))
    }
}

async fn respond(
    id: ProviderId,
    model: ModelName,
    plan: Plan,
    mut guard: CallGuard,
) -> Result<ChatResponse, Error> {
    let answer = match plan {
        Plan::Fail {
            after,
            status,
            retry_after_secs,
        } => {
            sleep(after).await;
            guard.end(Outcome::Failed);
            return Err(Error::from_status(
                id,
                status,
                status_message(status),
                retry_after_secs.map(Duration::from_secs),
            ));
        }
        Plan::Answer(answer) => answer,
    };
    sleep(answer.delay_before(0)).await;
    if answer.sent_tokens() == 0 && answer.ending != Ending::Complete {
        guard.end(Outcome::Failed);
        return Err(ending_error(&id, answer.ending));
    }
    guard
        .stats
        .inner
        .first_tokens
        .fetch_add(1, Ordering::Relaxed);
    let first = ChatEvent::text(answer.tokens[0].clone());
    let rest = stream::unfold(
        Streaming {
            id: id.clone(),
            plan: answer,
            next: 1,
            done: false,
            guard,
        },
        Streaming::next_event,
    );
    let events = futures_util::StreamExt::chain(stream::iter([Ok(first)]), rest);
    Ok(ChatResponse::new(id, model, events))
}

struct Streaming {
    id: ProviderId,
    plan: AnswerPlan,
    next: usize,
    done: bool,
    guard: CallGuard,
}

impl Streaming {
    async fn next_event(mut self) -> Option<(Result<ChatEvent, Error>, Self)> {
        if self.done {
            return None;
        }
        let sent = self.plan.sent_tokens();
        if self.next < sent {
            sleep(self.plan.delay_before(self.next)).await;
            let event = ChatEvent::text(self.plan.tokens[self.next].clone());
            self.next += 1;
            return Some((Ok(event), self));
        }
        // Tokens are out; the ending follows. `next` counts past the tokens from here.
        let step = self.next - sent;
        self.next += 1;
        match self.plan.ending {
            Ending::Complete => match step {
                0 => Some((Ok(ChatEvent::Finish(self.plan.finish.clone())), self)),
                _ => {
                    self.done = true;
                    self.guard.end(Outcome::Completed);
                    Some((Ok(ChatEvent::Usage(self.plan.usage)), self))
                }
            },
            ending => {
                self.done = true;
                self.guard.end(Outcome::Failed);
                Some((Err(ending_error(&self.id, ending)), self))
            }
        }
    }
}

fn ending_error(id: &ProviderId, ending: Ending) -> Error {
    match ending {
        Ending::ErrorEvent { .. } => Error::Overloaded {
            provider: id.clone(),
            retry_after: None,
            message: "Overloaded".into(),
        },
        Ending::Malformed { .. } => Error::Stream {
            provider: id.clone(),
            message: "malformed event in the response stream".into(),
        },
        Ending::Truncate { .. } | Ending::Complete => Error::Stream {
            provider: id.clone(),
            message: "stream ended before its terminal event".into(),
        },
    }
}

/// The message simulated providers put in an error body for a status.
pub(crate) fn status_message(status: u16) -> &'static str {
    match status {
        400 => "Invalid request.",
        401 => "Incorrect API key provided.",
        403 => "Your API key does not have permission to use the specified resource.",
        404 => "The requested model does not exist.",
        413 => "Request exceeds the maximum allowed number of bytes.",
        429 => "Rate limit reached. Please try again later.",
        500 => "The server had an error while processing your request.",
        503 => "The engine is currently overloaded, please try again later.",
        529 => "Overloaded",
        _ => "Simulated failure.",
    }
}

async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

/// Counters of a simulated provider, shared by its clones (and by an HTTP server built on
/// it). All counts are totals since creation.
#[derive(Clone, Default)]
pub struct SimStats {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    first_tokens: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    in_flight: AtomicU64,
}

impl SimStats {
    /// Calls received.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// Calls that produced a first token.
    pub fn first_tokens(&self) -> u64 {
        self.inner.first_tokens.load(Ordering::Relaxed)
    }

    /// Calls whose stream reached its terminal event.
    pub fn completed(&self) -> u64 {
        self.inner.completed.load(Ordering::Relaxed)
    }

    /// Calls that failed (an error status or a broken stream).
    pub fn failed(&self) -> u64 {
        self.inner.failed.load(Ordering::Relaxed)
    }

    /// Calls dropped by the caller before they ended: cancelled attempts, disconnects.
    pub fn cancelled(&self) -> u64 {
        self.inner.cancelled.load(Ordering::Relaxed)
    }

    /// Calls under way now.
    pub fn in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimStats")
            .field("calls", &self.calls())
            .field("first_tokens", &self.first_tokens())
            .field("completed", &self.completed())
            .field("failed", &self.failed())
            .field("cancelled", &self.cancelled())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    Completed,
    Failed,
}

/// Counts one call; a call dropped before it ended counts as cancelled.
pub(crate) struct CallGuard {
    stats: SimStats,
    ended: bool,
}

impl CallGuard {
    fn new(stats: SimStats) -> Self {
        stats.inner.calls.fetch_add(1, Ordering::Relaxed);
        stats.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            stats,
            ended: false,
        }
    }

    pub(crate) fn first_token(&self) {
        self.stats
            .inner
            .first_tokens
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&mut self, outcome: Outcome) {
        if !self.ended {
            self.ended = true;
            let counter = match outcome {
                Outcome::Completed => &self.stats.inner.completed,
                Outcome::Failed => &self.stats.inner.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.stats.inner.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
