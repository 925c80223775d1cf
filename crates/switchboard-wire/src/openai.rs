//! OpenAI Chat Completions (`POST /v1/chat/completions`).

use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use switchboard_core::{
    ChatBody, ChatEvent, Completion, Content, ContentPart, Error, FinishReason, Message, Role,
    Tool, ToolCall, ToolChoice, Usage,
};

use crate::json;
use crate::{WireError, sse_data};

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// The neutral body.
    pub body: ChatBody,
    /// `stream_options.include_usage`: send the usage chunk.
    pub include_usage: bool,
}

/// Fields handled here; any other top-level field goes to `ChatBody::extra`.
const KNOWN: [&str; 14] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "response_format",
    "n",
    "functions",
];

/// Parses a Chat Completions request body.
///
/// Every portable field becomes a [`ChatBody`] field; other fields (`seed`, `user`,
/// `metadata`, ...) are kept in `extra` for OpenAI-compatible upstreams. `n > 1` and the
/// legacy `functions` are refused: the gateway returns one choice.
pub fn parse_request(bytes: &[u8]) -> Result<ParsedRequest, WireError> {
    // Strings are moved out of the parsed object, not copied.
    let mut obj = json::object(bytes)?;
    let model = json::take_required_str(&mut obj, "model", "model")?;
    let raw = match obj.get_mut("messages") {
        Some(Value::Array(items)) => std::mem::take(items),
        Some(_) => return Err(json::type_error("messages", "an array")),
        None => {
            return Err(WireError::invalid(
                "Missing required parameter: 'messages'.",
                Some("messages".to_owned()),
            ));
        }
    };
    if raw.is_empty() {
        return Err(WireError::invalid(
            "[] is too short - 'messages'",
            Some("messages".to_owned()),
        ));
    }
    let messages = raw
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(m, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut body = ChatBody::new(model, messages);
    body.max_tokens = match json::opt_u32(&obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => json::opt_u32(&obj, "max_tokens")?,
    };
    body.temperature = json::opt_f32_in(&obj, "temperature", 0.0, 2.0)?;
    body.top_p = json::opt_f32_in(&obj, "top_p", 0.0, 1.0)?;
    body.stop = json::stop_list(obj.get("stop"), "stop")?;
    body.stream = json::opt_bool(&obj, "stream")?.unwrap_or(false);
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => json::opt_bool(o, "include_usage")?.unwrap_or(false),
        Some(_) => return Err(json::type_error("stream_options", "an object")),
    };
    if let Some(n) = json::opt_u32(&obj, "n")? {
        if n != 1 {
            return Err(WireError::invalid(
                format!("Invalid 'n': {n}. This gateway returns exactly one choice; set n to 1."),
                Some("n".to_owned()),
            ));
        }
    }
    if obj.contains_key("functions") {
        return Err(WireError::invalid(
            "The legacy 'functions' parameter is not supported; use 'tools'.",
            Some("functions".to_owned()),
        ));
    }
    body.tools = tools(obj.get_mut("tools"))?;
    body.tool_choice = tool_choice(obj.get("tool_choice"))?;
    body.response_format = match obj.get_mut("response_format") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.take()),
        Some(_) => return Err(json::type_error("response_format", "an object")),
    };
    body.extra = obj
        .into_iter()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
        .collect();
    Ok(ParsedRequest {
        body,
        include_usage,
    })
}

