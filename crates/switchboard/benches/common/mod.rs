//! The rows shared by `stack` (system allocator) and `stack_mimalloc`, and by the
//! `profile_stack` example (which includes this file by path).

use std::hint::black_box;
use std::sync::Arc;

use criterion::Criterion;
use switchboard::{Config, Switchboard};
use switchboard_breaker::BreakerLayer;
use switchboard_budget::{BudgetLayer, Caps, EstimateLayer, Estimator, MemoryLedger};
use switchboard_core::{
    BoxProvider, ChatBody, ChatRequest, Cost, HealthBoard, Message, ProviderId, Route, Target,
    boxed,
};
use switchboard_hedge::{HedgeConfig, HedgeLayer};
use switchboard_route::{Dispatch, RouteLayer, RoutePolicy};
use switchboard_sim::{Answer, SimConfig, SimProvider};
use switchboard_telemetry::Telemetry;
use switchboard_tier::TierLayer;
use switchboard_timeout::{Scope, TimeoutLayer, TimeoutTiers};
use tower::{ServiceBuilder, ServiceExt};

const CONFIG: &str = r#"
[providers.openai]
kind = "sim"
answer = { kind = "fixed", text = "ok" }
[routing]
providers = ["openai"]
models.fast = { openai = "gpt-4o-mini" }
"#;

fn instant() -> SimProvider {
    SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().answer(Answer::Fixed { text: "ok".into() }),
    )
}

pub(crate) fn request() -> ChatRequest {
    ChatRequest::new(ChatBody::new("fast", vec![Message::user("Hi")]).max_tokens(16))
}

/// Each row's stack: every row adds one layer to the one before, from the provider up, in
/// the order the facade stacks them (`crates/switchboard/src/build.rs`); the last row is the
/// facade's own stack (adding the known-model check and its one box); row 13 is that stack
/// for a model without a tokenizer (the target excludes tokenization).
pub(crate) fn stacks() -> Vec<(&'static str, BoxProvider)> {
    let board = HealthBoard::new();
    let telemetry = Telemetry::builder().build();
    let estimator = Arc::new(Estimator::builder().alias("fast", "gpt-4o-mini").build());
    let ledger = || {
        MemoryLedger::new(Caps::new().global(Cost::from_usd(1_000_000).expect("a cap in range")))
    };
    let attempt_timeout = || {
        TimeoutLayer::new(TimeoutTiers::default())
            .scope(Scope::Attempt)
            .provider(ProviderId::OPENAI)
    };
    let breaker = || BreakerLayer::new(ProviderId::OPENAI).board(board.clone());
    let provider_stack = || {
        boxed(
            ServiceBuilder::new()
                .layer(telemetry.attempt_layer(ProviderId::OPENAI))
                .layer(breaker())
                .layer(attempt_timeout())
                .service(instant()),
        )
    };
    let dispatch = || Dispatch::new().boxed_provider(ProviderId::OPENAI, provider_stack());
    // Rows 04-06 stand in for the layers above them with what those would insert: the hedge
    // reads a `Route`, dispatch a `Target` (the hedge inserts it). Row 07 drops them.
    let target = Target::new(ProviderId::OPENAI, "gpt-4o-mini");
    let with_target = move |mut request: ChatRequest| {
        request.extensions_mut().insert(target.clone());
        request
    };
    let with_route = move |mut request: ChatRequest| {
        request
            .extensions_mut()
            .insert(Route::new(Target::new(ProviderId::OPENAI, "gpt-4o-mini")));
        request
    };
    let hedge = || HedgeLayer::new(HedgeConfig::default()).board(board.clone());
    let call_timeout = || TimeoutLayer::new(TimeoutTiers::default()).scope(Scope::Call);
    let route = || {
        let policy = RoutePolicy::new([ProviderId::OPENAI])
            .model("fast", [(ProviderId::OPENAI, "gpt-4o-mini")]);
        RouteLayer::new(policy).board(board.clone())
    };
    let gate = || {
        BudgetLayer::builder(ledger())
            .estimator(estimator.clone())
            .build()
    };
    let estimate = || EstimateLayer::new(estimator.clone());
    let routed = || {
        ServiceBuilder::new()
            .layer(route())
            .layer(call_timeout())
            .layer(hedge())
            .service(dispatch())
    };
    let full = Switchboard::build(
        &Config::from_toml(&format!(
            "{CONFIG}\n[budget]\nglobal_per_minute = \"1000000\"\n"
        ))
        .unwrap(),
    )
    .unwrap();
    // The same stack for a model with no public tokenizer: its input is bounded by its
    // byte count, so this row is the full stack with tokenization excluded.
    let untokenized = Switchboard::build(
        &Config::from_toml(&format!(
            "{}\n[budget]\nglobal_per_minute = \"1000000\"\n",
            CONFIG.replace("gpt-4o-mini", "sim-untokenized")
        ))
        .unwrap(),
    )
    .unwrap();
    vec![
        ("00_provider_alone", boxed(instant())),
        (
            "01_attempt_timeout",
            boxed(
                ServiceBuilder::new()
                    .layer(attempt_timeout())
                    .service(instant()),
            ),
        ),
        (
            "02_breaker",
            boxed(
                ServiceBuilder::new()
                    .layer(breaker())
                    .layer(attempt_timeout())
                    .service(instant()),
            ),
        ),
        ("03_attempt_metrics", provider_stack()),
        (
            "04_dispatch",
            boxed(
                ServiceBuilder::new()
                    .map_request(with_target)
                    .service(dispatch()),
            ),
        ),
        (
            "05_hedge",
            boxed(
                ServiceBuilder::new()
                    .map_request(with_route)
                    .layer(hedge())
                    .service(dispatch()),
            ),
        ),
        (
            "06_call_timeout",
            boxed(
                ServiceBuilder::new()
                    .map_request(with_route)
                    .layer(call_timeout())
                    .layer(hedge())
                    .service(dispatch()),
            ),
        ),
        ("07_route", boxed(routed())),
        (
            "08_budget_gate_estimating_itself",
            boxed(ServiceBuilder::new().layer(gate()).service(routed())),
        ),
        (
            "09_estimate",
            boxed(
                ServiceBuilder::new()
                    .layer(estimate())
                    .layer(gate())
                    .service(routed()),
            ),
        ),
        (
            "10_metrics",
            boxed(
                ServiceBuilder::new()
                    .layer(telemetry.layer())
                    .layer(estimate())
                    .layer(gate())
                    .service(routed()),
            ),
        ),
        (
            "11_tier_admission",
            boxed(
                ServiceBuilder::new()
                    .layer(TierLayer::new())
                    .layer(telemetry.layer())
                    .layer(estimate())
                    .layer(gate())
                    .service(routed()),
            ),
        ),
        ("12_full_standard_stack", full.service()),
        ("13_full_stack_untokenized", untokenized.service()),
    ]
}

/// Benchmarks every row under `group` (named for the allocator the binary uses).
#[allow(
    dead_code,
    reason = "profile_stack includes this file and runs rows without criterion"
)]
pub(crate) fn stack(c: &mut Criterion, group: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group(group);
    for (name, service) in stacks() {
        // Sanity: every stack answers.
        let answer = rt.block_on(async {
            service
                .clone()
                .oneshot(request())
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
        });
        assert_eq!(answer.text, "ok", "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let response = service.clone().oneshot(black_box(request())).await.unwrap();
                    black_box(response.collect().await.unwrap())
                })
            })
        });
    }
    group.finish();
}
