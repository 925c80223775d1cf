//! The layers' contracts, in paused time over scripted providers.

use std::time::Duration;

use futures_util::{StreamExt, stream};
use switchboard_core::{
    Attempt, AttemptKind, AttemptOutcome, Attempts, BreakerState, ChatBody, ChatEvent, ChatRequest,
    ChatResponse, Cost, Degraded, Error, FinishReason, HealthBoard, Message, Price, PriceTable,
    ProviderId, Scene, Tier, TimeoutPhase, Usage, WinReason,
};
use switchboard_telemetry::Telemetry;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// The sum of every sample of `name` whose labels include all of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            (n == name
                && labels
                    .iter()
                    .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\""))))
            .then(|| v.parse::<f64>().unwrap())
        })
        .sum()
}

fn request(model: &str) -> ChatRequest {
    let mut request = ChatRequest::new(ChatBody::new(model, vec![Message::user("hi")]));
    request.extensions_mut().insert(Tier::L0);
    request.extensions_mut().insert(Scene::CODE);
    request
}

fn answer(provider: ProviderId, model: &str, usage: Usage) -> ChatResponse {
    ChatResponse::new(
        provider,
        model,
        stream::iter(vec![
            Ok(ChatEvent::text("a")),
            Ok(ChatEvent::Usage(usage)),
            Ok(ChatEvent::Finish(FinishReason::Stop)),
        ]),
    )
}

fn prices() -> PriceTable {
    let mut table = PriceTable::new();
    // $2.50 / M input, $10 / M output.
    table.insert("gpt-4o", Price::per_million("2.5", "10").unwrap());
    table
}

#[tokio::test(start_paused = true)]
async fn ok_answer_records_outcome_latencies_tokens_and_cost() {
    let telemetry = Telemetry::builder().prices(prices()).build();
    let provider = service_fn(|_| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events = stream::iter(vec![
            Ok(ChatEvent::text("a")),
            Ok(ChatEvent::Usage(Usage::new(1000, 100))),
        ])
        .then(|e| async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            e
        });
        Ok::<_, Error>(ChatResponse::new(ProviderId::OPENAI, "gpt-4o", events))
    });
    let stack = ServiceBuilder::new()
        .layer(telemetry.layer())
        .service(provider);
    let response = stack.oneshot(request("quality")).await.unwrap();
    response.collect().await.unwrap();

    let text = telemetry.render();
    let call = [
        ("provider", "openai"),
        ("model", "gpt-4o"),
        ("tier", "L0"),
        ("scene", "code"),
    ];
    let ok = [call.as_slice(), &[("outcome", "ok")]].concat();
    assert_eq!(
        value(&text, "switchboard_requests_total", &ok),
        1.0,
        "{text}"
    );
    // First token after 300 ms (+700 ms for the first event): in the 1.28 s bucket, not 0.64.
    let ft = "switchboard_first_token_duration_seconds";
    assert_eq!(value(&text, &format!("{ft}_count"), &call), 1.0);
    assert_eq!(
        value(&text, &format!("{ft}_sum"), &call),
        0.3,
        "the future resolves at 300 ms"
    );
    // The whole operation: 300 ms + 2 × 700 ms + the end.
    let op = "gen_ai_client_operation_duration_seconds";
    let gen_ai = [
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "quality"),
        ("gen_ai_response_model", "gpt-4o"),
        ("switchboard_tier", "L0"),
    ];
    assert_eq!(value(&text, &format!("{op}_sum"), &gen_ai), 1.7);
    let le = |b: &'static str| [gen_ai.as_slice(), &[("le", b)]].concat();
    assert_eq!(value(&text, &format!("{op}_bucket"), &le("1.28")), 0.0);
    assert_eq!(value(&text, &format!("{op}_bucket"), &le("2.56")), 1.0);
    let tokens = |t| [call.as_slice(), &[("type", t)]].concat();
    assert_eq!(
        value(&text, "switchboard_tokens_total", &tokens("input")),
        1000.0
    );
    assert_eq!(
        value(&text, "switchboard_tokens_total", &tokens("output")),
        100.0
    );
    let usage = |t| [gen_ai.as_slice(), &[("gen_ai_token_type", t)]].concat();
    assert_eq!(
        value(&text, "gen_ai_client_token_usage_sum", &usage("input")),
        1000.0
    );
    // 1000 × $2.5/M + 100 × $10/M = $0.0035 = 3500 µ$.
    assert_eq!(
        value(&text, "switchboard_cost_microdollars_total", &call),
        3500.0
    );
}

