//! Contract tests of the timeout tiers over simulated providers, in paused time.

use std::time::Duration;

use futures_util::StreamExt;
use switchboard_core::{
    ChatBody, ChatEvent, ChatRequest, ChatResponse, Deadline, Error, Message, ProviderId, Target,
    Tier, TimeoutPhase,
};
use switchboard_sim::{Answer, Faults, Latency, MidStreamStall, SimConfig, SimProvider};
use switchboard_timeout::{Scope, TimeoutLayer, TimeoutTiers, Timeouts};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

fn request(tier: Option<Tier>) -> ChatRequest {
    let mut r = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("hello")]));
    if let Some(t) = tier {
        r.extensions_mut().insert(t);
    }
    r
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn tiers(first: u64, idle: u64, total: u64) -> TimeoutTiers {
    TimeoutTiers::uniform(Timeouts::new(secs(first), secs(idle), secs(total)))
}

fn timeout_parts(e: &Error) -> (TimeoutPhase, Option<ProviderId>, Duration) {
    match e {
        Error::Timeout {
            phase,
            provider,
            after,
        } => (*phase, provider.clone(), *after),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// One call through `svc`, once it is ready.
async fn call<S>(svc: &mut S, request: ChatRequest) -> Result<ChatResponse, Error>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    svc.ready().await?.call(request).await
}

async fn drain(mut response: ChatResponse) -> (Vec<ChatEvent>, Option<Error>) {
    let mut events = Vec::new();
    while let Some(item) = response.next().await {
        match item {
            Ok(e) => events.push(e),
            Err(e) => {
                assert!(response.next().await.is_none(), "an error is terminal");
                return (events, Some(e));
            }
        }
    }
    (events, None)
}

#[tokio::test(start_paused = true)]
async fn first_token_timeout_names_its_phase() {
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(5_000)),
    );
    let mut svc = TimeoutLayer::new(tiers(2, 10, 60))
        .provider(ProviderId::OPENAI)
        .layer(sim.clone());
    let start = Instant::now();
    let err = call(&mut svc, request(None)).await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        secs(2),
        "fires exactly at the first-token deadline"
    );
    let (phase, provider, after) = timeout_parts(&err);
    assert_eq!(phase, TimeoutPhase::FirstToken);
    assert_eq!(provider, Some(ProviderId::OPENAI));
    assert_eq!(after, secs(2));
    assert_eq!(err.reason(), "openai_first_token_timeout");
    assert!(
        err.is_retryable(),
        "a first-token timeout may be retried elsewhere"
    );
    assert_eq!(
        sim.stats().cancelled(),
        1,
        "the slow upstream call was cancelled"
    );
    assert_eq!(sim.stats().in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn first_token_error_names_the_target_of_the_attempt() {
    let sim = SimProvider::new(
        ProviderId::ANTHROPIC,
        SimConfig::instant().first_token(Latency::fixed_ms(5_000)),
    );
    let mut svc = TimeoutLayer::new(tiers(1, 10, 60)).layer(sim);
    let mut req = request(None);
    req.extensions_mut()
        .insert(Target::new(ProviderId::ANTHROPIC, "claude-haiku-4-5"));
    let err = call(&mut svc, req).await.unwrap_err();
    assert_eq!(err.reason(), "anthropic_first_token_timeout");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_mid_stream() {
    let faults = Faults {
        stall_mid_stream: Some(MidStreamStall {
            probability: 1.0,
            after_tokens: 2,
            duration: secs(30),
        }),
        ..Faults::default()
    };
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant()
            .answer(Answer::Words { count: 10 })
            .tokens_per_second(10.0)
            .faults(faults),
    );
    let mut svc = TimeoutLayer::new(tiers(2, 5, 60)).layer(sim.clone());
    let response = call(&mut svc, request(None)).await.unwrap();
    let start = Instant::now();
    let (events, err) = drain(response).await;
    let err = err.expect("the stall must end the stream with an idle timeout");
    let (phase, provider, after) = timeout_parts(&err);
    assert_eq!(phase, TimeoutPhase::Idle);
    assert_eq!(provider, Some(ProviderId::OPENAI));
    assert_eq!(after, secs(5));
    assert_eq!(err.reason(), "openai_idle_timeout");
    assert!(
        !err.is_retryable(),
        "after the first token nothing is retried"
    );
    assert!(err.counts_against_provider());
    assert_eq!(
        events.iter().filter(|e| e.is_content()).count(),
        2,
        "the stall comes after two tokens; both reached the caller"
    );
    assert!(
        start.elapsed() < secs(6),
        "stopped at the idle deadline, not after the 30 s stall"
    );
    assert_eq!(
        sim.stats().cancelled(),
        1,
        "the stalled upstream stream was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn total_deadline_keeps_running_over_the_stream() {
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant()
            .first_token(Latency::fixed_ms(1_000))
            .answer(Answer::Words { count: 100 })
            .tokens_per_second(2.0),
    );
    let mut svc = TimeoutLayer::new(tiers(2, 5, 10)).layer(sim.clone());
    let start = Instant::now();
    let response = call(&mut svc, request(None)).await.unwrap();
    let (events, err) = drain(response).await;
    let err = err.expect("a 50 s answer cannot fit a 10 s total deadline");
    let (phase, provider, after) = timeout_parts(&err);
    assert_eq!(phase, TimeoutPhase::Total);
    assert_eq!(
        provider, None,
        "the total deadline is the caller's, not a provider's"
    );
    assert_eq!(after, secs(10));
    assert_eq!(err.reason(), "total_timeout");
    assert!(!err.counts_against_provider());
    assert_eq!(start.elapsed(), secs(10));
    assert!(
        events.len() >= 18,
        "tokens streamed until the deadline: {}",
        events.len()
    );
    assert_eq!(sim.stats().cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn stream_within_deadlines_passes_through_untouched() {
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant()
            .first_token(Latency::fixed_ms(500))
            .answer(Answer::Words { count: 20 })
            .tokens_per_second(20.0),
    );
    let mut svc = TimeoutLayer::new(tiers(2, 1, 10)).layer(sim.clone());
    let response = call(&mut svc, request(None)).await.unwrap();
    let done = response.collect().await.expect("no deadline expires");
    assert_eq!(done.text.split_whitespace().count(), 20);
    assert_eq!(sim.stats().completed(), 1);
}

#[tokio::test(start_paused = true)]
async fn tier_selects_the_deadlines() {
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(5_000)),
    );
    let tiers = TimeoutTiers::default()
        .tier(Tier::L0, Timeouts::new(secs(2), secs(10), secs(60)))
        .tier(Tier::L2, Timeouts::new(secs(30), secs(10), secs(60)));
    let mut svc = TimeoutLayer::new(tiers).layer(sim);
    let l0 = call(&mut svc, request(Some(Tier::L0))).await;
    assert_eq!(
        l0.unwrap_err().code(),
        "first_token_timeout",
        "L0 gives up after 2 s"
    );
    let l2 = call(&mut svc, request(Some(Tier::L2))).await;
    assert!(l2.is_ok(), "L2 waits 30 s for a 5 s first token");
}

