//! Progressive rollout contract: promotion, hold times, rollback on each guard, stickiness.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use http::HeaderMap;
use switchboard_core::{
    ChatRequest, Error, Price, PriceTable, RequestHead, RolloutArm, RouteDecision, TenantId,
};
use switchboard_route::{
    Breach, Dispatch, Guard, Rollout, RolloutConfig, RolloutHandle, RolloutPhase, RouteLayer,
    RoutePolicy, Router,
};
use switchboard_sim::{ErrorFault, Faults, Latency, SimConfig, SimProvider};
use tower::{Layer, ServiceExt};

struct Fixture {
    router: Router<Dispatch>,
    handle: RolloutHandle,
    base: SimProvider,
    cand: SimProvider,
}

fn config() -> RolloutConfig {
    RolloutConfig::default()
        .min_requests(200)
        .min_duration(Duration::from_secs(30))
        .min_candidate_samples(20)
        .guard(Guard {
            min_samples: 20,
            min_quality_samples: 5,
            ..Guard::default()
        })
}

fn fixture(cand: SimConfig, cand_price: (&str, &str), config: RolloutConfig) -> Fixture {
    fixture_with(healthy(), cand, cand_price, config)
}

fn fixture_with(
    base: SimConfig,
    cand: SimConfig,
    cand_price: (&str, &str),
    config: RolloutConfig,
) -> Fixture {
    let base = SimProvider::new(OPENAI, base);
    let cand = SimProvider::new(OPENAI, cand);
    let upstream = ByModel::new([("m-base", base.clone()), ("m-cand", cand.clone())]);
    let dispatch = Dispatch::new().provider(OPENAI, upstream);
    let baseline = RoutePolicy::new([OPENAI]).model("chat", [(OPENAI, "m-base")]);
    let candidate = RoutePolicy::new([OPENAI]).model("chat", [(OPENAI, "m-cand")]);
    let mut prices = PriceTable::new();
    prices.insert("m-base", Price::per_million("1", "2").unwrap());
    prices.insert(
        "m-cand",
        Price::per_million(cand_price.0, cand_price.1).unwrap(),
    );
    let rollout = Rollout::new(candidate, config);
    let handle = rollout.handle();
    let router = RouteLayer::new(baseline)
        .prices(prices)
        .rollout(rollout)
        .layer(dispatch);
    Fixture {
        router,
        handle,
        base,
        cand,
    }
}

fn healthy() -> SimConfig {
    SimConfig::instant().first_token(Latency::fixed_ms(100))
}

fn session_request(session: &str) -> ChatRequest {
    let mut headers = HeaderMap::new();
    headers.insert("x-session-id", session.parse().unwrap());
    let mut r = request("chat", None);
    r.extensions_mut()
        .insert(RequestHead::new("/v1/chat/completions", headers));
    r
}

/// Sends one request and drains its answer; returns the arm that served it.
async fn send(router: &Router<Dispatch>, request: ChatRequest) -> Result<RolloutArm, Error> {
    let response = router.clone().oneshot(request).await?;
    let arm = response.extensions().get::<RouteDecision>().unwrap().arm;
    response.collect().await?;
    Ok(arm)
}

/// Sends requests one after another over `sessions` session keys until `stop` says so
/// or `max` were sent; returns how many were sent.
async fn drive(
    f: &Fixture,
    sessions: usize,
    max: usize,
    mut stop: impl FnMut(&RolloutHandle) -> bool,
) -> usize {
    for i in 0..max {
        if stop(&f.handle) {
            return i;
        }
        let _ = send(&f.router, session_request(&format!("s{}", i % sessions))).await;
    }
    max
}

