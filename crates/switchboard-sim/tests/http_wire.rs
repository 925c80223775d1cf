//! The loopback servers speak the real wire formats: streams parse with a standard SSE
//! parser into exactly the documented event sequences, and every JSON body has the shape of
//! the recorded examples under `testdata/`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use switchboard_sim::{
    Answer, ApiRoute, ErrorFault, Faults, HttpConfig, MidStream, SimConfig, SimServer, Truncate,
};

fn testdata(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Keys that the real APIs add for their own purposes and the simulator leaves out.
const IGNORED_KEYS: [&str; 4] = ["obfuscation", "stop_details", "inference_geo", "details"];

/// The structure of a JSON value: object keys (recursively), the first array element's
/// structure, and `leaf` for scalars.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !IGNORED_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        _ => json!("leaf"),
    }
}

async fn parse_sse(bytes: Vec<u8>) -> Vec<Event> {
    stream::iter([Ok::<_, std::convert::Infallible>(bytes)])
        .eventsource()
        .map(|e| e.expect("valid SSE"))
        .collect()
        .await
}

async fn recorded_events(path: &str) -> Vec<Event> {
    parse_sse(testdata(path).into_bytes()).await
}

fn data(event: &Event) -> Value {
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{}: {e}", event.data))
}

async fn server(config: SimConfig) -> SimServer {
    SimServer::start(config).await.expect("bind loopback")
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(server: &SimServer, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", server.base_url()))
        .header("authorization", "Bearer sk-test")
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn sse_of(response: reqwest::Response) -> Vec<Event> {
    parse_sse(response.bytes().await.expect("body").to_vec()).await
}

fn openai_request(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello there friend"}],
        "stream": stream,
    });
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn anthropic_request(stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 256,
        "system": "be brief",
        "messages": [{"role": "user", "content": "Hello there friend"}],
        "stream": stream,
    })
}

#[tokio::test]
async fn openai_stream_is_role_chunk_content_finish_usage_done() {
    let server = server(SimConfig::instant()).await;
    let response = post(&server, "/v1/chat/completions", openai_request(true, true)).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_of(response).await;
    let recorded = recorded_events("openai/chat_stream.sse").await;

    assert!(
        events.iter().all(|e| e.event == "message"),
        "OpenAI sends no event names"
    );
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(data).collect();
    let n = chunks.len();
    // role chunk, three content chunks ("Hello", " there", " friend"), finish, usage
    assert_eq!(n, 6, "{chunks:#?}");
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let text: String = chunks[1..n - 2]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello there friend");
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[n - 2]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 3);
    for chunk in &chunks[..n - 1] {
        assert_eq!(
            chunk["usage"],
            Value::Null,
            "usage is null before the usage chunk"
        );
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], chunks[0]["id"], "one id per stream");
    }

    let rec: Vec<Value> = recorded[..recorded.len() - 1].iter().map(data).collect();
    let m = rec.len();
    assert_eq!(shape(&chunks[0]), shape(&rec[0]), "role chunk");
    assert_eq!(shape(&chunks[1]), shape(&rec[1]), "content chunk");
    assert_eq!(shape(&chunks[n - 2]), shape(&rec[m - 2]), "finish chunk");
    assert_eq!(shape(&chunks[n - 1]), shape(&rec[m - 1]), "usage chunk");
    assert_eq!(server.stats().requests(ApiRoute::ChatCompletions), 1);
}

