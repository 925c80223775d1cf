//! The OpenAI Chat Completions adapter (and any OpenAI-compatible endpoint).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchboard_core::{
    ChatBody, ChatEvent, ChatRequest, ChatResponse, Content, ContentPart, Error, FinishReason,
    ProviderId, Role, ToolChoice, Usage,
};
use tower::Service;

use crate::call::{self, Dialect};
use crate::sse::SseEvent;
use crate::{ApiKey, BuildError, HttpClient};

/// Which field carries the output limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// `max_completion_tokens`: current OpenAI models, required by reasoning models.
    #[default]
    MaxCompletionTokens,
    /// `max_tokens`: older OpenAI-compatible servers.
    MaxTokens,
}

/// Settings of an [`OpenAi`] adapter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URL, as the OpenAI SDKs take it: the chat endpoint is
    /// `{base_url}/chat/completions`. Default `https://api.openai.com/v1`. Point it at Azure
    /// (`https://RESOURCE.openai.azure.com/openai/v1`), vLLM, OpenRouter or a local mock.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The key; when absent, `OPENAI_API_KEY` is read when the adapter is built.
    #[serde(default)]
    pub api_key: Option<ApiKey>,
    /// Send the key in this header instead of `Authorization: Bearer` (Azure: `api-key`).
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// `OpenAI-Organization` header.
    #[serde(default)]
    pub organization: Option<String>,
    /// `OpenAI-Project` header.
    #[serde(default)]
    pub project: Option<String>,
    /// Which field carries `max_tokens`. Default `max_completion_tokens`.
    #[serde(default)]
    pub max_tokens_field: MaxTokensField,
}

fn default_base_url() -> String {
    "https://api.openai.com/v1".to_owned()
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: default_base_url(),
            api_key: None,
            api_key_header: None,
            organization: None,
            project: None,
            max_tokens_field: MaxTokensField::default(),
        }
    }
}

impl OpenAiConfig {
    /// The default config with this base URL.
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }
}

/// The OpenAI Chat Completions adapter: a provider `Service` that always asks for a
/// stream with usage (`stream: true`, `stream_options.include_usage: true`) and resolves at
/// the first content chunk. Clones share the configuration and the connection pool.
///
/// ```no_run
/// use switchboard_core::{ChatBody, ChatRequest, Message, ProviderId};
/// use switchboard_providers::{HttpClient, OpenAi, OpenAiConfig};
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut openai = OpenAi::new(ProviderId::OPENAI, OpenAiConfig::default(), HttpClient::new()?)?;
/// let request = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("Hi!")]));
/// let response = openai.ready().await?.call(request).await?; // at the first token
/// println!("{}", response.collect().await?.text);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OpenAi {
    inner: Arc<Inner>,
}

struct Inner {
    id: ProviderId,
    endpoint: Uri,
    auth: (HeaderName, HeaderValue),
    extra_headers: Vec<(HeaderName, HeaderValue)>,
    max_tokens_field: MaxTokensField,
    client: HttpClient,
}

impl OpenAi {
    /// Builds the adapter; the key comes from the config or `OPENAI_API_KEY`.
    pub fn new(
        id: ProviderId,
        config: OpenAiConfig,
        client: HttpClient,
    ) -> Result<Self, BuildError> {
        let key = match config.api_key {
            Some(key) => key,
            None => ApiKey::from_env("OPENAI_API_KEY")?,
        };
        let endpoint = crate::endpoint(&config.base_url, "/chat/completions")?;
        let auth = match &config.api_key_header {
            Some(name) => (
                HeaderName::try_from(name.as_str()).map_err(|_| BuildError::header(name))?,
                crate::sensitive(key.expose())?,
            ),
            None => (
                header::AUTHORIZATION,
                crate::sensitive(&format!("Bearer {}", key.expose()))?,
            ),
        };
        let mut extra_headers = Vec::new();
        for (name, value) in [
            ("openai-organization", &config.organization),
            ("openai-project", &config.project),
        ] {
            if let Some(value) = value {
                let value =
                    HeaderValue::try_from(value.as_str()).map_err(|_| BuildError::header(name))?;
                extra_headers.push((HeaderName::from_static(name), value));
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                id,
                endpoint,
                auth,
                extra_headers,
                max_tokens_field: config.max_tokens_field,
                client,
            }),
        })
    }

    /// The provider's name.
    pub fn id(&self) -> &ProviderId {
        &self.inner.id
    }

    fn build_request(&self, body: &ChatBody) -> Result<Request<Full<Bytes>>, Error> {
        let json = request_body(body, self.inner.max_tokens_field).map_err(|message| {
            Error::InvalidRequest {
                provider: Some(self.inner.id.clone()),
                message,
            }
        })?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.inner.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .header(self.inner.auth.0.clone(), self.inner.auth.1.clone());
        for (name, value) in &self.inner.extra_headers {
            request = request.header(name, value);
        }
        request
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| Error::InvalidRequest {
                provider: Some(self.inner.id.clone()),
                message: e.to_string(),
            })
    }
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("id", &self.inner.id)
            .field("endpoint", &self.inner.endpoint)
            .field("max_tokens_field", &self.inner.max_tokens_field)
            .finish_non_exhaustive()
    }
}

