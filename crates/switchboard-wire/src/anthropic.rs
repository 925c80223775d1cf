//! Anthropic Messages (`POST /v1/messages`).

use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use switchboard_core::{
    ChatBody, ChatEvent, Completion, Content, ContentPart, Error, FinishReason, Message, Role,
    Tool, ToolCall, ToolChoice, Usage,
};

use crate::json::{self, Object};
use crate::{WireError, sse_event};

/// Fields handled here; any other top-level field goes to `ChatBody::extra`.
const KNOWN: [&str; 11] = [
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "anthropic_version",
];

/// Parses a Messages request body. `tool_result` blocks become `tool` messages (before the
/// rest of their user turn), `tool_use` blocks become the assistant's tool calls, images
/// become URLs (`data:` URLs for base64 sources). Other fields (`metadata`, `top_k`, ...)
/// are kept in `extra`.
pub fn parse_request(bytes: &[u8]) -> Result<ChatBody, WireError> {
    // Strings are moved out of the parsed object, not copied.
    let mut obj = json::object(bytes)?;
    let field =
        |name: &str| WireError::invalid(format!("{name}: Field required"), Some(name.to_owned()));
    let model = match obj.get_mut("model") {
        Some(Value::String(s)) => std::mem::take(s),
        Some(_) => return Err(json::type_error("model", "a string")),
        None => return Err(field("model")),
    };
    let max_tokens = match obj.get("max_tokens") {
        None => return Err(field("max_tokens")),
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                WireError::invalid(
                    "max_tokens: Input should be greater than or equal to 1",
                    Some("max_tokens".to_owned()),
                )
            })?,
    };
    let raw = match obj.get_mut("messages") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(json::type_error("messages", "an array")),
        None => return Err(field("messages")),
    };
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter_mut().enumerate() {
        turn(m, i, &mut messages)?;
    }
    let mut body = ChatBody::new(model, messages);
    body.max_tokens = Some(max_tokens);
    body.system = match obj.get_mut("system") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(std::mem::take(s)),
        Some(Value::Array(blocks)) => Some(
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n\n"),
        ),
        Some(_) => {
            return Err(json::type_error(
                "system",
                "a string or an array of text blocks",
            ));
        }
    };
    body.temperature = json::opt_f32_in(&obj, "temperature", 0.0, 1.0)?;
    body.top_p = json::opt_f32_in(&obj, "top_p", 0.0, 1.0)?;
    body.stop = json::stop_list(obj.get("stop_sequences"), "stop_sequences")?;
    body.stream = json::opt_bool(&obj, "stream")?.unwrap_or(false);
    body.tools = tools(obj.get("tools"))?;
    body.tool_choice = tool_choice(obj.get("tool_choice"))?;
    body.extra = obj
        .into_iter()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
        .collect();
    Ok(body)
}