fn message(mut value: Value, i: usize) -> Result<Message, WireError> {
    let param = |field: &str| format!("messages[{i}].{field}");
    let obj = value
        .as_object_mut()
        .ok_or_else(|| json::type_error(&format!("messages[{i}]"), "an object"))?;
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some(other) => {
            return Err(WireError::invalid(
                format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'."
                ),
                Some(param("role")),
            ));
        }
        None => {
            return Err(WireError::invalid(
                format!("Missing required parameter: '{}'.", param("role")),
                Some(param("role")),
            ));
        }
    };
    let content = match obj.get_mut("content") {
        None | Some(Value::Null) => Content::Text(String::new()),
        Some(Value::String(s)) => Content::Text(std::mem::take(s)),
        Some(Value::Array(parts)) => Content::Parts(
            parts
                .iter_mut()
                .enumerate()
                .map(|(j, p)| part(p, &format!("messages[{i}].content[{j}]")))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(json::type_error(&param("content"), "a string or an array")),
    };
    let tool_calls = match obj.get_mut("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls
            .iter_mut()
            .enumerate()
            .map(|(j, c)| {
                let p = format!("messages[{i}].tool_calls[{j}]");
                let c = c
                    .as_object_mut()
                    .ok_or_else(|| json::type_error(&p, "an object"))?;
                let Some(Value::Object(mut function)) = c.remove("function") else {
                    return Err(json::type_error(&format!("{p}.function"), "an object"));
                };
                let id = json::take_required_str(c, "id", &format!("{p}.id"))?;
                Ok(ToolCall {
                    id,
                    name: json::take_required_str(
                        &mut function,
                        "name",
                        &format!("{p}.function.name"),
                    )?,
                    arguments: json::take_opt_str(
                        &mut function,
                        "arguments",
                        &format!("{p}.function.arguments"),
                    )?
                    .unwrap_or_default(),
                })
            })
            .collect::<Result<_, WireError>>()?,
        Some(_) => return Err(json::type_error(&param("tool_calls"), "an array")),
    };
    let tool_call_id = json::take_opt_str(obj, "tool_call_id", &param("tool_call_id"))?;
    if role == Role::Tool && tool_call_id.is_none() {
        return Err(WireError::invalid(
            format!("Missing required parameter: '{}'.", param("tool_call_id")),
            Some(param("tool_call_id")),
        ));
    }
    Ok(Message {
        role,
        content,
        tool_calls,
        tool_call_id,
    })
}

fn part(value: &mut Value, param: &str) -> Result<ContentPart, WireError> {
    let obj = value
        .as_object_mut()
        .ok_or_else(|| json::type_error(param, "an object"))?;
    match obj.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ContentPart::Text {
            text: json::take_required_str(obj, "text", &format!("{param}.text"))?,
        }),
        Some("image_url") => {
            let url = match obj.get_mut("image_url").and_then(|i| i.get_mut("url")) {
                Some(Value::String(url)) => std::mem::take(url),
                _ => {
                    return Err(json::type_error(
                        &format!("{param}.image_url.url"),
                        "a string",
                    ));
                }
            };
            Ok(ContentPart::Image { url })
        }
        Some(other) => Err(WireError::invalid(
            format!(
                "Content parts of type '{other}' are not supported; use 'text' or 'image_url'."
            ),
            Some(format!("{param}.type")),
        )),
        None => Err(json::type_error(&format!("{param}.type"), "a string")),
    }
}

fn tools(value: Option<&mut Value>) -> Result<Vec<Tool>, WireError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(json::type_error("tools", "an array")),
    };
    items
        .iter_mut()
        .enumerate()
        .map(|(i, t)| {
            let p = format!("tools[{i}]");
            let function = t
                .get_mut("function")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| json::type_error(&format!("{p}.function"), "an object"))?;
            Ok(Tool {
                name: json::take_required_str(function, "name", &format!("{p}.function.name"))?,
                description: json::take_opt_str(
                    function,
                    "description",
                    &format!("{p}.function.description"),
                )?,
                parameters: function
                    .get_mut("parameters")
                    .map(Value::take)
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

fn tool_choice(value: Option<&Value>) -> Result<Option<ToolChoice>, WireError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" => Ok(Some(ToolChoice::Required)),
            other => Err(WireError::invalid(
                format!(
                    "Invalid value: '{other}'. Supported values are: 'none', 'auto' and 'required'."
                ),
                Some("tool_choice".to_owned()),
            )),
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| json::type_error("tool_choice.function.name", "a string"))?;
            Ok(Some(ToolChoice::Tool {
                name: name.to_owned(),
            }))
        }
        Some(_) => Err(json::type_error("tool_choice", "a string or an object")),
    }
}

