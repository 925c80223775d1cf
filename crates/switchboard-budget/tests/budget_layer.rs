//! BudgetLayer over a simulated provider: settlement at the end of the stream, refunds,
//! the drop guard, the hard cap, each threshold, each degrade step and its reason code,
//! the per-request cap and the cached answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use switchboard_budget::{
    Account, BlockAction, BudgetLayer, CapAction, Caps, Degrade, EstimateLayer, Estimator, Ledger,
    MemoryLedger, RequestCap, ResponseCache, Scope, Thresholds,
};
use switchboard_core::{
    BudgetStatus, ChatBody, ChatRequest, ChatResponse, Cost, CostEstimate, Degraded, Error,
    Message, ProviderId, Scene, SpendLevel, Tier, Usage,
};
use switchboard_sim::{Answer, ErrorFault, Faults, Latency, MidStream, SimConfig, SimProvider};
use tower::{Layer, Service, ServiceExt};

/// Passes requests to a simulated provider, keeping each request it saw and copying the
/// request's `CostEstimate` onto the response for the test to price with.
#[derive(Clone)]
struct Spy {
    sim: SimProvider,
    seen: Arc<Mutex<Vec<ChatRequest>>>,
}

impl Spy {
    fn new(config: SimConfig) -> Self {
        Self {
            sim: SimProvider::new(ProviderId::OPENAI, config),
            seen: Arc::default(),
        }
    }

    fn last(&self) -> ChatRequest {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request reached the provider")
    }

    /// The cost estimate the last request reached the provider with.
    fn last_estimate(&self) -> CostEstimate {
        self.last()
            .extensions()
            .get::<CostEstimate>()
            .cloned()
            .expect("the budget layer set an estimate")
    }

    fn calls(&self) -> u64 {
        self.sim.stats().calls()
    }
}

impl Service<ChatRequest> for Spy {
    type Response = ChatResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.sim.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        self.seen.lock().unwrap().push(request.clone());
        let estimate = request.extensions().get::<CostEstimate>().cloned();
        let call = self.sim.call(request);
        Box::pin(async move {
            let mut response = call.await?;
            if let Some(e) = estimate {
                response.extensions_mut().insert(e);
            }
            Ok(response)
        })
    }
}

fn usd(s: &str) -> Cost {
    s.parse().unwrap()
}

fn request(model: &str, text: &str, max_tokens: u32, tier: Tier) -> ChatRequest {
    let mut r =
        ChatRequest::new(ChatBody::new(model, vec![Message::user(text)]).max_tokens(max_tokens));
    r.extensions_mut().insert(tier);
    r
}

async fn send<S>(service: &mut S, request: ChatRequest) -> Result<ChatResponse, Error>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    service.ready().await?.call(request).await
}

fn reasons(degraded: Option<&Degraded>) -> Vec<String> {
    degraded.map_or_else(Vec::new, |d| d.iter().map(|x| x.reason.clone()).collect())
}

#[tokio::test(start_paused = true)]
async fn settles_the_real_cost_from_usage_when_the_stream_ends() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("1")));
    let spy = Spy::new(SimConfig::instant().answer(Answer::Words { count: 12 }));
    let mut service = BudgetLayer::new(ledger.clone()).layer(spy.clone());
    let response = send(
        &mut service,
        request("gpt-4o-mini", "hello there", 100, Tier::L1),
    )
    .await
    .unwrap();
    let estimate = response
        .extensions()
        .get::<CostEstimate>()
        .cloned()
        .unwrap();
    assert_eq!(
        ledger.books().outstanding,
        estimate.upper_bound,
        "the upper bound is held while streaming"
    );
    let status = response
        .extensions()
        .get::<BudgetStatus>()
        .cloned()
        .unwrap();
    assert_eq!(
        (status.level, &*status.scope),
        (SpendLevel::Normal, "global")
    );
    let done = response.collect().await.unwrap();
    let usage = done.usage.unwrap();
    assert_eq!(usage.output_tokens, 12);
    let books = ledger.books();
    assert_eq!(
        books.outstanding,
        Cost::ZERO,
        "settled at the end of the stream"
    );
    assert_eq!(
        books.committed,
        estimate.price.cost_of(&usage).unwrap(),
        "committed = real usage at the model's price"
    );
    assert_eq!(ledger.spent(&Scope::Global), books.committed);
}