#[tokio::test(start_paused = true)]
async fn untiered_requests_use_the_default_tier() {
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(5_000)),
    );
    let mut tiers = TimeoutTiers::default().tier(Tier::L2, Timeouts::NONE.first_token(secs(1)));
    tiers.default_tier = Tier::L2;
    let mut svc = TimeoutLayer::new(tiers).layer(sim);
    let err = call(&mut svc, request(None)).await.unwrap_err();
    assert_eq!(timeout_parts(&err).2, secs(1));
}

#[tokio::test(start_paused = true)]
async fn deadline_is_published_and_never_extended() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let inner = service_fn(move |req: ChatRequest| {
        seen2
            .lock()
            .unwrap()
            .push(req.extensions().get::<Deadline>().map(|d| d.remaining()));
        async {
            Err::<ChatResponse, _>(Error::NoProvider {
                message: "test".into(),
            })
        }
    });
    let mut svc = TimeoutLayer::new(tiers(2, 5, 30)).layer(inner);
    let _ = svc.ready().await.unwrap().call(request(None)).await;
    let mut outer = request(None);
    outer.extensions_mut().insert(Deadline::after(secs(7)));
    let _ = call(&mut svc, outer).await;
    let mut later = request(None);
    later.extensions_mut().insert(Deadline::after(secs(300)));
    let _ = call(&mut svc, later).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some(secs(30)), Some(secs(7)), Some(secs(30))],
        "own total, an earlier outer deadline, never a later one"
    );
}