fn turn(value: &mut Value, i: usize, out: &mut Vec<Message>) -> Result<(), WireError> {
    let param = format!("messages.{i}");
    let obj = value
        .as_object_mut()
        .ok_or_else(|| json::type_error(&param, "an object"))?;
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        other => {
            return Err(WireError::invalid(
                format!(
                    "{param}.role: Input should be 'user' or 'assistant', got {}",
                    other.map_or("nothing".to_owned(), |o| format!("'{o}'"))
                ),
                Some(format!("{param}.role")),
            ));
        }
    };
    let blocks = match obj.get_mut("content") {
        Some(Value::String(s)) => {
            out.push(Message::new(role, std::mem::take(s)));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(json::type_error(
                &format!("{param}.content"),
                "a string or an array of content blocks",
            ));
        }
    };
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let p = format!("{param}.content.{j}");
        let b = block
            .as_object()
            .ok_or_else(|| json::type_error(&p, "an object"))?;
        match b.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(ContentPart::Text {
                text: json::required_str(b, "text", &format!("{p}.text"))?,
            }),
            Some("image") => parts.push(ContentPart::Image {
                url: image_url(b, &p)?,
            }),
            Some("tool_use") if role == Role::Assistant => tool_calls.push(ToolCall {
                id: json::required_str(b, "id", &format!("{p}.id"))?,
                name: json::required_str(b, "name", &format!("{p}.name"))?,
                arguments: b
                    .get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            }),
            Some("tool_result") if role == Role::User => {
                let id = json::required_str(b, "tool_use_id", &format!("{p}.tool_use_id"))?;
                let text = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(inner)) => inner
                        .iter()
                        .filter_map(|c| c.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    Some(_) => {
                        return Err(json::type_error(
                            &format!("{p}.content"),
                            "a string or an array",
                        ));
                    }
                };
                let mut result = Message::new(Role::Tool, text);
                result.tool_call_id = Some(id);
                out.push(result);
            }
            // Thinking blocks of earlier turns carry nothing a neutral request can use.
            Some("thinking" | "redacted_thinking") => {}
            Some(other) => {
                return Err(WireError::invalid(
                    format!(
                        "{p}.type: '{other}' blocks are not supported in a {} turn",
                        if role == Role::User {
                            "user"
                        } else {
                            "assistant"
                        }
                    ),
                    Some(format!("{p}.type")),
                ));
            }
            None => return Err(json::type_error(&format!("{p}.type"), "a string")),
        }
    }
    if !parts.is_empty() || !tool_calls.is_empty() {
        let mut message = Message::new(role, String::new());
        message.content = Content::Parts(parts);
        message.tool_calls = tool_calls;
        out.push(message);
    }
    Ok(())
}

fn image_url(block: &Object, param: &str) -> Result<String, WireError> {
    let source = block
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| json::type_error(&format!("{param}.source"), "an object"))?;
    match source.get("type").and_then(Value::as_str) {
        Some("url") => json::required_str(source, "url", &format!("{param}.source.url")),
        Some("base64") => Ok(format!(
            "data:{};base64,{}",
            json::required_str(source, "media_type", &format!("{param}.source.media_type"))?,
            json::required_str(source, "data", &format!("{param}.source.data"))?
        )),
        _ => Err(json::type_error(
            &format!("{param}.source.type"),
            "'base64' or 'url'",
        )),
    }
}

fn tools(value: Option<&Value>) -> Result<Vec<Tool>, WireError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(json::type_error("tools", "an array")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let p = format!("tools.{i}");
            let t = t
                .as_object()
                .ok_or_else(|| json::type_error(&p, "an object"))?;
            Ok(Tool {
                name: json::required_str(t, "name", &format!("{p}.name"))?,
                description: json::opt_str(t, "description", &format!("{p}.description"))?,
                parameters: t
                    .get("input_schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

fn tool_choice(value: Option<&Value>) -> Result<Option<ToolChoice>, WireError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("auto") => Ok(Some(ToolChoice::Auto)),
        Some("any") => Ok(Some(ToolChoice::Required)),
        Some("none") => Ok(Some(ToolChoice::None)),
        Some("tool") => Ok(Some(ToolChoice::Tool {
            name: value
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| json::type_error("tool_choice.name", "a string"))?
                .to_owned(),
        })),
        _ => Err(json::type_error(
            "tool_choice.type",
            "'auto', 'any', 'tool' or 'none'",
        )),
    }
}

/// What a content block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Tool(u32),
}

/// Encodes [`ChatEvent`]s as Messages SSE: `message_start`, content blocks
/// (`content_block_start` / `_delta` / `_stop`), `message_delta` with the stop reason and
/// usage, `message_stop`.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    input_tokens: u64,
    /// The open block and its index.
    open: Option<(Block, u32)>,
    next_index: u32,
    finish: Option<FinishReason>,
    usage: Usage,
    request_id: String,
}

