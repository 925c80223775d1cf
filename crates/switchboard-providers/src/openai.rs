//! The OpenAI Chat Completions adapter (and any OpenAI-compatible endpoint).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, header};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use switchboard_core::{
    ChatBody, ChatEvent, ChatRequest, ChatResponse, Content, ContentPart, Error, FinishReason,
    ProviderId, Role, Tool, ToolCall, ToolChoice, Usage,
};
use tower::Service;

use crate::call::{self, Adapter, Dialect, Protocol, ResponseFuture};
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
/// the first content chunk. Clones share the configuration and the client's connection pools.
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
    inner: Arc<Adapter<Chat>>,
}

/// The Chat Completions [`Protocol`].
struct Chat {
    max_tokens_field: MaxTokensField,
}

impl Protocol for Chat {
    type Dialect = OpenAiEvents;

    fn body(&self, body: &ChatBody) -> Result<Vec<u8>, String> {
        request_body(body, self.max_tokens_field)
    }
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
        let mut headers = vec![auth];
        for (name, value) in [
            ("openai-organization", &config.organization),
            ("openai-project", &config.project),
        ] {
            if let Some(value) = value {
                let value =
                    HeaderValue::try_from(value.as_str()).map_err(|_| BuildError::header(name))?;
                headers.push((HeaderName::from_static(name), value));
            }
        }
        Ok(Self {
            inner: Arc::new(Adapter {
                id,
                endpoint,
                headers,
                client,
                protocol: Chat {
                    max_tokens_field: config.max_tokens_field,
                },
            }),
        })
    }

    /// The provider's name.
    pub fn id(&self) -> &ProviderId {
        &self.inner.id
    }
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("id", &self.inner.id)
            .field("endpoint", &self.inner.endpoint)
            .field("max_tokens_field", &self.inner.protocol.max_tokens_field)
            .finish_non_exhaustive()
    }
}

impl Service<ChatRequest> for OpenAi {
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The pooled client queues internally; there is no capacity to wait for here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        self.inner.call(request)
    }
}

