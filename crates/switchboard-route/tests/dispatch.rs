//! Dispatch contract: each attempt goes where its Target says; readiness per provider.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use switchboard_core::{
    AttemptKind, Attempts, ChatRequest, ChatResponse, Error, Route, Target, WinReason,
};
use switchboard_hedge::{HedgeConfig, HedgeLayer, SoftTimeout};
use switchboard_route::{Dispatch, RouteLayer};
use switchboard_sim::{Latency, SimConfig, SimProvider};
use tower::{Layer, Service, ServiceExt};

fn with_target(provider: switchboard_core::ProviderId, model: &str) -> ChatRequest {
    let mut r = request(model, None);
    r.extensions_mut().insert(Target::new(provider, model));
    r
}

#[tokio::test(start_paused = true)]
async fn each_attempt_goes_to_the_provider_its_target_names() {
    let (o, a) = (sim(OPENAI, 100), sim(ANTHROPIC, 100));
    let d = dispatch(&[&o, &a]);
    let mut request = with_target(ANTHROPIC, "claude-haiku-4-5");
    request.body_mut().model = "fast".into(); // a logical name; the target's model wins
    let response = d.clone().oneshot(request).await.unwrap();
    assert_eq!(response.provider(), &ANTHROPIC);
    assert_eq!(
        response.model(),
        "claude-haiku-4-5",
        "the body carries the target's model"
    );
    let response = d.oneshot(with_target(OPENAI, "gpt-4o-mini")).await.unwrap();
    assert_eq!(response.provider(), &OPENAI);
    assert_eq!((o.stats().calls(), a.stats().calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn hedged_attempts_are_dispatched_to_each_provider_of_the_route() {
    // The standard composition: route → hedge → dispatch. openai stalls; after the 1 s
    // soft timeout the hedge's second attempt goes to anthropic and wins.
    let o = SimProvider::new(
        OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(10_000)),
    );
    let a = sim(ANTHROPIC, 200);
    let m = sim(MISTRAL, 200);
    let hedge = HedgeLayer::new(
        HedgeConfig::default().soft_timeout(SoftTimeout::fixed(Duration::from_secs(1))),
    );
    let svc = RouteLayer::new(policy()).layer(hedge.layer(dispatch(&[&o, &a, &m])));

    let start = tokio::time::Instant::now();
    let response = svc.oneshot(request("fast", None)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1200));
    assert_eq!(response.provider(), &ANTHROPIC);
    assert_eq!(response.model(), "claude-haiku-4-5");
    let attempts = response.extensions().get::<Attempts>().unwrap();
    assert_eq!(attempts.get(0).unwrap().provider, OPENAI);
    assert_eq!(attempts.get(1).unwrap().kind, AttemptKind::Hedge);
    assert_eq!(attempts.why(), Some(&WinReason::HedgeFaster));
    drop(response);
    assert_eq!(
        (o.stats().calls(), a.stats().calls(), m.stats().calls()),
        (1, 1, 0)
    );
    assert_eq!(o.stats().cancelled(), 1, "the losing attempt was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_target_goes_to_its_route_primary() {
    let (o, a) = (sim(OPENAI, 100), sim(ANTHROPIC, 100));
    let mut request = request("fast", None);
    request.extensions_mut().insert(
        Route::new(Target::new(ANTHROPIC, "claude-haiku-4-5"))
            .fallback(Target::new(OPENAI, "gpt-4o-mini")),
    );
    let response = dispatch(&[&o, &a]).oneshot(request).await.unwrap();
    assert_eq!(response.provider(), &ANTHROPIC);
    assert_eq!(response.model(), "claude-haiku-4-5");
}

#[tokio::test(start_paused = true)]
async fn unknown_provider_is_a_clear_error() {
    let (o, a) = (sim(OPENAI, 100), sim(ANTHROPIC, 100));
    let azure = switchboard_core::ProviderId::from_static("azure_eu");
    let error = dispatch(&[&o, &a])
        .oneshot(with_target(azure, "gpt-4o"))
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "no_provider_available");
    assert_eq!(
        error.to_string(),
        "no provider available: the attempt names provider \"azure_eu\", which the \
         dispatcher does not have (it has: anthropic, openai)"
    );
    let error = dispatch(&[&o])
        .oneshot(request("fast", None))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no Target or Route"), "{error}");
    assert_eq!(o.stats().calls() + a.stats().calls(), 0);
}

/// A provider whose `poll_ready` never completes (a breaker in backpressure mode, a full
/// concurrency limit).
#[derive(Clone)]
struct NeverReady;

impl Service<ChatRequest> for NeverReady {
    type Response = ChatResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Pending
    }

    fn call(&mut self, _: ChatRequest) -> Self::Future {
        Box::pin(async {
            Err(Error::InvalidRequest {
                provider: None,
                message: "called without readiness".into(),
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_is_not_ready_does_not_block_another() {
    let a = sim(ANTHROPIC, 100);
    let mut d = Dispatch::new()
        .provider(OPENAI, NeverReady)
        .provider(ANTHROPIC, a.clone());

    // The dispatcher itself is ready, although openai is not.
    std::future::poll_fn(|cx| d.poll_ready(cx)).await.unwrap();
    let stuck = d.call(with_target(OPENAI, "gpt-4o-mini"));
    std::future::poll_fn(|cx| d.poll_ready(cx)).await.unwrap();
    let start = tokio::time::Instant::now();
    let response = d
        .call(with_target(ANTHROPIC, "claude-haiku-4-5"))
        .await
        .unwrap();
    assert_eq!(response.provider(), &ANTHROPIC);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100),
        "anthropic answers in its own time while openai's attempt waits for readiness"
    );
    let waited = tokio::time::timeout(Duration::from_secs(60), stuck).await;
    assert!(
        waited.is_err(),
        "the openai attempt is still waiting for openai to be ready"
    );
    assert_eq!(a.stats().calls(), 1);
}

/// A provider that counts its clones and is ready only once `open` is set (then it wakes
/// whoever waited).
#[derive(Clone)]
struct Gated {
    inner: SimProvider,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    waiting: std::sync::Arc<std::sync::Mutex<Vec<std::task::Waker>>>,
    clones: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Gated {
    fn new(inner: SimProvider, open: bool) -> Self {
        Self {
            inner,
            open: std::sync::Arc::new(open.into()),
            waiting: Default::default(),
            clones: Default::default(),
        }
    }

    fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in self.waiting.lock().unwrap().drain(..) {
            w.wake();
        }
    }

    fn clones(&self) -> usize {
        self.clones.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct Counted(Gated);

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.0
            .clones
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Counted(self.0.clone())
    }
}

impl Service<ChatRequest> for Counted {
    type Response = ChatResponse;
    type Error = Error;
    type Future = <SimProvider as Service<ChatRequest>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.0.open.load(std::sync::atomic::Ordering::SeqCst) {
            return self.0.inner.poll_ready(cx);
        }
        self.0.waiting.lock().unwrap().push(cx.waker().clone());
        Poll::Pending
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        self.0.inner.call(request)
    }
}

#[tokio::test(start_paused = true)]
async fn a_ready_provider_is_called_in_place_without_a_clone_per_attempt() {
    let o = sim(OPENAI, 10);
    let gated = Gated::new(o.clone(), true);
    let d = Dispatch::new().provider(OPENAI, Counted(gated.clone()));
    let built = gated.clones();
    for _ in 0..5 {
        let response = d
            .clone()
            .oneshot(with_target(OPENAI, "gpt-4o-mini"))
            .await
            .unwrap();
        assert_eq!(response.provider(), &OPENAI);
    }
    assert_eq!(o.stats().calls(), 5);
    assert_eq!(
        gated.clones(),
        built,
        "no clone of the provider's stack per attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn a_provider_ready_only_later_gets_its_attempt_from_a_clone() {
    let o = sim(OPENAI, 10);
    let gated = Gated::new(o.clone(), false);
    let mut d = Dispatch::new().provider(OPENAI, Counted(gated.clone()));
    let built = gated.clones();
    std::future::poll_fn(|cx| d.poll_ready(cx)).await.unwrap();
    let mut attempt = std::pin::pin!(d.call(with_target(OPENAI, "gpt-4o-mini")));
    let early = tokio::time::timeout(Duration::from_secs(5), attempt.as_mut()).await;
    assert!(early.is_err(), "not ready: the attempt waits");
    assert_eq!(
        gated.clones(),
        built + 1,
        "the waiting attempt drives a clone"
    );
    assert_eq!(o.stats().calls(), 0);
    gated.open();
    let response = attempt.await.unwrap();
    assert_eq!(response.provider(), &OPENAI);
    assert_eq!(o.stats().calls(), 1);
}
