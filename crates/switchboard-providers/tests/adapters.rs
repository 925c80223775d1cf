//! Both adapters against the simulated HTTP servers over loopback.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use switchboard_core::{
    ChatBody, ChatEvent, ChatRequest, ChatResponse, Error, FinishReason, Message, ProviderId, Role,
    TimeoutPhase, Tool, ToolChoice,
};
use switchboard_providers::{
    Anthropic, AnthropicConfig, ApiKey, ClientConfig, HttpClient, OpenAi, OpenAiConfig,
};
use switchboard_sim::{
    Answer, ApiRoute, ErrorFault, Faults, HttpConfig, MidStream, SimConfig, SimServer, Truncate,
};
use tower::{Service, ServiceExt};

const KEY: &str = "sk-test-secret-123";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    OpenAi,
    Anthropic,
}

const BOTH: [Api; 2] = [Api::OpenAi, Api::Anthropic];

#[derive(Clone)]
enum Adapter {
    OpenAi(OpenAi),
    Anthropic(Anthropic),
}

impl Adapter {
    fn new(api: Api, server: &SimServer) -> Self {
        Self::with_client(api, &server.base_url(), HttpClient::new().unwrap())
    }

    fn with_client(api: Api, base: &str, client: HttpClient) -> Self {
        match api {
            Api::OpenAi => Adapter::OpenAi(
                OpenAi::new(
                    ProviderId::OPENAI,
                    OpenAiConfig::with_base_url(format!("{base}/v1")).api_key(ApiKey::new(KEY)),
                    client,
                )
                .unwrap(),
            ),
            Api::Anthropic => Adapter::Anthropic(
                Anthropic::new(
                    ProviderId::ANTHROPIC,
                    AnthropicConfig::with_base_url(base).api_key(ApiKey::new(KEY)),
                    client,
                )
                .unwrap(),
            ),
        }
    }

    async fn call(&mut self, request: ChatRequest) -> Result<ChatResponse, Error> {
        match self {
            Adapter::OpenAi(s) => s.ready().await?.call(request).await,
            Adapter::Anthropic(s) => s.ready().await?.call(request).await,
        }
    }
}

fn route(api: Api) -> ApiRoute {
    match api {
        Api::OpenAi => ApiRoute::ChatCompletions,
        Api::Anthropic => ApiRoute::Messages,
    }
}

fn provider(api: Api) -> &'static str {
    match api {
        Api::OpenAi => "openai",
        Api::Anthropic => "anthropic",
    }
}

fn request(text: &str) -> ChatRequest {
    ChatRequest::new(ChatBody::new("sim-model", vec![Message::user(text)]))
}

async fn server(config: SimConfig) -> SimServer {
    SimServer::start(config).await.unwrap()
}

fn failing(status: u16, retry_after_secs: Option<u64>) -> SimConfig {
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

#[tokio::test]
async fn openai_requests_always_stream_with_usage() {
    let server = server(SimConfig::instant()).await;
    let mut adapter = Adapter::new(Api::OpenAi, &server);
    let mut body = ChatBody::new("gpt-4o-mini", vec![Message::user("hi")])
        .system("be brief")
        .max_tokens(50)
        .temperature(0.3);
    body.stop = vec!["END".into()];
    body.tools = vec![Tool {
        name: "get_weather".into(),
        description: Some("Weather by city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }];
    body.tool_choice = Some(ToolChoice::Required);
    body.response_format = Some(json!({"type": "json_object"}));
    adapter
        .call(ChatRequest::new(body))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();

    let sent = server.stats().last_request().unwrap();
    assert_eq!(sent.headers["authorization"], format!("Bearer {KEY}"));
    let body = sent.body.unwrap();
    assert_eq!(body["stream"], true, "upstream always streams");
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "hi"})
    );
    assert_eq!(body["max_completion_tokens"], 50);
    assert_eq!(body["stop"], json!(["END"]));
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(body["tool_choice"], "required");
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
}

#[tokio::test]
async fn anthropic_requests_lift_system_default_max_tokens_and_send_the_version() {
    let server = server(SimConfig::instant()).await;
    let mut adapter = Adapter::new(Api::Anthropic, &server);
    let mut body = ChatBody::new(
        "claude-haiku-4-5",
        vec![Message::system("and polite"), Message::user("hi")],
    )
    .system("be brief");
    body.stop = vec!["END".into()];
    body.tools = vec![Tool {
        name: "get_weather".into(),
        description: None,
        parameters: json!({"type": "object"}),
    }];
    body.tool_choice = Some(ToolChoice::Tool {
        name: "get_weather".into(),
    });
    adapter
        .call(ChatRequest::new(body))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();

    let sent = server.stats().last_request().unwrap();
    assert_eq!(sent.headers["x-api-key"], KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    let body = sent.body.unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["system"], "be brief\n\nand polite",
        "system messages are lifted"
    );
    assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
    assert_eq!(body["max_tokens"], 4096, "max_tokens is defaulted");
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "get_weather"})
    );
}