/// Encodes [`ChatEvent`]s as Chat Completions SSE chunks, exactly as OpenAI streams them:
/// a role chunk, content / tool-call chunks, a finish chunk, the usage chunk (when asked
/// for), then `data: [DONE]`.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamEncoder {
    /// An encoder for one answer.
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created: u64,
        include_usage: bool,
    ) -> Self {
        Self {
            id: id.into(),
            model: model.into(),
            created,
            include_usage,
            finish: None,
            usage: None,
        }
    }

    /// One `chat.completion.chunk` with `choices` and, when usage was asked for, `usage`
    /// (null but on the usage chunk).
    fn chunk<D: Serialize>(
        &self,
        out: &mut Vec<u8>,
        choices: &[ChunkChoice<'_, D>],
        usage: Option<&UsageOut>,
    ) {
        sse_data(
            out,
            &ChunkOut {
                choices,
                created: self.created,
                id: &self.id,
                model: &self.model,
                object: "chat.completion.chunk",
                service_tier: "default",
                system_fingerprint: SYSTEM_FINGERPRINT,
                usage: self.include_usage.then_some(usage),
            },
        );
    }

    fn delta<D: Serialize>(&self, out: &mut Vec<u8>, delta: D, finish: Option<&str>) {
        let choice = ChunkChoice {
            delta,
            finish_reason: finish,
            index: 0,
            logprobs: (),
        };
        self.chunk(out, &[choice], None);
    }

    /// The role chunk that opens every stream.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct RoleDelta {
            content: &'static str,
            refusal: (),
            role: &'static str,
        }
        self.delta(
            out,
            RoleDelta {
                content: "",
                refusal: (),
                role: "assistant",
            },
            None,
        );
    }

    /// One event. Finish and usage are held for [`end`](Self::end), which writes them in
    /// OpenAI's order whatever order the upstream reported them in.
    pub fn event(&mut self, event: &ChatEvent, out: &mut Vec<u8>) {
        match event {
            ChatEvent::Text { text } => {
                #[derive(Serialize)]
                struct TextDelta<'a> {
                    content: &'a str,
                }
                self.delta(out, TextDelta { content: text }, None);
            }
            ChatEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                #[derive(Serialize)]
                struct ToolCallsDelta<'a> {
                    tool_calls: [ToolCallDelta<'a>; 1],
                }
                #[derive(Serialize)]
                struct ToolCallDelta<'a> {
                    function: FunctionDelta<'a>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    id: Option<&'a str>,
                    index: u32,
                    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
                    kind: Option<&'static str>,
                }
                #[derive(Serialize)]
                struct FunctionDelta<'a> {
                    arguments: &'a str,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    name: Option<&'a str>,
                }
                let call = ToolCallDelta {
                    function: FunctionDelta {
                        arguments,
                        name: name.as_deref(),
                    },
                    id: id.as_deref(),
                    index: *index,
                    kind: id.is_some().then_some("function"),
                };
                self.delta(out, ToolCallsDelta { tool_calls: [call] }, None);
            }
            ChatEvent::Usage(usage) => self
                .usage
                .get_or_insert_with(Usage::default)
                .merge_max(*usage),
            ChatEvent::Finish(reason) => self.finish = Some(reason.clone()),
            _ => {}
        }
    }

    /// The finish chunk, the usage chunk (when asked for) and `data: [DONE]`.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct EmptyDelta {}
        let finish = self.finish.take().unwrap_or(FinishReason::Stop);
        self.delta(out, EmptyDelta {}, Some(finish.as_openai()));
        if self.include_usage {
            let usage = UsageOut::new(&self.usage.unwrap_or_default());
            self.chunk::<EmptyDelta>(out, &[], Some(&usage));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// An error after the stream started: OpenAI's in-stream error object, and no `[DONE]`.
    pub fn error(&mut self, error: &Error, out: &mut Vec<u8>) {
        let (_, body) = error_for(error);
        sse_data(out, &body);
    }
}

// The output types below write their fields in alphabetical order: the order the
// `serde_json::Value` maps these answers were first built with serialize in, so the bytes
// on the wire stay the same.

/// A `chat.completion.chunk`.
#[derive(Serialize)]
struct ChunkOut<'a, D> {
    choices: &'a [ChunkChoice<'a, D>],
    created: u64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    service_tier: &'static str,
    system_fingerprint: &'static str,
    /// Absent unless usage was asked for; then null but on the usage chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a UsageOut>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a, D> {
    delta: D,
    finish_reason: Option<&'a str>,
    index: u32,
    logprobs: (),
}