#[tokio::test(start_paused = true)]
async fn attempt_scope_is_capped_by_the_outer_deadline_and_says_total() {
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(60_000)),
    );
    let mut svc = TimeoutLayer::new(tiers(10, 5, 600))
        .scope(Scope::Attempt)
        .layer(sim);
    let mut req = request(None);
    req.extensions_mut().insert(Deadline::after(secs(3)));
    let start = Instant::now();
    let err = call(&mut svc, req).await.unwrap_err();
    assert_eq!(start.elapsed(), secs(3));
    assert_eq!(timeout_parts(&err).0, TimeoutPhase::Total);
    assert_eq!(err.reason(), "total_timeout");

    // Without an outer deadline the attempt scope enforces only the first token.
    let err = call(&mut svc, request(None)).await.unwrap_err();
    assert_eq!(timeout_parts(&err).0, TimeoutPhase::FirstToken);
}

#[tokio::test(start_paused = true)]
async fn call_scope_leaves_the_first_token_alone() {
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(4_000)),
    );
    let mut svc = TimeoutLayer::new(tiers(1, 5, 60))
        .scope(Scope::Call)
        .layer(sim);
    let response = svc.ready().await.unwrap().call(request(None)).await;
    assert!(
        response.is_ok(),
        "the 1 s first-token deadline belongs to the attempt layer"
    );
}

#[tokio::test(start_paused = true)]
async fn first_token_at_the_deadline_wins_the_tie() {
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(2_000)),
    );
    let mut svc = TimeoutLayer::new(tiers(2, 5, 60)).layer(sim);
    let response = svc.ready().await.unwrap().call(request(None)).await;
    assert!(response.is_ok(), "the response is polled before the timer");
}

#[test]
fn config_reads_milliseconds_per_tier() {
    let tiers: TimeoutTiers = serde_json::from_value(serde_json::json!({
        "L0": {"first_token_ms": 1500, "idle_ms": 8000, "total_ms": 45000},
        "l2": {"first_token_ms": 30000},
        "default_tier": "L2"
    }))
    .unwrap();
    assert_eq!(tiers.l0.first_token, Some(Duration::from_millis(1500)));
    assert_eq!(tiers.l2.idle, None);
    assert_eq!(
        tiers.l1,
        TimeoutTiers::DEFAULT.l1,
        "unset tiers keep their defaults"
    );
    assert_eq!(tiers.default_tier, Tier::L2);
    let back: TimeoutTiers = serde_json::from_str(&serde_json::to_string(&tiers).unwrap()).unwrap();
    assert_eq!(back, tiers);
    assert!(serde_json::from_str::<TimeoutTiers>(r#"{"L3": {}}"#).is_err());
}

/// The idle deadline runs from the latest event: gaps just under it never expire however
/// long the stream runs, and the stall after the last event ends it exactly one idle
/// period later.
#[tokio::test(start_paused = true)]
async fn idle_deadline_runs_from_the_latest_event() {
    let provider = service_fn(|_: ChatRequest| async {
        // Five tokens 4 s apart (idle is 5 s), then a 60 s stall.
        let events = futures_util::stream::unfold(0u32, |n| async move {
            let gap = if n < 5 { secs(4) } else { secs(60) };
            tokio::time::sleep(gap).await;
            Some((Ok(ChatEvent::text("tok ")), n + 1))
        });
        Ok::<_, Error>(ChatResponse::new(ProviderId::OPENAI, "gpt-4o-mini", events))
    });
    let mut svc = TimeoutLayer::new(tiers(10, 5, 600)).layer(provider);
    let response = call(&mut svc, request(None)).await.unwrap();
    let start = Instant::now();
    let (events, err) = drain(response).await;
    assert_eq!(
        events.len(),
        5,
        "every token under the idle deadline arrived"
    );
    let (phase, _, after) = timeout_parts(&err.expect("the stall ends the stream"));
    assert_eq!((phase, after), (TimeoutPhase::Idle, secs(5)));
    assert_eq!(
        start.elapsed(),
        secs(4 * 5 + 5),
        "expired one idle period after the fifth token"
    );
}
