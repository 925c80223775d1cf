//! The gateway's HTTP edge over loopback, in front of simulated providers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchboard_core::{BoxProvider, ChatRequest, Degraded, Error, ProviderId, TenantId, boxed};
use switchboard_gateway::{Gateway, GatewayKeys};
use switchboard_sim::{Answer, ErrorFault, Faults, MidStream, SimConfig, SimProvider};
use tower::ServiceExt;

async fn serve(gateway: Gateway) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, gateway.router()).await.unwrap() });
    addr
}

/// A stack over one simulated provider that knows only `known-*` models and marks answers
/// to `degrade-me` prompts as degraded.
fn stack(sim: SimProvider) -> BoxProvider {
    boxed(tower::service_fn(move |request: ChatRequest| {
        let sim = sim.clone();
        async move {
            let model = request.body().model.clone();
            if !model.starts_with("known") {
                return Err(Error::ModelNotFound { model });
            }
            let degrade = request.body().last_user_text().as_deref() == Some("degrade-me");
            let mut response = sim.oneshot(request).await?;
            if degrade {
                let mut d = Degraded::default();
                d.push("budget_max_tokens_capped", "max_tokens 4096 → 256");
                response.extensions_mut().insert(d);
            }
            Ok(response)
        }
    }))
}

fn sim(config: SimConfig) -> SimProvider {
    SimProvider::new(ProviderId::from_static("sim"), config)
}

async fn gateway(config: SimConfig) -> (SocketAddr, SimProvider) {
    let sim = sim(config);
    let addr =
        serve(Gateway::new(stack(sim.clone())).models(["known-fast", "known-quality"])).await;
    (addr, sim)
}

fn openai_body(stream: bool) -> Value {
    json!({"model": "known-fast", "messages": [{"role": "user", "content": "Hello there friend"}], "stream": stream, "stream_options": {"include_usage": true}})
}

fn anthropic_body(stream: bool) -> Value {
    json!({"model": "known-fast", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello there friend"}], "stream": stream})
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(body)
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

#[tokio::test]
async fn openai_answers_carry_the_switchboard_block_and_headers() {
    let (addr, _) = gateway(SimConfig::instant()).await;
    let response = post(addr, "/v1/chat/completions", &openai_body(false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-switchboard-status"), "ok");
    assert_eq!(header(&response, "x-switchboard-provider"), "sim");
    let trace = header(&response, "x-switchboard-trace-id").to_owned();
    assert_eq!(trace.len(), 32);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello there friend"
    );
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(
        body["switchboard"],
        json!({"status": "ok", "provider": "sim", "reason": null, "trace_id": trace})
    );
}

#[tokio::test]
async fn openai_streams_are_sse_ending_in_done() {
    let (addr, _) = gateway(SimConfig::instant()).await;
    let response = post(addr, "/v1/chat/completions", &openai_body(true)).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    assert_eq!(header(&response, "x-switchboard-status"), "ok");
    let events: Vec<_> = response
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap().data)
        .collect()
        .await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello there friend");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn anthropic_answers_streamed_and_not() {
    let (addr, _) = gateway(SimConfig::instant()).await;
    let response = post(addr, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "Hello there friend");
    assert_eq!(body["switchboard"]["status"], "ok");

    let response = post(addr, "/v1/messages", &anthropic_body(true)).await;
    let events: Vec<_> = response
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap())
        .collect()
        .await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"message_delta"));
}

#[tokio::test]
async fn degraded_answers_say_so_and_why() {
    let (addr, _) = gateway(SimConfig::instant()).await;
    let mut body = openai_body(false);
    body["messages"][0]["content"] = json!("degrade-me");
    let response = post(addr, "/v1/chat/completions", &body).await;
    assert_eq!(header(&response, "x-switchboard-status"), "degraded");
    assert_eq!(
        header(&response, "x-switchboard-reason"),
        "budget_max_tokens_capped"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["switchboard"]["status"], "degraded");
    assert_eq!(body["switchboard"]["reason"], "budget_max_tokens_capped");
}

