//! Recorded streams of the real APIs (`switchboard-sim/testdata`): the decoder yields the
//! same events for any split of the bytes, and each adapter maps them onto the right
//! `ChatEvent`s when they are replayed over a loopback socket.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;
use switchboard_core::{ChatBody, ChatRequest};
use switchboard_core::{Completion, Error, FinishReason, Message, ProviderId};
use switchboard_providers::{
    Anthropic, AnthropicConfig, ApiKey, HttpClient, OpenAi, OpenAiConfig, SseDecoder, SseEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceExt};

const STREAMS: [&str; 5] = [
    "openai/chat_stream.sse",
    "openai/chat_stream_tool_call.sse",
    "anthropic/messages_stream.sse",
    "anthropic/messages_stream_tool_use.sse",
    "anthropic/messages_stream_error.sse",
];

fn recorded(path: &str) -> Vec<u8> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../switchboard-sim/testdata")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        decoder.feed(&bytes[start..cut], &mut out).unwrap();
        start = cut;
    }
    out
}

#[test]
fn recorded_streams_decode_into_their_events() {
    for path in STREAMS {
        let events = decode_in_pieces(&recorded(path), &[]);
        assert!(events.len() >= 5, "{path}: {} events", events.len());
        for event in &events {
            if event.data != "[DONE]" {
                serde_json::from_str::<Value>(&event.data)
                    .unwrap_or_else(|e| panic!("{path}: {e}: {}", event.data));
            }
            if path.starts_with("anthropic") {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                assert_eq!(data["type"], event.event.as_str(), "{path}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_of_a_recorded_stream_gives_identical_events(
        which in 0..STREAMS.len(),
        cuts in proptest::collection::vec(any::<usize>(), 0..64),
    ) {
        let bytes = recorded(STREAMS[which]);
        let whole = decode_in_pieces(&bytes, &[]);
        prop_assert_eq!(decode_in_pieces(&bytes, &cuts), whole);
    }

    #[test]
    fn crlf_and_cr_line_endings_give_identical_events(
        which in 0..STREAMS.len(),
        cuts in proptest::collection::vec(any::<usize>(), 0..32),
        cr_only in any::<bool>(),
    ) {
        let bytes = recorded(STREAMS[which]);
        let whole = decode_in_pieces(&bytes, &[]);
        let ending: &[u8] = if cr_only { b"\r" } else { b"\r\n" };
        let mut converted = Vec::with_capacity(bytes.len() * 2);
        for b in &bytes {
            if *b == b'\n' { converted.extend_from_slice(ending) } else { converted.push(*b) }
        }
        prop_assert_eq!(decode_in_pieces(&converted, &cuts), whole);
    }
}

/// Serves `body` once as a 200 `text/event-stream`, written in small pieces.
async fn replay(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // Read the request head and its body (by content-length) before answering.
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_lowercase();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if request.len() >= head_end + 4 + length {
                    break;
                }
            }
            if n == 0 {
                return;
            }
        }
        socket
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        for (i, piece) in body.chunks(97).enumerate() {
            socket.write_all(piece).await.unwrap();
            if i % 3 == 0 {
                socket.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        }
        socket.shutdown().await.ok();
    });
    format!("http://{addr}")
}

fn request() -> ChatRequest {
    ChatRequest::new(ChatBody::new("requested", vec![Message::user("x")]))
}

async fn openai(path: &str) -> Result<Completion, Error> {
    let base = replay(recorded(path)).await;
    let mut adapter = OpenAi::new(
        ProviderId::OPENAI,
        OpenAiConfig::with_base_url(format!("{base}/v1")).api_key(ApiKey::new("k")),
        HttpClient::new().unwrap(),
    )
    .unwrap();
    adapter
        .ready()
        .await?
        .call(request())
        .await?
        .collect()
        .await
}

async fn anthropic(path: &str) -> Result<Completion, Error> {
    let base = replay(recorded(path)).await;
    let mut adapter = Anthropic::new(
        ProviderId::ANTHROPIC,
        AnthropicConfig::with_base_url(base).api_key(ApiKey::new("k")),
        HttpClient::new().unwrap(),
    )
    .unwrap();
    adapter
        .ready()
        .await?
        .call(request())
        .await?
        .collect()
        .await
}

/// The text deltas of a recorded stream, extracted independently of the adapter.
fn expected_text(path: &str, pointer: &str) -> String {
    decode_in_pieces(&recorded(path), &[])
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|v| {
            v.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn openai_recorded_text_stream_maps_text_usage_finish_and_model() {
    let done = openai("openai/chat_stream.sse").await.unwrap();
    assert_eq!(
        done.text,
        expected_text("openai/chat_stream.sse", "/choices/0/delta/content")
    );
    assert!(done.text.starts_with("Hello!"), "{}", done.text);
    let usage = done.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (19, 9));
    assert_eq!(done.finish, Some(FinishReason::Stop));
    assert_eq!(
        done.model, "gpt-4o-mini-2024-07-18",
        "the model the stream named"
    );
}

#[tokio::test]
async fn openai_recorded_tool_call_reassembles_into_valid_json_arguments() {
    let done = openai("openai/chat_stream_tool_call.sse").await.unwrap();
    assert_eq!(done.tool_calls.len(), 1);
    let call = &done.tool_calls[0];
    assert_eq!(call.id, "call_7tYk2LwQ9mVx3RbN8sHdJ4pE");
    assert_eq!(call.name, "get_weather");
    let args: Value = serde_json::from_str(&call.arguments).unwrap();
    assert!(
        args["location"]
            .as_str()
            .unwrap()
            .starts_with("San Francisco")
    );
    assert_eq!(done.finish, Some(FinishReason::ToolCalls));
}

#[tokio::test]
async fn anthropic_recorded_text_stream_maps_text_usage_finish_and_model() {
    let done = anthropic("anthropic/messages_stream.sse").await.unwrap();
    assert_eq!(
        done.text,
        expected_text("anthropic/messages_stream.sse", "/delta/text")
    );
    let usage = done.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (16, 7));
    assert_eq!(done.finish, Some(FinishReason::Stop));
    assert_eq!(done.model, "claude-sonnet-4-6");
}

#[tokio::test]
async fn anthropic_recorded_tool_use_reassembles_into_valid_json_arguments() {
    let done = anthropic("anthropic/messages_stream_tool_use.sse")
        .await
        .unwrap();
    assert_eq!(done.tool_calls.len(), 1, "{done:?}");
    let call = &done.tool_calls[0];
    assert!(call.id.starts_with("toolu_"), "{}", call.id);
    assert!(!call.name.is_empty());
    serde_json::from_str::<Value>(&call.arguments).unwrap();
    assert_eq!(done.finish, Some(FinishReason::ToolCalls));
}

#[tokio::test]
async fn anthropic_recorded_error_event_is_overloaded() {
    let err = anthropic("anthropic/messages_stream_error.sse")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Overloaded { .. }), "{err}");
    assert_eq!(err.reason(), "anthropic_overloaded");
}