/// Chat Completions `usage`.
#[derive(Serialize)]
struct UsageOut {
    completion_tokens: u64,
    completion_tokens_details: CompletionTokensDetails,
    prompt_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
    total_tokens: u64,
}

#[derive(Serialize)]
struct CompletionTokensDetails {
    accepted_prediction_tokens: u8,
    audio_tokens: u8,
    reasoning_tokens: u8,
    rejected_prediction_tokens: u8,
}

#[derive(Serialize)]
struct PromptTokensDetails {
    audio_tokens: u8,
    cached_tokens: u64,
}

impl UsageOut {
    fn new(u: &Usage) -> Self {
        Self {
            completion_tokens: u.output_tokens,
            completion_tokens_details: CompletionTokensDetails {
                accepted_prediction_tokens: 0,
                audio_tokens: 0,
                reasoning_tokens: 0,
                rejected_prediction_tokens: 0,
            },
            prompt_tokens: u.input_tokens,
            prompt_tokens_details: PromptTokensDetails {
                audio_tokens: 0,
                cached_tokens: u.cached_input_tokens,
            },
            total_tokens: u.input_tokens.saturating_add(u.output_tokens),
        }
    }
}

/// A whole `chat.completion`, with an optional `switchboard` block.
#[derive(Serialize)]
struct CompletionOut<'a, S: ?Sized> {
    choices: [CompletionChoice<'a>; 1],
    created: u64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    service_tier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    switchboard: Option<&'a S>,
    system_fingerprint: &'static str,
    usage: UsageOut,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    finish_reason: &'a str,
    index: u32,
    logprobs: (),
    message: MessageOut<'a>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    annotations: [(); 0],
    content: Option<&'a str>,
    refusal: (),
    role: &'static str,
    #[serde(skip_serializing_if = "ToolCallsOut::is_empty")]
    tool_calls: ToolCallsOut<'a>,
}

struct ToolCallsOut<'a>(&'a [ToolCall]);

impl ToolCallsOut<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for ToolCallsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct CallOut<'a> {
            function: FunctionOut<'a>,
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        #[derive(Serialize)]
        struct FunctionOut<'a> {
            arguments: &'a str,
            name: &'a str,
        }
        serializer.collect_seq(self.0.iter().map(|c| CallOut {
            function: FunctionOut {
                arguments: &c.arguments,
                name: &c.name,
            },
            id: &c.id,
            kind: "function",
        }))
    }
}

impl<'a, S: Serialize + ?Sized> CompletionOut<'a, S> {
    fn new(
        completion: &'a Completion,
        id: &'a str,
        created: u64,
        finish: &'a FinishReason,
        switchboard: Option<&'a S>,
    ) -> Self {
        let content = if !completion.tool_calls.is_empty() && completion.text.is_empty() {
            None
        } else {
            Some(completion.text.as_str())
        };
        Self {
            choices: [CompletionChoice {
                finish_reason: finish.as_openai(),
                index: 0,
                logprobs: (),
                message: MessageOut {
                    annotations: [],
                    content,
                    refusal: (),
                    role: "assistant",
                    tool_calls: ToolCallsOut(&completion.tool_calls),
                },
            }],
            created,
            id,
            model: &completion.model,
            object: "chat.completion",
            service_tier: "default",
            switchboard,
            system_fingerprint: SYSTEM_FINGERPRINT,
            usage: UsageOut::new(&completion.usage.unwrap_or_default()),
        }
    }
}

const SYSTEM_FINGERPRINT: &str = "fp_switchboard";

/// Chat Completions `usage`.
pub fn usage_json(u: &Usage) -> Value {
    serde_json::to_value(UsageOut::new(u)).unwrap_or(Value::Null)
}

/// A whole `chat.completion` answer.
pub fn completion_json(completion: &Completion, id: &str, created: u64) -> Value {
    let finish = completion.finish.clone().unwrap_or(FinishReason::Stop);
    let answer = CompletionOut::<()>::new(completion, id, created, &finish, None);
    serde_json::to_value(answer).unwrap_or(Value::Null)
}