#[tokio::test]
async fn unknown_models_are_404_in_each_apis_shape() {
    let (addr, _) = gateway(SimConfig::instant()).await;
    let mut body = openai_body(false);
    body["model"] = json!("gpt-9");
    let response = post(addr, "/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 404);
    assert_eq!(header(&response, "x-switchboard-reason"), "model_not_found");
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"]["code"], "model_not_found");
    assert_eq!(json["switchboard"]["status"], "error");

    let mut body = anthropic_body(false);
    body["model"] = json!("claude-0");
    let response = post(addr, "/v1/messages", &body).await;
    assert_eq!(response.status(), 404);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn malformed_json_and_bad_fields_are_400_in_each_apis_shape() {
    let (addr, sim) = gateway(SimConfig::instant()).await;
    let client = reqwest::Client::new();
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let response = client
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body("{\"model\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(header(&response, "x-switchboard-reason"), "invalid_request");
        let json: Value = response.json().await.unwrap();
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("could not parse the JSON body")
        );
    }
    let response = post(
        addr,
        "/v1/messages",
        &json!({"model": "known-fast", "messages": []}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"]["type"], "invalid_request_error");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    let mut body = openai_body(false);
    body["temperature"] = json!(5);
    let json: Value = post(addr, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["error"]["param"], "temperature");
    assert_eq!(sim.stats().calls(), 0, "nothing reached the provider");
}

#[tokio::test]
async fn huge_bodies_are_413_declared_or_streamed() {
    let sim = sim(SimConfig::instant());
    let addr = serve(Gateway::new(stack(sim.clone())).body_limit(1024)).await;
    let mut body = openai_body(false);
    body["messages"][0]["content"] = json!("x".repeat(4096));
    let response = post(addr, "/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        header(&response, "x-switchboard-reason"),
        "payload_too_large"
    );

    let chunks = vec![Ok::<_, std::io::Error>(serde_json::to_vec(&body).unwrap())];
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/messages"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413, "a chunked body over the limit");
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"]["type"], "request_too_large");
    assert_eq!(sim.stats().calls(), 0);
}

#[tokio::test]
async fn gateway_keys_are_required_when_configured() {
    let sim = sim(SimConfig::instant());
    let keys = GatewayKeys::new(BTreeMap::from([(
        "sk-gw".to_owned(),
        TenantId::new("acme").unwrap(),
    )]));
    let addr = serve(Gateway::new(stack(sim)).keys(keys)).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/chat/completions");
    let none = client
        .post(&url)
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(header(&none, "x-switchboard-reason"), "unauthorized");
    let wrong = client
        .post(&url)
        .bearer_auth("sk-nope")
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let json: Value = wrong.json().await.unwrap();
    assert_eq!(json["error"]["code"], "invalid_api_key");
    let right = client
        .post(&url)
        .bearer_auth("sk-gw")
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let anthropic = client
        .post(format!("http://{addr}/v1/messages"))
        .header("x-api-key", "sk-gw")
        .json(&anthropic_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 200);
}

#[tokio::test]
async fn upstream_rate_limits_pass_on_with_retry_after() {
    let config = SimConfig::instant().faults(Faults {
        errors: vec![ErrorFault {
            status: 429,
            probability: 1.0,
            after: Duration::ZERO,
            retry_after_secs: Some(9),
        }],
        ..Faults::default()
    });
    let (addr, _) = gateway(config).await;
    let response = post(addr, "/v1/chat/completions", &openai_body(true)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), "9");
    assert_eq!(
        header(&response, "x-switchboard-reason"),
        "sim_rate_limited"
    );
    assert_eq!(header(&response, "x-switchboard-provider"), "sim");

    let config = SimConfig::instant().faults(Faults {
        errors: vec![ErrorFault {
            status: 529,
            probability: 1.0,
            after: Duration::ZERO,
            retry_after_secs: None,
        }],
        ..Faults::default()
    });
    let (addr, _) = gateway(config).await;
    let response = post(addr, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(
        response.status(),
        529,
        "Anthropic callers see their overloaded status"
    );
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn a_stream_that_fails_after_its_first_token_ends_with_an_error_event() {
    let config = SimConfig::instant()
        .answer(Answer::Words { count: 10 })
        .faults(Faults {
            error_event: Some(MidStream {
                probability: 1.0,
                after_tokens: 3,
            }),
            ..Faults::default()
        });
    let (addr, _) = gateway(config).await;
    let events: Vec<_> = post(addr, "/v1/chat/completions", &openai_body(true))
        .await
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap())
        .collect()
        .await;
    let last: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded"),
        "{last}"
    );
    assert!(
        !events.iter().any(|e| e.data == "[DONE]"),
        "no [DONE] after an error"
    );

    let events: Vec<_> = post(addr, "/v1/messages", &anthropic_body(true))
        .await
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(events.last().unwrap().event, "error");
    assert!(!events.iter().any(|e| e.event == "message_stop"));
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_cancels_the_upstream_call() {
    let config = SimConfig::instant()
        .tokens_per_second(50.0)
        .answer(Answer::Words { count: 1000 });
    let (addr, sim) = gateway(config).await;
    let response = post(addr, "/v1/chat/completions", &openai_body(true)).await;
    let mut events = response.bytes_stream().eventsource();
    events.next().await.unwrap().unwrap();
    events.next().await.unwrap().unwrap();
    drop(events);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.stats().cancelled() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream call was never cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.stats().in_flight(), 0);
}

#[tokio::test]
async fn the_callers_trace_continues() {
    let (addr, _) = gateway(SimConfig::instant()).await;
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&response, "x-switchboard-trace-id"),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(header(&response, "traceparent").starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
}

#[tokio::test]
async fn models_health_and_unknown_routes() {
    let (addr, _) = gateway(SimConfig::instant()).await;
    let client = reqwest::Client::new();
    let models: Value = client
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][1]["id"], "known-quality");
    let anthropic: Value = client
        .get(format!("http://{addr}/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert_eq!(
        client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let missing = client
        .get(format!("http://{addr}/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