/// A ledger that decides at once (the memory ledger) is reserved for in `call`, and the
/// inner service is called there too: a future dropped before it is ever polled settles
/// its hold like a caller who gave up before the first token (the input only), and holds
/// nothing.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_its_first_poll_holds_nothing() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("1")));
    let spy = Spy::new(SimConfig::instant());
    let mut service = BudgetLayer::new(ledger.clone()).layer(spy.clone());
    let future = service
        .ready()
        .await
        .unwrap()
        .call(request("gpt-4o-mini", "hi", 100, Tier::L1));
    assert_eq!(ledger.books().open_holds, 1, "reserved in `call`");
    assert_eq!(spy.calls(), 1, "sent in `call`");
    drop(future);
    let estimate = spy.last_estimate();
    let books = ledger.books();
    assert_eq!((books.outstanding, books.open_holds), (Cost::ZERO, 0));
    assert_eq!(
        books.committed,
        estimate.cost_of(&Usage::new(estimate.input_tokens, 0)),
        "the prompt was sent, so its input is charged"
    );
}

#[tokio::test(start_paused = true)]
async fn refunds_when_the_provider_fails_before_the_first_token() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("1")));
    let faults = Faults {
        errors: vec![ErrorFault {
            status: 503,
            probability: 1.0,
            after: Duration::from_millis(50),
            retry_after_secs: None,
        }],
        ..Faults::default()
    };
    let spy = Spy::new(SimConfig::instant().faults(faults));
    let mut service = BudgetLayer::new(ledger.clone()).layer(spy);
    let error = send(&mut service, request("gpt-4o-mini", "hi", 100, Tier::L1))
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "openai_upstream_server_error");
    let books = ledger.books();
    assert_eq!(
        (books.outstanding, books.committed, books.open_holds),
        (Cost::ZERO, Cost::ZERO, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_stream_settles_through_the_guard() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("1")));
    let spy = Spy::new(
        SimConfig::instant()
            .answer(Answer::Words { count: 50 })
            .tokens_per_second(10.0),
    );
    let mut service = BudgetLayer::new(ledger.clone()).layer(spy.clone());
    let mut response = send(
        &mut service,
        request("gpt-4o", "tell me a story", 500, Tier::L1),
    )
    .await
    .unwrap();
    let estimate = response
        .extensions()
        .get::<CostEstimate>()
        .cloned()
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(response.next().await, Some(Ok(_))));
    }
    drop(response); // the client went away
    assert_eq!(
        spy.sim.stats().cancelled(),
        1,
        "the upstream call was cancelled"
    );
    let books = ledger.books();
    assert_eq!(books.outstanding, Cost::ZERO, "nothing stays reserved");
    let partial = estimate
        .price
        .cost_of(&Usage::new(estimate.input_tokens, 3))
        .unwrap();
    assert_eq!(
        books.committed, partial,
        "estimated input plus the three tokens seen"
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_before_the_first_token_is_charged_the_input_only() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("1")));
    let spy = Spy::new(SimConfig::instant().first_token(Latency::fixed_ms(2_000)));
    let mut service = BudgetLayer::new(ledger.clone()).layer(spy.clone());
    let call = service
        .ready()
        .await
        .unwrap()
        .call(request("gpt-4o", "slow one", 500, Tier::L1));
    let gave_up = tokio::time::timeout(Duration::from_millis(500), call).await;
    assert!(gave_up.is_err(), "no first token within 500 ms");
    assert_eq!(
        spy.sim.stats().cancelled(),
        1,
        "dropping the future cancelled the call"
    );
    let estimate = spy.last_estimate();
    let books = ledger.books();
    assert_eq!(
        (books.outstanding, books.open_holds),
        (Cost::ZERO, 0),
        "nothing leaked"
    );
    assert_eq!(
        books.committed,
        estimate
            .price
            .cost_of(&Usage::new(estimate.input_tokens, 0))
            .unwrap(),
        "the prompt was sent, so its input is charged"
    );
}