/// A whole `chat.completion` answer as JSON bytes, with `switchboard` (when given) as its
/// `switchboard` field: the same JSON as [`completion_json`] with that field inserted,
/// written directly.
pub fn write_completion<S: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    completion: &Completion,
    id: &str,
    created: u64,
    switchboard: Option<&S>,
) -> Result<(), serde_json::Error> {
    let finish = completion.finish.clone().unwrap_or(FinishReason::Stop);
    let answer = CompletionOut::new(completion, id, created, &finish, switchboard);
    serde_json::to_writer(out, &answer)
}

/// OpenAI's `type` and `code` for a status.
fn kind_and_code(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", None),
        _ => ("server_error", None),
    }
}

/// An error body: `{"error": {"message", "type", "param", "code"}}`.
pub fn error_body(status: u16, message: &str, param: Option<&str>, code: Option<&str>) -> Value {
    let (kind, default_code) = kind_and_code(status);
    json!({"error": {"message": message, "type": kind, "param": param, "code": code.or(default_code)}})
}

/// The status and body OpenAI would use for a core [`Error`]; `code` is the error's stable
/// switchboard code where OpenAI has none of its own.
pub fn error_for(error: &Error) -> (u16, Value) {
    let status = error.status().as_u16();
    let (_, default_code) = kind_and_code(status);
    let code = default_code.unwrap_or(error.code());
    (
        status,
        error_body(status, &error.to_string(), None, Some(code)),
    )
}

/// The error body for a refused request.
pub fn wire_error_body(error: &WireError) -> Value {
    error_body(error.status, &error.message, error.param.as_deref(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ParsedRequest, WireError> {
        parse_request(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn parses_a_full_request() {
        let p = parse(json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "max_completion_tokens": 100,
            "temperature": 0.5,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_object"},
            "seed": 7
        }))
        .unwrap();
        let b = &p.body;
        assert!(p.include_usage && b.stream);
        assert_eq!(b.messages.len(), 4);
        assert_eq!(b.messages[0].role, Role::System);
        assert_eq!(b.messages[2].tool_calls[0].name, "f");
        assert_eq!(b.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(b.max_tokens, Some(100));
        assert_eq!(b.stop, vec!["END"]);
        assert_eq!(b.tool_choice, Some(ToolChoice::Tool { name: "f".into() }));
        assert_eq!(b.extra["seed"], 7);
        assert!(!b.extra.contains_key("model"));
    }

    #[test]
    fn refuses_what_openai_refuses_with_its_param() {
        for (body, param, needle) in [
            (
                json!({"messages": [{"role": "user", "content": "x"}]}),
                Some("model"),
                "Missing required parameter",
            ),
            (
                json!({"model": "m"}),
                Some("messages"),
                "Missing required parameter: 'messages'",
            ),
            (
                json!({"model": "m", "messages": []}),
                Some("messages"),
                "too short",
            ),
            (
                json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
                Some("messages[0].role"),
                "Invalid value",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
                Some("messages[0].content"),
                "Invalid type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                Some("temperature"),
                "between",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}),
                Some("n"),
                "exactly one",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                Some("messages[0].tool_call_id"),
                "Missing",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
                Some("max_tokens"),
                "non-negative",
            ),
        ] {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), param, "{body}");
            assert!(err.message.contains(needle), "{body}: {err}");
        }
        let err = parse_request(b"{not json").unwrap_err();
        assert!(
            err.message.contains("could not parse the JSON body"),
            "{err}"
        );
    }

    #[test]
    fn moved_fields_arrive_whole_and_errors_keep_their_order() {
        let p = parse(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]},
                {"role": "assistant", "content": "b", "tool_calls": [{"id": "c1", "function": {"name": "f"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "r"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "g", "parameters": null}},
                {"type": "function", "function": {"name": "h"}}
            ],
            "response_format": {"type": "json_object"},
            "user": "u1"
        }))
        .unwrap();
        let b = &p.body;
        assert_eq!(b.model, "m");
        assert_eq!(
            b.messages[0].content,
            Content::Parts(vec![
                ContentPart::Text { text: "a".into() },
                ContentPart::Image { url: "u".into() }
            ])
        );
        assert_eq!(b.messages[1].content, Content::Text("b".into()));
        assert_eq!(
            b.messages[1].tool_calls,
            vec![ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: String::new()
            }]
        );
        assert_eq!(b.messages[2].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(b.tools[0].description.as_deref(), Some("d"));
        assert_eq!(b.tools[0].parameters, json!({"type": "object"}));
        assert_eq!(b.tools[1].parameters, Value::Null);
        assert_eq!(
            b.tools[2].parameters,
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(b.response_format, Some(json!({"type": "json_object"})));
        assert_eq!(b.extra.len(), 1);
        assert_eq!(b.extra["user"], "u1");

        let call = |c: Value| {
            parse(json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [c]}]}))
                .unwrap_err()
                .param
        };
        let p = |s: &str| Some(format!("messages[0].tool_calls[0]{s}"));
        assert_eq!(call(json!({})), p(".function"));
        assert_eq!(call(json!({"function": 1})), p(".function"));
        assert_eq!(call(json!({"function": {}})), p(".id"));
        assert_eq!(call(json!({"id": 1, "function": {"name": "f"}})), p(".id"));
        assert_eq!(
            call(json!({"id": "c", "function": {}})),
            p(".function.name")
        );
        assert_eq!(
            call(json!({"id": "c", "function": {"name": "f", "arguments": 1}})),
            p(".function.arguments")
        );
        assert_eq!(call(json!(1)), p(""));
        let err = parse(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 1}}]}]})).unwrap_err();
        assert_eq!(
            err.param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
        let err = parse(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content[0].text"));
        let err = parse(json!({"model": 1, "messages": 1})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("model"));
        let err = parse(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": "text"})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("response_format"));
    }

    #[test]
    fn the_stream_has_openais_order_whatever_the_upstreams_was() {
        let mut e = StreamEncoder::new("id", "m", 1, true);
        let mut out = Vec::new();
        e.start(&mut out);
        e.event(&ChatEvent::text("Hi"), &mut out);
        e.event(&ChatEvent::Usage(Usage::new(3, 1)), &mut out);
        e.event(&ChatEvent::Finish(FinishReason::Length), &mut out);
        e.end(&mut out);
        let text = String::from_utf8(out).unwrap();
        let chunks: Vec<&str> = text.split("\n\n").filter(|s| !s.is_empty()).collect();
        assert_eq!(chunks.len(), 5);
        let finish: Value = serde_json::from_str(chunks[2].trim_start_matches("data: ")).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
        let usage: Value = serde_json::from_str(chunks[3].trim_start_matches("data: ")).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 1);
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(chunks[4], "data: [DONE]");
    }

    #[test]
    fn errors_carry_openais_type_and_code() {
        let (status, body) = error_for(&Error::ModelNotFound {
            model: "gpt-9".into(),
        });
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "model_not_found");
        let (status, body) = error_for(&Error::BudgetExceeded {
            scope: "global".into(),
            retry_after: None,
        });
        assert_eq!(status, 429);
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }
}

