//! The OpenAI Chat Completions dialect, over `switchboard-wire`.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;
use switchboard_core::ChatEvent;
use switchboard_wire::{WireError, openai};

use super::{Dialect, Parsed, completion, frame, overloaded, unix_now};
use crate::plan::AnswerPlan;

pub(super) struct OpenAi {
    id: String,
    created: u64,
    model: String,
    encoder: openai::StreamEncoder,
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

    fn parse(bytes: &[u8]) -> Result<Parsed, WireError> {
        let parsed = openai::parse_request(bytes)?;
        Ok(Parsed {
            body: parsed.body,
            include_usage: parsed.include_usage,
        })
    }

    fn error_body(status: u16, message: &str, param: Option<&str>, _request_id: &str) -> Value {
        openai::error_body(status, message, param, None)
    }

    fn renderer(parsed: &Parsed, _plan: &AnswerPlan, request_id: &str, _ping: bool) -> Self {
        let id = format!("chatcmpl-{}", request_id.trim_start_matches("req_"));
        let created = unix_now();
        let model = parsed.body.model.clone();
        let encoder =
            openai::StreamEncoder::new(id.clone(), model.clone(), created, parsed.include_usage);
        Self {
            id,
            created,
            model,
            encoder,
        }
    }

    fn preamble(&mut self) -> Bytes {
        frame(|out| self.encoder.start(out))
    }

    fn token(&mut self, text: &str) -> Bytes {
        frame(|out| self.encoder.event(&ChatEvent::text(text), out))
    }

    fn finish(&mut self, plan: &AnswerPlan) -> Bytes {
        frame(|out| {
            self.encoder
                .event(&ChatEvent::Finish(plan.finish.clone()), out);
            self.encoder.event(&ChatEvent::Usage(plan.usage), out);
            self.encoder.end(out);
        })
    }

    fn malformed(&self) -> Bytes {
        Bytes::from(format!(
            "data: {{\"id\":\"{}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"delta\":{{\"content\":\"\n\n",
            self.id
        ))
    }

    fn error_event(&mut self) -> Bytes {
        frame(|out| self.encoder.error(&overloaded(), out))
    }

    fn complete(&self, plan: &AnswerPlan) -> Value {
        openai::completion_json(&completion(plan, &self.model), &self.id, self.created)
    }
}
