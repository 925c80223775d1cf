//! The Anthropic Messages dialect, over `switchboard-wire`.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;
use switchboard_core::ChatEvent;
use switchboard_wire::{WireError, anthropic};

use super::{Dialect, Parsed, completion, frame, overloaded};
use crate::plan::AnswerPlan;

pub(super) struct Anthropic {
    id: String,
    model: String,
    ping: bool,
    encoder: anthropic::StreamEncoder,
}

impl Dialect for Anthropic {
    const ROUTE: super::ApiRoute = super::ApiRoute::Messages;
    const SSE_CONTENT_TYPE: &'static str = "text/event-stream; charset=utf-8";
    const REQUEST_ID_HEADER: &'static str = "request-id";
    const OVERLOADED_STATUS: u16 = 529;

    fn api_key(headers: &HeaderMap) -> Option<&str> {
        headers.get("x-api-key")?.to_str().ok()
    }

    fn parse(bytes: &[u8]) -> Result<Parsed, WireError> {
        Ok(Parsed {
            body: anthropic::parse_request(bytes)?,
            include_usage: true,
        })
    }

    fn error_body(status: u16, message: &str, _param: Option<&str>, request_id: &str) -> Value {
        anthropic::error_body(status, message, request_id)
    }

    fn renderer(parsed: &Parsed, plan: &AnswerPlan, request_id: &str, ping: bool) -> Self {
        let id = format!("msg_{}", request_id.trim_start_matches("req_"));
        let model = parsed.body.model.clone();
        let encoder =
            anthropic::StreamEncoder::new(id.clone(), model.clone(), plan.usage.input_tokens)
                .request_id(request_id);
        Self {
            id,
            model,
            ping,
            encoder,
        }
    }

    fn preamble(&mut self) -> Bytes {
        frame(|out| {
            self.encoder.start(out);
            self.encoder.open_text_block(out);
            if self.ping {
                self.encoder.ping(out);
            }
        })
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
        Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_del\n\n",
        )
    }

    fn error_event(&mut self) -> Bytes {
        frame(|out| self.encoder.error(&overloaded(), out))
    }

    fn complete(&self, plan: &AnswerPlan) -> Value {
        anthropic::message_json(&completion(plan, &self.model), &self.id)
    }
}