/// The answers the typed writers produce, byte for byte.
#[cfg(test)]
mod golden {
    use serde_json::json;
    use switchboard_core::{ChatEvent, Completion, FinishReason, ProviderId, ToolCall, Usage};

    use super::{StreamEncoder, completion_json, write_completion};

    fn completions() -> Vec<Completion> {
        let call = |i: usize| ToolCall {
            id: format!("call_{i}"),
            name: "get_weather".into(),
            arguments: format!("{{\"city\": \"Paris \\\"{i}\\\"\"}}"),
        };
        let base = Completion {
            provider: ProviderId::OPENAI,
            model: "gpt-4o-mini".into(),
            text: "Hello, \"world\" \u{1F44B}\n\ttab \\ \u{7}".into(),
            tool_calls: Vec::new(),
            usage: Some(Usage {
                input_tokens: 12,
                output_tokens: u64::MAX,
                cached_input_tokens: 3,
            }),
            finish: Some(FinishReason::Length),
        };
        vec![
            base.clone(),
            Completion {
                text: String::new(),
                usage: None,
                finish: None,
                ..base.clone()
            },
            Completion {
                text: String::new(),
                tool_calls: vec![call(0), call(1)],
                finish: Some(FinishReason::ToolCalls),
                ..base.clone()
            },
            Completion {
                tool_calls: vec![call(0)],
                finish: Some(FinishReason::Other("weird".into())),
                ..base.clone()
            },
            Completion {
                finish: Some(FinishReason::ContentFilter),
                ..base
            },
        ]
    }

