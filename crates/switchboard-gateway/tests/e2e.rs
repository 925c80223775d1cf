//! End to end: the gateway built from a config, on an ephemeral loopback port, in front of
//! the simulated OpenAI and Anthropic HTTP servers, driven by a real HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchboard::{Config, Switchboard};
use switchboard_gateway::Gateway;
use switchboard_sim::{Answer, ErrorFault, Faults, SimConfig, SimServer, Truncate};

struct Rig {
    addr: SocketAddr,
    switchboard: Switchboard,
    primary: SimServer,
    secondary: SimServer,
}

/// `primary` speaks OpenAI, `secondary` Anthropic; `extra` is appended to the config.
async fn rig(primary: SimConfig, secondary: SimConfig, extra: &str) -> Rig {
    let primary = SimServer::start(primary).await.unwrap();
    let secondary = SimServer::start(secondary).await.unwrap();
    let toml = format!(
        r#"
[providers.openai]
kind = "openai"
base_url = "{}/v1"
api_key = "sk-upstream-openai"

[providers.anthropic]
kind = "anthropic"
base_url = "{}"
api_key = "sk-upstream-anthropic"

[routing]
providers = ["openai", "anthropic"]
[routing.models]
fast = {{ openai = "gpt-4o-mini", anthropic = "claude-haiku-4-5" }}

[hedge]
soft_timeout = {{ kind = "fixed", ms = 300 }}
max_attempts = 2
budget = {{ ratio = 1.0, reserve = 100, cap = 100 }}
{extra}
"#,
        primary.base_url(),
        secondary.base_url()
    );
    let config = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}"));
    let switchboard = Switchboard::build(&config).unwrap();
    let mut gateway =
        Gateway::new(switchboard.service()).models(switchboard.models().iter().cloned());
    if let Some(queue) = switchboard.jobs() {
        gateway = gateway.jobs(queue.clone());
    }
    let app = gateway.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Rig {
        addr,
        switchboard,
        primary,
        secondary,
    }
}

