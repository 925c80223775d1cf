//! Contract tests of the circuit breaker over simulated providers, in paused time.

use std::time::Duration;

use futures_util::StreamExt;
use switchboard_breaker::{Breaker, BreakerConfig, BreakerLayer, Mode, SlowCalls};
use switchboard_core::{
    BreakerState, ChatBody, ChatRequest, Error, HealthBoard, Message, ProviderId,
};
use switchboard_sim::{
    Answer, ErrorFault, Faults, Latency, MidStream, Outage, SimConfig, SimProvider,
};
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

const OPENAI: ProviderId = ProviderId::OPENAI;

fn req() -> ChatRequest {
    ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("ping")]))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn failing(status: u16) -> SimProvider {
    let faults = Faults {
        errors: vec![ErrorFault {
            status,
            probability: 1.0,
            after: Duration::ZERO,
            retry_after_secs: None,
        }],
        ..Faults::default()
    };
    SimProvider::new(OPENAI, SimConfig::instant().faults(faults))
}

/// Down (503) for `down`, from now.
fn outage(down: Duration, first_token: Latency) -> SimProvider {
    let faults = Faults {
        outages: vec![Outage {
            start: Duration::ZERO,
            duration: down,
            status: 503,
        }],
        ..Faults::default()
    };
    SimProvider::new(
        OPENAI,
        SimConfig::instant().first_token(first_token).faults(faults),
    )
}

/// No jitter, so open periods are exact.
fn exact() -> BreakerConfig {
    BreakerConfig::default().open_period(secs(5), secs(60), 2.0, 0.0)
}

fn breaker(sim: &SimProvider, config: BreakerConfig, board: &HealthBoard) -> Breaker<SimProvider> {
    BreakerLayer::new(OPENAI)
        .config(config)
        .board(board.clone())
        .layer(sim.clone())
}

async fn call(svc: &mut Breaker<SimProvider>) -> Result<(), Error> {
    let response = svc.ready().await?.call(req()).await?;
    response.collect().await.map(|_| ())
}

fn assert_circuit_open(e: &Error) {
    assert!(
        matches!(e, Error::CircuitOpen { .. }),
        "expected circuit_open, got {e:?}"
    );
    assert_eq!(e.reason(), "openai_circuit_open");
    assert!(e.is_retryable() && !e.counts_against_provider());
}

