//! Runs a stack over an instant provider in a loop, for profilers:
//! `valgrind --tool=callgrind target/release/examples/profile_stack 20000 [full|routed|provider]`.
//!
//! `full` (the default) is the standard stack from config, budget on; `routed` is route,
//! call timeout, hedge and dispatch over one provider's breaker and attempt timeout (the
//! bench's third row); `provider` is the simulated provider alone. Subtract two runs with
//! different counts to remove the set-up.

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
[budget]
global_per_minute = "1000000"
"#;

fn instant() -> SimProvider {
    SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().answer(Answer::Fixed { text: "ok".into() }),
    )
}

fn routed() -> BoxProvider {
    let board = HealthBoard::new();
    let provider = ServiceBuilder::new()
        .layer(BreakerLayer::new(ProviderId::OPENAI).board(board.clone()))
        .layer(
            TimeoutLayer::new(TimeoutTiers::default())
                .scope(Scope::Attempt)
                .provider(ProviderId::OPENAI),
        )
        .service(instant());
    let policy =
        RoutePolicy::new([ProviderId::OPENAI]).model("fast", [(ProviderId::OPENAI, "gpt-4o-mini")]);
    boxed(
        ServiceBuilder::new()
            .layer(RouteLayer::new(policy).board(board.clone()))
            .layer(TimeoutLayer::new(TimeoutTiers::default()).scope(Scope::Call))
            .layer(HedgeLayer::new(HedgeConfig::default()).board(board))
            .service(Dispatch::new().boxed_provider(ProviderId::OPENAI, boxed(provider))),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let service = match args.next().as_deref() {
        None | Some("full") => {
            let config = Config::from_toml(CONFIG).expect("config");
            Switchboard::build(&config).expect("stack").service()
        }
        Some("routed") => routed(),
        Some("provider") => boxed(instant()),
        Some(other) => {
            eprintln!("unknown stack {other:?}: full, routed or provider");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let answered = rt.block_on(async {
        let mut answered = 0;
        for _ in 0..n {
            let request =
                ChatRequest::new(ChatBody::new("fast", vec![Message::user("Hi")]).max_tokens(16));
            if let Ok(response) = service.clone().oneshot(request).await {
                if response.collect().await.is_ok() {
                    answered += 1;
                }
            }
        }
        answered
    });
    println!("{answered} answered");
}
