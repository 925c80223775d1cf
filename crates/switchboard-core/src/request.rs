//! The provider-neutral chat request.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Extensions;
use serde_json::{Map, Value};

/// A provider-neutral chat request: a [`ChatBody`] shared behind an `Arc` plus the
/// [`Extensions`] through which layers talk to each other (a `Tier`, a cost estimate, a
/// route, a deadline).
///
/// Cloning is cheap (hedging clones the request once per attempt): the body is shared and
/// only copied when a layer edits it through [`body_mut`](ChatRequest::body_mut)
/// (copy-on-write). The extensions are cloned.
///
/// ```
/// use switchboard_core::{ChatBody, ChatRequest, Message, Tier};
///
/// let mut request = ChatRequest::new(
///     ChatBody::new("gpt-4o-mini", vec![Message::user("Say hi")]).max_tokens(64),
/// );
/// request.extensions_mut().insert(Tier::L1);
/// let hedge = request.clone(); // shares the body
/// request.body_mut().max_tokens = Some(32); // copies it for this request only
/// assert_eq!(hedge.body().max_tokens, Some(64));
/// ```
#[derive(Debug, Clone)]
pub struct ChatRequest {
    body: Arc<ChatBody>,
    extensions: Extensions,
}

impl ChatRequest {
    /// A request with empty extensions.
    pub fn new(body: ChatBody) -> Self {
        Self::from_parts(Arc::new(body), Extensions::new())
    }

    /// A request from a shared body and extensions.
    pub fn from_parts(body: Arc<ChatBody>, extensions: Extensions) -> Self {
        Self { body, extensions }
    }

    /// The body.
    pub fn body(&self) -> &ChatBody {
        &self.body
    }

    /// The body for editing; copies it first if another request shares it.
    pub fn body_mut(&mut self) -> &mut ChatBody {
        Arc::make_mut(&mut self.body)
    }

    /// The shared body.
    pub fn shared_body(&self) -> &Arc<ChatBody> {
        &self.body
    }

    /// The extensions.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The extensions, mutably.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// Splits the request into its body and extensions.
    pub fn into_parts(self) -> (Arc<ChatBody>, Extensions) {
        (self.body, self.extensions)
    }
}

/// What is asked of the model. Field names follow the common ground of the OpenAI Chat
/// Completions and Anthropic Messages APIs; adapters translate both ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    /// The model asked for: a logical model (`quality`, `fast`) or a concrete one
    /// (`gpt-4o-mini`). Routing replaces it with the concrete model of the chosen provider.
    pub model: String,
    /// System prompt. Adapters lift it into the provider's place for it (the `system`
    /// field for Anthropic, a leading `system` message for OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Upper bound on generated tokens. Anthropic requires one; its adapter supplies a
    /// default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Whether the caller wants a stream. Upstream calls always stream; this only decides
    /// whether the edge forwards events or aggregates them into one answer.
    #[serde(default)]
    pub stream: bool,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// OpenAI's `response_format` (JSON mode, JSON schema), passed through as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Provider-specific fields passed through unchanged (`seed`, `user`, `metadata`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl ChatBody {
    /// A body with a model and messages and nothing else set.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            system: None,
            messages,
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Vec::new(),
            stream: false,
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            extra: Map::new(),
        }
    }

    /// Sets the system prompt.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// Sets `max_tokens`.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Sets the temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the stream flag.
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// The text of the last user message, if any: what echo-style simulators and
    /// exact-match caches key on.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.text())
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions (OpenAI `system`/`developer`; lifted into `system` for Anthropic).
    #[serde(alias = "developer")]
    System,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Text or parts.
    #[serde(default)]
    pub content: Content,
    /// Tool calls made by the assistant in this turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the id of the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with text content.
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Content::Text(text.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::new(Role::User, text)
    }

    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::new(Role::Assistant, text)
    }

    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::new(Role::System, text)
    }
}

/// Message content: plain text or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<ContentPart>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

impl Content {
    /// The text parts joined with newlines (images are skipped).
    pub fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter_map(|p| match p {
                        ContentPart::Text { text } => Some(text.as_str()),
                        ContentPart::Image { .. } => None,
                    })
                    .collect();
                texts.join("\n")
            }
        }
    }

    /// Total bytes of text, without copying it.
    pub fn text_len(&self) -> usize {
        match self {
            Content::Text(text) => text.len(),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => text.len(),
                    ContentPart::Image { .. } => 0,
                })
                .sum(),
        }
    }
}

/// One part of a multi-part message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL (`https://` or a `data:` URL).
    Image {
        /// Where the image is.
        url: String,
    },
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Function name.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// How the model may use tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// This tool.
    Tool {
        /// The tool's name.
        name: String,
    },
}

/// A complete tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// Provider-assigned id, echoed by the tool result.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_the_body_until_edited() {
        let a = ChatRequest::new(ChatBody::new("m", vec![Message::user("hi")]));
        let mut b = a.clone();
        assert!(Arc::ptr_eq(a.shared_body(), b.shared_body()));
        b.body_mut().temperature = Some(0.2);
        assert!(!Arc::ptr_eq(a.shared_body(), b.shared_body()));
        assert_eq!(a.body().temperature, None);
    }

    #[test]
    fn body_serde_round_trip_with_parts_and_tools() {
        let json = serde_json::json!({
            "model": "quality",
            "system": "be brief",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image", "url": "https://x/y.png"}]},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}]},
                {"role": "tool", "content": "42", "tool_call_id": "c1"}
            ],
            "max_tokens": 100,
            "stop": ["END"],
            "stream": true,
            "tools": [{"name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "f"},
            "extra": {"seed": 7}
        });
        let body: ChatBody = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(body.messages[0].content.text(), "look");
        assert_eq!(body.messages[0].content.text_len(), 4);
        assert_eq!(body.last_user_text().as_deref(), Some("look"));
        let back = serde_json::to_value(&body).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_value::<ChatBody>(serde_json::json!({
            "model": "m", "messages": [], "max_tokns": 5
        }))
        .unwrap_err();
        assert!(err.to_string().contains("max_tokns"), "{err}");
    }

    #[test]
    fn developer_role_reads_as_system() {
        let m: Message =
            serde_json::from_value(serde_json::json!({"role": "developer", "content": "x"}))
                .unwrap();
        assert_eq!(m.role, Role::System);
    }
}