impl StreamEncoder {
    /// An encoder for one answer; `input_tokens` is reported in `message_start` (0 when not
    /// known yet; the final figure comes in `message_delta`).
    pub fn new(id: impl Into<String>, model: impl Into<String>, input_tokens: u64) -> Self {
        Self {
            id: id.into(),
            model: model.into(),
            input_tokens,
            open: None,
            next_index: 0,
            finish: None,
            usage: Usage::new(input_tokens, 0),
            request_id: String::new(),
        }
    }

    /// The request id that `error` events carry, as Anthropic's do.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = request_id.into();
        self
    }

    /// `message_start`.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct MessageStart<'a> {
            message: MessageOut<'a, ()>,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        let message = MessageOut {
            content: ContentOut::Empty,
            id: &self.id,
            model: &self.model,
            role: "assistant",
            stop_reason: None,
            stop_sequence: (),
            switchboard: None,
            kind: "message",
            usage: MessageUsage {
                cache_creation: CacheCreation::default(),
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 0,
                input_tokens: self.input_tokens,
                output_tokens: 1,
                service_tier: "standard",
            },
        };
        sse_event(
            out,
            "message_start",
            &MessageStart {
                message,
                kind: "message_start",
            },
        );
    }

    /// A `ping` event.
    pub fn ping(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
    }

    /// Opens a text block now (Anthropic opens it before the first delta arrives).
    pub fn open_text_block(&mut self, out: &mut Vec<u8>) {
        if !matches!(self.open, Some((Block::Text, _))) {
            self.open_block(
                Block::Text,
                BlockOut::Text {
                    text: "",
                    kind: "text",
                },
                out,
            );
        }
    }

    fn open_block(&mut self, block: Block, content_block: BlockOut<'_>, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct BlockStart<'a> {
            content_block: BlockOut<'a>,
            index: u32,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((block, index));
        sse_event(
            out,
            "content_block_start",
            &BlockStart {
                content_block,
                index,
                kind: "content_block_start",
            },
        );
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct BlockStop {
            index: u32,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        if let Some((_, index)) = self.open.take() {
            sse_event(
                out,
                "content_block_stop",
                &BlockStop {
                    index,
                    kind: "content_block_stop",
                },
            );
        }
    }

    fn delta(&self, out: &mut Vec<u8>, delta: DeltaOut<'_>) {
        #[derive(Serialize)]
        struct BlockDelta<'a> {
            delta: DeltaOut<'a>,
            index: u32,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        sse_event(
            out,
            "content_block_delta",
            &BlockDelta {
                delta,
                index: self.open.map_or(0, |(_, i)| i),
                kind: "content_block_delta",
            },
        );
    }

    /// Whether a tool-call event opens a new `tool_use` block: one that names the call
    /// (`named`: it carries an id or a name), or one for a call other than the open block's.
    fn opens_tool_block(&self, tool: u32, named: bool) -> bool {
        named || !matches!(self.open, Some((Block::Tool(t), _)) if t == tool)
    }

    /// One event. Finish and usage are held for [`end`](Self::end).
    pub fn event(&mut self, event: &ChatEvent, out: &mut Vec<u8>) {
        match event {
            ChatEvent::Text { text } => {
                self.open_text_block(out);
                self.delta(
                    out,
                    DeltaOut::Text {
                        text,
                        kind: "text_delta",
                    },
                );
            }
            ChatEvent::ToolCall {
                index: tool,
                id,
                name,
                arguments,
            } => {
                if self.opens_tool_block(*tool, id.is_some() || name.is_some()) {
                    let block = BlockOut::ToolUse {
                        id: id.as_deref().unwrap_or_default(),
                        input: EmptyObject {},
                        name: name.as_deref().unwrap_or_default(),
                        kind: "tool_use",
                    };
                    self.open_block(Block::Tool(*tool), block, out);
                }
                if !arguments.is_empty() {
                    self.delta(
                        out,
                        DeltaOut::Json {
                            partial_json: arguments,
                            kind: "input_json_delta",
                        },
                    );
                }
            }
            ChatEvent::Usage(usage) => self.usage.merge_max(*usage),
            ChatEvent::Finish(reason) => self.finish = Some(reason.clone()),
            _ => {}
        }
    }

    /// `content_block_stop`, `message_delta` and `message_stop`.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        let finish = self.finish.take().unwrap_or(FinishReason::Stop);
        let u = self.usage;
        #[derive(Serialize)]
        struct MessageDelta<'a> {
            delta: StopDelta<'a>,
            #[serde(rename = "type")]
            kind: &'static str,
            usage: DeltaUsage,
        }
        #[derive(Serialize)]
        struct StopDelta<'a> {
            stop_reason: &'a str,
            stop_sequence: (),
        }
        #[derive(Serialize)]
        struct DeltaUsage {
            cache_creation_input_tokens: u8,
            cache_read_input_tokens: u64,
            input_tokens: u64,
            output_tokens: u64,
        }
        sse_event(
            out,
            "message_delta",
            &MessageDelta {
                delta: StopDelta {
                    stop_reason: finish.as_anthropic(),
                    stop_sequence: (),
                },
                kind: "message_delta",
                usage: DeltaUsage {
                    cache_creation_input_tokens: 0,
                    cache_read_input_tokens: u.cached_input_tokens,
                    input_tokens: u.uncached_input_tokens(),
                    output_tokens: u.output_tokens,
                },
            },
        );
        out.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }

    /// An `error` event after the stream started; no `message_stop` follows.
    pub fn error(&mut self, error: &Error, out: &mut Vec<u8>) {
        let (_, body) = error_for(error, &self.request_id);
        sse_event(out, "error", &body);
    }
}