#[tokio::test]
async fn openai_stream_without_include_usage_has_no_usage_chunk() {
    let server = server(SimConfig::instant()).await;
    let events =
        sse_of(post(&server, "/v1/chat/completions", openai_request(true, false)).await).await;
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(data).collect();
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn anthropic_stream_is_the_documented_event_sequence() {
    let server = server(SimConfig::instant()).await;
    let response = post(&server, "/v1/messages", anthropic_request(true)).await;
    assert_eq!(response.status(), 200);
    let events = sse_of(response).await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for event in &events {
        assert_eq!(
            data(event)["type"],
            event.event.as_str(),
            "event name matches data.type"
        );
    }
    let delta = data(&events[7]);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert!(
        data(&events[0])["message"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let recorded = recorded_events("anthropic/messages_stream.sse").await;
    let by_name: BTreeMap<&str, Value> = recorded
        .iter()
        .map(|e| (e.event.as_str(), shape(&data(e))))
        .collect();
    for event in &events {
        assert_eq!(
            shape(&data(event)),
            by_name[event.event.as_str()],
            "{} has the recorded shape",
            event.event
        );
    }
}

#[tokio::test]
async fn non_stream_answers_have_the_recorded_shape() {
    let server = server(SimConfig::instant()).await;
    let openai: Value = post(
        &server,
        "/v1/chat/completions",
        openai_request(false, false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        openai["choices"][0]["message"]["content"],
        "Hello there friend"
    );
    let recorded: Value = serde_json::from_str(&testdata("openai/chat_response.json")).unwrap();
    assert_eq!(shape(&openai), shape(&recorded));

    let anthropic: Value = post(&server, "/v1/messages", anthropic_request(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["content"][0]["text"], "Hello there friend");
    let recorded: Value =
        serde_json::from_str(&testdata("anthropic/messages_response.json")).unwrap();
    assert_eq!(shape(&anthropic), shape(&recorded));
    assert_eq!(server.stats().requests(ApiRoute::Messages), 1);
}

fn always(status: u16, retry_after_secs: Option<u64>) -> SimConfig {
    SimConfig::instant().faults(Faults {
        errors: vec![ErrorFault {
            status,
            probability: 1.0,
            after: Duration::ZERO,
            retry_after_secs,
        }],
        ..Faults::default()
    })
}

async fn assert_error(
    response: reqwest::Response,
    status: u16,
    recorded: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(response.status().as_u16(), status, "{recorded}");
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap();
    let expected: Value = serde_json::from_str(&testdata(recorded)).unwrap();
    assert_eq!(shape(&body), shape(&expected), "{recorded}: {body}");
    if let Some(kind) = expected.pointer("/error/type") {
        // OpenAI's 429 type names the limit (`tokens`, `requests`); the rest must match.
        if status != 429 || recorded.starts_with("anthropic") {
            assert_eq!(body.pointer("/error/type"), Some(kind), "{recorded}");
        }
    }
    headers
}

#[tokio::test]
async fn scripted_error_statuses_have_the_real_bodies() {
    for (status, openai_file, anthropic_file) in [
        (429, "openai/error_429.json", "anthropic/error_429.json"),
        (500, "openai/error_500.json", "anthropic/error_500.json"),
        (503, "openai/error_503.json", "anthropic/error_529.json"),
    ] {
        let server = server(always(status, Some(7))).await;
        let headers = assert_error(
            post(&server, "/v1/chat/completions", openai_request(true, true)).await,
            status,
            openai_file,
        )
        .await;
        assert_eq!(headers["retry-after"], "7");
        if status != 503 {
            assert_error(
                post(&server, "/v1/messages", anthropic_request(true)).await,
                status,
                anthropic_file,
            )
            .await;
        }
    }
    let server = server(always(529, None)).await;
    let headers = assert_error(
        post(&server, "/v1/messages", anthropic_request(true)).await,
        529,
        "anthropic/error_529.json",
    )
    .await;
    assert!(headers.contains_key("request-id"));
}

#[tokio::test]
async fn bad_requests_get_400_401_404_and_413() {
    let config = SimConfig {
        http: HttpConfig {
            api_key: Some("sk-test".into()),
            models: vec!["gpt-4o-mini".into(), "claude-haiku-4-5".into()],
            max_body_bytes: 4096,
            ..HttpConfig::default()
        },
        ..SimConfig::instant()
    };
    let server = server(config).await;
    let url = |p: &str| format!("{}{p}", server.base_url());

    let wrong_key = client()
        .post(url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-wrong")
        .json(&openai_request(false, false))
        .send()
        .await
        .unwrap();
    assert_error(wrong_key, 401, "openai/error_401.json").await;
    let no_key = client()
        .post(url("/v1/messages"))
        .json(&anthropic_request(false))
        .send()
        .await
        .unwrap();
    assert_error(no_key, 401, "anthropic/error_401.json").await;

    let mut unknown = openai_request(false, false);
    unknown["model"] = json!("gpt-9");
    assert_error(
        post(&server, "/v1/chat/completions", unknown).await,
        404,
        "openai/error_404_model.json",
    )
    .await;
    let mut unknown = anthropic_request(false);
    unknown["model"] = json!("claude-0");
    assert_error(
        post(&server, "/v1/messages", unknown).await,
        404,
        "anthropic/error_404.json",
    )
    .await;

    let malformed = client()
        .post(url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-test")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_error(malformed, 400, "openai/error_400.json").await;
    let mut no_max = anthropic_request(false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let headers = assert_error(
        post(&server, "/v1/messages", no_max).await,
        400,
        "anthropic/error_400.json",
    )
    .await;
    assert!(headers.contains_key("request-id"));

    let mut huge = anthropic_request(false);
    huge["messages"][0]["content"] = json!("x".repeat(10_000));
    assert_error(
        post(&server, "/v1/messages", huge).await,
        413,
        "anthropic/error_413.json",
    )
    .await;

    assert_eq!(server.stats().requests(ApiRoute::ChatCompletions), 3);
    assert_eq!(server.stats().requests(ApiRoute::Messages), 4);
    assert_eq!(
        server.stats().disconnects(),
        0,
        "every request was answered"
    );
}

#[tokio::test]
async fn anthropic_error_event_ends_the_stream_without_message_stop() {
    let config = SimConfig::instant()
        .answer(Answer::Words { count: 5 })
        .faults(Faults {
            error_event: Some(MidStream {
                probability: 1.0,
                after_tokens: 2,
            }),
            ..Faults::default()
        });
    let server = server(config).await;
    let events = sse_of(post(&server, "/v1/messages", anthropic_request(true)).await).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(data(last)["error"]["type"], "overloaded_error");
    assert!(!events.iter().any(|e| e.event == "message_stop"));
    let deltas = events
        .iter()
        .filter(|e| e.event == "content_block_delta")
        .count();
    assert_eq!(deltas, 2);
    let recorded = recorded_events("anthropic/messages_stream_error.sse").await;
    assert_eq!(shape(&data(last)), shape(&data(recorded.last().unwrap())));
}

#[tokio::test]
async fn truncated_streams_end_early_cleanly_or_by_reset() {
    for reset in [false, true] {
        let config = SimConfig::instant()
            .answer(Answer::Words { count: 5 })
            .faults(Faults {
                truncate: Some(Truncate {
                    probability: 1.0,
                    after_tokens: 2,
                    reset,
                }),
                ..Faults::default()
            });
        let server = server(config).await;
        let response = post(&server, "/v1/chat/completions", openai_request(true, true)).await;
        let body = response.bytes().await;
        if reset {
            assert!(body.is_err(), "a reset is a body error, not a clean end");
        } else {
            let events = parse_sse(body.unwrap().to_vec()).await;
            assert_ne!(events.last().unwrap().data, "[DONE]");
            assert_eq!(events.len(), 3, "role chunk and two tokens");
        }
    }
}

#[tokio::test]
async fn malformed_events_are_sent_verbatim() {
    let config = SimConfig::instant().faults(Faults {
        malformed: Some(MidStream {
            probability: 1.0,
            after_tokens: 1,
        }),
        ..Faults::default()
    });
    let server = server(config).await;
    let events =
        sse_of(post(&server, "/v1/chat/completions", openai_request(true, false)).await).await;
    let last = events.last().unwrap();
    assert!(
        serde_json::from_str::<Value>(&last.data).is_err(),
        "{}",
        last.data
    );
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_observed() {
    let config = SimConfig::instant()
        .tokens_per_second(20.0)
        .answer(Answer::Words { count: 200 });
    let server = server(config).await;
    for (path, body) in [
        ("/v1/chat/completions", openai_request(true, true)),
        ("/v1/messages", anthropic_request(true)),
    ] {
        let response = post(&server, path, body).await;
        let mut events = response.bytes_stream().eventsource();
        events.next().await.unwrap().unwrap();
        drop(events);
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        server.stats().wait_for_disconnects(2),
    )
    .await
    .expect("the server sees both clients go away");
    assert_eq!(server.stats().disconnects(), 2);
    assert_eq!(server.sim().stats().calls(), 2);
    assert_eq!(
        server.sim().stats().cancelled(),
        2,
        "both calls count as cancelled"
    );
    assert_eq!(server.sim().stats().in_flight(), 0);
}

#[tokio::test]
async fn requests_are_recorded_with_headers_and_body() {
    let server = server(SimConfig::instant()).await;
    post(&server, "/v1/messages", anthropic_request(false)).await;
    let last = server.stats().last_request().unwrap();
    assert_eq!(last.route, ApiRoute::Messages);
    assert_eq!(last.headers["anthropic-version"], "2023-06-01");
    assert_eq!(last.body.unwrap()["max_tokens"], 256);
    let models: Value = client()
        .get(format!("{}/v1/models", server.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(server.stats().requests(ApiRoute::Models), 1);
    assert_eq!(server.stats().total_requests(), 2);
}
