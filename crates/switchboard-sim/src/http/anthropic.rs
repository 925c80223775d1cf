//! The Anthropic Messages dialect.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};
use switchboard_core::{ChatBody, Content, ContentPart, Message, Role};

use super::{Dialect, Parsed, sse_event};
use crate::plan::AnswerPlan;

pub(super) struct Anthropic {
    id: String,
    model: String,
    input_tokens: u64,
    ping: bool,
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// Text of a `system` or `content` value: a string or an array of blocks.
fn content_of(value: &Value) -> Result<Content, String> {
    match value {
        Value::String(s) => Ok(Content::Text(s.clone())),
        Value::Array(blocks) => blocks
            .iter()
            .map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => Ok(ContentPart::Text {
                    text: block
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                }),
                Some("image") => Ok(ContentPart::Image {
                    url: block
                        .pointer("/source/url")
                        .and_then(Value::as_str)
                        .unwrap_or("data:")
                        .to_owned(),
                }),
                Some("tool_use") => Ok(ContentPart::Text {
                    text: block.get("input").map(Value::to_string).unwrap_or_default(),
                }),
                Some("tool_result") => Ok(ContentPart::Text {
                    text: content_of(block.get("content").unwrap_or(&Value::Null))
                        .map(|c| c.text())
                        .unwrap_or_default(),
                }),
                other => Err(format!("messages: unknown content block type {other:?}")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Content::Parts),
        Value::Null => Ok(Content::Text(String::new())),
        _ => Err("messages: content must be a string or an array of content blocks".into()),
    }
}

impl Anthropic {
    fn usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard"
        })
    }
}

impl Dialect for Anthropic {
    const ROUTE: super::ApiRoute = super::ApiRoute::Messages;
    const SSE_CONTENT_TYPE: &'static str = "text/event-stream; charset=utf-8";
    const REQUEST_ID_HEADER: &'static str = "request-id";
    const OVERLOADED_STATUS: u16 = 529;

    fn api_key(headers: &HeaderMap) -> Option<&str> {
        headers.get("x-api-key")?.to_str().ok()
    }

    fn parse(json: &Value) -> Result<Parsed, (String, Option<&'static str>)> {
        let field = |name: &'static str| (format!("{name}: Field required"), Some(name));
        let model = json
            .get("model")
            .and_then(Value::as_str)
            .ok_or(field("model"))?;
        let max_tokens = json
            .get("max_tokens")
            .and_then(Value::as_u64)
            .ok_or(field("max_tokens"))?;
        let raw = json
            .get("messages")
            .and_then(Value::as_array)
            .ok_or(field("messages"))?;
        let mut messages = Vec::with_capacity(raw.len());
        for m in raw {
            let role = match m.get("role").and_then(Value::as_str) {
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                other => {
                    return Err((
                        format!(
                            "messages: Input tag {other:?} found using 'role' does not match any of the expected tags: 'user', 'assistant'"
                        ),
                        Some("messages"),
                    ));
                }
            };
            let content = content_of(m.get("content").unwrap_or(&Value::Null))
                .map_err(|e| (e, Some("messages")))?;
            messages.push(Message {
                role,
                content,
                tool_calls: Vec::new(),
                tool_call_id: None,
            });
        }
        let mut body = ChatBody::new(model, messages);
        if let Some(system) = json.get("system") {
            body.system = Some(content_of(system).map_err(|e| (e, Some("system")))?.text());
        }
        body.max_tokens = Some(max_tokens.min(u64::from(u32::MAX)) as u32);
        body.temperature = json
            .get("temperature")
            .and_then(Value::as_f64)
            .map(|t| t as f32);
        body.stream = json.get("stream").and_then(Value::as_bool).unwrap_or(false);
        Ok(Parsed {
            body,
            include_usage: true,
        })
    }

    fn error_body(status: u16, message: &str, _param: Option<&str>, request_id: &str) -> Value {
        let mut body =
            json!({"type": "error", "error": {"type": error_type(status), "message": message}});
        if !request_id.is_empty() {
            body["request_id"] = json!(request_id);
        }
        body
    }

    fn renderer(parsed: &Parsed, plan: &AnswerPlan, request_id: &str, ping: bool) -> Self {
        Self {
            id: format!("msg_{}", request_id.trim_start_matches("req_")),
            model: parsed.body.model.clone(),
            input_tokens: plan.usage.input_tokens,
            ping,
        }
    }

    fn preamble(&self) -> Vec<Bytes> {
        let mut frames = vec![
            sse_event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "model": self.model,
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": self.usage(1)
                }}),
            ),
            sse_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
        ];
        if self.ping {
            frames.push(Bytes::from_static(
                b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
            ));
        }
        frames
    }

    fn token(&self, text: &str) -> Bytes {
        sse_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        )
    }

    fn finish(&self, plan: &AnswerPlan) -> Vec<Bytes> {
        let mut usage = self.usage(plan.usage.output_tokens);
        if let Some(usage) = usage.as_object_mut() {
            usage.remove("cache_creation");
            usage.remove("service_tier");
        }
        vec![
            sse_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            sse_event(
                "message_delta",
                &json!({"type": "message_delta",
                    "delta": {"stop_reason": plan.finish.as_anthropic(), "stop_sequence": null},
                    "usage": usage}),
            ),
            sse_event("message_stop", &json!({"type": "message_stop"})),
        ]
    }

    fn malformed(&self) -> Bytes {
        Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_del\n\n",
        )
    }

    fn error_event(&self) -> Bytes {
        sse_event(
            "error",
            &json!({"type": "error", "error": {"details": null, "type": "overloaded_error", "message": "Overloaded"}, "request_id": self.id.replace("msg_", "req_")}),
        )
    }

    fn complete(&self, plan: &AnswerPlan) -> Value {
        json!({
            "model": self.model,
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": plan.tokens.concat()}],
            "stop_reason": plan.finish.as_anthropic(),
            "stop_sequence": null,
            "usage": self.usage(plan.usage.output_tokens)
        })
    }
}