// The output types below write their fields in alphabetical order: the order the
// `serde_json::Value` maps these answers were first built with serialize in, so the bytes
// on the wire stay the same.

/// A Messages `message` object, with an optional `switchboard` block.
#[derive(Serialize)]
struct MessageOut<'a, S: ?Sized> {
    content: ContentOut<'a>,
    id: &'a str,
    model: &'a str,
    role: &'static str,
    stop_reason: Option<&'a str>,
    stop_sequence: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    switchboard: Option<&'a S>,
    #[serde(rename = "type")]
    kind: &'static str,
    usage: MessageUsage,
}

#[derive(Serialize)]
struct MessageUsage {
    cache_creation: CacheCreation,
    cache_creation_input_tokens: u8,
    cache_read_input_tokens: u64,
    input_tokens: u64,
    output_tokens: u64,
    service_tier: &'static str,
}

#[derive(Serialize, Default)]
struct CacheCreation {
    ephemeral_1h_input_tokens: u8,
    ephemeral_5m_input_tokens: u8,
}

/// `{}`.
#[derive(Serialize)]
struct EmptyObject {}

/// A block `content_block_start` opens (`type` last, as sorted keys put it).
#[derive(Serialize)]
#[serde(untagged)]
enum BlockOut<'a> {
    Text {
        text: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    ToolUse {
        id: &'a str,
        input: EmptyObject,
        name: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

/// A `content_block_delta`'s `delta`.
#[derive(Serialize)]
#[serde(untagged)]
enum DeltaOut<'a> {
    Text {
        text: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    Json {
        partial_json: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

/// A whole answer's `content`.
enum ContentOut<'a> {
    /// `[]` (`message_start`).
    Empty,
    Completion(&'a Completion),
}

impl Serialize for ContentOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct TextOut<'a> {
            text: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        #[derive(Serialize)]
        struct ToolUseOut<'a> {
            id: &'a str,
            input: Value,
            name: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        let completion = match self {
            ContentOut::Empty => return serializer.collect_seq(std::iter::empty::<()>()),
            ContentOut::Completion(c) => c,
        };
        let with_text = !completion.text.is_empty() || completion.tool_calls.is_empty();
        let mut seq =
            serializer.serialize_seq(Some(usize::from(with_text) + completion.tool_calls.len()))?;
        if with_text {
            seq.serialize_element(&TextOut {
                text: &completion.text,
                kind: "text",
            })?;
        }
        for call in &completion.tool_calls {
            // Parsed, so the arguments go out as the object they are (normalized), or `{}`.
            let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
            seq.serialize_element(&ToolUseOut {
                id: &call.id,
                input,
                name: &call.name,
                kind: "tool_use",
            })?;
        }
        seq.end()
    }
}

impl<'a, S: Serialize + ?Sized> MessageOut<'a, S> {
    fn answer(
        completion: &'a Completion,
        id: &'a str,
        finish: &'a FinishReason,
        switchboard: Option<&'a S>,
    ) -> Self {
        let u = completion.usage.unwrap_or_default();
        Self {
            content: ContentOut::Completion(completion),
            id,
            model: &completion.model,
            role: "assistant",
            stop_reason: Some(finish.as_anthropic()),
            stop_sequence: (),
            switchboard,
            kind: "message",
            usage: MessageUsage {
                cache_creation: CacheCreation::default(),
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: u.cached_input_tokens,
                input_tokens: u.uncached_input_tokens(),
                output_tokens: u.output_tokens,
                service_tier: "standard",
            },
        }
    }
}

/// A whole Messages answer.
pub fn message_json(completion: &Completion, id: &str) -> Value {
    let finish = completion.finish.clone().unwrap_or(FinishReason::Stop);
    serde_json::to_value(MessageOut::<()>::answer(completion, id, &finish, None))
        .unwrap_or(Value::Null)
}

/// A whole Messages answer as JSON bytes, with `switchboard` (when given) as its
/// `switchboard` field: the same JSON as [`message_json`] with that field inserted, written
/// directly.
pub fn write_message<S: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    completion: &Completion,
    id: &str,
    switchboard: Option<&S>,
) -> Result<(), serde_json::Error> {
    let finish = completion.finish.clone().unwrap_or(FinishReason::Stop);
    serde_json::to_writer(
        out,
        &MessageOut::answer(completion, id, &finish, switchboard),
    )
}

/// Anthropic's error `type` for a status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// An error body: `{"type": "error", "error": {"type", "message"}, "request_id"}` (the
/// request id is left out when empty, as Anthropic's edge does for 413).
pub fn error_body(status: u16, message: &str, request_id: &str) -> Value {
    let mut body =
        json!({"type": "error", "error": {"type": error_type(status), "message": message}});
    if !request_id.is_empty() {
        body["request_id"] = json!(request_id);
    }
    body
}

/// The status and body Anthropic would use for a core [`Error`].
pub fn error_for(error: &Error, request_id: &str) -> (u16, Value) {
    let status = match error {
        Error::Overloaded { .. } => 529,
        other => other.status().as_u16(),
    };
    (status, error_body(status, &error.to_string(), request_id))
}

/// The error body for a refused request.
pub fn wire_error_body(error: &WireError, request_id: &str) -> Value {
    error_body(error.status, &error.message, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ChatBody, WireError> {
        parse_request(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn parses_tool_turns_images_and_system_blocks() {
        let b = parse(json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3"}, {"type": "text", "text": "thanks"}]}
            ],
            "tool_choice": {"type": "any"},
            "metadata": {"user_id": "u1"}
        }))
        .unwrap();
        assert_eq!(b.system.as_deref(), Some("be brief"));
        assert_eq!(b.messages.len(), 4);
        assert_eq!(
            b.messages[0].content,
            Content::Parts(vec![
                ContentPart::Text {
                    text: "weather?".into()
                },
                ContentPart::Image {
                    url: "data:image/png;base64,AAA".into()
                },
            ])
        );
        assert_eq!(b.messages[1].tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
        assert_eq!(b.messages[2].role, Role::Tool);
        assert_eq!(b.messages[2].tool_call_id.as_deref(), Some("toolu_1"));
        assert_eq!(b.messages[3].content.text(), "thanks");
        assert_eq!(b.tool_choice, Some(ToolChoice::Required));
        assert_eq!(b.extra["metadata"]["user_id"], "u1");
    }

    #[test]
    fn refuses_what_anthropic_refuses() {
        for (body, needle) in [
            (
                json!({"model": "m", "messages": []}),
                "max_tokens: Field required",
            ),
            (
                json!({"max_tokens": 5, "messages": []}),
                "model: Field required",
            ),
            (
                json!({"model": "m", "max_tokens": 0, "messages": []}),
                "greater than or equal to 1",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "'user' or 'assistant'",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [], "temperature": 1.5}),
                "between",
            ),
        ] {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn blocks_open_and_close_around_text_and_tool_calls() {
        let mut e = StreamEncoder::new("msg_1", "m", 10);
        let mut out = Vec::new();
        e.start(&mut out);
        e.event(&ChatEvent::text("Let me check."), &mut out);
        e.event(
            &ChatEvent::ToolCall {
                index: 0,
                id: Some("toolu_1".into()),
                name: Some("w".into()),
                arguments: String::new(),
            },
            &mut out,
        );
        e.event(
            &ChatEvent::ToolCall {
                index: 0,
                id: None,
                name: None,
                arguments: "{\"a\":1}".into(),
            },
            &mut out,
        );
        e.event(&ChatEvent::Finish(FinishReason::ToolCalls), &mut out);
        e.event(&ChatEvent::Usage(Usage::new(10, 7)), &mut out);
        e.end(&mut out);
        let text = String::from_utf8(out).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert!(text.contains("\"stop_reason\":\"tool_use\""));
        assert!(text.contains("\"output_tokens\":7"));
    }

    #[test]
    fn overloaded_is_529_everything_has_its_type() {
        let (status, body) = error_for(
            &Error::Overloaded {
                provider: switchboard_core::ProviderId::ANTHROPIC,
                retry_after: None,
                message: "x".into(),
            },
            "req_1",
        );
        assert_eq!(status, 529);
        assert_eq!(body["error"]["type"], "overloaded_error");
        assert_eq!(body["request_id"], "req_1");
        let (status, body) = error_for(&Error::ModelNotFound { model: "x".into() }, "");
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (404, Some("not_found_error"))
        );
        assert!(body.get("request_id").is_none());
    }
}

/// The answers the typed writers produce, byte for byte.
#[cfg(test)]
mod golden {
    use serde_json::json;
    use switchboard_core::{ChatEvent, Completion, FinishReason, ProviderId, ToolCall, Usage};

    use super::{StreamEncoder, message_json, write_message};

    /// The cases of `messages_are_the_expected_bytes` as `message` objects, id `msg_1`.
    const MESSAGES: [&str; 4] = [
        r#"{"content":[{"text":"Hello, \"world\" 👋\n","type":"text"}],"id":"msg_1","model":"claude-haiku-4-5","role":"assistant","stop_reason":"max_tokens","stop_sequence":null,"type":"message","usage":{"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"input_tokens":15,"output_tokens":7,"service_tier":"standard"}}"#,
        r#"{"content":[{"text":"","type":"text"}],"id":"msg_1","model":"claude-haiku-4-5","role":"assistant","stop_reason":"end_turn","stop_sequence":null,"type":"message","usage":{"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":0,"output_tokens":0,"service_tier":"standard"}}"#,
        r#"{"content":[{"id":"toolu_1","input":{"a":[1.5,"x"],"b":1},"name":"w","type":"tool_use"},{"id":"toolu_1","input":{},"name":"w","type":"tool_use"},{"id":"toolu_1","input":7,"name":"w","type":"tool_use"}],"id":"msg_1","model":"claude-haiku-4-5","role":"assistant","stop_reason":"tool_use","stop_sequence":null,"type":"message","usage":{"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"input_tokens":15,"output_tokens":7,"service_tier":"standard"}}"#,
        r#"{"content":[{"text":"Hello, \"world\" 👋\n","type":"text"},{"id":"toolu_1","input":{},"name":"w","type":"tool_use"}],"id":"msg_1","model":"claude-haiku-4-5","role":"assistant","stop_reason":"pause_turn","stop_sequence":null,"type":"message","usage":{"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"input_tokens":15,"output_tokens":7,"service_tier":"standard"}}"#,
    ];

    #[test]
    fn messages_are_the_expected_bytes() {
        let base = Completion {
            provider: ProviderId::ANTHROPIC,
            model: "claude-haiku-4-5".into(),
            text: "Hello, \"world\" \u{1F44B}\n".into(),
            tool_calls: Vec::new(),
            usage: Some(Usage {
                input_tokens: 20,
                output_tokens: 7,
                cached_input_tokens: 5,
            }),
            finish: Some(FinishReason::Length),
        };
        let call = |args: &str| ToolCall {
            id: "toolu_1".into(),
            name: "w".into(),
            arguments: args.into(),
        };
        let cases = [
            base.clone(),
            Completion {
                text: String::new(),
                usage: None,
                finish: None,
                ..base.clone()
            },
            Completion {
                text: String::new(),
                tool_calls: vec![
                    call("{\"b\": 1, \"a\": [1.5, \"x\"]}"),
                    call("not json"),
                    call("7"),
                ],
                finish: Some(FinishReason::ToolCalls),
                ..base.clone()
            },
            Completion {
                tool_calls: vec![call("{}")],
                finish: Some(FinishReason::Other("pause_turn".into())),
                ..base
            },
        ];
        assert_eq!(cases.len(), MESSAGES.len());
        let block =
            json!({"provider": "anthropic", "reason": "x", "status": "degraded", "trace_id": "ab"});
        for (c, expected) in cases.iter().zip(MESSAGES) {
            assert_eq!(message_json(c, "msg_1").to_string(), expected);
            let mut bytes = Vec::new();
            write_message(&mut bytes, c, "msg_1", None::<&serde_json::Value>).unwrap();
            assert_eq!(String::from_utf8(bytes).unwrap(), expected);
            let mut bytes = Vec::new();
            write_message(&mut bytes, c, "msg_1", Some(&block)).unwrap();
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                expected.replace(
                    r#","type":"message","#,
                    r#","switchboard":{"provider":"anthropic","reason":"x","status":"degraded","trace_id":"ab"},"type":"message","#
                )
            );
        }
    }

    /// The SSE events the streams below are made of (each ends with a blank line).
    const FRAMES: [&str; 18] = [
        r#"event: message_start
data: {"message":{"content":[],"id":"msg_1","model":"m","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":10,"output_tokens":1,"service_tier":"standard"}},"type":"message_start"}"#,
        r#"event: ping
data: {"type": "ping"}"#,
        r#"event: content_block_start
data: {"content_block":{"text":"","type":"text"},"index":0,"type":"content_block_start"}"#,
        r#"event: content_block_stop
data: {"index":0,"type":"content_block_stop"}"#,
        r#"event: message_delta
data: {"delta":{"stop_reason":"end_turn","stop_sequence":null},"type":"message_delta","usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":10,"output_tokens":0}}"#,
        r#"event: message_stop
