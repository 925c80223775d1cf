//! The OpenAI Chat Completions and Anthropic Messages wire formats, **server side**: what a
//! gateway or a simulated provider needs to speak each API to its callers.
//!
//! - parse a caller's request body into a neutral [`ChatBody`](switchboard_core::ChatBody)
//!   ([`openai::parse_request`], [`anthropic::parse_request`]), with the error status,
//!   message and parameter the real API would give for the same mistake ([`WireError`]);
//! - encode a stream of [`ChatEvent`](switchboard_core::ChatEvent)s as that API's SSE
//!   ([`openai::StreamEncoder`], [`anthropic::StreamEncoder`]), and a whole
//!   [`Completion`](switchboard_core::Completion) as its JSON answer;
//! - write its error bodies.
//!
//! The client side (sending requests to a provider, decoding its stream) lives in
//! `switchboard-providers`.
//!
//! ```
//! use switchboard_core::{ChatEvent, FinishReason, Usage};
//! use switchboard_wire::openai;
//!
//! let parsed = openai::parse_request(br#"{"model":"gpt-4o-mini","stream":true,
//!     "stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}"#).unwrap();
//! assert!(parsed.body.stream);
//!
//! let mut encoder = openai::StreamEncoder::new("chatcmpl-1", "gpt-4o-mini", 1_700_000_000, parsed.include_usage);
//! let mut sse = Vec::new();
//! encoder.start(&mut sse);
//! encoder.event(&ChatEvent::text("Hello"), &mut sse);
//! encoder.event(&ChatEvent::Finish(FinishReason::Stop), &mut sse);
//! encoder.event(&ChatEvent::Usage(Usage::new(9, 1)), &mut sse);
//! encoder.end(&mut sse);
//! let sse = String::from_utf8(sse).unwrap();
//! assert!(sse.ends_with("data: [DONE]\n\n"));
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod anthropic;
mod json;
pub mod openai;

use std::fmt;

/// A request the API would refuse, with what the API would answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The HTTP status (400 for every parse error).
    pub status: u16,
    /// What is wrong, in the API's own words where it has them.
    pub message: String,
    /// The offending parameter (OpenAI's `param`).
    pub param: Option<String>,
}

impl WireError {
    fn invalid(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            param: param.into(),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.param {
            Some(param) => write!(f, "{} (param: {param})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for WireError {}

/// Appends `data: {json}\n\n`.
fn sse_data<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, json: &T) {
    out.extend_from_slice(b"data: ");
    // Writing these types (string keys, no failing `Serialize`) into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, json);
    out.extend_from_slice(b"\n\n");
}

/// Appends `event: name\ndata: {json}\n\n`.
fn sse_event<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, json: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    sse_data(out, json);
}
