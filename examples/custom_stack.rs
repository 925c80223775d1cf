//! A hand-composed `ServiceBuilder` stack with a subset of the layers: admission, metrics,
//! a call deadline, hedging across two providers with a fixed route, and per provider a
//! circuit breaker and a first-token deadline. No budget, no router, no config file.
//!
//! The providers are simulated and the runtime's clock is paused, so 200 calls with
//! seconds of simulated latency finish at once.
//!
//! ```sh
//! cargo run -p switchboard-examples --example custom_stack
//! ```

use std::time::Duration;

use switchboard::breaker::BreakerLayer;
use switchboard::core::{HealthBoard, Route, Target, Tier, boxed};
use switchboard::hedge::{HedgeConfig, HedgeLayer, SoftTimeout};
use switchboard::prelude::*;
use switchboard::route::Dispatch;
use switchboard::sim::{Answer, Latency, SimConfig, SimProvider};
use switchboard::telemetry::Telemetry;
use switchboard::tier::TierLayer;
use switchboard::timeout::{Scope, TimeoutLayer, TimeoutTiers, Timeouts};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Error> {
    let board = HealthBoard::new();
    let telemetry = Telemetry::new();
    telemetry.watch_board(board.clone());
    let timeouts = TimeoutTiers::uniform(Timeouts::new(
        Duration::from_secs(4),  // first token, per attempt
        Duration::from_secs(10), // idle gap between events
        Duration::from_secs(30), // the whole call
    ));

    // Two providers: one usually quick with a long tail, one steady.
    let openai = ProviderId::OPENAI;
    let anthropic = ProviderId::ANTHROPIC;
    let answer = Answer::Fixed {
        text: "This is a test.".into(),
    };
    let providers = [
        (
            openai.clone(),
            SimConfig::instant()
                .first_token(Latency::log_normal_ms(300, 5000))
                .answer(answer.clone()),
        ),
        (
            anthropic.clone(),
            SimConfig::instant()
                .first_token(Latency::fixed_ms(600))
                .answer(answer),
        ),
    ];
    let mut dispatch = Dispatch::new();
    for (id, sim) in providers {
        let provider = ServiceBuilder::new()
            .layer(telemetry.attempt_layer(id.clone()))
            .layer(BreakerLayer::new(id.clone()).board(board.clone()))
            .layer(
                TimeoutLayer::new(timeouts)
                    .scope(Scope::Attempt)
                    .provider(id.clone()),
            )
            .service(SimProvider::new(id.clone(), sim));
        dispatch = dispatch.boxed_provider(id, boxed(provider));
    }

    let route = Route::new(Target::new(openai, "gpt-4o-mini"))
        .fallback(Target::new(anthropic, "claude-haiku-4-5"));
    let stack = ServiceBuilder::new()
        .layer(TierLayer::builder().default_tier(Tier::L1).build())
        .layer(telemetry.layer())
        .layer(TimeoutLayer::new(timeouts).scope(Scope::Call))
        .layer(
            HedgeLayer::new(
                HedgeConfig::default().soft_timeout(SoftTimeout::fixed(Duration::from_millis(800))),
            )
            .route(route)
            .board(board.clone()),
        )
        .service(dispatch);
    let stack = boxed(stack);

    let mut by_provider = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..200 {
        let request = ChatRequest::new(ChatBody::new(
            "gpt-4o-mini",
            vec![Message::user(format!("question {i}"))],
        ));
        match stack.clone().oneshot(request).await {
            Ok(response) => {
                let answer = response.collect().await?;
                *by_provider.entry(answer.provider.to_string()).or_default() += 1;
            }
            Err(e) => *by_provider.entry(e.reason()).or_default() += 1,
        }
    }
    println!("answers by provider (or error): {by_provider:?}");
    println!("\nmetrics:");
    for line in telemetry.render().lines() {
        if line.starts_with("switchboard_requests_total")
            || line.starts_with("switchboard_hedges_total")
            || line.starts_with("switchboard_attempts_total")
        {
            println!("  {line}");
        }
    }
    Ok(())
}
