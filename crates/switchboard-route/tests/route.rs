//! RouteLayer contract: pools, pinning, cost cap, latency ranking, breakers, errors.

mod common;

use std::time::Duration;

use common::*;
use switchboard_breaker::BreakerLayer;
use switchboard_core::{
    BoxProvider, CostEstimate, Error, HealthBoard, Route, RouteDecision, RouteReason, Target, Tier,
    boxed,
};
use switchboard_route::{Dispatch, RouteLayer, TierPolicy};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// Sends one request through `layer` over `dispatch`; returns the route it carried, the
/// decision on the response, and the provider that answered.
async fn route(
    layer: &RouteLayer,
    dispatch: Dispatch,
    request: switchboard_core::ChatRequest,
) -> Result<(Route, RouteDecision, String), Error> {
    let seen = Seen::default();
    let svc = layer.clone().layer(seen.watch(dispatch));
    let response = svc.oneshot(request).await?;
    let decision = response
        .extensions()
        .get::<RouteDecision>()
        .cloned()
        .expect("the response carries the decision");
    let route = seen.take().expect("the request carried a Route");
    let provider = response.provider().to_string();
    response.collect().await?;
    Ok((route, decision, provider))
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .collect()
}

fn over_cap_estimate() -> CostEstimate {
    // gpt-4o: 2000 in × $2.50/M + 1500 out × $10/M = $0.02, over the $0.01 cap.
    let price = *prices().get("gpt-4o").unwrap();
    CostEstimate::new("gpt-4o", price, 2000, 2000, 1500, 1500)
}