impl Service<ChatRequest> for OpenAi {
    type Response = ChatResponse;
    type Error = Error;
    // A network round-trip dwarfs one allocation; boxing keeps the future nameable.
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The pooled client queues internally; there is no capacity to wait for here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let built = self.build_request(request.body());
        let id = self.inner.id.clone();
        let client = self.inner.client.clone();
        let model = request.body().model.clone();
        Box::pin(async move {
            let dialect = OpenAiEvents { model: None };
            call::send(id, client, built?, model, dialect).await
        })
    }
}

/// The request body as JSON bytes: the caller's fields plus `stream: true` and usage in the stream.
pub fn request_body(body: &ChatBody, max_tokens_field: MaxTokensField) -> Result<Vec<u8>, String> {
    let mut messages = Vec::with_capacity(body.messages.len() + 1);
    if let Some(system) = &body.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in &body.messages {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let mut out = Map::new();
        out.insert("role".into(), role.into());
        out.insert("content".into(), content(&m.content));
        if !m.tool_calls.is_empty() {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            out.insert("tool_calls".into(), calls.into());
        }
        if let Some(id) = &m.tool_call_id {
            out.insert("tool_call_id".into(), id.clone().into());
        }
        messages.push(Value::Object(out));
    }
    let mut out = Map::new();
    out.insert("model".into(), body.model.clone().into());
    out.insert("messages".into(), messages.into());
    out.insert("stream".into(), true.into());
    out.insert("stream_options".into(), json!({"include_usage": true}));
    if let Some(max) = body.max_tokens {
        let field = match max_tokens_field {
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
            MaxTokensField::MaxTokens => "max_tokens",
        };
        out.insert(field.into(), max.into());
    }
    if let Some(t) = body.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = body.top_p {
        out.insert("top_p".into(), json!(p));
    }
    if !body.stop.is_empty() {
        out.insert("stop".into(), json!(body.stop));
    }
    if !body.tools.is_empty() {
        let tools: Vec<Value> = body
            .tools
            .iter()
            .map(|t| {
                let mut function = json!({"name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    function["description"] = d.clone().into();
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        out.insert("tools".into(), tools.into());
    }
    if let Some(choice) = &body.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool { name } => json!({"type": "function", "function": {"name": name}}),
        };
        out.insert("tool_choice".into(), choice);
    }
    if let Some(format) = &body.response_format {
        out.insert("response_format".into(), format.clone());
    }
    for (key, value) in &body.extra {
        if out.contains_key(key) {
            return Err(format!(
                "extra field `{key}` collides with a field switchboard sets; set it through the request's own field"
            ));
        }
        out.insert(key.clone(), value.clone());
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| e.to_string())
}

fn content(content: &Content) -> Value {
    match content {
        Content::Text(text) => text.clone().into(),
        Content::Parts(parts) => parts
            .iter()
            .map(|p| match p {
                ContentPart::Text { text } => json!({"type": "text", "text": text}),
                ContentPart::Image { url } => {
                    json!({"type": "image_url", "image_url": {"url": url}})
                }
            })
            .collect::<Vec<_>>()
            .into(),
    }
}

/// OpenAI's stream: `data:` chunks, a usage chunk, `data: [DONE]`.
pub(crate) struct OpenAiEvents {
    pub(crate) model: Option<String>,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    /// Borrowed: every chunk repeats it, and only the first is kept.
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChunkUsage>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

fn finish_reason(reason: String) -> FinishReason {
    match reason.as_str() {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Other(reason),
    }
}

impl Dialect for OpenAiEvents {
    const TERMINAL: &'static str = "data: [DONE]";

    fn on_event(
        &mut self,
        provider: &ProviderId,
        event: SseEvent,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, Error> {
        if event.data == "[DONE]" {
            return Ok(true);
        }
        let chunk: Chunk<'_> = serde_json::from_str(&event.data)
            .map_err(|e| call::malformed(provider, &e, &event.data))?;
        if let Some(error) = chunk.error {
            let kind = error.kind.unwrap_or_default();
            return Err(call::stream_error_event(provider, &kind, &error.message));
        }
        if self.model.is_none() {
            self.model = chunk.model.map(|m| m.into_owned());
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                for text in [delta.content, delta.refusal].into_iter().flatten() {
                    if !text.is_empty() {
                        out.push_back(ChatEvent::Text { text });
                    }
                }
                for call in delta.tool_calls {
                    let (name, arguments) = match call.function {
                        Some(f) => (f.name, f.arguments.unwrap_or_default()),
                        None => (None, String::new()),
                    };
                    out.push_back(ChatEvent::ToolCall {
                        index: call.index,
                        id: call.id,
                        name,
                        arguments,
                    });
                }
            }
            if let Some(reason) = choice.finish_reason {
                out.push_back(ChatEvent::Finish(finish_reason(reason)));
            }
        }
        if let Some(usage) = chunk.usage {
            out.push_back(ChatEvent::Usage(Usage {
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                cached_input_tokens: usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            }));
        }
        Ok(false)
    }

    fn model(&mut self) -> Option<String> {
        self.model.clone()
    }
}
