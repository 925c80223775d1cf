//! The OpenAI Chat Completions dialect.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};
use switchboard_core::{ChatBody, Content, ContentPart, Message, Role};

use super::{Dialect, Parsed, sse_data, unix_now};
use crate::plan::AnswerPlan;

pub(super) struct OpenAi {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

const FINGERPRINT: &str = "fp_sim";

impl OpenAi {
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        chunk
    }

    fn usage(plan: &AnswerPlan) -> Value {
        let u = plan.usage;
        json!({
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        })
    }
}

fn error_type(status: u16) -> (&'static str, Value) {
    match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => (
            "invalid_request_error",
            json!("unsupported_country_region_territory"),
        ),
        404 => ("invalid_request_error", json!("model_not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", Value::Null),
        _ => ("server_error", Value::Null),
    }
}

fn text_of(value: &Value) -> Result<Content, String> {
    match value {
        Value::Null => Ok(Content::Text(String::new())),
        Value::String(s) => Ok(Content::Text(s.clone())),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(ContentPart::Text {
                    text: part
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                }),
                Some("image_url") => Ok(ContentPart::Image {
                    url: part
                        .pointer("/image_url/url")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                }),
                other => Err(format!("Invalid content part type: {other:?}.")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Content::Parts),
        _ => Err("Invalid type for 'messages[].content': expected a string or an array.".into()),
    }
}

impl Dialect for OpenAi {
    const ROUTE: super::ApiRoute = super::ApiRoute::ChatCompletions;
    const SSE_CONTENT_TYPE: &'static str = "text/event-stream; charset=utf-8";
    const REQUEST_ID_HEADER: &'static str = "x-request-id";
    const OVERLOADED_STATUS: u16 = 503;

    fn api_key(headers: &HeaderMap) -> Option<&str> {
        headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
    }

    fn parse(json: &Value) -> Result<Parsed, (String, Option<&'static str>)> {
        let model = json.get("model").and_then(Value::as_str).ok_or((
            "you must provide a model parameter".to_owned(),
            Some("model"),
        ))?;
        let raw = json.get("messages").and_then(Value::as_array).ok_or((
            "Missing required parameter: 'messages'.".to_owned(),
            Some("messages"),
        ))?;
        let mut messages = Vec::with_capacity(raw.len());
        for m in raw {
            let role = match m.get("role").and_then(Value::as_str) {
                Some("system" | "developer") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("tool") => Role::Tool,
                other => {
                    return Err((
                        format!("Invalid value for 'messages[].role': {other:?}."),
                        Some("messages"),
                    ));
                }
            };
            let content = text_of(m.get("content").unwrap_or(&Value::Null))
                .map_err(|e| (e, Some("messages")))?;
            messages.push(Message {
                role,
                content,
                tool_calls: Vec::new(),
                tool_call_id: None,
            });
        }
        let mut body = ChatBody::new(model, messages);
        body.max_tokens = json
            .get("max_completion_tokens")
            .or_else(|| json.get("max_tokens"))
            .and_then(Value::as_u64)
            .map(|n| n.min(u64::from(u32::MAX)) as u32);
        body.temperature = json
            .get("temperature")
            .and_then(Value::as_f64)
            .map(|t| t as f32);
        body.stream = json.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = json
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Parsed {
            body,
            include_usage,
        })
    }

    fn error_body(status: u16, message: &str, param: Option<&str>, _request_id: &str) -> Value {
        let (kind, code) = error_type(status);
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
    }

    fn renderer(parsed: &Parsed, _plan: &AnswerPlan, request_id: &str, _ping: bool) -> Self {
        Self {
            id: format!("chatcmpl-{}", request_id.trim_start_matches("req_")),
            created: unix_now(),
            model: parsed.body.model.clone(),
            include_usage: parsed.include_usage,
        }
    }

    fn preamble(&self) -> Vec<Bytes> {
        let choices = json!([{
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": null},
            "logprobs": null,
            "finish_reason": null
        }]);
        vec![sse_data(&self.chunk(choices, None))]
    }

    fn token(&self, text: &str) -> Bytes {
        let choices = json!([{
            "index": 0,
            "delta": {"content": text},
            "logprobs": null,
            "finish_reason": null
        }]);
        sse_data(&self.chunk(choices, None))
    }

    fn finish(&self, plan: &AnswerPlan) -> Vec<Bytes> {
        let choices = json!([{
            "index": 0,
            "delta": {},
            "logprobs": null,
            "finish_reason": plan.finish.as_openai()
        }]);
        let mut frames = vec![sse_data(&self.chunk(choices, None))];
        if self.include_usage {
            frames.push(sse_data(&self.chunk(json!([]), Some(Self::usage(plan)))));
        }
        frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
        frames
    }

    fn malformed(&self) -> Bytes {
        Bytes::from(format!(
            "data: {{\"id\":\"{}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"delta\":{{\"content\":\"\n\n",
            self.id
        ))
    }

    fn error_event(&self) -> Bytes {
        sse_data(&json!({"error": {
            "message": "The server is overloaded, please try again later.",
            "type": "server_error",
            "param": null,
            "code": null
        }}))
    }

    fn complete(&self, plan: &AnswerPlan) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": plan.tokens.concat(),
                    "refusal": null,
                    "annotations": []
                },
                "logprobs": null,
                "finish_reason": plan.finish.as_openai()
            }],
            "usage": Self::usage(plan),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT
        })
    }
}