#[tokio::test(start_paused = true)]
async fn l0_is_pinned_to_its_quality_pool_in_configured_order() {
    let (o, a, m) = (sim(OPENAI, 100), sim(ANTHROPIC, 100), sim(MISTRAL, 100));
    let board = HealthBoard::new();
    // Everything that would reorder an unpinned tier: openai measured fastest, and the
    // request over the cost cap.
    for _ in 0..50 {
        board
            .provider(&OPENAI)
            .record_success(Duration::from_millis(50));
        board
            .provider(&ANTHROPIC)
            .record_success(Duration::from_millis(900));
    }
    let layer = RouteLayer::new(policy()).board(board).prices(prices());
    let mut req = request("fast", Some(Tier::L0));
    req.extensions_mut().insert(over_cap_estimate());

    let (route, decision, answered) = route(&layer, dispatch(&[&o, &a, &m]), req).await.unwrap();
    assert_eq!(
        providers(&route),
        pairs(&[("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o")]),
        "L0 is served from the quality pool, in configured order, whatever model it asked for"
    );
    assert_eq!(
        decision.reason,
        RouteReason::Pinned {
            pool: "quality".into()
        }
    );
    assert_eq!(
        (decision.requested.as_str(), decision.pool.as_str()),
        ("fast", "quality")
    );
    assert_eq!(answered, "anthropic");
    assert_eq!(
        (o.stats().calls(), a.stats().calls(), m.stats().calls()),
        (0, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn over_cost_cap_routes_to_the_cheapest_provider_able_to_serve() {
    let (o, a, m) = (sim(OPENAI, 100), sim(ANTHROPIC, 100), sim(MISTRAL, 100));
    let board = HealthBoard::new();
    let layer = RouteLayer::new(policy())
        .board(board.clone())
        .prices(prices());

    let mut req = request("quality", Some(Tier::L1));
    req.extensions_mut().insert(over_cap_estimate());
    let (r, decision, answered) = route(&layer, dispatch(&[&o, &a, &m]), req).await.unwrap();
    assert_eq!(
        providers(&r),
        pairs(&[
            ("mistral", "mistral-large"),       // 2000 × $2/M + 1500 × $6/M = $0.013
            ("openai", "gpt-4o"),               // $0.02
            ("anthropic", "claude-sonnet-4-5"), // $0.0285
        ]),
        "over the cap: cheapest first"
    );
    assert_eq!(
        decision.reason,
        RouteReason::OverCostCap {
            expected: cost("0.02"),
            cap: cost("0.01"),
            chosen: Some(cost("0.013")),
        }
    );
    assert_eq!(answered, "mistral");

    // The cheapest provider cannot serve (open breaker): the next cheapest that can.
    board.provider(&MISTRAL).force_open();
    let mut req = request("quality", Some(Tier::L1));
    req.extensions_mut().insert(over_cap_estimate());
    let (r, decision, _) = route(&layer, dispatch(&[&o, &a, &m]), req).await.unwrap();
    assert_eq!(r.primary, Target::new(OPENAI, "gpt-4o"));
    assert_eq!(decision.reason.code(), "over_cost_cap");

    // Under the cap: configured order.
    board.provider(&MISTRAL).clear_force();
    let mut req = request("quality", Some(Tier::L1));
    let price = *prices().get("gpt-4o").unwrap();
    req.extensions_mut()
        .insert(CostEstimate::new("gpt-4o", price, 100, 100, 100, 100));
    let (r, decision, _) = route(&layer, dispatch(&[&o, &a, &m]), req).await.unwrap();
    assert_eq!(
        r.primary.provider, OPENAI,
        "under the cap the configured order holds"
    );
    assert_eq!(decision.reason, RouteReason::ConfiguredOrder);
}

/// Each provider as it sits in the dispatcher: a breaker publishing to the board.
fn breaker_stack(sim: &switchboard_sim::SimProvider, board: &HealthBoard) -> BoxProvider {
    boxed(
        BreakerLayer::new(sim.id().clone())
            .board(board.clone())
            .layer(sim.clone()),
    )
}

async fn warm(stack: &BoxProvider, model: &str, n: usize) {
    for _ in 0..n {
        let response = stack.clone().oneshot(request(model, None)).await.unwrap();
        response.collect().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn lowest_p95_wins_only_after_enough_samples() {
    let board = HealthBoard::new();
    let (o, a, m) = (sim(OPENAI, 800), sim(ANTHROPIC, 300), sim(MISTRAL, 500));
    let stacks = [
        breaker_stack(&o, &board),
        breaker_stack(&a, &board),
        breaker_stack(&m, &board),
    ];
    let dispatch: Dispatch = [OPENAI, ANTHROPIC, MISTRAL]
        .into_iter()
        .zip(stacks.iter().cloned())
        .collect();
    let layer = RouteLayer::new(policy())
        .board(board.clone())
        .prices(prices());

    // 19 samples each: below the minimum of 20, the configured order holds.
    for (stack, model) in stacks
        .iter()
        .zip(["gpt-4o-mini", "claude-haiku-4-5", "mistral-small"])
    {
        warm(stack, model, 19).await;
    }
    let (r, decision, _) = route(&layer, dispatch.clone(), request("fast", Some(Tier::L2)))
        .await
        .unwrap();
    assert_eq!(
        providers(&r).into_iter().map(|p| p.0).collect::<Vec<_>>(),
        ["openai", "anthropic", "mistral"],
        "too few samples: latency does not override the configured order"
    );
    assert_eq!(decision.reason, RouteReason::ConfiguredOrder);

    // The routed call above was openai's 20th sample; one more each for the others.
    warm(&stacks[1], "claude-haiku-4-5", 1).await;
    warm(&stacks[2], "mistral-small", 1).await;
    let (r, decision, answered) = route(&layer, dispatch, request("fast", Some(Tier::L2)))
        .await
        .unwrap();
    assert_eq!(
        providers(&r),
        pairs(&[
            ("anthropic", "claude-haiku-4-5"),
            ("mistral", "mistral-small"),
            ("openai", "gpt-4o-mini"),
        ]),
        "with enough samples the lowest p95 goes first"
    );
    let RouteReason::LowestLatency { p95 } = decision.reason else {
        panic!("expected lowest_p95, got {:?}", decision.reason);
    };
    assert!(
        (Duration::from_millis(300)..=Duration::from_millis(316)).contains(&p95),
        "p95 {p95:?} is anthropic's 300 ms (board resolution 5 %)"
    );
    assert_eq!(answered, "anthropic");
}

#[tokio::test(start_paused = true)]
async fn providers_within_the_tolerance_keep_configured_order() {
    let board = HealthBoard::new();
    for _ in 0..30 {
        board
            .provider(&OPENAI)
            .record_success(Duration::from_millis(1030));
        board
            .provider(&ANTHROPIC)
            .record_success(Duration::from_millis(1000));
    }
    let (o, a, m) = (sim(OPENAI, 10), sim(ANTHROPIC, 10), sim(MISTRAL, 10));
    let layer = RouteLayer::new(policy()).board(board);
    let (r, decision, _) = route(
        &layer,
        dispatch(&[&o, &a, &m]),
        request("fast", Some(Tier::L2)),
    )
    .await
    .unwrap();
    assert_eq!(
        r.primary.provider, OPENAI,
        "3 % apart is a tie under a 10 % tolerance"
    );
    assert_eq!(decision.reason.code(), "lowest_p95");
}

#[tokio::test(start_paused = true)]
async fn open_breaker_is_skipped() {
    let (o, a, m) = (sim(OPENAI, 100), sim(ANTHROPIC, 100), sim(MISTRAL, 100));
    let board = HealthBoard::new();
    board
        .provider(&OPENAI)
        .set_open(Instant::now() + Duration::from_secs(5));
    let layer = RouteLayer::new(policy()).board(board);

    let (r, decision, answered) = route(&layer, dispatch(&[&o, &a, &m]), request("fast", None))
        .await
        .unwrap();
    assert_eq!(
        providers(&r).into_iter().map(|p| p.0).collect::<Vec<_>>(),
        ["anthropic", "mistral"],
        "the open provider is left off the route"
    );
    assert_eq!(decision.skipped.len(), 1);
    assert_eq!(decision.skipped[0].provider, OPENAI);
    assert_eq!(decision.skipped[0].reason, "circuit_open");
    assert_eq!(answered, "anthropic");
    assert_eq!(o.stats().calls(), 0);

    // Once the open period is over the breaker admits probes: back on the route.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (r, decision, _) = route(&layer, dispatch(&[&o, &a, &m]), request("fast", None))
        .await
        .unwrap();
    assert_eq!(r.primary.provider, OPENAI);
    assert!(decision.skipped.is_empty());
}

#[tokio::test(start_paused = true)]
async fn every_breaker_open_is_a_no_provider_error() {
    let (o, a, m) = (sim(OPENAI, 100), sim(ANTHROPIC, 100), sim(MISTRAL, 100));
    let board = HealthBoard::new();
    for p in [OPENAI, ANTHROPIC, MISTRAL] {
        board.provider(&p).force_open();
    }
    let layer = RouteLayer::new(policy()).board(board);
    let error = route(
        &layer,
        dispatch(&[&o, &a, &m]),
        request("fast", Some(Tier::L1)),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::NoProvider { .. }), "{error:?}");
    assert_eq!(error.reason(), "no_provider_available");
    assert!(
        error
            .to_string()
            .contains("open circuit breaker (openai, anthropic, mistral)"),
        "the message names the open providers: {error}"
    );
    assert_eq!(o.stats().calls() + a.stats().calls() + m.stats().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn every_breaker_open_uses_the_configured_last_resort() {
    let (o, a, m, local) = (
        sim(OPENAI, 100),
        sim(ANTHROPIC, 100),
        sim(MISTRAL, 100),
        sim(LOCAL, 100),
    );
    let board = HealthBoard::new();
    for p in [OPENAI, ANTHROPIC, MISTRAL] {
        board.provider(&p).force_open();
    }
    let policy = policy().tier(
        Tier::L2,
        TierPolicy::new().last_resort(Target::new(LOCAL, "llama-3-8b")),
    );
    let layer = RouteLayer::new(policy).board(board);
    let (r, decision, answered) = route(
        &layer,
        dispatch(&[&o, &a, &m, &local]),
        request("fast", Some(Tier::L2)),
    )
    .await
    .unwrap();
    assert_eq!(r, Route::new(Target::new(LOCAL, "llama-3-8b")));
    assert_eq!(decision.reason, RouteReason::LastResort);
    assert_eq!(decision.skipped.len(), 3);
    assert_eq!(answered, "local");
}

#[tokio::test(start_paused = true)]
async fn unknown_model_is_model_not_found() {
    let (o, a, m) = (sim(OPENAI, 100), sim(ANTHROPIC, 100), sim(MISTRAL, 100));
    let layer = RouteLayer::new(policy());
    let error = route(
        &layer,
        dispatch(&[&o, &a, &m]),
        request("gpt-9", Some(Tier::L0)),
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        Error::ModelNotFound {
            model: "gpt-9".into()
        }
    );
    assert_eq!(error.status().as_u16(), 404);
    assert_eq!(o.stats().calls() + a.stats().calls() + m.stats().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn concrete_model_maps_to_its_provider() {
    let (o, a, m) = (sim(OPENAI, 100), sim(ANTHROPIC, 100), sim(MISTRAL, 100));
    let layer = RouteLayer::new(policy());
    let (r, decision, answered) = route(
        &layer,
        dispatch(&[&o, &a, &m]),
        request("claude-haiku-4-5", Some(Tier::L1)),
    )
    .await
    .unwrap();
    assert_eq!(r, Route::new(Target::new(ANTHROPIC, "claude-haiku-4-5")));
    assert_eq!(decision.pool, "claude-haiku-4-5");
    assert_eq!(answered, "anthropic");
}

#[tokio::test(start_paused = true)]
async fn decision_is_in_the_request_extensions_for_inner_layers() {
    let layer = RouteLayer::new(policy());
    let inner = tower::service_fn(|req: switchboard_core::ChatRequest| async move {
        let decision = req.extensions().get::<RouteDecision>().cloned();
        let route = req.extensions().get::<Route>().cloned();
        Err::<switchboard_core::ChatResponse, _>(Error::InvalidRequest {
            provider: None,
            message: format!(
                "{:?}|{:?}",
                decision.map(|d| d.reason),
                route.map(|r| r.len())
            ),
        })
    });
    let error = layer
        .layer(inner)
        .oneshot(request("fast", None))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid request: Some(ConfiguredOrder)|Some(3)"
    );
}