#[tokio::test(start_paused = true)]
async fn healthy_candidate_is_promoted_through_every_stage_to_one_hundred_percent() {
    let f = fixture(healthy(), ("1", "2"), config());
    let mut seen = vec![f.handle.percent()];
    let start = tokio::time::Instant::now();
    drive(&f, 10_000, 50_000, |h| {
        if seen.last() != Some(&h.percent()) {
            seen.push(h.percent());
        }
        h.phase() != RolloutPhase::Running
    })
    .await;
    assert_eq!(seen, [1, 10, 50, 100], "every stage in order");
    let status = f.handle.status();
    assert_eq!(status.phase, RolloutPhase::Complete);
    assert_eq!((status.promotions, status.rollbacks), (3, 0));
    let stages: Vec<(u8, &str)> = status
        .history
        .iter()
        .map(|h| (h.percent, h.ended))
        .collect();
    assert_eq!(
        stages,
        [(1, "promoted"), (10, "promoted"), (50, "promoted")]
    );
    assert!(
        status
            .history
            .iter()
            .all(|h| h.requests >= 200 && h.candidate.outcomes >= 20)
    );
    assert!(
        start.elapsed() >= Duration::from_secs(90),
        "three stages of ≥ 30 s"
    );

    let before = f.base.stats().calls();
    for i in 0..100 {
        let arm = send(&f.router, session_request(&format!("s{i}")))
            .await
            .unwrap();
        assert_eq!(arm, RolloutArm::Candidate);
    }
    assert_eq!(
        f.base.stats().calls(),
        before,
        "at 100 % the baseline gets nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stage_is_held_for_its_minimum_time_and_requests() {
    let fast = SimConfig::instant().first_token(Latency::fixed_ms(1));
    // 1 ms answers: thousands of requests (≥ 20 candidate outcomes) in a few seconds.
    let f = fixture_with(
        fast.clone(),
        fast,
        ("1", "2"),
        config().min_duration(Duration::from_secs(60)),
    );
    drive(&f, 10_000, 5_000, |_| false).await;
    let status = f.handle.status();
    assert!(status.stage_requests >= 200 && status.candidate.outcomes >= 20);
    assert!(status.in_stage < Duration::from_secs(60));
    assert_eq!(status.percent, 1, "not promoted before the minimum time");

    tokio::time::sleep(Duration::from_secs(60)).await;
    drive(&f, 10_000, 1, |_| false).await;
    assert_eq!(f.handle.percent(), 10, "promoted once the time is served");
    assert_eq!(f.handle.promotions(), 1);

    // Time served but too few requests: held.
    let f = fixture(healthy(), ("1", "2"), config().min_requests(100_000));
    tokio::time::sleep(Duration::from_secs(120)).await;
    drive(&f, 10_000, 3_000, |_| false).await;
    assert_eq!(
        f.handle.percent(),
        1,
        "not promoted before the minimum requests"
    );
}

async fn rolled_back(f: &Fixture) -> Breach {
    drive(f, 10_000, 50_000, |h| h.phase() != RolloutPhase::Running).await;
    let status = f.handle.status();
    assert_eq!(status.phase, RolloutPhase::RolledBack);
    assert_eq!((status.percent, status.rollbacks), (0, 1));
    assert!(status.stage < 2, "rolled back before 50 %");
    // Everything goes to the baseline afterwards.
    let before = f.cand.stats().calls();
    drive(f, 10_000, 500, |_| false).await;
    assert_eq!(
        f.cand.stats().calls(),
        before,
        "after a rollback the candidate gets nothing"
    );
    status.breach.expect("a rollback says why")
}

#[tokio::test(start_paused = true)]
async fn rollback_when_the_candidate_error_rate_breaches_the_guard() {
    let faults = Faults {
        errors: vec![ErrorFault {
            status: 503,
            probability: 0.2,
            after: Duration::ZERO,
            retry_after_secs: None,
        }],
        ..Faults::default()
    };
    let f = fixture(healthy().faults(faults), ("1", "2"), config());
    let breach = rolled_back(&f).await;
    let Breach::ErrorRate {
        candidate,
        baseline,
    } = breach
    else {
        panic!("expected an error-rate breach, got {breach:?}");
    };
    assert!(
        candidate > 0.02 && baseline == 0.0,
        "{candidate} vs {baseline}"
    );
}

#[tokio::test(start_paused = true)]
async fn rollback_when_the_candidate_p95_breaches_the_guard() {
    let slow = SimConfig::instant().first_token(Latency::fixed_ms(200));
    let f = fixture(slow, ("1", "2"), config());
    let breach = rolled_back(&f).await;
    let Breach::FirstTokenP95 {
        candidate,
        baseline,
    } = breach
    else {
        panic!("expected a p95 breach, got {breach:?}");
    };
    let ratio = candidate.as_secs_f64() / baseline.as_secs_f64();
    assert!(
        (1.9..2.1).contains(&ratio),
        "2× slower: {candidate:?} vs {baseline:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rollback_when_the_candidate_cost_breaches_the_guard() {
    let f = fixture(healthy(), ("3", "6"), config());
    let breach = rolled_back(&f).await;
    let Breach::CostPerRequest {
        candidate,
        baseline,
    } = breach
    else {
        panic!("expected a cost breach, got {breach:?}");
    };
    assert_eq!(
        candidate.as_nanos(),
        3 * baseline.as_nanos(),
        "3× the price"
    );
}

#[tokio::test(start_paused = true)]
async fn rollback_when_the_candidate_quality_breaches_the_guard() {
    let f = fixture(healthy(), ("1", "2"), config());
    for _ in 0..5 {
        f.handle.report_quality(RolloutArm::Baseline, 0.90);
        f.handle.report_quality(RolloutArm::Candidate, 0.87);
    }
    assert_eq!(
        f.handle.phase(),
        RolloutPhase::Running,
        "a drop within the allowance (0.03 < 0.05) is tolerated"
    );
    f.handle.report_quality(RolloutArm::Candidate, 0.60);
    let status = f.handle.status();
    assert_eq!(status.phase, RolloutPhase::RolledBack, "mean 0.825 vs 0.90");
    let Some(Breach::Quality {
        candidate,
        baseline,
    }) = status.breach
    else {
        panic!("expected a quality breach, got {:?}", status.breach);
    };
    assert!((candidate - 0.825).abs() < 1e-9 && (baseline - 0.9).abs() < 1e-9);
    assert_eq!(f.handle.percent(), 0);
    let arm = send(&f.router, session_request("s1")).await.unwrap();
    assert_eq!(arm, RolloutArm::Baseline);
}

#[tokio::test(start_paused = true)]
async fn assignment_is_sticky_per_session_and_tenant() {
    let hold = Duration::from_secs(3600);
    let f = fixture(healthy(), ("1", "2"), config().min_duration(hold));
    let sessions: Vec<String> = (0..2_000).map(|i| format!("session-{i}")).collect();
    let mut at_one = BTreeSet::new();
    for s in &sessions {
        let first = send(&f.router, session_request(s)).await.unwrap();
        for _ in 0..2 {
            let again = send(&f.router, session_request(s)).await.unwrap();
            assert_eq!(again, first, "a session does not flip within a stage");
        }
        assert_eq!(first, f.handle.arm_for(s));
        if first == RolloutArm::Candidate {
            at_one.insert(s.clone());
        }
    }
    assert!(
        !at_one.is_empty() && at_one.len() < 60,
        "about 1 %: {}",
        at_one.len()
    );

    tokio::time::sleep(hold).await;
    drive(&f, 10_000, 50_000, |h| h.percent() >= 10).await;
    assert_eq!(f.handle.percent(), 10);
    let mut at_ten = BTreeSet::new();
    for s in &sessions {
        if send(&f.router, session_request(s)).await.unwrap() == RolloutArm::Candidate {
            at_ten.insert(s.clone());
        }
    }
    assert!(
        at_one.is_subset(&at_ten),
        "a candidate session stays a candidate as the stage grows"
    );
    assert!(
        at_ten.len() > 100 && at_ten.len() < 300,
        "about 10 %: {}",
        at_ten.len()
    );

    // Without a session header the tenant is the key.
    let tenant_request = || {
        let mut r = request("chat", None);
        r.extensions_mut().insert(TenantId::new("acme").unwrap());
        r
    };
    let arm = send(&f.router, tenant_request()).await.unwrap();
    for _ in 0..5 {
        assert_eq!(send(&f.router, tenant_request()).await.unwrap(), arm);
    }
    assert_eq!(arm, f.handle.arm_for("acme"));
}

#[tokio::test(start_paused = true)]
async fn operator_rollback_sends_everything_to_the_baseline() {
    let f = fixture(healthy(), ("1", "2"), config());
    f.handle.roll_back("gold set regression");
    assert_eq!(f.handle.phase(), RolloutPhase::RolledBack);
    assert_eq!(f.handle.status().breach.map(|b| b.code()), Some("manual"));
    drive(&f, 10_000, 300, |_| false).await;
    assert_eq!(f.cand.stats().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_candidate_policy_that_cannot_route_the_model_is_rolled_back() {
    let base = SimProvider::new(OPENAI, healthy());
    let upstream = ByModel::new([("m-base", base.clone())]);
    // The candidate renamed the logical model: `chat` is unknown to it.
    let rollout = Rollout::new(
        RoutePolicy::new([OPENAI]).model("chat-next", [(OPENAI, "m-base")]),
        config(),
    );
    let handle = rollout.handle();
    let router = RouteLayer::new(RoutePolicy::new([OPENAI]).model("chat", [(OPENAI, "m-base")]))
        .rollout(rollout)
        .layer(Dispatch::new().provider(OPENAI, upstream));
    let mut failures = 0;
    for i in 0..20_000 {
        if handle.phase() != RolloutPhase::Running {
            break;
        }
        if let Err(e) = send(&router, session_request(&format!("s{i}"))).await {
            assert_eq!(e.code(), "model_not_found");
            failures += 1;
        }
    }
    let status = handle.status();
    assert_eq!(status.phase, RolloutPhase::RolledBack);
    assert!(
        matches!(status.breach, Some(Breach::ErrorRate { .. })),
        "{:?}",
        status.breach
    );
    assert_eq!(
        failures, status.candidate.errors,
        "every candidate request failed"
    );
}