#[tokio::test]
async fn anthropic_tool_results_follow_the_assistants_tool_use() {
    let server = server(SimConfig::instant()).await;
    let mut adapter = Adapter::new(Api::Anthropic, &server);
    let mut assistant = Message::assistant("");
    assistant.tool_calls = vec![switchboard_core::ToolCall {
        id: "toolu_1".into(),
        name: "get_weather".into(),
        arguments: "{\"city\":\"Oslo\"}".into(),
    }];
    let mut result = Message::new(Role::Tool, "-3°C");
    result.tool_call_id = Some("toolu_1".into());
    let body = ChatBody::new("claude", vec![Message::user("weather?"), assistant, result]);
    adapter
        .call(ChatRequest::new(body))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let body = server.stats().last_request().unwrap().body.unwrap();
    assert_eq!(
        body["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}})
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3°C"}]})
    );
}

#[tokio::test]
async fn what_anthropic_cannot_express_is_an_invalid_request_and_sends_nothing() {
    let server = server(SimConfig::instant()).await;
    let mut adapter = Adapter::new(Api::Anthropic, &server);
    let hot = ChatBody::new("claude", vec![Message::user("x")]).temperature(1.5);
    let mut json_mode = ChatBody::new("claude", vec![Message::user("x")]);
    json_mode.response_format = Some(json!({"type": "json_object"}));
    let orphan = ChatBody::new("claude", vec![Message::new(Role::Tool, "42")]);
    for (body, needle) in [
        (hot, "temperature 1.5"),
        (json_mode, "response_format"),
        (orphan, "tool_call_id"),
    ] {
        let err = adapter.call(ChatRequest::new(body)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        assert!(!err.counts_against_provider());
    }
    assert_eq!(server.stats().total_requests(), 0, "nothing was sent");
}

#[tokio::test]
async fn extra_fields_pass_through_but_cannot_override_switchboards() {
    let server = server(SimConfig::instant()).await;
    let mut adapter = Adapter::new(Api::OpenAi, &server);
    let mut body = ChatBody::new("gpt-4o-mini", vec![Message::user("x")]);
    body.extra.insert("seed".into(), json!(7));
    adapter
        .call(ChatRequest::new(body.clone()))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        server.stats().last_request().unwrap().body.unwrap()["seed"],
        7
    );
    body.extra.insert("stream".into(), json!(false));
    let err = adapter.call(ChatRequest::new(body)).await.unwrap_err();
    assert!(err.to_string().contains("`stream`"), "{err}");
}

#[tokio::test]
async fn the_future_resolves_at_the_first_content_event_not_at_the_headers() {
    for api in BOTH {
        let server = server(SimConfig::instant().answer(Answer::Fixed {
            text: "Hello there".into(),
        }))
        .await;
        let mut adapter = Adapter::new(api, &server);
        server.hold_first_tokens();
        let call = adapter.call(request("x"));
        tokio::pin!(call);
        // Headers and the preamble (role chunk / message_start) are sent; no content yet.
        let early = tokio::time::timeout(Duration::from_millis(150), &mut call).await;
        assert!(
            early.is_err(),
            "{api:?}: resolved before any content arrived"
        );
        server.release_first_tokens();
        let mut response = call.await.unwrap();
        assert_eq!(response.provider(), provider(api));
        let first = response.next().await.unwrap().unwrap();
        assert_eq!(
            first,
            ChatEvent::text("Hello"),
            "{api:?}: the first event is the content"
        );
    }
}

#[tokio::test]
async fn streams_collect_into_text_usage_and_finish() {
    for api in BOTH {
        let server = server(SimConfig::instant().answer(Answer::Words { count: 40 })).await;
        let mut adapter = Adapter::new(api, &server);
        let done = adapter
            .call(request("count please"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(done.text.split(' ').count(), 40, "{api:?}");
        let usage = done.usage.expect("usage reported");
        assert_eq!(usage.output_tokens, 40, "{api:?}");
        assert!(usage.input_tokens > 0, "{api:?}");
        assert_eq!(done.finish, Some(FinishReason::Stop), "{api:?}");
        assert_eq!(done.model, "sim-model");
        assert_eq!(server.stats().requests(route(api)), 1);
    }
}

#[tokio::test]
async fn max_tokens_ends_with_length() {
    for api in BOTH {
        let server = server(SimConfig::instant().answer(Answer::Words { count: 40 })).await;
        let mut adapter = Adapter::new(api, &server);
        let req = ChatRequest::new(ChatBody::new("m", vec![Message::user("x")]).max_tokens(5));
        let done = adapter.call(req).await.unwrap().collect().await.unwrap();
        assert_eq!(done.finish, Some(FinishReason::Length), "{api:?}");
        assert_eq!(done.usage.unwrap().output_tokens, 5);
    }
}

#[tokio::test]
async fn dropping_the_response_aborts_the_http_request() {
    let server = server(
        SimConfig::instant()
            .tokens_per_second(50.0)
            .answer(Answer::Words { count: 500 }),
    )
    .await;
    for (i, api) in BOTH.into_iter().enumerate() {
        let mut adapter = Adapter::new(api, &server);
        let mut response = adapter.call(request("x")).await.unwrap();
        response.next().await.unwrap().unwrap();
        drop(response);
        tokio::time::timeout(
            Duration::from_secs(10),
            server.stats().wait_for_disconnects(i as u64 + 1),
        )
        .await
        .unwrap_or_else(|_| panic!("{api:?}: the server never saw the request go away"));
    }
    assert_eq!(server.sim().stats().cancelled(), 2);
}

#[tokio::test]
async fn every_error_status_maps_to_its_variant_with_the_message_kept() {
    let cases: [(u16, Option<u64>, &str); 7] = [
        (400, None, "invalid_request"),
        (401, None, "upstream_auth_error"),
        (403, None, "upstream_auth_error"),
        (429, Some(7), "rate_limited"),
        (500, None, "upstream_server_error"),
        (502, None, "upstream_server_error"),
        (503, None, "upstream_server_error"),
    ];
    for api in BOTH {
        for (status, retry, code) in cases {
            let server = server(failing(status, retry)).await;
            let err = Adapter::new(api, &server)
                .call(request("x"))
                .await
                .unwrap_err();
            assert_eq!(
                err.reason(),
                format!("{}_{code}", provider(api)),
                "{api:?} {status}: {err}"
            );
            assert_eq!(
                err.retry_after(),
                retry.map(Duration::from_secs),
                "{api:?} {status}"
            );
            let kept = match status {
                400 => "Invalid request.",
                429 => "Rate limit reached",
                500 => "The server had an error",
                _ => "",
            };
            assert!(
                err.to_string().contains(kept),
                "{api:?} {status}: message kept in {err}"
            );
            assert_eq!(
                err.counts_against_provider(),
                status != 400,
                "{api:?} {status}"
            );
        }
    }
    let server = server(failing(529, None)).await;
    let err = Adapter::new(Api::Anthropic, &server)
        .call(request("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Overloaded { .. }), "{err}");
    assert!(err.to_string().contains("Overloaded"));
}

#[tokio::test]
async fn unknown_models_and_bad_keys_come_back_as_upstream_errors() {
    let config = SimConfig {
        http: HttpConfig {
            api_key: Some(KEY.into()),
            models: vec!["known".into()],
            ..HttpConfig::default()
        },
        ..SimConfig::instant()
    };
    let server = server(config).await;
    for api in BOTH {
        let err = Adapter::new(api, &server)
            .call(request("x"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Upstream { status: 404, .. }),
            "{api:?}: {err}"
        );
        assert!(err.to_string().contains("sim-model"), "{err}");
        assert!(!err.counts_against_provider());

        let wrong = match api {
            Api::OpenAi => Adapter::OpenAi(
                OpenAi::new(
                    ProviderId::OPENAI,
                    OpenAiConfig::with_base_url(format!("{}/v1", server.base_url()))
                        .api_key(ApiKey::new("sk-wrong")),
                    HttpClient::new().unwrap(),
                )
                .unwrap(),
            ),
            Api::Anthropic => Adapter::Anthropic(
                Anthropic::new(
                    ProviderId::ANTHROPIC,
                    AnthropicConfig::with_base_url(server.base_url())
                        .api_key(ApiKey::new("sk-wrong")),
                    HttpClient::new().unwrap(),
                )
                .unwrap(),
            ),
        };
        let req = ChatRequest::new(ChatBody::new("known", vec![Message::user("x")]));
        let err = wrong.clone().call(req).await.unwrap_err();
        assert!(
            matches!(err, Error::Upstream { status: 401, .. }),
            "{api:?}: {err}"
        );
    }
}

fn mid_stream(faults: Faults) -> SimConfig {
    SimConfig::instant()
        .answer(Answer::Words { count: 10 })
        .faults(faults)
}

/// Collects text until the stream ends; returns the text and the terminal error.
async fn drain(mut response: ChatResponse) -> (String, Option<Error>) {
    let mut text = String::new();
    while let Some(event) = response.next().await {
        match event {
            Ok(ChatEvent::Text { text: t }) => text.push_str(&t),
            Ok(_) => {}
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

#[tokio::test]
async fn an_error_event_mid_stream_is_an_explicit_error() {
    for api in BOTH {
        let server = server(mid_stream(Faults {
            error_event: Some(MidStream {
                probability: 1.0,
                after_tokens: 3,
            }),
            ..Faults::default()
        }))
        .await;
        let response = Adapter::new(api, &server).call(request("x")).await.unwrap();
        let (text, error) = drain(response).await;
        assert_eq!(text, "token0 token1 token2", "{api:?}");
        let error = error.expect("an explicit error");
        let expected = match api {
            Api::OpenAi => "openai_upstream_server_error",
            Api::Anthropic => "anthropic_overloaded",
        };
        assert_eq!(error.reason(), expected, "{api:?}: {error}");
    }
}

#[tokio::test]
async fn an_eof_before_the_terminal_event_is_an_explicit_error() {
    for api in BOTH {
        for reset in [false, true] {
            let server = server(mid_stream(Faults {
                truncate: Some(Truncate {
                    probability: 1.0,
                    after_tokens: 4,
                    reset,
                }),
                ..Faults::default()
            }))
            .await;
            let response = Adapter::new(api, &server).call(request("x")).await.unwrap();
            let (text, error) = drain(response).await;
            assert_eq!(text.split(' ').count(), 4, "{api:?} reset={reset}");
            let error = error.expect("never a silent short answer");
            assert!(
                matches!(error, Error::Stream { .. }),
                "{api:?} reset={reset}: {error}"
            );
            if !reset {
                let terminal = match api {
                    Api::OpenAi => "[DONE]",
                    Api::Anthropic => "message_stop",
                };
                assert!(error.to_string().contains(terminal), "{error}");
            }
        }
    }
}

#[tokio::test]
async fn a_stream_that_dies_before_any_content_fails_the_call() {
    for api in BOTH {
        let server = server(mid_stream(Faults {
            truncate: Some(Truncate {
                probability: 1.0,
                after_tokens: 0,
                reset: false,
            }),
            ..Faults::default()
        }))
        .await;
        let err = Adapter::new(api, &server)
            .call(request("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Stream { .. }), "{api:?}: {err}");
    }
}

#[tokio::test]
async fn a_malformed_event_is_an_explicit_error() {
    for api in BOTH {
        let server = server(mid_stream(Faults {
            malformed: Some(MidStream {
                probability: 1.0,
                after_tokens: 2,
            }),
            ..Faults::default()
        }))
        .await;
        let response = Adapter::new(api, &server).call(request("x")).await.unwrap();
        let (text, error) = drain(response).await;
        assert_eq!(text, "token0 token1");
        let error = error.expect("explicit error");
        assert!(
            error.to_string().contains("malformed event"),
            "{api:?}: {error}"
        );
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_transport_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    for api in BOTH {
        let mut adapter = Adapter::with_client(
            api,
            &format!("http://127.0.0.1:{port}"),
            HttpClient::new().unwrap(),
        );
        let err = adapter.call(request("x")).await.unwrap_err();
        assert!(matches!(err, Error::Transport { .. }), "{api:?}: {err}");
        assert!(err.is_retryable());
        assert!(err.counts_against_provider());
    }
}

#[tokio::test]
async fn a_connect_that_hangs_fails_with_a_connect_timeout() {
    // A listener that never accepts, with its backlog filled: further SYNs go unanswered.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let client = HttpClient::with_config(&ClientConfig {
        connect_timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    })
    .unwrap();
    let mut adapter = Adapter::with_client(Api::OpenAi, &format!("http://{addr}"), client);
    let err = adapter.call(request("x")).await.unwrap_err();
    match err {
        Error::Timeout {
            phase: TimeoutPhase::Connect,
            after,
            ..
        } => assert_eq!(after, Duration::from_millis(200)),
        other => panic!("expected a connect timeout, got {other}"),
    }
    drop(listener);
}

#[test]
fn keys_never_print() {
    let config = OpenAiConfig::default().api_key(ApiKey::new(KEY));
    assert!(!format!("{config:?}").contains(KEY));
    let openai = OpenAi::new(ProviderId::OPENAI, config, HttpClient::new().unwrap()).unwrap();
    assert!(!format!("{openai:?}").contains(KEY));
    let anthropic = Anthropic::new(
        ProviderId::ANTHROPIC,
        AnthropicConfig::default().api_key(ApiKey::new(KEY)),
        HttpClient::new().unwrap(),
    )
    .unwrap();
    assert!(!format!("{anthropic:?}").contains(KEY));
    let parsed: AnthropicConfig = serde_json::from_value(json!({"api_key": KEY})).unwrap();
    assert!(!format!("{parsed:?}").contains(KEY));
}

#[test]
fn bad_base_urls_and_missing_keys_fail_at_build_time() {
    let err = OpenAi::new(
        ProviderId::OPENAI,
        OpenAiConfig::with_base_url("ftp://example").api_key(ApiKey::new("k")),
        HttpClient::new().unwrap(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("must be an http:// or https:// URL"),
        "{err}"
    );
    // SAFETY of the test: the variable name is unique to this test.
    let var = "SWITCHBOARD_TEST_UNSET_KEY_VAR";
    let err = ApiKey::from_env(var).unwrap_err();
    assert!(err.to_string().contains(var), "{err}");
}