    /// `completions()` as `chat.completion` objects, id `chatcmpl-1`, created 1700000000.
    const COMPLETIONS: [&str; 5] = [
        r#"{"choices":[{"finish_reason":"length","index":0,"logprobs":null,"message":{"annotations":[],"content":"Hello, \"world\" 👋\n\ttab \\ \u0007","refusal":null,"role":"assistant"}}],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-mini","object":"chat.completion","service_tier":"default","system_fingerprint":"fp_switchboard","usage":{"completion_tokens":18446744073709551615,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":12,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":3},"total_tokens":18446744073709551615}}"#,
        r#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"annotations":[],"content":"","refusal":null,"role":"assistant"}}],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-mini","object":"chat.completion","service_tier":"default","system_fingerprint":"fp_switchboard","usage":{"completion_tokens":0,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":0,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":0}}"#,
        r#"{"choices":[{"finish_reason":"tool_calls","index":0,"logprobs":null,"message":{"annotations":[],"content":null,"refusal":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{\"city\": \"Paris \\\"0\\\"\"}","name":"get_weather"},"id":"call_0","type":"function"},{"function":{"arguments":"{\"city\": \"Paris \\\"1\\\"\"}","name":"get_weather"},"id":"call_1","type":"function"}]}}],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-mini","object":"chat.completion","service_tier":"default","system_fingerprint":"fp_switchboard","usage":{"completion_tokens":18446744073709551615,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":12,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":3},"total_tokens":18446744073709551615}}"#,
        r#"{"choices":[{"finish_reason":"weird","index":0,"logprobs":null,"message":{"annotations":[],"content":"Hello, \"world\" 👋\n\ttab \\ \u0007","refusal":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{\"city\": \"Paris \\\"0\\\"\"}","name":"get_weather"},"id":"call_0","type":"function"}]}}],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-mini","object":"chat.completion","service_tier":"default","system_fingerprint":"fp_switchboard","usage":{"completion_tokens":18446744073709551615,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":12,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":3},"total_tokens":18446744073709551615}}"#,
        r#"{"choices":[{"finish_reason":"content_filter","index":0,"logprobs":null,"message":{"annotations":[],"content":"Hello, \"world\" 👋\n\ttab \\ \u0007","refusal":null,"role":"assistant"}}],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-mini","object":"chat.completion","service_tier":"default","system_fingerprint":"fp_switchboard","usage":{"completion_tokens":18446744073709551615,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":12,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":3},"total_tokens":18446744073709551615}}"#,
    ];