#[tokio::test(start_paused = true)]
async fn a_broken_stream_commits_what_was_streamed() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("1")));
    let faults = Faults {
        error_event: Some(MidStream {
            probability: 1.0,
            after_tokens: 2,
        }),
        ..Faults::default()
    };
    let spy = Spy::new(
        SimConfig::instant()
            .answer(Answer::Words { count: 10 })
            .faults(faults),
    );
    let mut service = BudgetLayer::new(ledger.clone()).layer(spy);
    let response = send(&mut service, request("gpt-4o-mini", "hi", 100, Tier::L1))
        .await
        .unwrap();
    let estimate = response
        .extensions()
        .get::<CostEstimate>()
        .cloned()
        .unwrap();
    let error = response.collect().await.unwrap_err();
    assert_eq!(error.reason(), "openai_overloaded");
    let books = ledger.books();
    assert_eq!(books.outstanding, Cost::ZERO);
    assert_eq!(
        books.committed,
        estimate
            .price
            .cost_of(&Usage::new(estimate.input_tokens, 2))
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn the_hard_cap_blocks_with_429_and_retry_after_from_the_window() {
    let estimator = Estimator::default();
    let probe = request("gpt-4o", "hello", 1_000, Tier::L1);
    let bound = estimator.estimate(probe.body(), None).upper_bound;
    // Room for one request's bound, not two.
    let ledger = MemoryLedger::new(
        Caps::new().global(bound.checked_mul(3).unwrap().mul_div_ceil(1, 2).unwrap()),
    );
    let spy = Spy::new(SimConfig::instant().answer(Answer::Words { count: 5 }));
    let mut service = BudgetLayer::new(ledger.clone()).layer(spy.clone());
    let first = send(&mut service, probe.clone()).await.unwrap();
    tokio::time::advance(Duration::from_secs(20)).await;
    let error = send(&mut service, probe.clone()).await.unwrap_err();
    assert!(
        matches!(&error, Error::BudgetExceeded { scope, .. } if scope == "global"),
        "{error:?}"
    );
    assert_eq!(error.status().as_u16(), 429);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(40)));
    assert_eq!(
        spy.calls(),
        1,
        "a blocked request never reaches the provider"
    );
    first.collect().await.unwrap();
    // The first call settled below its bound: the second now fits.
    send(&mut service, probe)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(spy.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_block_threshold_blocks_before_the_hard_cap_and_holds_nothing() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("0.02")));
    let layer = BudgetLayer::builder(ledger.clone())
        .thresholds(Tier::L2, Thresholds::percent(10, 20, 40))
        .build();
    let spy = Spy::new(SimConfig::instant());
    let mut service = layer.layer(spy.clone());
    // gpt-4o, 1,000 output tokens: about $0.01 expected, half the cap.
    let error = send(&mut service, request("gpt-4o", "hi", 1_000, Tier::L2))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::BudgetExceeded {
            scope: "global".into(),
            retry_after: Some(Duration::from_secs(60))
        }
    );
    assert_eq!(spy.calls(), 0);
    assert_eq!(
        ledger.spent(&Scope::Global),
        Cost::ZERO,
        "the hold was returned"
    );
    // The same request at L1 (default thresholds) goes through.
    send(&mut service, request("gpt-4o", "hi", 1_000, Tier::L1))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_warn_threshold_records_and_changes_nothing() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("0.02")));
    let layer = BudgetLayer::builder(ledger.clone())
        .thresholds_all(Thresholds::percent(10, 90, 100))
        .degrade(Degrade::new().max_tokens(10))
        .build();
    let spy = Spy::new(SimConfig::instant());
    let mut service = layer.layer(spy.clone());
    let response = send(&mut service, request("gpt-4o", "hi", 1_000, Tier::L1))
        .await
        .unwrap();
    let status = response.extensions().get::<BudgetStatus>().unwrap();
    assert_eq!(status.level, SpendLevel::Warn);
    assert_eq!(status.cap, usd("0.02"));
    assert!(response.extensions().get::<Degraded>().is_none());
    assert_eq!(
        spy.last().body().max_tokens,
        Some(1_000),
        "warn changes nothing"
    );
}

