//! Runs the full standard stack over an instant provider in a loop, for profilers:
//! `valgrind --tool=callgrind target/release/examples/profile_stack 20000`.

use switchboard::{Config, Switchboard};
use switchboard_core::{ChatBody, ChatRequest, Message};
use tower::ServiceExt;

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

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let config = Config::from_toml(CONFIG).expect("config");
    let switchboard = Switchboard::build(&config).expect("stack");
    let service = switchboard.service();
    let answered = rt.block_on(async {
        let mut answered = 0;
        for _ in 0..n {
            let request =
                ChatRequest::new(ChatBody::new("fast", vec![Message::user("Hi")]).max_tokens(16));
            if let Ok(response) = service.clone().oneshot(request).await
                && response.collect().await.is_ok()
            {
                answered += 1;
            }
        }
        answered
    });
    println!("{answered} answered");
}
