//! Contract tests of the hedge layer over simulated providers, in paused time.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use switchboard_breaker::{BreakerConfig, BreakerLayer};
use switchboard_core::{
    AttemptKind, AttemptOutcome, Attempts, BoxProvider, ChatBody, ChatRequest, ChatResponse,
    Deadline, Degraded, Error, HealthBoard, Message, ProviderId, Route, Target, WinReason, boxed,
};
use switchboard_hedge::{BudgetConfig, Hedge, HedgeConfig, HedgeLayer, SoftTimeout};
use switchboard_sim::{ErrorFault, Faults, Latency, SimConfig, SimProvider};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const A: ProviderId = ProviderId::OPENAI;
const B: ProviderId = ProviderId::ANTHROPIC;
const C: ProviderId = ProviderId::from_static("mistral");

/// Sends each attempt to the provider its `Target` names.
#[derive(Clone)]
struct Dispatch(HashMap<ProviderId, BoxProvider>);

impl Service<ChatRequest> for Dispatch {
    type Response = ChatResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let target = req.extensions().get::<Target>().map(|t| t.provider.clone());
        let svc = target.and_then(|p| self.0.get(&p).cloned());
        Box::pin(async move {
            match svc {
                Some(svc) => svc.oneshot(req).await,
                None => Err(Error::NoProvider {
                    message: "unknown target".into(),
                }),
            }
        })
    }
}

fn dispatch(providers: &[&SimProvider]) -> Dispatch {
    Dispatch(
        providers
            .iter()
            .map(|p| (p.id().clone(), boxed((*p).clone())))
            .collect(),
    )
}

fn sim(id: ProviderId, first_token_ms: u64) -> SimProvider {
    SimProvider::new(
        id,
        SimConfig::instant().first_token(Latency::fixed_ms(first_token_ms)),
    )
}

fn failing(id: ProviderId, status: u16, after_ms: u64) -> SimProvider {
    let faults = Faults {
        errors: vec![ErrorFault {
            status,
            probability: 1.0,
            after: Duration::from_millis(after_ms),
            retry_after_secs: None,
        }],
        ..Faults::default()
    };
    SimProvider::new(id, SimConfig::instant().faults(faults))
}