fn long_conversation(model: &str) -> ChatRequest {
    let filler = "word ".repeat(60);
    let body = ChatBody::new(
        model,
        vec![
            Message::user(format!("first question {filler}")),
            Message::assistant(format!("first answer {filler}")),
            Message::user(format!("second question {filler}")),
            Message::assistant(format!("second answer {filler}")),
            Message::user("and now?"),
        ],
    )
    .system("be brief")
    .max_tokens(1_000)
    .temperature(0.9);
    ChatRequest::new(body)
}

fn degrading_layer(ledger: MemoryLedger) -> switchboard_budget::BudgetLayerBuilder<MemoryLedger> {
    BudgetLayer::builder(ledger)
        .thresholds_all(Thresholds::percent(10, 20, 100))
        .degrade(
            Degrade::new()
                .cheaper_model("gpt-4o", "gpt-4o-mini")
                .max_tokens(200)
                .temperature(0.3)
                .context_tokens(40),
        )
}

#[tokio::test(start_paused = true)]
async fn degrade_applies_each_step_and_records_its_reason_code() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("0.02")));
    let spy = Spy::new(SimConfig::instant());
    let mut service = degrading_layer(ledger.clone()).build().layer(spy.clone());
    let mut req = long_conversation("gpt-4o");
    req.extensions_mut().insert(Tier::L1);
    let response = send(&mut service, req).await.unwrap();
    let expected = [
        "budget_cheaper_model",
        "budget_max_tokens_capped",
        "budget_temperature_lowered",
        "budget_context_trimmed",
    ];
    assert_eq!(reasons(response.extensions().get::<Degraded>()), expected);
    let sent = spy.last();
    let body = sent.body();
    assert_eq!(body.model, "gpt-4o-mini");
    assert_eq!(body.max_tokens, Some(200));
    assert_eq!(body.temperature, Some(0.3));
    assert_eq!(
        body.system.as_deref(),
        Some("be brief"),
        "the system prompt is kept"
    );
    assert_eq!(body.messages.len(), 1, "the four oldest turns were dropped");
    assert_eq!(
        body.messages[0].content.text(),
        "and now?",
        "the last message is kept"
    );
    assert_eq!(
        reasons(sent.extensions().get::<Degraded>()),
        expected,
        "the provider sees the reasons too"
    );
    // The hold shrank to the degraded request's bound.
    let estimate = sent.extensions().get::<CostEstimate>().unwrap();
    assert_eq!(estimate.model, "gpt-4o-mini");
    let status = response.extensions().get::<BudgetStatus>().unwrap();
    assert_eq!(status.level, SpendLevel::Degrade);
    assert_eq!(status.reserved, estimate.upper_bound);
    assert_eq!(ledger.books().outstanding, estimate.upper_bound);
    let details: Vec<String> = response
        .extensions()
        .get::<Degraded>()
        .unwrap()
        .iter()
        .map(|d| d.detail.clone())
        .collect();
    assert!(
        details[0].starts_with("model gpt-4o → gpt-4o-mini: global at"),
        "{}",
        details[0]
    );
    assert!(
        details[1].starts_with("max_tokens 1000 → 200"),
        "{}",
        details[1]
    );
}