/// The request path records into series bound on first use: repeated calls accumulate in
/// one series, and calls differing in any one label (scene, requested model, answering
/// model, tier) land in their own.
#[tokio::test(start_paused = true)]
async fn series_are_shared_by_equal_labels_and_kept_apart_by_any_difference() {
    let telemetry = Telemetry::builder().prices(prices()).build();
    let mut stack = ServiceBuilder::new()
        .layer(telemetry.layer())
        .service(service_fn(|request: ChatRequest| async move {
            // Answer with the model asked for, so the answering model varies too.
            let model = request.body().model.clone();
            Ok::<_, Error>(answer(ProviderId::OPENAI, &model, Usage::new(10, 1)))
        }));
    let mut calls = Vec::new();
    for _ in 0..3 {
        calls.push(request("gpt-4o"));
    }
    let mut chat = request("gpt-4o");
    chat.extensions_mut().insert(Scene::CHAT);
    calls.push(chat);
    let mut low = request("gpt-4o");
    low.extensions_mut().insert(Tier::L2);
    calls.push(low);
    calls.push(request("gpt-4o-mini"));
    for call in calls {
        let response = stack.ready().await.unwrap().call(call).await.unwrap();
        response.collect().await.unwrap();
    }

    let text = telemetry.render();
    let count = |tier, scene, model| {
        let labels = [
            ("tier", tier),
            ("scene", scene),
            ("model", model),
            ("outcome", "ok"),
        ];
        value(&text, "switchboard_requests_total", &labels)
    };
    assert_eq!(count("L0", "code", "gpt-4o"), 3.0, "{text}");
    assert_eq!(count("L0", "chat", "gpt-4o"), 1.0);
    assert_eq!(count("L2", "code", "gpt-4o"), 1.0);
    assert_eq!(count("L0", "code", "gpt-4o-mini"), 1.0);
    let input = [
        ("tier", "L0"),
        ("scene", "code"),
        ("model", "gpt-4o"),
        ("type", "input"),
    ];
    assert_eq!(value(&text, "switchboard_tokens_total", &input), 30.0);
    // 3 × (10 × $2.5/M + 1 × $10/M) = 3 × 35 µ$; gpt-4o-mini has no price: not costed.
    let cost = [("tier", "L0"), ("scene", "code")];
    assert_eq!(
        value(&text, "switchboard_cost_microdollars_total", &cost),
        105.0
    );
    let ft = [("tier", "L0"), ("scene", "code"), ("model", "gpt-4o")];
    assert_eq!(
        value(&text, "switchboard_first_token_duration_seconds_count", &ft),
        3.0
    );
}