/// The request body as JSON bytes: the caller's fields plus `stream: true` and usage in the stream.
///
/// Written field by field from the body (no intermediate `serde_json::Value`), keys in
/// sorted order with `extra` merged in, as a `Value` map would write them.
pub fn request_body(body: &ChatBody, max_tokens_field: MaxTokensField) -> Result<Vec<u8>, String> {
    // The fields switchboard sets, in sorted key order.
    let mut known: Vec<(&'static str, Field<'_>)> = Vec::with_capacity(12);
    if let Some(max) = body.max_tokens {
        let field = match max_tokens_field {
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
            MaxTokensField::MaxTokens => "max_tokens",
        };
        known.push((field, Field::U32(max)));
    }
    known.push(("messages", Field::Messages(body)));
    known.push(("model", Field::Str(&body.model)));
    if let Some(format) = &body.response_format {
        known.push(("response_format", Field::Value(format)));
    }
    if !body.stop.is_empty() {
        known.push(("stop", Field::Strs(&body.stop)));
    }
    known.push(("stream", Field::True));
    known.push(("stream_options", Field::IncludeUsage));
    if let Some(t) = body.temperature {
        known.push(("temperature", Field::Float(t)));
    }
    if let Some(choice) = &body.tool_choice {
        known.push(("tool_choice", Field::ToolChoice(choice)));
    }
    if !body.tools.is_empty() {
        known.push(("tools", Field::Tools(&body.tools)));
    }
    if let Some(p) = body.top_p {
        known.push(("top_p", Field::Float(p)));
    }
    if let Some(key) = body
        .extra
        .keys()
        .find(|key| known.iter().any(|(k, _)| k == key))
    {
        return Err(crate::extra_collides(key));
    }
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(
        &mut out,
        &Merged {
            known: &known,
            extra: &body.extra,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The known fields and `extra`, both sorted, merged into one sorted object.
struct Merged<'a> {
    known: &'a [(&'static str, Field<'a>)],
    extra: &'a Map<String, Value>,
}

impl Serialize for Merged<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.known.len() + self.extra.len()))?;
        let mut known = self.known.iter().peekable();
        let mut extra = self.extra.iter().peekable();
        loop {
            let take_known = match (known.peek(), extra.peek()) {
                (Some((k, _)), Some((e, _))) => *k < e.as_str(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_known {
                if let Some((key, value)) = known.next() {
                    map.serialize_entry(key, value)?;
                }
            } else if let Some((key, value)) = extra.next() {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// One field switchboard sets.
enum Field<'a> {
    U32(u32),
    Str(&'a str),
    Strs(&'a [String]),
    Value(&'a Value),
    True,
    /// `{"include_usage": true}`.
    IncludeUsage,
    /// Written as the `f64` a `Value` holds, so `0.7` stays `0.699999988079071`, as before.
    Float(f32),
    Messages(&'a ChatBody),
    Tools(&'a [Tool]),
    ToolChoice(&'a ToolChoice),
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct IncludeUsage {
            include_usage: bool,
        }
        #[derive(Serialize)]
        struct ToolOut<'a> {
            function: FunctionOut<'a>,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        #[derive(Serialize)]
        struct FunctionOut<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            name: &'a str,
            parameters: &'a Value,
        }
        #[derive(Serialize)]
        struct NamedChoice<'a> {
            function: Named<'a>,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        #[derive(Serialize)]
        struct Named<'a> {
            name: &'a str,
        }
        match self {
            Field::U32(n) => serializer.serialize_u32(*n),
            Field::Str(s) => serializer.serialize_str(s),
            Field::Strs(items) => serializer.collect_seq(items.iter()),
            Field::Value(v) => v.serialize(serializer),
            Field::True => serializer.serialize_bool(true),
            Field::IncludeUsage => IncludeUsage {
                include_usage: true,
            }
            .serialize(serializer),
            Field::Float(f) => serializer.serialize_f64(f64::from(*f)),
            Field::Messages(body) => {
                let system = body.system.as_deref().map(|content| MessageOut {
                    content: ContentOut::Text(content),
                    role: Role::System,
                    tool_call_id: None,
                    tool_calls: &[],
                });
                let messages = body.messages.iter().map(|m| MessageOut {
                    content: match &m.content {
                        Content::Text(text) => ContentOut::Text(text),
                        Content::Parts(parts) => ContentOut::Parts(parts),
                    },
                    role: m.role,
                    tool_call_id: m.tool_call_id.as_deref(),
                    tool_calls: &m.tool_calls,
                });
                serializer.collect_seq(system.into_iter().chain(messages))
            }
            Field::Tools(tools) => serializer.collect_seq(tools.iter().map(|t| ToolOut {
                function: FunctionOut {
                    description: t.description.as_deref(),
                    name: &t.name,
                    parameters: &t.parameters,
                },
                kind: "function",
            })),
            Field::ToolChoice(choice) => match choice {
                ToolChoice::Auto => serializer.serialize_str("auto"),
                ToolChoice::None => serializer.serialize_str("none"),
                ToolChoice::Required => serializer.serialize_str("required"),
                ToolChoice::Tool { name } => NamedChoice {
                    function: Named { name },
                    kind: "function",
                }
                .serialize(serializer),
            },
        }
    }
}

/// One message (keys sorted).
#[derive(Serialize)]
struct MessageOut<'a> {
    content: ContentOut<'a>,
    /// Serialized lowercase, as both APIs name roles.
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty", serialize_with = "tool_calls")]
    tool_calls: &'a [ToolCall],
}

fn tool_calls<S: Serializer>(calls: &&[ToolCall], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct CallOut<'a> {
        function: CallFunction<'a>,
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    }
    #[derive(Serialize)]
    struct CallFunction<'a> {
        arguments: &'a str,
        name: &'a str,
    }
    serializer.collect_seq(calls.iter().map(|c| CallOut {
        function: CallFunction {
            arguments: &c.arguments,
            name: &c.name,
        },
        id: &c.id,
        kind: "function",
    }))
}

enum ContentOut<'a> {
    Text(&'a str),
    Parts(&'a [ContentPart]),
}

impl Serialize for ContentOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(untagged)]
        enum PartOut<'a> {
            Text {
                text: &'a str,
                #[serde(rename = "type")]
                kind: &'static str,
            },
            Image {
                image_url: Url<'a>,
                #[serde(rename = "type")]
                kind: &'static str,
            },
        }
        #[derive(Serialize)]
        struct Url<'a> {
            url: &'a str,
        }
        match self {
            ContentOut::Text(text) => serializer.serialize_str(text),
            ContentOut::Parts(parts) => serializer.collect_seq(parts.iter().map(|p| match p {
                ContentPart::Text { text } => PartOut::Text { text, kind: "text" },
                ContentPart::Image { url } => PartOut::Image {
                    image_url: Url { url },
                    kind: "image_url",
                },
            })),
        }
    }
}