fn route(ids: &[ProviderId]) -> Route {
    let mut targets = ids
        .iter()
        .map(|id| Target::new(id.clone(), format!("{id}-model")));
    let mut route = Route::new(targets.next().expect("one target"));
    for t in targets {
        route = route.fallback(t);
    }
    route
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn fixed(soft_ms: u64) -> HedgeConfig {
    HedgeConfig::default().soft_timeout(SoftTimeout::fixed(ms(soft_ms)))
}

fn hedged(config: HedgeConfig, ids: &[ProviderId], providers: &[&SimProvider]) -> Hedge<Dispatch> {
    HedgeLayer::new(config)
        .route(route(ids))
        .layer(dispatch(providers))
}

fn req() -> ChatRequest {
    ChatRequest::new(ChatBody::new("chat", vec![Message::user("hello")]))
}

fn attempts(r: &ChatResponse) -> &Attempts {
    r.extensions()
        .get::<Attempts>()
        .expect("the response records its attempts")
}

fn outcomes(r: &ChatResponse) -> Vec<(String, AttemptKind, AttemptOutcome)> {
    attempts(r)
        .iter()
        .map(|a| (a.provider.to_string(), a.kind, a.outcome.clone()))
        .collect()
}

fn skipped(reason: &str) -> AttemptOutcome {
    AttemptOutcome::Skipped {
        reason: reason.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn hedge_fires_after_soft_timeout_and_fallback_wins() {
    let (a, b) = (sim(A, 10_000), sim(B, 600));
    let mut svc = hedged(fixed(1200), &[A, B], &[&a, &b]);
    let start = Instant::now();
    let response = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(start.elapsed(), ms(1800), "hedge at 1200 ms + B's 600 ms");
    assert_eq!(response.provider(), &B);
    assert_eq!(
        response.model(),
        "anthropic-model",
        "the attempt asked B for its own model"
    );
    assert_eq!(
        outcomes(&response),
        vec![
            (
                "openai".into(),
                AttemptKind::Primary,
                AttemptOutcome::Cancelled
            ),
            ("anthropic".into(), AttemptKind::Hedge, AttemptOutcome::Won),
        ]
    );
    let rec = attempts(&response);
    assert_eq!(rec.why(), Some(&WinReason::HedgeFaster));
    assert_eq!(rec.get(1).unwrap().started_after, ms(1200));
    assert_eq!(rec.extra_calls(), 1);
    let degraded = response.extensions().get::<Degraded>().unwrap();
    assert_eq!(degraded.first_reason(), Some("hedge_faster"));
    assert_eq!(
        a.stats().cancelled(),
        1,
        "the primary was cancelled when B won"
    );
    assert_eq!((a.stats().calls(), b.stats().calls()), (1, 1));
    response.collect().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn loser_is_cancelled() {
    // The primary answers at 1500 ms, after the hedge to B started at 1200 ms.
    let (a, b) = (sim(A, 1_500), sim(B, 5_000));
    let mut svc = hedged(fixed(1200), &[A, B], &[&a, &b]);
    let response = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(response.provider(), &A);
    assert_eq!(b.stats().calls(), 1, "the hedge was sent");
    assert_eq!(b.stats().cancelled(), 1, "the losing hedge was cancelled");
    assert_eq!(b.stats().in_flight(), 0);
    assert_eq!(
        outcomes(&response),
        vec![
            ("openai".into(), AttemptKind::Primary, AttemptOutcome::Won),
            (
                "anthropic".into(),
                AttemptKind::Hedge,
                AttemptOutcome::Cancelled
            ),
        ]
    );
    assert_eq!(attempts(&response).why(), Some(&WinReason::Primary));
    assert!(
        response.extensions().get::<Degraded>().is_none(),
        "the primary's answer is not degraded"
    );
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_budget_is_spent() {
    let (a, b) = (sim(A, 5_000), sim(B, 100));
    let budget = BudgetConfig {
        ratio: 0.0,
        reserve: 2,
        cap: 2,
    };
    let mut svc = hedged(fixed(1000).budget(budget), &[A, B], &[&a, &b]);
    for _ in 0..2 {
        let r = svc.ready().await.unwrap().call(req()).await.unwrap();
        assert_eq!(r.provider(), &B, "the reserve pays for two hedges");
    }
    let start = Instant::now();
    let r = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(
        r.provider(),
        &A,
        "no token left: the call waits for the primary"
    );
    assert_eq!(start.elapsed(), ms(5000));
    assert_eq!(
        outcomes(&r)[1],
        (
            "anthropic".into(),
            AttemptKind::Hedge,
            skipped("hedge_budget_exhausted")
        )
    );
    assert_eq!(b.stats().calls(), 2);
    assert_eq!(svc.budget().available(), 0);
}

#[tokio::test(start_paused = true)]
async fn budget_refills_with_traffic() {
    let (a, b) = (sim(A, 5_000), sim(B, 100));
    let budget = BudgetConfig {
        ratio: 0.5,
        reserve: 0,
        cap: 10,
    };
    let mut svc = HedgeLayer::new(fixed(1000).budget(budget))
        .route(route(&[A, B]))
        .layer(dispatch(&[&a, &b]));
    let mut hedges = 0;
    for _ in 0..10 {
        let r = svc.ready().await.unwrap().call(req()).await.unwrap();
        hedges += usize::from(r.provider() == &B);
    }
    assert_eq!(
        hedges, 5,
        "half a token per request: every second request may hedge"
    );
}

#[tokio::test(start_paused = true)]
async fn retryable_error_fails_over_at_once() {
    let (a, b) = (failing(A, 503, 50), sim(B, 600));
    let mut svc = hedged(fixed(1200), &[A, B], &[&a, &b]);
    let start = Instant::now();
    let response = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(
        start.elapsed(),
        ms(650),
        "no soft-timeout wait after a retryable error"
    );
    assert_eq!(response.provider(), &B);
    let rec = attempts(&response);
    assert_eq!(
        rec.why(),
        Some(&WinReason::Failover {
            reason: "openai_upstream_server_error".into()
        })
    );
    assert_eq!(
        outcomes(&response),
        vec![
            (
                "openai".into(),
                AttemptKind::Primary,
                AttemptOutcome::Failed {
                    reason: "openai_upstream_server_error".into()
                }
            ),
            (
                "anthropic".into(),
                AttemptKind::Failover,
                AttemptOutcome::Won
            ),
        ]
    );
    let degraded = response.extensions().get::<Degraded>().unwrap();
    assert_eq!(
        degraded.first_reason(),
        Some("fallback_after_openai_upstream_server_error")
    );
}

#[tokio::test(start_paused = true)]
async fn non_retryable_error_ends_the_call() {
    let (a, b) = (failing(A, 400, 10), sim(B, 100));
    let mut svc = hedged(fixed(1200), &[A, B], &[&a, &b]);
    let e = svc.ready().await.unwrap().call(req()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest { .. }), "{e:?}");
    assert_eq!(e.reason(), "openai_invalid_request");
    assert_eq!(b.stats().calls(), 0, "a bad request is not sent elsewhere");
}

#[tokio::test(start_paused = true)]
async fn every_attempt_failing_returns_the_last_error_within_max_attempts() {
    let (a, b, c) = (failing(A, 503, 10), failing(B, 529, 10), sim(C, 10));
    let mut svc = hedged(fixed(1200).max_attempts(2), &[A, B, C], &[&a, &b, &c]);
    let e = svc.ready().await.unwrap().call(req()).await.unwrap_err();
    assert!(matches!(e, Error::Overloaded { .. }));
    assert_eq!(e.reason(), "anthropic_overloaded");
    assert_eq!(c.stats().calls(), 0, "max_attempts = 2");
}

#[tokio::test(start_paused = true)]
async fn skips_providers_whose_breaker_is_open() {
    let (a, b) = (sim(A, 100), sim(B, 100));
    let board = HealthBoard::new();
    board.provider(&A).force_open();
    let budget = BudgetConfig {
        ratio: 0.0,
        reserve: 0,
        cap: 0,
    };
    let mut svc = HedgeLayer::new(fixed(1200).budget(budget))
        .route(route(&[A, B]))
        .board(board.clone())
        .layer(dispatch(&[&a, &b]));
    let response = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(response.provider(), &B);
    assert_eq!(
        outcomes(&response),
        vec![
            (
                "openai".into(),
                AttemptKind::Primary,
                skipped("circuit_open")
            ),
            (
                "anthropic".into(),
                AttemptKind::Failover,
                AttemptOutcome::Won
            ),
        ]
    );
    assert_eq!(
        attempts(&response).why(),
        Some(&WinReason::Failover {
            reason: "openai_circuit_open".into()
        })
    );
    assert_eq!(
        attempts(&response).extra_calls(),
        0,
        "a skip costs no upstream call"
    );
    assert_eq!(a.stats().calls(), 0);

    board.provider(&B).force_open();
    let e = svc.ready().await.unwrap().call(req()).await.unwrap_err();
    assert!(matches!(e, Error::NoProvider { .. }));
    assert_eq!(e.reason(), "no_provider_available");
}

#[tokio::test(start_paused = true)]
async fn a_breakers_refusal_is_not_a_sent_attempt() {
    let (a, b) = (sim(A, 100), sim(B, 100));
    let board = HealthBoard::new();
    let a_breaker = BreakerLayer::new(A)
        .config(BreakerConfig::default())
        .board(board.clone())
        .layer(a.clone());
    a_breaker.handle().force_open();
    let mut providers = HashMap::new();
    providers.insert(A, boxed(a_breaker));
    providers.insert(B, boxed(b.clone()));
    let mut config = fixed(1200).budget(BudgetConfig {
        ratio: 0.0,
        reserve: 0,
        cap: 0,
    });
    config.skip_open_circuits = false; // let the breaker itself refuse
    let mut svc = HedgeLayer::new(config)
        .route(route(&[A, B]))
        .layer(Dispatch(providers));
    let response = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(
        response.provider(),
        &B,
        "an empty budget still allows the first real send"
    );
    assert_eq!(outcomes(&response)[0].2, skipped("circuit_open"));
    assert_eq!(a.stats().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn adaptive_soft_timeout_from_the_board() {
    let (a, b) = (sim(A, 5_000), sim(B, 100));
    let board = HealthBoard::new();
    let config = HedgeConfig::default().soft_timeout(SoftTimeout::Adaptive {
        quantile: 0.95,
        min_samples: 50,
        min: ms(100),
        max: ms(5_000),
        fallback: ms(1_500),
    });
    let mut svc = HedgeLayer::new(config)
        .route(route(&[A, B]))
        .board(board.clone())
        .layer(dispatch(&[&a, &b]));

    // Too few samples: the fallback.
    let r = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(attempts(&r).get(1).unwrap().started_after, ms(1_500));

    // A's board entry (written by its breaker in a real stack) says p95 ≈ 300 ms.
    let health = board.provider(&A);
    for i in 0..100u64 {
        health.record_success(ms(200 + i));
    }
    let r = svc.ready().await.unwrap().call(req()).await.unwrap();
    let hedge_at = attempts(&r).get(1).unwrap().started_after;
    assert!(
        hedge_at >= ms(295) && hedge_at <= ms(310),
        "hedged at A's observed p95 (295 ms, rounded up ≤ 5 %), got {hedge_at:?}"
    );

    // Clamped below.
    for _ in 0..5000 {
        health.record_success(ms(5));
    }
    let r = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(attempts(&r).get(1).unwrap().started_after, ms(100));
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_after_the_deadline() {
    let (a, b) = (failing(A, 503, 1_500), sim(B, 100));
    let mut svc = hedged(fixed(5_000), &[A, B], &[&a, &b]);
    let mut request = req();
    request.extensions_mut().insert(Deadline::after(ms(1_000)));
    let e = svc.ready().await.unwrap().call(request).await.unwrap_err();
    assert_eq!(
        e.reason(),
        "openai_upstream_server_error",
        "the last real error"
    );
    assert_eq!(
        b.stats().calls(),
        0,
        "the deadline had passed at the failover"
    );
}

#[tokio::test(start_paused = true)]
async fn the_request_route_overrides_the_configured_one() {
    let (a, b) = (sim(A, 100), sim(B, 100));
    let mut svc = hedged(fixed(1200), &[A, B], &[&a, &b]);
    let mut request = req();
    request.extensions_mut().insert(route(&[B, A]));
    let r = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(r.provider(), &B);
    assert_eq!(attempts(&r).why(), Some(&WinReason::Primary));
}

#[tokio::test(start_paused = true)]
async fn without_a_route_the_call_fails_clearly() {
    let a = sim(A, 100);
    let mut svc = HedgeLayer::new(HedgeConfig::default()).layer(dispatch(&[&a]));
    let e = svc.ready().await.unwrap().call(req()).await.unwrap_err();
    assert!(matches!(e, Error::NoProvider { .. }));
    assert_eq!(e.reason(), "no_provider_available");
    assert_eq!(a.stats().calls(), 0);
}

#[test]
fn config_reads_milliseconds() {
    let c: HedgeConfig = serde_json::from_value(serde_json::json!({
        "soft_timeout": {"kind": "adaptive", "quantile": 0.9, "min_samples": 20,
                         "min_ms": 200, "max_ms": 3000, "fallback_ms": 1000},
        "budget": {"ratio": 0.05}
    }))
    .unwrap();
    assert!(matches!(c.soft_timeout, SoftTimeout::Adaptive { quantile, .. } if quantile == 0.9));
    assert_eq!(c.budget.ratio, 0.05);
    assert_eq!(c.budget.reserve, 10);
    assert_eq!(c.max_attempts, 3);
    let fixed: HedgeConfig =
        serde_json::from_str(r#"{"soft_timeout": {"kind": "fixed", "ms": 1200}}"#).unwrap();
    assert_eq!(fixed.soft_timeout, SoftTimeout::fixed(ms(1200)));
}

#[tokio::test(start_paused = true)]
async fn first_token_timeout_fails_over_and_counts_against_the_provider() {
    use switchboard_timeout::{Scope, TimeoutLayer, TimeoutTiers, Timeouts};

    let (a, b) = (sim(A, 10_000), sim(B, 200));
    let board = HealthBoard::new();
    let per_attempt =
        TimeoutLayer::new(TimeoutTiers::uniform(Timeouts::NONE.first_token(ms(1_000))))
            .scope(Scope::Attempt);
    let stack = |s: &SimProvider| {
        boxed(
            BreakerLayer::new(s.id().clone())
                .board(board.clone())
                .layer(per_attempt.clone().layer(s.clone())),
        )
    };
    let dispatch = Dispatch(HashMap::from([(A, stack(&a)), (B, stack(&b))]));
    let mut svc = HedgeLayer::new(fixed(5_000))
        .route(route(&[A, B]))
        .board(board.clone())
        .layer(dispatch);
    let start = Instant::now();
    let response = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(
        start.elapsed(),
        ms(1_200),
        "A's first-token deadline, then B at once"
    );
    assert_eq!(response.provider(), &B);
    assert_eq!(
        attempts(&response).why(),
        Some(&WinReason::Failover {
            reason: "openai_first_token_timeout".into()
        })
    );
    let snap = board.snapshot(&A).unwrap();
    assert_eq!(
        (snap.failures, snap.timeouts),
        (1, 1),
        "A's breaker counted the timeout"
    );
    assert_eq!(snap.timeout_ratio, Some(1.0));
    assert_eq!(
        a.stats().cancelled(),
        1,
        "the timed-out upstream call was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_deadline_has_passed_sends_nothing() {
    let (a, b) = (sim(A, 100), sim(B, 100));
    let mut svc = hedged(fixed(1200), &[A, B], &[&a, &b]);
    let mut request = req();
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::ZERO));
    let e = svc.ready().await.unwrap().call(request).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert_eq!(e.reason(), "total_timeout");
    assert_eq!(a.stats().calls() + b.stats().calls(), 0);
}