    #[test]
    fn completions_are_the_expected_bytes() {
        let block = json!({"provider": "openai", "reason": null, "status": "ok", "trace_id": "ab"});
        for (c, expected) in completions().iter().zip(COMPLETIONS) {
            assert_eq!(
                completion_json(c, "chatcmpl-1", 1_700_000_000).to_string(),
                expected
            );
            let mut bytes = Vec::new();
            write_completion(
                &mut bytes,
                c,
                "chatcmpl-1",
                1_700_000_000,
                None::<&serde_json::Value>,
            )
            .unwrap();
            assert_eq!(String::from_utf8(bytes).unwrap(), expected);
            let mut bytes = Vec::new();
            write_completion(&mut bytes, c, "chatcmpl-1", 1_700_000_000, Some(&block)).unwrap();
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                expected.replace(
                    r#","system_fingerprint":"#,
                    r#","switchboard":{"provider":"openai","reason":null,"status":"ok","trace_id":"ab"},"system_fingerprint":"#
                )
            );
        }
    }

    /// The SSE events the streams below are made of (each ends with a blank line).
    const FRAMES: [&str; 20] = [
        r#"data: {"choices":[{"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard"}"#,
        r#"data: {"choices":[{"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard"}"#,
        r#"data: [DONE]"#,
        r#"data: {"choices":[{"delta":{"content":"Hel"},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard"}"#,
        r#"data: {"choices":[{"delta":{"content":"lo \"there\"\n"},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard"}"#,
        r#"data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"","name":"f"},"id":"call_1","index":0,"type":"function"}]},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard"}"#,
        r#"data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":"},"index":0}]},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard"}"#,
        r#"data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"1}","name":"g"},"index":1}]},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard"}"#,
        r#"data: {"choices":[{"delta":{},"finish_reason":"tool_calls","index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard"}"#,
        r#"data: {"choices":[{"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":null}"#,
        r#"data: {"choices":[{"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":null}"#,
        r#"data: {"choices":[],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":{"completion_tokens":0,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":0,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":0}}"#,
        r#"data: {"choices":[{"delta":{"content":"Hel"},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":null}"#,
        r#"data: {"choices":[{"delta":{"content":"lo \"there\"\n"},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":null}"#,
        r#"data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"","name":"f"},"id":"call_1","index":0,"type":"function"}]},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":null}"#,
        r#"data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":"},"index":0}]},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":null}"#,
        r#"data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"1}","name":"g"},"index":1}]},"finish_reason":null,"index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":null}"#,
        r#"data: {"choices":[],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":{"completion_tokens":4,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":9,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":13}}"#,
        r#"data: {"choices":[{"delta":{},"finish_reason":"tool_calls","index":0,"logprobs":null}],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":null}"#,
        r#"data: {"choices":[],"created":17,"id":"chatcmpl-x","model":"gpt-4o","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_switchboard","usage":{"completion_tokens":4,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":10,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":5},"total_tokens":14}}"#,
    ];

    #[test]
    fn streams_are_the_expected_bytes() {
        let events = [
            ChatEvent::text("Hel"),
            ChatEvent::text("lo \"there\"\n"),
            ChatEvent::ToolCall {
                index: 0,
                id: Some("call_1".into()),
                name: Some("f".into()),
                arguments: String::new(),
            },
            ChatEvent::ToolCall {
                index: 0,
                id: None,
                name: None,
                arguments: "{\"a\":".into(),
            },
            ChatEvent::ToolCall {
                index: 1,
                id: None,
                name: Some("g".into()),
                arguments: "1}".into(),
            },
            ChatEvent::Usage(Usage::new(9, 4)),
            ChatEvent::Finish(FinishReason::ToolCalls),
            ChatEvent::Usage(Usage {
                input_tokens: 10,
                output_tokens: 2,
                cached_input_tokens: 5,
            }),
        ];
        // (include_usage, how many of `events`, the stream as indices into FRAMES)
        let cases: [(bool, usize, &[usize]); 18] = [
            (false, 0, &[0, 1, 2]),
            (false, 1, &[0, 3, 1, 2]),
            (false, 2, &[0, 3, 4, 1, 2]),
            (false, 3, &[0, 3, 4, 5, 1, 2]),
            (false, 4, &[0, 3, 4, 5, 6, 1, 2]),
            (false, 5, &[0, 3, 4, 5, 6, 7, 1, 2]),
            (false, 6, &[0, 3, 4, 5, 6, 7, 1, 2]),
            (false, 7, &[0, 3, 4, 5, 6, 7, 8, 2]),
            (false, 8, &[0, 3, 4, 5, 6, 7, 8, 2]),
            (true, 0, &[9, 10, 11, 2]),
            (true, 1, &[9, 12, 10, 11, 2]),
            (true, 2, &[9, 12, 13, 10, 11, 2]),
            (true, 3, &[9, 12, 13, 14, 10, 11, 2]),
            (true, 4, &[9, 12, 13, 14, 15, 10, 11, 2]),
            (true, 5, &[9, 12, 13, 14, 15, 16, 10, 11, 2]),
            (true, 6, &[9, 12, 13, 14, 15, 16, 10, 17, 2]),
            (true, 7, &[9, 12, 13, 14, 15, 16, 18, 17, 2]),
            (true, 8, &[9, 12, 13, 14, 15, 16, 18, 19, 2]),
        ];
        for (include_usage, n, frames) in cases {
            let mut encoder = StreamEncoder::new("chatcmpl-x", "gpt-4o", 17, include_usage);
            let mut bytes = Vec::new();
            encoder.start(&mut bytes);
            for e in &events[..n] {
                encoder.event(e, &mut bytes);
            }
            encoder.end(&mut bytes);
            let expected: String = frames
                .iter()
                .map(|&i| format!("{}\n\n", FRAMES[i]))
                .collect();
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                expected,
                "include_usage {include_usage}, {n} events"
            );
        }
    }
}