fn failing(status: u16) -> SimConfig {
    SimConfig::instant().faults(Faults {
        errors: vec![ErrorFault {
            status,
            probability: 1.0,
            after: Duration::ZERO,
            retry_after_secs: None,
        }],
        ..Faults::default()
    })
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn chat(stream: bool) -> Value {
    json!({"model": "fast", "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "Hello over the wire"}]})
}

fn message(stream: bool) -> Value {
    json!({"model": "fast", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "Hello over the wire"}]})
}

#[tokio::test]
async fn both_apis_streamed_and_not_through_real_upstreams() {
    let rig = rig(SimConfig::instant(), SimConfig::instant(), "").await;
    let r = post(rig.addr, "/v1/chat/completions", chat(false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-provider"), "openai");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello over the wire"
    );
    assert_eq!(
        body["model"], "gpt-4o-mini",
        "the concrete model that answered"
    );

    let r = post(rig.addr, "/v1/messages", message(true)).await;
    assert_eq!(r.status(), 200);
    let events: Vec<_> = r
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap())
        .collect()
        .await;
    let text: String = events
        .iter()
        .filter(|e| e.event == "content_block_delta")
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["delta"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "Hello over the wire");
    assert_eq!(events.last().unwrap().event, "message_stop");

    let sent = rig.primary.stats().last_request().unwrap().body.unwrap();
    assert_eq!(sent["stream"], true, "upstream calls always stream");
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(rig.secondary.stats().total_requests(), 0);
}

#[tokio::test]
async fn failover_to_the_other_provider_shows_in_the_headers() {
    let rig = rig(failing(503), SimConfig::instant(), "").await;
    let r = post(rig.addr, "/v1/chat/completions", chat(false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-provider"), "anthropic");
    assert_eq!(header(&r, "x-switchboard-status"), "degraded");
    assert!(
        header(&r, "x-switchboard-reason").starts_with("fallback_after_openai"),
        "{}",
        header(&r, "x-switchboard-reason")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "claude-haiku-4-5");
    assert_eq!(body["switchboard"]["provider"], "anthropic");
}

#[tokio::test]
async fn a_slow_first_token_is_hedged_to_the_other_provider() {
    let slow = SimConfig::instant().first_token(switchboard_sim::Latency::fixed_ms(5_000));
    let rig = rig(slow, SimConfig::instant(), "").await;
    let r = post(rig.addr, "/v1/chat/completions", chat(true)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-provider"), "anthropic");
    assert_eq!(header(&r, "x-switchboard-status"), "degraded");
    let events: Vec<_> = r
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap().data)
        .collect()
        .await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    // The loser was cancelled: the slow upstream saw its client go away.
    tokio::time::timeout(
        Duration::from_secs(10),
        rig.primary.stats().wait_for_disconnects(1),
    )
    .await
    .expect("the losing attempt's HTTP request was aborted");
}

#[tokio::test]
async fn a_spent_budget_is_a_429_with_retry_after() {
    let rig = rig(
        SimConfig::instant(),
        SimConfig::instant(),
        "[budget]\nglobal_per_minute = \"0.00003\"\n",
    )
    .await;
    let mut body = chat(false);
    body["max_tokens"] = json!(10);
    let first = post(rig.addr, "/v1/chat/completions", body.clone()).await;
    assert_eq!(first.status(), 200, "the first requests fit under the cap");
    let mut blocked = None;
    for _ in 0..50 {
        let r = post(rig.addr, "/v1/chat/completions", body.clone()).await;
        if r.status() != 200 {
            blocked = Some(r);
            break;
        }
    }
    let r = blocked.expect("the cap is reached within 50 requests");
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-switchboard-reason"), "budget_exceeded");
    let retry: u64 = header(&r, "retry-after")
        .parse()
        .expect("a Retry-After header");
    assert!(
        (1..=60).contains(&retry),
        "retry-after within the minute window: {retry}"
    );
    let json: Value = r.json().await.unwrap();
    assert_eq!(json["switchboard"]["status"], "error");
    let spent = rig
        .switchboard
        .ledger()
        .unwrap()
        .spent(&switchboard::budget::Scope::Global);
    assert!(
        spent <= "0.00003".parse().unwrap(),
        "never over the cap: {spent}"
    );
}

#[tokio::test]
async fn a_request_that_can_never_fit_is_refused_without_retry_after() {
    let rig = rig(
        SimConfig::instant(),
        SimConfig::instant(),
        "[budget]\nglobal_per_minute = \"0.000001\"\n",
    )
    .await;
    let r = post(rig.addr, "/v1/chat/completions", chat(false)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-switchboard-reason"), "budget_exceeded");
    assert_eq!(header(&r, "retry-after"), "", "waiting would not help");
    assert_eq!(
        rig.primary.stats().total_requests(),
        0,
        "nothing was sent upstream"
    );
}

#[tokio::test]
async fn unknown_models_are_404_before_any_work() {
    let rig = rig(
        SimConfig::instant(),
        SimConfig::instant(),
        "[budget]\nglobal_per_minute = \"1.00\"\n",
    )
    .await;
    let mut body = chat(false);
    body["model"] = json!("gpt-9");
    let r = post(rig.addr, "/v1/chat/completions", body).await;
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "x-switchboard-reason"), "model_not_found");
    let mut body = message(false);
    body["model"] = json!("claude-0");
    let r = post(rig.addr, "/v1/messages", body).await;
    assert_eq!(r.status(), 404);
    let json: Value = r.json().await.unwrap();
    assert_eq!(json["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn a_client_disconnect_mid_stream_settles_the_reservation() {
    let slow = SimConfig::instant()
        .tokens_per_second(40.0)
        .answer(Answer::Words { count: 2_000 });
    let rig = rig(
        slow,
        SimConfig::instant(),
        "[budget]\nglobal_per_minute = \"10.00\"\n",
    )
    .await;
    let r = post(rig.addr, "/v1/chat/completions", chat(true)).await;
    let mut events = r.bytes_stream().eventsource();
    events.next().await.unwrap().unwrap();
    events.next().await.unwrap().unwrap();
    let ledger = rig.switchboard.ledger().unwrap().clone();
    assert_eq!(
        ledger.books().open_holds,
        1,
        "a reservation is held while streaming"
    );
    drop(events);
    tokio::time::timeout(
        Duration::from_secs(10),
        rig.primary.stats().wait_for_disconnects(1),
    )
    .await
    .expect("the upstream request was aborted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ledger.books().open_holds != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reservation was never settled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ledger.books().outstanding, switchboard_core::Cost::ZERO);
}

#[tokio::test]
async fn an_upstream_killed_mid_stream_ends_in_an_explicit_error_event() {
    let dying = SimConfig::instant()
        .answer(Answer::Words { count: 50 })
        .faults(Faults {
            truncate: Some(Truncate {
                probability: 1.0,
                after_tokens: 5,
                reset: true,
            }),
            ..Faults::default()
        });
    let rig = rig(dying, SimConfig::instant(), "").await;
    let r = post(rig.addr, "/v1/chat/completions", chat(true)).await;
    assert_eq!(r.status(), 200);
    let events: Vec<_> = r
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap().data)
        .collect()
        .await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last.get("error").is_some(),
        "explicit error event, got {last}"
    );
    assert!(!events.iter().any(|d| d == "[DONE]"));

    let r = post(rig.addr, "/v1/messages", message(true)).await;
    let events: Vec<_> = r
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(events.last().unwrap().event, "error");
}

#[tokio::test]
async fn a_blocked_request_of_an_enqueueing_tier_is_a_202_with_its_job() {
    let rig = rig(
        SimConfig::instant(),
        SimConfig::instant(),
        "[budget]\nglobal_per_minute = \"0.00003\"\non_block = { L1 = \"enqueue\" }\n",
    )
    .await;
    let mut body = chat(false);
    body["max_tokens"] = json!(10);
    let mut accepted = None;
    for _ in 0..50 {
        let r = post(rig.addr, "/v1/chat/completions", body.clone()).await;
        if r.status() != 200 {
            accepted = Some(r);
            break;
        }
    }
    let r = accepted.expect("the cap is reached within 50 requests");
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "x-switchboard-status"), "degraded");
    assert_eq!(header(&r, "x-switchboard-reason"), "budget_enqueued");
    let location = header(&r, "location").to_owned();
    let json: Value = r.json().await.unwrap();
    assert_eq!(json["status"], "queued");
    assert_eq!(
        location,
        format!("/v1/jobs/{}", json["id"].as_str().unwrap())
    );

    let client = reqwest::Client::new();
    let job: Value = client
        .get(format!("http://{}{location}", rig.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        job["status"], "queued",
        "no worker runs in this test: {job}"
    );
    let missing = client
        .get(format!("http://{}/v1/jobs/nope", rig.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "x-switchboard-reason"), "job_not_found");
}