#[tokio::test(start_paused = true)]
async fn opens_after_five_failures_in_thirty_seconds() {
    let sim = failing(503);
    let board = HealthBoard::new();
    let mut svc = breaker(&sim, exact(), &board);
    for i in 0..5 {
        if i > 0 {
            advance(secs(7)).await; // five failures spread over 28 s
        }
        assert_eq!(
            board.state(&OPENAI),
            BreakerState::Closed,
            "closed before failure {}",
            i + 1
        );
        let e = call(&mut svc).await.unwrap_err();
        assert_eq!(e.reason(), "openai_upstream_server_error");
    }
    assert_eq!(
        board.state(&OPENAI),
        BreakerState::Open,
        "the fifth failure in 30 s opens it"
    );
    let e = call(&mut svc).await.unwrap_err();
    assert_circuit_open(&e);
    assert_eq!(
        sim.stats().calls(),
        5,
        "a refused call never reaches the provider"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_that_leave_the_window_do_not_open_it() {
    let sim = failing(503);
    let board = HealthBoard::new();
    let mut svc = breaker(&sim, exact().consecutive_failures(None), &board);
    for _ in 0..12 {
        call(&mut svc).await.unwrap_err();
        advance(secs(8)).await; // at most four failures in any 30 s
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Closed);
    assert_eq!(sim.stats().calls(), 12);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_majority_keeps_it_closed() {
    use std::future::Future;
    use std::pin::Pin;
    type Fut = Pin<Box<dyn Future<Output = Result<switchboard_core::ChatResponse, Error>> + Send>>;

    // One provider that fails requests saying "fail" (a 500) and answers the others.
    let bad = failing(500);
    let good = SimProvider::new(OPENAI, SimConfig::instant());
    let (b2, g2) = (bad.clone(), good.clone());
    let mixed = tower::service_fn(move |r: ChatRequest| -> Fut {
        if r.body().last_user_text().as_deref() == Some("fail") {
            Box::pin(b2.clone().oneshot(r))
        } else {
            Box::pin(g2.clone().oneshot(r))
        }
    });
    let board = HealthBoard::new();
    let mut svc = BreakerLayer::new(OPENAI)
        .config(exact())
        .board(board.clone())
        .layer(mixed);
    let fail = || ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("fail")]));
    for _ in 0..6 {
        let e = svc.ready().await.unwrap().call(fail()).await.unwrap_err();
        assert_eq!(e.reason(), "openai_upstream_server_error");
        for _ in 0..2 {
            let r = svc.ready().await.unwrap().call(req()).await.unwrap();
            r.collect().await.unwrap();
        }
        advance(secs(4)).await;
    }
    assert_eq!(
        board.state(&OPENAI),
        BreakerState::Closed,
        "6 failures in 24 s, but only a third of the calls"
    );
    let snap = board.snapshot(&OPENAI).unwrap();
    assert_eq!((snap.successes, snap.failures), (12, 6));
    assert_eq!(bad.stats().calls() + good.stats().calls(), 18);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_opens_without_five_in_a_row() {
    use std::future::Future;
    use std::pin::Pin;
    type Fut = Pin<Box<dyn Future<Output = Result<switchboard_core::ChatResponse, Error>> + Send>>;

    let bad = failing(502);
    let good = SimProvider::new(OPENAI, SimConfig::instant());
    let (b2, g2) = (bad.clone(), good.clone());
    let mixed = tower::service_fn(move |r: ChatRequest| -> Fut {
        if r.body().last_user_text().as_deref() == Some("fail") {
            Box::pin(b2.clone().oneshot(r))
        } else {
            Box::pin(g2.clone().oneshot(r))
        }
    });
    let board = HealthBoard::new();
    let mut svc = BreakerLayer::new(OPENAI)
        .config(exact())
        .board(board.clone())
        .layer(mixed);
    let fail = || ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("fail")]));
    // fail, fail, ok, fail, fail: never more than two in a row, 4 of 5 failed.
    for (i, failing) in [true, true, false, true, true].into_iter().enumerate() {
        assert_eq!(
            board.state(&OPENAI),
            BreakerState::Closed,
            "closed before call {}",
            i + 1
        );
        let r = svc
            .ready()
            .await
            .unwrap()
            .call(if failing { fail() } else { req() })
            .await;
        match r {
            Ok(resp) => drop(resp.collect().await.unwrap()),
            Err(e) => assert_eq!(e.reason(), "openai_upstream_server_error"),
        }
        advance(secs(2)).await;
    }
    assert_eq!(
        board.state(&OPENAI),
        BreakerState::Open,
        "80 % of 5 calls in 30 s failed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_callers_bad_request_never_trips_it() {
    let sim = failing(400);
    let board = HealthBoard::new();
    let mut svc = breaker(&sim, exact().consecutive_failures(Some(2)), &board);
    for _ in 0..20 {
        let e = call(&mut svc).await.unwrap_err();
        assert!(matches!(e, Error::InvalidRequest { .. }));
        assert_eq!(e.reason(), "openai_invalid_request");
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Closed);
    assert_eq!(board.snapshot(&OPENAI).unwrap().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_it_regardless_of_rate() {
    let sim = failing(529);
    let board = HealthBoard::new();
    let config = exact()
        .consecutive_failures(Some(3))
        .failure_rate(secs(30), 100, 1.0);
    let mut svc = breaker(&sim, config, &board);
    for _ in 0..3 {
        let e = call(&mut svc).await.unwrap_err();
        assert!(matches!(e, Error::Overloaded { .. }));
        assert_eq!(e.reason(), "openai_overloaded");
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_opens_it() {
    let sim = SimProvider::new(
        OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(2_000)),
    );
    let board = HealthBoard::new();
    let config = exact().slow_calls(Some(SlowCalls {
        threshold: secs(1),
        rate: 0.8,
    }));
    let mut svc = breaker(&sim, config, &board);
    for _ in 0..5 {
        call(&mut svc).await.expect("slow calls still succeed");
    }
    assert_eq!(
        board.state(&OPENAI),
        BreakerState::Open,
        "5 of 5 calls slower than 1 s"
    );
    assert_circuit_open(&call(&mut svc).await.unwrap_err());
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_k_probes() {
    // Down for 3 s, then healthy with a 1 s first token so probes stay in flight.
    let sim = outage(secs(3), Latency::fixed_ms(1_000));
    let board = HealthBoard::new();
    let mut svc = breaker(&sim, exact().half_open_probes(3), &board);
    for _ in 0..5 {
        call(&mut svc).await.unwrap_err();
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Open);
    assert_eq!(board.get(&OPENAI).unwrap().retry_after(), Some(secs(5)));
    advance(secs(5)).await;
    assert_eq!(
        board.state(&OPENAI),
        BreakerState::HalfOpen,
        "open period over"
    );

    let calls_before = sim.stats().calls();
    let mut pending = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let mut clone = svc.clone();
        let fut = clone.ready().await.unwrap().call(req());
        let mut t = task::spawn(fut);
        match t.poll() {
            std::task::Poll::Ready(Err(e)) => {
                assert_circuit_open(&e);
                assert_eq!(
                    e.retry_after(),
                    None,
                    "half-open refusals have no fixed retry time"
                );
                refused += 1;
            }
            std::task::Poll::Ready(Ok(_)) => panic!("a probe cannot answer before its first token"),
            std::task::Poll::Pending => pending.push(t),
        }
    }
    assert_eq!(
        pending.len(),
        3,
        "exactly three probes admitted across clones"
    );
    assert_eq!(refused, 7);
    assert_eq!(sim.stats().calls() - calls_before, 3);
    for t in pending {
        t.await.unwrap().collect().await.unwrap();
    }
    assert_eq!(
        board.state(&OPENAI),
        BreakerState::Closed,
        "three successful probes close it"
    );
    call(&mut svc).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_with_exponential_backoff() {
    let sim = outage(secs(600), Latency::fixed_ms(0));
    let board = HealthBoard::new();
    let mut svc = breaker(&sim, exact(), &board);
    for _ in 0..5 {
        call(&mut svc).await.unwrap_err();
    }
    let health = board.get(&OPENAI).unwrap();
    for expected in [5, 10, 20, 40, 60, 60] {
        assert_eq!(
            health.retry_after(),
            Some(secs(expected)),
            "open period doubles up to the cap"
        );
        assert_circuit_open(&call(&mut svc).await.unwrap_err());
        advance(secs(expected)).await;
        let e = call(&mut svc).await.unwrap_err(); // the probe
        assert_eq!(e.reason(), "openai_upstream_server_error");
    }
}

#[tokio::test(start_paused = true)]
async fn jitter_stretches_the_open_period_within_bounds() {
    let sim = failing(503);
    let board = HealthBoard::new();
    let config = BreakerConfig::default().open_period(secs(10), secs(60), 2.0, 0.5);
    let mut svc = breaker(&sim, config, &board);
    for _ in 0..5 {
        call(&mut svc).await.unwrap_err();
    }
    let open_for = board.get(&OPENAI).unwrap().retry_after().unwrap();
    assert!(
        open_for >= secs(10) && open_for <= secs(15),
        "10 s + up to 50 %: {open_for:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn mid_stream_errors_count_as_failures() {
    let faults = Faults {
        error_event: Some(MidStream {
            probability: 1.0,
            after_tokens: 2,
        }),
        ..Faults::default()
    };
    let sim = SimProvider::new(
        OPENAI,
        SimConfig::instant()
            .answer(Answer::Words { count: 5 })
            .faults(faults),
    );
    let board = HealthBoard::new();
    let mut svc = breaker(&sim, exact(), &board);
    for _ in 0..5 {
        let mut response = svc
            .ready()
            .await
            .unwrap()
            .call(req())
            .await
            .expect("first token arrives");
        let mut last = None;
        while let Some(item) = response.next().await {
            last = Some(item);
        }
        assert_eq!(last.unwrap().unwrap_err().reason(), "openai_overloaded");
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_counts_as_nothing() {
    let sim = SimProvider::new(
        OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(5_000)),
    );
    let board = HealthBoard::new();
    let mut svc = breaker(&sim, exact(), &board);
    let mut fut = task::spawn(svc.ready().await.unwrap().call(req()));
    assert_pending!(fut.poll());
    assert_eq!(board.snapshot(&OPENAI).unwrap().in_flight, 1);
    drop(fut);
    assert_eq!(sim.stats().cancelled(), 1);
    let snap = board.snapshot(&OPENAI).unwrap();
    assert_eq!((snap.calls, snap.in_flight), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn board_publishes_first_token_latency_and_success_rate() {
    let sim = SimProvider::new(
        OPENAI,
        SimConfig::instant().first_token(Latency::fixed_ms(300)),
    );
    let board = HealthBoard::new();
    let mut svc = breaker(&sim, exact(), &board);
    for _ in 0..20 {
        call(&mut svc).await.unwrap();
    }
    let snap = board.snapshot(&OPENAI).unwrap();
    assert_eq!(snap.success_rate, Some(1.0));
    assert_eq!(snap.timeout_ratio, Some(0.0));
    let p99 = snap.first_token.p99.unwrap();
    assert!(
        p99 >= Duration::from_millis(300) && p99 <= Duration::from_millis(316),
        "{p99:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn backpressure_mode_keeps_poll_ready_pending_while_open() {
    let sim = outage(secs(3), Latency::fixed_ms(0));
    let board = HealthBoard::new();
    let mut svc = breaker(
        &sim,
        exact().mode(Mode::Backpressure).half_open_probes(1),
        &board,
    );
    for _ in 0..5 {
        call(&mut svc).await.unwrap_err();
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Open);
    {
        let mut ready = task::spawn(svc.ready());
        assert_pending!(ready.poll(), "not ready while open");
        advance(secs(4)).await;
        assert_pending!(ready.poll(), "still open at 4 s");
        advance(secs(1)).await;
        assert!(
            ready.is_woken(),
            "the end of the open period wakes the caller"
        );
        assert_ready_ok!(ready.poll());
    }
    // The one probe is now held by `svc`; a clone must wait for it.
    let mut other = svc.clone();
    let mut other_ready = task::spawn(other.ready());
    assert_pending!(other_ready.poll(), "the only probe slot is taken");
    let response = svc.call(req()).await.unwrap();
    response.collect().await.unwrap();
    assert_eq!(board.state(&OPENAI), BreakerState::Closed);
    assert!(other_ready.is_woken(), "closing wakes waiting callers");
    assert_ready_ok!(other_ready.poll());
}

#[tokio::test(start_paused = true)]
async fn backpressure_mode_works_under_tower_balance() {
    use tower::balance::p2c::Balance;
    use tower::discover::ServiceList;
    use tower::load::Constant;

    let board = HealthBoard::new();
    let a = failing(503);
    let b = SimProvider::new(ProviderId::ANTHROPIC, SimConfig::instant());
    let config = exact()
        .mode(Mode::Backpressure)
        .open_period(secs(600), secs(600), 2.0, 0.0);
    let a_svc = BreakerLayer::new(OPENAI)
        .config(config.clone())
        .board(board.clone())
        .layer(a.clone());
    let b_svc = BreakerLayer::new(ProviderId::ANTHROPIC)
        .config(config)
        .board(board.clone())
        .layer(b.clone());
    // Open A before it joins the balancer.
    let mut a_direct = a_svc.clone();
    for _ in 0..5 {
        call(&mut a_direct).await.unwrap_err();
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Open);

    let mut balance = Balance::new(ServiceList::new(vec![
        Constant::new(a_svc, 0),
        Constant::new(b_svc, 0),
    ]));
    for _ in 0..50 {
        let response = balance
            .ready()
            .await
            .expect("the balancer keeps a pending breaker instead of failing")
            .call(req())
            .await
            .expect("only the healthy provider is picked");
        assert_eq!(response.provider(), &ProviderId::ANTHROPIC);
    }
    assert_eq!(a.stats().calls(), 5, "nothing reached the open provider");
    assert_eq!(b.stats().calls(), 50);
}

#[tokio::test(start_paused = true)]
async fn operator_can_force_open_force_closed_and_reset() {
    let sim = outage(secs(30), Latency::fixed_ms(0));
    let board = HealthBoard::new();
    let mut svc = breaker(&sim, exact(), &board);
    let handle = svc.handle().clone();

    handle.force_open();
    assert_eq!(board.state(&OPENAI), BreakerState::ForcedOpen);
    assert_circuit_open(&call(&mut svc).await.unwrap_err());
    assert_eq!(sim.stats().calls(), 0, "forced open refuses everything");

    handle.clear_force();
    for _ in 0..5 {
        call(&mut svc).await.unwrap_err();
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Open);

    handle.force_closed();
    assert_eq!(board.state(&OPENAI), BreakerState::ForcedClosed);
    for _ in 0..10 {
        call(&mut svc).await.unwrap_err();
    }
    assert_eq!(sim.stats().calls(), 15, "forced closed admits every call");

    handle.reset();
    advance(secs(31)).await; // the outage is over
    call(&mut svc)
        .await
        .expect("reset closes the breaker and forgets its history");
    assert_eq!(board.state(&OPENAI), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn active_probe_moves_to_half_open_early() {
    let sim = outage(secs(10), Latency::fixed_ms(50));
    let board = HealthBoard::new();
    let config = BreakerConfig::default().open_period(secs(300), secs(300), 2.0, 0.0);
    let mut svc = BreakerLayer::new(OPENAI)
        .config(config)
        .board(board.clone())
        .active_probe(secs(2), req)
        .layer(sim.clone());
    let start = Instant::now();
    for _ in 0..5 {
        call(&mut svc).await.unwrap_err();
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Open);
    while board.state(&OPENAI) == BreakerState::Open {
        advance(Duration::from_millis(100)).await;
        assert!(
            start.elapsed() < secs(60),
            "a probe should have found the provider back"
        );
    }
    let at = start.elapsed();
    assert!(
        at >= secs(10) && at <= secs(13),
        "half-open soon after the outage, at {at:?}"
    );
    assert_eq!(board.state(&OPENAI), BreakerState::HalfOpen);
    for _ in 0..3 {
        call(&mut svc).await.unwrap();
    }
    assert_eq!(board.state(&OPENAI), BreakerState::Closed);
}

#[test]
fn config_reads_milliseconds() {
    let config: BreakerConfig = serde_json::from_value(serde_json::json!({
        "consecutive_failures": 4,
        "window_ms": 10000,
        "slow_calls": {"threshold_ms": 2500, "rate": 0.6},
        "mode": "backpressure"
    }))
    .unwrap();
    assert_eq!(config.window, secs(10));
    assert_eq!(
        config.slow_calls.unwrap().threshold,
        Duration::from_millis(2500)
    );
    assert_eq!(config.mode, Mode::Backpressure);
    assert_eq!(
        config.half_open_probes, 3,
        "unset knobs keep their defaults"
    );
    assert!(serde_json::from_str::<BreakerConfig>(r#"{"windw_ms": 1}"#).is_err());
}

#[tokio::test(start_paused = true)]
async fn absurd_config_values_do_not_panic() {
    let sim = failing(503);
    let board = HealthBoard::new();
    let config: BreakerConfig = serde_json::from_value(serde_json::json!({
        "consecutive_failures": 0,
        "window_ms": 0,
        "min_calls": 0,
        "failure_rate": 0.0,
        "half_open_probes": 0,
        "open_base_ms": u64::MAX,
        "open_max_ms": u64::MAX,
        "backoff": f64::MAX,
        "jitter": 7.0
    }))
    .unwrap();
    let mut svc = breaker(&sim, config, &board);
    call(&mut svc).await.unwrap_err();
    assert_eq!(board.state(&OPENAI), BreakerState::Open);
    assert_circuit_open(&call(&mut svc).await.unwrap_err());
}
