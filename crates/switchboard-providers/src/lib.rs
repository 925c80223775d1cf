//! OpenAI Chat Completions and Anthropic Messages adapters: provider `Service`s over
//! hyper-util's pooled client and rustls.
//!
//! Both adapters always ask the provider for a stream with usage, and resolve at the first
//! content event; the rest of the answer is the response's event stream. Dropping the
//! response aborts the HTTP request. Failures map onto the core `Error`: a 400 is
//! `InvalidRequest` (never counted against the provider), 429 is `RateLimited` with its
//! `retry-after`, Anthropic's 529 is `Overloaded`, 5xx are `Upstream`; an `error` event or
//! an end of the stream before its terminal event (`[DONE]`, `message_stop`) is an explicit
//! error, never a silent short answer.
//!
//! ```no_run
//! use switchboard_core::{ChatBody, ChatRequest, Message, ProviderId};
//! use switchboard_providers::{Anthropic, AnthropicConfig, ApiKey, HttpClient, OpenAi, OpenAiConfig};
//! use tower::{Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = HttpClient::new()?; // shared by all three: one connection pool per thread
//! let mut openai = OpenAi::new(ProviderId::OPENAI, OpenAiConfig::default(), client.clone())?;
//! let mut vllm = OpenAi::new(
//!     ProviderId::new("vllm_local")?,
//!     OpenAiConfig::with_base_url("http://127.0.0.1:8000/v1").api_key(ApiKey::new("unused")),
//!     client.clone(),
//! )?;
//! let mut claude = Anthropic::new(ProviderId::ANTHROPIC, AnthropicConfig::default(), client)?;
//!
//! let request = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("Hi!")]));
//! let mut response = openai.ready().await?.call(request).await?;
//! # let _ = (&mut vllm, &mut claude, &mut response);
//! # Ok(()) }
//! ```
//!
//! # Timeouts
//!
//! The connect timeout lives in the [`HttpClient`] ([`ClientConfig::connect_timeout`],
//! default 10 s) and fails with `Error::Timeout { phase: Connect }`. First-token, idle and
//! total deadlines are not the adapter's business: stack `switchboard-timeout` over it.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod anthropic;
mod call;
mod client;
mod key;
mod openai;
mod sse;

use std::fmt;

use http::{HeaderValue, Uri};

pub use anthropic::{Anthropic, AnthropicConfig};
pub use client::{ClientConfig, HttpClient, TlsRoots};
pub use key::{ApiKey, MissingKey};
pub use openai::{MaxTokensField, OpenAi, OpenAiConfig};
pub use sse::{LineTooLong, SseDecoder, SseEvent};

/// Building an adapter failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    message: String,
}

impl BuildError {
    fn header(name: &str) -> Self {
        Self {
            message: format!("`{name}` is not a valid HTTP header name or value"),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}

impl From<MissingKey> for BuildError {
    fn from(e: MissingKey) -> Self {
        Self {
            message: e.to_string(),
        }
    }
}

/// `base_url` + `path`, validated once at build time.
fn endpoint(base_url: &str, path: &str) -> Result<Uri, BuildError> {
    let url = format!("{}{path}", base_url.trim_end_matches('/'));
    let uri: Uri = url.parse().map_err(|e| BuildError {
        message: format!("base_url {base_url:?} is not a valid URL: {e}"),
    })?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(BuildError {
            message: format!(
                "base_url {base_url:?} must be an http:// or https:// URL with a host"
            ),
        }),
    }
}

/// Why an `extra` field was refused: it would replace a field switchboard sets.
fn extra_collides(key: &str) -> String {
    format!(
        "extra field `{key}` collides with a field switchboard sets; set it through the request's own field"
    )
}

/// `out` with the request's `extra` fields merged in, as JSON bytes; an extra field may not
/// replace one switchboard sets.
fn with_extra(
    mut out: serde_json::Map<String, serde_json::Value>,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<u8>, String> {
    for (key, value) in extra {
        if out.contains_key(key) {
            return Err(extra_collides(key));
        }
        out.insert(key.clone(), value.clone());
    }
    serde_json::to_vec(&serde_json::Value::Object(out)).map_err(|e| e.to_string())
}

/// A header value marked sensitive, so hyper never prints it.
fn sensitive(value: &str) -> Result<HeaderValue, BuildError> {
    let mut value = HeaderValue::try_from(value).map_err(|_| BuildError {
        message: "the API key contains characters not allowed in an HTTP header".into(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[doc(hidden)]
/// Internals exposed for the benches only; not a stable API.
pub mod __bench {
    use switchboard_core::{ChatEvent, Error, ProviderId};

    pub use crate::anthropic::request_body as anthropic_request_body;
    pub use crate::openai::request_body as openai_request_body;

    /// Decodes and maps an OpenAI stream held in memory.
    pub fn map_openai(bytes: &[u8]) -> Result<Vec<ChatEvent>, Error> {
        let dialect = crate::openai::OpenAiEvents::default();
        crate::call::map_bytes(&ProviderId::OPENAI, dialect, bytes)
    }

    /// Decodes and maps an Anthropic stream held in memory.
    pub fn map_anthropic(bytes: &[u8]) -> Result<Vec<ChatEvent>, Error> {
        let dialect = crate::anthropic::AnthropicEvents::default();
        crate::call::map_bytes(&ProviderId::ANTHROPIC, dialect, bytes)
    }
}