#[tokio::test(start_paused = true)]
async fn l0_is_exempt_from_degrade_unless_configured_otherwise() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("0.05")));
    let spy = Spy::new(SimConfig::instant());
    let mut service = degrading_layer(ledger.clone()).build().layer(spy.clone());
    let mut req = long_conversation("gpt-4o");
    req.extensions_mut().insert(Tier::L0);
    let response = send(&mut service, req).await.unwrap();
    assert_eq!(
        response.extensions().get::<BudgetStatus>().unwrap().level,
        SpendLevel::Degrade
    );
    assert!(
        response.extensions().get::<Degraded>().is_none(),
        "L0 is not degraded"
    );
    assert_eq!(spy.last().body().model, "gpt-4o");
    response.collect().await.unwrap();

    let mut service = degrading_layer(ledger)
        .exempt_from_degrade(Tier::L0, false)
        .build()
        .layer(spy.clone());
    let mut req = long_conversation("gpt-4o");
    req.extensions_mut().insert(Tier::L0);
    let response = send(&mut service, req).await.unwrap();
    assert_eq!(
        reasons(response.extensions().get::<Degraded>())[0],
        "budget_cheaper_model"
    );
}

#[tokio::test(start_paused = true)]
async fn per_request_cap_rejects_without_retry_after() {
    let ledger = MemoryLedger::new(Caps::new());
    let layer = BudgetLayer::builder(ledger.clone())
        .request_cap(RequestCap {
            limit: usd("0.001"),
            action: CapAction::Reject,
        })
        .build();
    let spy = Spy::new(SimConfig::instant());
    let mut service = layer.layer(spy.clone());
    let error = send(&mut service, request("gpt-4o", "hi", 1_000, Tier::L1))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::BudgetExceeded {
            scope: "per_request".into(),
            retry_after: None
        }
    );
    assert_eq!(spy.calls(), 0);
    // Under the cap: sent.
    send(&mut service, request("gpt-4o", "hi", 50, Tier::L1))
        .await
        .unwrap();
    assert_eq!(spy.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn per_request_cap_routes_to_the_cheaper_model() {
    let layer = BudgetLayer::builder(MemoryLedger::new(Caps::new()))
        .degrade(Degrade::new().cheaper_model("gpt-4o", "gpt-4o-mini"))
        .request_cap(RequestCap {
            limit: usd("0.001"),
            action: CapAction::RouteCheaper,
        })
        .build();
    let spy = Spy::new(SimConfig::instant());
    let mut service = layer.layer(spy.clone());
    let response = send(&mut service, request("gpt-4o", "hi", 1_000, Tier::L1))
        .await
        .unwrap();
    assert_eq!(
        reasons(response.extensions().get::<Degraded>()),
        ["budget_cheaper_model"]
    );
    let sent = spy.last();
    assert_eq!(sent.body().model, "gpt-4o-mini");
    assert_eq!(
        sent.body().max_tokens,
        Some(1_000),
        "the cheaper model alone fits"
    );
    assert!(sent.extensions().get::<CostEstimate>().unwrap().upper_bound <= usd("0.001"));
}

#[cfg(feature = "tokenizer")] // the exact figure needs the exact input count
#[tokio::test(start_paused = true)]
async fn per_request_cap_degrade_caps_max_tokens_to_fit_exactly() {
    let limit = usd("0.001");
    let layer = BudgetLayer::builder(MemoryLedger::new(Caps::new()))
        .request_cap(RequestCap {
            limit,
            action: CapAction::Degrade,
        })
        .build();
    let spy = Spy::new(SimConfig::instant());
    let mut service = layer.layer(spy.clone());
    let response = send(&mut service, request("gpt-4o", "hi", 1_000, Tier::L1))
        .await
        .unwrap();
    assert_eq!(
        reasons(response.extensions().get::<Degraded>()),
        ["budget_max_tokens_capped"]
    );
    let sent = spy.last();
    let max_tokens = sent.body().max_tokens.unwrap();
    let estimator = Estimator::default();
    let fits = |n: u32| {
        let mut body = sent.body().clone();
        body.max_tokens = Some(n);
        estimator.estimate(&body, None).upper_bound <= limit
    };
    assert!(
        fits(max_tokens) && !fits(max_tokens + 1),
        "the largest max_tokens within the cap: {max_tokens}"
    );
    assert_eq!(
        max_tokens, 98,
        "($0.001 − 8 input tokens at $2.50/M) / $10/M per token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_blocked_request_is_answered_from_the_cache_when_it_holds_one() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("0.01")));
    let cache = ResponseCache::new(Duration::from_secs(300), 100);
    let layer = BudgetLayer::builder(ledger.clone())
        .on_block(Tier::L2, BlockAction::Cache)
        .cache(cache.clone())
        .build();
    let spy = Spy::new(SimConfig::instant().answer(Answer::Fixed {
        text: "Paris is the capital.".into(),
    }));
    let mut service = layer.layer(spy.clone());
    let first = send(
        &mut service,
        request("gpt-4o-mini", "capital of France?", 50, Tier::L2),
    )
    .await
    .unwrap();
    assert_eq!(first.collect().await.unwrap().text, "Paris is the capital.");
    assert_eq!(cache.len(), 1, "a complete answer is stored");
    // Spend the rest of the window.
    let rest = usd("0.01")
        .checked_sub(ledger.spent(&Scope::Global))
        .unwrap();
    let filler = ledger
        .try_reserve(
            &Account {
                tier: Tier::L1,
                tenant: None,
            },
            rest,
        )
        .unwrap();
    let cached = send(
        &mut service,
        request("gpt-4o-mini", "capital of France?", 50, Tier::L2),
    )
    .await
    .unwrap();
    assert_eq!(
        reasons(cached.extensions().get::<Degraded>()),
        ["budget_cached_answer"]
    );
    assert_eq!(
        cached.collect().await.unwrap().text,
        "Paris is the capital."
    );
    assert_eq!(
        spy.calls(),
        1,
        "the cached answer did not call the provider"
    );
    let miss = send(
        &mut service,
        request("gpt-4o-mini", "capital of Spain?", 50, Tier::L2),
    )
    .await
    .unwrap_err();
    assert_eq!(miss.code(), "budget_exceeded");
    ledger.settle(filler, Cost::ZERO);
}

#[tokio::test(start_paused = true)]
async fn cache_entries_expire_and_the_size_bound_evicts_the_oldest() {
    let cache = ResponseCache::new(Duration::from_secs(10), 2);
    let body = |t: &str| ChatBody::new("m", vec![Message::user(t)]);
    let events = vec![switchboard_core::ChatEvent::text("x")];
    cache.insert(&body("a"), ProviderId::OPENAI, "m".into(), events.clone());
    tokio::time::advance(Duration::from_secs(5)).await;
    cache.insert(&body("b"), ProviderId::OPENAI, "m".into(), events.clone());
    cache.insert(&body("c"), ProviderId::OPENAI, "m".into(), events.clone());
    assert!(
        cache.get(&body("a")).is_none(),
        "the oldest was evicted at the size bound"
    );
    assert!(cache.get(&body("b")).is_some());
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(cache.get(&body("b")).is_some(), "b is 9 s old: fresh");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(cache.get(&body("b")).is_none(), "b expired at 10 s");
    assert_eq!(cache.len(), 1, "only c is left");
}

#[tokio::test(start_paused = true)]
async fn estimate_layer_sets_the_estimate_and_learns_the_scene_output() {
    let estimator = Arc::new(
        Estimator::builder()
            .min_samples(1)
            .output_percentile(50)
            .build(),
    );
    let spy = Spy::new(SimConfig::instant().answer(Answer::Words { count: 30 }));
    let mut service = EstimateLayer::new(estimator.clone()).layer(spy.clone());
    let mut req = request("gpt-4o-mini", "summarize this", 500, Tier::L1);
    req.extensions_mut().insert(Scene::SUMMARY);
    let response = send(&mut service, req).await.unwrap();
    let estimate = spy.last_estimate();
    assert_eq!(estimate, estimator.estimate(spy.last().body(), None));
    assert_eq!(estimate.expected_output_tokens, 500, "nothing learned yet");
    response.collect().await.unwrap();
    assert_eq!(estimator.learned_output(&Scene::SUMMARY), Some(30));
    let next = estimator.estimate(spy.last().body(), Some(&Scene::SUMMARY));
    assert_eq!(next.expected_output_tokens, 30);
}

/// Hundreds of concurrent requests, some abandoned mid-stream, some failing, through the
/// layer: the cap is never crossed at any instant and the books balance at the end.
#[tokio::test(start_paused = true)]
async fn concurrent_requests_never_cross_the_cap_and_the_books_balance() {
    let cap = usd("0.05");
    let ledger = MemoryLedger::new(Caps::new().global(cap).tier(Tier::L2, usd("0.02")));
    let config = SimConfig::instant()
        .seed(3)
        .first_token(Latency::log_normal_ms(100, 600))
        .tokens_per_second(40.0)
        .answer(Answer::Words { count: 30 })
        .faults(Faults {
            errors: vec![ErrorFault {
                status: 500,
                probability: 0.1,
                after: Duration::from_millis(30),
                retry_after_secs: None,
            }],
            ..Faults::default()
        });
    let spy = Spy::new(config);
    let service = BudgetLayer::new(ledger.clone()).layer(spy.clone());
    let watcher = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            loop {
                assert!(
                    ledger.spent(&Scope::Global) <= cap,
                    "global spend crossed the cap"
                );
                assert!(ledger.spent(&Scope::Tier(Tier::L2)) <= usd("0.02"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..400u32)
        .map(|i| {
            let mut service = service.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(u64::from(i) * 7)).await;
                let tier = [Tier::L0, Tier::L1, Tier::L2][i as usize % 3];
                let req = request("gpt-4o", &format!("question {i}"), 300 + i % 200, tier);
                let Ok(mut response) = send(&mut service, req).await else {
                    return Cost::ZERO;
                };
                let estimate = response
                    .extensions()
                    .get::<CostEstimate>()
                    .cloned()
                    .unwrap();
                if i % 4 == 0 {
                    // Walk away after a few tokens.
                    let mut seen = 0;
                    while seen < 5 {
                        match response.next().await {
                            Some(Ok(e)) if e.is_content() => seen += 1,
                            Some(_) => {}
                            None => break,
                        }
                    }
                    drop(response);
                    return estimate
                        .price
                        .cost_of(&Usage::new(estimate.input_tokens, seen))
                        .unwrap();
                }
                let done = response.collect().await.unwrap();
                estimate.price.cost_of(&done.usage.unwrap()).unwrap()
            })
        })
        .collect();
    let mut actual = Cost::ZERO;
    for t in tasks {
        actual = actual.checked_add(t.await.unwrap()).unwrap();
    }
    watcher.abort();
    let books = ledger.books();
    assert_eq!(
        books.outstanding,
        Cost::ZERO,
        "nothing stays reserved at rest"
    );
    assert_eq!(books.open_holds, 0);
    assert_eq!(books.committed, actual, "committed = sum of actual costs");
    assert_eq!(
        books.overrun,
        Cost::ZERO,
        "no call cost more than its bound"
    );
    assert!(
        spy.calls() < 400,
        "some requests were blocked by the cap ({} sent)",
        spy.calls()
    );
    assert!(
        spy.calls() > 50,
        "and many were admitted ({} sent)",
        spy.calls()
    );
}