/// OpenAI's stream: `data:` chunks, a usage chunk, `data: [DONE]`.
#[derive(Default)]
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

/// The request bodies the writer produces, byte for byte.
#[cfg(test)]
mod golden {
    use serde_json::{Map, json};
    use switchboard_core::{
        ChatBody, Content, ContentPart, Message, Role, Tool, ToolCall, ToolChoice,
    };

    use super::{MaxTokensField, request_body};

    /// `bodies()[0]`.
    const MINIMAL: &str = r#"{"messages":[{"content":"hi","role":"user"}],"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;

    /// `bodies()[1]`, with `MaxTokensField::MaxCompletionTokens`.
    const FULL: &str = r#"{"a":{"k":[1,2.5,"x",null,true]},"max_completion_tokens":100,"messages":[{"content":"be brief","role":"system"},{"content":"Say \"this\" is a test 👋","role":"user"},{"content":[{"text":"look","type":"text"},{"image_url":{"url":"https://x/y.png"},"type":"image_url"}],"role":"user"},{"content":"","role":"assistant","tool_calls":[{"function":{"arguments":"{\"a\": 1}","name":"f"},"id":"c1","type":"function"}]},{"content":"42","role":"tool","tool_call_id":"c1"},{"content":"late system","role":"system"}],"metadata":{"k":[1,2.5,"x",null,true]},"model":"gpt-4o-mini","n_probs":{"k":[1,2.5,"x",null,true]},"response_format":{"type":"json_object"},"seed":{"k":[1,2.5,"x",null,true]},"stop":["END","\n\n"],"store":{"k":[1,2.5,"x",null,true]},"stream":true,"stream_options":{"include_usage":true},"temperature":0.699999988079071,"tool_choice":{"function":{"name":"f"},"type":"function"},"tools":[{"function":{"description":"does f","name":"f","parameters":{"properties":{"a":{"type":"integer"}},"type":"object"}},"type":"function"},{"function":{"name":"g","parameters":{}},"type":"function"}],"top_logprobs":{"k":[1,2.5,"x",null,true]},"top_p":0.10000000149011612,"user":{"k":[1,2.5,"x",null,true]},"zzz":{"k":[1,2.5,"x",null,true]}}"#;