data: {"type":"message_stop"}"#,
        r#"event: content_block_delta
data: {"delta":{"text":"Let me \"check\".","type":"text_delta"},"index":0,"type":"content_block_delta"}"#,
        r#"event: content_block_start
data: {"content_block":{"id":"toolu_1","input":{},"name":"w","type":"tool_use"},"index":1,"type":"content_block_start"}"#,
        r#"event: content_block_stop
data: {"index":1,"type":"content_block_stop"}"#,
        r#"event: content_block_delta
data: {"delta":{"partial_json":"{\"a\":1}","type":"input_json_delta"},"index":1,"type":"content_block_delta"}"#,
        r#"event: content_block_start
data: {"content_block":{"id":"","input":{},"name":"","type":"tool_use"},"index":2,"type":"content_block_start"}"#,
        r#"event: content_block_delta
data: {"delta":{"partial_json":"{}","type":"input_json_delta"},"index":2,"type":"content_block_delta"}"#,
        r#"event: content_block_stop
data: {"index":2,"type":"content_block_stop"}"#,
        r#"event: content_block_start
data: {"content_block":{"text":"","type":"text"},"index":3,"type":"content_block_start"}"#,
        r#"event: content_block_delta
data: {"delta":{"text":"more","type":"text_delta"},"index":3,"type":"content_block_delta"}"#,
        r#"event: content_block_stop