#[tokio::test(start_paused = true)]
async fn degraded_answer_counts_each_reason_and_hedges_and_failovers() {
    let telemetry = Telemetry::new();
    let provider = service_fn(|_| async {
        let mut response = answer(ProviderId::ANTHROPIC, "claude-haiku-4-5", Usage::new(10, 2));
        let mut degraded = Degraded::default();
        degraded.push("budget_max_tokens_capped", "4096 → 512");
        degraded.push("fallback_after_openai_overloaded", "openai overloaded");
        response.extensions_mut().insert(degraded);
        let mut attempts = Attempts::default();
        let attempt = |provider, kind, outcome| Attempt {
            provider,
            model: "m".into(),
            kind,
            started_after: Duration::ZERO,
            outcome,
        };
        let failed = AttemptOutcome::Failed {
            reason: "openai_overloaded".into(),
        };
        attempts.push(attempt(ProviderId::OPENAI, AttemptKind::Primary, failed));
        attempts.push(attempt(
            ProviderId::ANTHROPIC,
            AttemptKind::Failover,
            AttemptOutcome::Won,
        ));
        attempts.push(attempt(
            ProviderId::from_static("third"),
            AttemptKind::Hedge,
            AttemptOutcome::Cancelled,
        ));
        attempts.set_winner(
            1,
            WinReason::Failover {
                reason: "openai_overloaded".into(),
            },
        );
        response.extensions_mut().insert(attempts);
        Ok::<_, Error>(response)
    });
    let stack = ServiceBuilder::new()
        .layer(telemetry.layer())
        .service(provider);
    stack
        .oneshot(request("fast"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();

    let text = telemetry.render();
    let p = ("provider", "anthropic");
    assert_eq!(
        value(
            &text,
            "switchboard_requests_total",
            &[
                p,
                ("outcome", "degraded"),
                ("reason", "budget_max_tokens_capped")
            ]
        ),
        1.0,
        "a degraded answer is counted once, under its first reason: {text}"
    );
    for reason in [
        "budget_max_tokens_capped",
        "fallback_after_openai_overloaded",
    ] {
        assert_eq!(
            value(
                &text,
                "switchboard_degraded_total",
                &[p, ("reason", reason)]
            ),
            1.0
        );
    }
    assert_eq!(
        value(
            &text,
            "switchboard_fallbacks_total",
            &[("provider", "anthropic"), ("reason", "openai_overloaded")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "switchboard_hedges_total",
            &[("provider", "third"), ("won", "false")]
        ),
        1.0
    );
    assert_eq!(
        value(&text, "switchboard_requests_total", &[("outcome", "ok")]),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn failure_before_the_first_token_is_an_error_with_its_reason_and_phase() {
    let telemetry = Telemetry::new();
    let provider = service_fn(|_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Err::<ChatResponse, _>(Error::Timeout {
            phase: TimeoutPhase::FirstToken,
            provider: Some(ProviderId::OPENAI),
            after: Duration::from_secs(5),
        })
    });
    let stack = ServiceBuilder::new()
        .layer(telemetry.layer())
        .service(provider);
    let err = stack.oneshot(request("gpt-4o")).await.unwrap_err();
    assert_eq!(err.reason(), "openai_first_token_timeout");

    let text = telemetry.render();
    let labels = [
        ("provider", "openai"),
        ("outcome", "error"),
        ("reason", "openai_first_token_timeout"),
    ];
    assert_eq!(
        value(&text, "switchboard_requests_total", &labels),
        1.0,
        "{text}"
    );
    let t = [
        ("provider", "openai"),
        ("phase", "first_token"),
        ("scope", "call"),
    ];
    assert_eq!(value(&text, "switchboard_timeouts_total", &t), 1.0);
    let op = [
        ("error_type", "first_token_timeout"),
        ("gen_ai_provider_name", "openai"),
    ];
    assert_eq!(
        value(&text, "gen_ai_client_operation_duration_seconds_sum", &op),
        5.0
    );
    assert_eq!(
        value(&text, "switchboard_first_token_duration_seconds_count", &[]),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn mid_stream_idle_timeout_and_dropped_stream_are_recorded() {
    let telemetry = Telemetry::new();
    let provider = service_fn(|req: ChatRequest| async move {
        let broken = req.body().model == "breaks";
        let mut events = vec![Ok(ChatEvent::text("a"))];
        if broken {
            events.push(Err(Error::Timeout {
                phase: TimeoutPhase::Idle,
                provider: Some(ProviderId::OPENAI),
                after: Duration::from_secs(10),
            }));
        } else {
            events.push(Ok(ChatEvent::text("b")));
        }
        Ok::<_, Error>(ChatResponse::new(
            ProviderId::OPENAI,
            "gpt-4o",
            stream::iter(events),
        ))
    });
    let mut stack = ServiceBuilder::new()
        .layer(telemetry.layer())
        .service(provider);
    let broken = stack
        .ready()
        .await
        .unwrap()
        .call(request("breaks"))
        .await
        .unwrap();
    assert!(broken.collect().await.is_err());
    let mut dropped = stack
        .ready()
        .await
        .unwrap()
        .call(request("drops"))
        .await
        .unwrap();
    assert!(dropped.next().await.is_some());
    drop(dropped);

    let text = telemetry.render();
    let idle = [
        ("outcome", "error"),
        ("reason", "openai_idle_timeout"),
        ("model", "gpt-4o"),
    ];
    assert_eq!(
        value(&text, "switchboard_requests_total", &idle),
        1.0,
        "{text}"
    );
    let t = [("phase", "idle"), ("scope", "call")];
    assert_eq!(value(&text, "switchboard_timeouts_total", &t), 1.0);
    let cancelled = [("outcome", "cancelled"), ("provider", "openai")];
    assert_eq!(value(&text, "switchboard_requests_total", &cancelled), 1.0);
    assert_eq!(
        value(&text, "switchboard_first_token_duration_seconds_count", &[]),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_record_outcomes_timeouts_and_cancellation() {
    let telemetry = Telemetry::new();
    let slow = service_fn(|req: ChatRequest| async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        if req.body().model == "times-out" {
            return Err(Error::Timeout {
                phase: TimeoutPhase::FirstToken,
                provider: Some(ProviderId::OPENAI),
                after: Duration::from_millis(800),
            });
        }
        Ok(answer(ProviderId::OPENAI, "gpt-4o", Usage::new(1, 1)))
    });
    let mut attempt = ServiceBuilder::new()
        .layer(telemetry.attempt_layer(ProviderId::OPENAI))
        .service(slow);
    attempt
        .ready()
        .await
        .unwrap()
        .call(request("gpt-4o"))
        .await
        .unwrap();
    let _ = attempt
        .ready()
        .await
        .unwrap()
        .call(request("times-out"))
        .await;
    // A hedge won elsewhere: this attempt's future is dropped before it resolves.
    let mut hedge = request("gpt-4o");
    hedge.extensions_mut().insert(AttemptKind::Hedge);
    let cancelled = attempt.ready().await.unwrap().call(hedge);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), cancelled)
            .await
            .is_err()
    );

    let text = telemetry.render();
    let o = |outcome| [("provider", "openai"), ("outcome", outcome)];
    assert_eq!(
        value(&text, "switchboard_attempts_total", &o("ok")),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "switchboard_attempts_total", &o("error")), 1.0);
    assert_eq!(
        value(&text, "switchboard_attempts_total", &o("cancelled")),
        1.0
    );
    let kind = |kind| [("provider", "openai"), ("kind", kind)];
    assert_eq!(
        value(&text, "switchboard_attempts_total", &kind("primary")),
        2.0
    );
    let hedge = [("kind", "hedge"), ("outcome", "cancelled")];
    assert_eq!(value(&text, "switchboard_attempts_total", &hedge), 1.0);
    let t = [
        ("phase", "first_token"),
        ("scope", "attempt"),
        ("model", "times-out"),
    ];
    assert_eq!(value(&text, "switchboard_timeouts_total", &t), 1.0);
    let ft = "switchboard_attempt_first_token_duration_seconds";
    assert_eq!(
        value(&text, &format!("{ft}_sum"), &[("provider", "openai")]),
        0.8
    );
}

#[tokio::test(start_paused = true)]
async fn gauges_read_the_board_and_the_budget_at_scrape_time() {
    let telemetry = Telemetry::new();
    let board = HealthBoard::new();
    board.provider(&ProviderId::OPENAI).force_open();
    board.provider(&ProviderId::ANTHROPIC);
    telemetry.watch_board(board.clone());
    telemetry.watch_budget("global", || {
        (Cost::from_nanos(900_000_500), Cost::from_usd(1).unwrap())
    });
    let text = telemetry.render();
    assert_eq!(board.state(&ProviderId::OPENAI), BreakerState::ForcedOpen);
    assert_eq!(
        value(&text, "switchboard_breaker_open", &[("provider", "openai")]),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "switchboard_breaker_open",
            &[("provider", "anthropic")]
        ),
        0.0
    );
    assert!(text.contains("switchboard_breaker_open{provider=\"anthropic\"} 0"));
    let g = [("scope", "global")];
    assert_eq!(
        value(&text, "switchboard_budget_spent_microdollars", &g),
        900_001.0
    );
    assert_eq!(
        value(&text, "switchboard_budget_cap_microdollars", &g),
        1_000_000.0
    );

    board.provider(&ProviderId::OPENAI).clear_force();
    let text = telemetry.render();
    assert_eq!(
        value(&text, "switchboard_breaker_open", &[("provider", "openai")]),
        0.0
    );
}
