//! The rows shared by `stack` (system allocator) and `stack_mimalloc`, and by the
//! `profile_stack` example (which includes this file by path).

use std::hint::black_box;

use criterion::Criterion;
use switchboard::{Config, Switchboard};
use switchboard_breaker::BreakerLayer;
use switchboard_core::{
    BoxProvider, ChatBody, ChatRequest, HealthBoard, Message, ProviderId, boxed,
};
use switchboard_hedge::{HedgeConfig, HedgeLayer};
use switchboard_route::{Dispatch, RouteLayer, RoutePolicy};
use switchboard_sim::{Answer, SimConfig, SimProvider};
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

/// Each row's stack: every row adds layers to the one before.
pub(crate) fn stacks() -> Vec<(&'static str, BoxProvider)> {
    let board = HealthBoard::new();
    let provider_stack = || {
        boxed(
            ServiceBuilder::new()
                .layer(BreakerLayer::new(ProviderId::OPENAI).board(board.clone()))
                .layer(
                    TimeoutLayer::new(TimeoutTiers::default())
                        .scope(Scope::Attempt)
                        .provider(ProviderId::OPENAI),
                )
                .service(instant()),
        )
    };
    let policy =
        RoutePolicy::new([ProviderId::OPENAI]).model("fast", [(ProviderId::OPENAI, "gpt-4o-mini")]);
    let routed = ServiceBuilder::new()
        .layer(RouteLayer::new(policy).board(board.clone()))
        .layer(TimeoutLayer::new(TimeoutTiers::default()).scope(Scope::Call))
        .layer(HedgeLayer::new(HedgeConfig::default()).board(board.clone()))
        .service(Dispatch::new().boxed_provider(ProviderId::OPENAI, provider_stack()));
    let no_budget = Switchboard::build(&Config::from_toml(CONFIG).unwrap()).unwrap();
    let full = Switchboard::build(
        &Config::from_toml(&format!(
            "{CONFIG}\n[budget]\nglobal_per_minute = \"1000000\"\n"
        ))
        .unwrap(),
    )
    .unwrap();
    vec![
        ("0_provider_alone", boxed(instant())),
        ("1_plus_breaker_and_attempt_timeout", provider_stack()),
        ("2_plus_route_call_timeout_hedge_dispatch", boxed(routed)),
        ("3_plus_model_check_tier_estimate", no_budget.service()),
        ("4_full_standard_stack_with_budget", full.service()),
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