data: {"index":3,"type":"content_block_stop"}"#,
        r#"event: message_delta
data: {"delta":{"stop_reason":"tool_use","stop_sequence":null},"type":"message_delta","usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":10,"output_tokens":0}}"#,
        r#"event: message_delta
data: {"delta":{"stop_reason":"tool_use","stop_sequence":null},"type":"message_delta","usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":4,"input_tokens":6,"output_tokens":7}}"#,
    ];

    #[test]
    fn streams_are_the_expected_bytes() {
        let events = [
            ChatEvent::text("Let me \"check\"."),
            ChatEvent::ToolCall {
                index: 0,
                id: Some("toolu_1".into()),
                name: Some("w".into()),
                arguments: String::new(),
            },
            ChatEvent::ToolCall {
                index: 0,
                id: None,
                name: None,
                arguments: "{\"a\":1}".into(),
            },
            ChatEvent::ToolCall {
                index: 1,
                id: None,
                name: None,
                arguments: "{}".into(),
            },
            ChatEvent::text("more"),
            ChatEvent::Finish(FinishReason::ToolCalls),
            ChatEvent::Usage(Usage {
                input_tokens: 10,
                output_tokens: 7,
                cached_input_tokens: 4,
            }),
        ];
        // For each count of `events`, the stream as indices into FRAMES.
        let cases: [&[usize]; 8] = [
            &[0, 1, 2, 3, 4, 5],
            &[0, 1, 2, 6, 3, 4, 5],
            &[0, 1, 2, 6, 3, 7, 8, 4, 5],
            &[0, 1, 2, 6, 3, 7, 9, 8, 4, 5],
            &[0, 1, 2, 6, 3, 7, 9, 8, 10, 11, 12, 4, 5],
            &[0, 1, 2, 6, 3, 7, 9, 8, 10, 11, 12, 13, 14, 15, 4, 5],
            &[0, 1, 2, 6, 3, 7, 9, 8, 10, 11, 12, 13, 14, 15, 16, 5],
            &[0, 1, 2, 6, 3, 7, 9, 8, 10, 11, 12, 13, 14, 15, 17, 5],
        ];
        for (n, frames) in cases.into_iter().enumerate() {
            let mut encoder = StreamEncoder::new("msg_1", "m", 10);
            let mut bytes = Vec::new();
            encoder.start(&mut bytes);
            encoder.ping(&mut bytes);
            encoder.open_text_block(&mut bytes);
            for e in &events[..n] {
                encoder.event(e, &mut bytes);
            }
            encoder.end(&mut bytes);
            let expected: String = frames
                .iter()
                .map(|&i| format!("{}\n\n", FRAMES[i]))
                .collect();
            assert_eq!(String::from_utf8(bytes).unwrap(), expected, "{n} events");
        }
    }
}