    fn bodies() -> Vec<ChatBody> {
        let mut full = ChatBody::new(
            "gpt-4o-mini",
            vec![
                Message::user("Say \"this\" is a test \u{1F44B}"),
                Message {
                    role: Role::User,
                    content: Content::Parts(vec![
                        ContentPart::Text {
                            text: "look".into(),
                        },
                        ContentPart::Image {
                            url: "https://x/y.png".into(),
                        },
                    ]),
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                },
                Message {
                    role: Role::Assistant,
                    content: Content::Text(String::new()),
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "f".into(),
                        arguments: "{\"a\": 1}".into(),
                    }],
                    tool_call_id: None,
                },
                Message {
                    role: Role::Tool,
                    content: Content::Text("42".into()),
                    tool_calls: Vec::new(),
                    tool_call_id: Some("c1".into()),
                },
                Message {
                    role: Role::System,
                    content: Content::Text("late system".into()),
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                },
            ],
        );
        full.system = Some("be brief".into());
        full.max_tokens = Some(100);
        full.temperature = Some(0.7);
        full.top_p = Some(0.1);
        full.stop = vec!["END".into(), "\n\n".into()];
        full.tools = vec![
            Tool {
                name: "f".into(),
                description: Some("does f".into()),
                parameters: json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
            },
            Tool {
                name: "g".into(),
                description: None,
                parameters: json!({}),
            },
        ];
        full.tool_choice = Some(ToolChoice::Tool { name: "f".into() });
        full.response_format = Some(json!({"type": "json_object"}));
        let mut extra = Map::new();
        for key in [
            "seed",
            "user",
            "a",
            "metadata",
            "zzz",
            "n_probs",
            "store",
            "top_logprobs",
        ] {
            extra.insert(key.into(), json!({"k": [1, 2.5, "x", null, true]}));
        }
        full.extra = extra;
        let mut bodies = vec![ChatBody::new("m", vec![Message::user("hi")]), full.clone()];
        for choice in [ToolChoice::Auto, ToolChoice::None, ToolChoice::Required] {
            let mut b = full.clone();
            b.tool_choice = Some(choice);
            bodies.push(b);
        }
        for t in [0.0, 1.0, 2.0, 0.3, 1.9999, f32::NAN, f32::INFINITY] {
            let mut b = full.clone();
            b.temperature = Some(t);
            b.top_p = None;
            bodies.push(b);
        }
        bodies
    }

    /// The bytes of each of `bodies()` with `MaxTokensField::MaxCompletionTokens`.
    fn expected() -> Vec<String> {
        let tool_choice = |to: &str| {
            FULL.replace(
                r#""tool_choice":{"function":{"name":"f"},"type":"function"}"#,
                &format!(r#""tool_choice":{to}"#),
            )
        };
        let temperature = |to: &str| {
            FULL.replace(
                r#""temperature":0.699999988079071"#,
                &format!(r#""temperature":{to}"#),
            )
            .replace(r#","top_p":0.10000000149011612"#, "")
        };
        vec![
            MINIMAL.into(),
            FULL.into(),
            tool_choice(r#""auto""#),
            tool_choice(r#""none""#),
            tool_choice(r#""required""#),
            temperature("0.0"),
            temperature("1.0"),
            temperature("2.0"),
            temperature("0.30000001192092896"),
            temperature("1.999899983406067"),
            temperature("null"),
            temperature("null"),
        ]
    }

    #[test]
    fn request_bodies_are_the_expected_bytes() {
        let bodies = bodies();
        let expected = expected();
        assert_eq!(bodies.len(), expected.len());
        for (i, (body, expected)) in bodies.iter().zip(expected).enumerate() {
            let new = request_body(body, MaxTokensField::MaxCompletionTokens).unwrap();
            assert_eq!(String::from_utf8(new).unwrap(), expected, "body {i}");
            let new = request_body(body, MaxTokensField::MaxTokens).unwrap();
            assert_eq!(
                String::from_utf8(new).unwrap(),
                expected.replace(r#""max_completion_tokens":"#, r#""max_tokens":"#),
                "body {i}, max_tokens"
            );
        }
    }

    #[test]
    fn colliding_extra_fields_are_refused() {
        for key in [
            "model",
            "messages",
            "stream",
            "stream_options",
            "max_completion_tokens",
            "temperature",
            "tools",
            "tool_choice",
            "response_format",
            "stop",
            "top_p",
        ] {
            let mut body = bodies().remove(1);
            body.extra.insert(key.into(), json!(1));
            body.extra.insert("aaa".into(), json!(1));
            assert_eq!(
                request_body(&body, MaxTokensField::MaxCompletionTokens),
                Err(format!(
                    "extra field `{key}` collides with a field switchboard sets; set it through the request's own field"
                )),
                "{key}"
            );
        }
        let mut body = bodies().remove(0);
        body.extra.insert("temperature".into(), json!(1));
        body.extra.insert("max_tokens".into(), json!(1));
        assert_eq!(
            String::from_utf8(request_body(&body, MaxTokensField::MaxTokens).unwrap()).unwrap(),
            r#"{"max_tokens":1,"messages":[{"content":"hi","role":"user"}],"model":"m","stream":true,"stream_options":{"include_usage":true},"temperature":1}"#
        );
    }
}
