//! The provider-neutral response: a provider, a model and a stream of [`ChatEvent`]s.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::{Deserialize, Serialize};

use tokio::time::Instant;

use crate::{Error, Extensions, ModelName, ProviderId, ToolCall, Usage};

/// One event of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChatEvent {
    /// A piece of the answer's text.
    Text {
        /// The text.
        text: String,
    },
    /// A piece of a tool call. The first piece of a call carries its `id` and `name`;
    /// later pieces append to `arguments`.
    ToolCall {
        /// Which call of this answer (0, 1, ...).
        index: u32,
        /// Provider-assigned call id (first piece only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Function name (first piece only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A fragment of the JSON arguments.
        #[serde(default)]
        arguments: String,
    },
    /// Token usage. May come more than once; the field-wise maximum is final
    /// ([`Usage::merge_max`]).
    Usage(Usage),
    /// Why generation stopped. The last content event.
    Finish(FinishReason),
}

impl ChatEvent {
    /// A text event.
    pub fn text(text: impl Into<String>) -> Self {
        ChatEvent::Text { text: text.into() }
    }

    /// Whether this is content (text or a tool call): the first one is what "first
    /// token" means.
    pub fn is_content(&self) -> bool {
        matches!(self, ChatEvent::Text { .. } | ChatEvent::ToolCall { .. })
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Content was filtered or refused.
    ContentFilter,
    /// Any other reason, as the provider named it.
    Other(String),
}

impl FinishReason {
    /// The OpenAI spelling (`stop`, `length`, `tool_calls`, `content_filter`).
    pub fn as_openai(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(other) => other,
        }
    }

    /// The Anthropic spelling (`end_turn`, `max_tokens`, `tool_use`, `refusal`).
    pub fn as_anthropic(&self) -> &str {
        match self {
            FinishReason::Stop => "end_turn",
            FinishReason::Length => "max_tokens",
            FinishReason::ToolCalls => "tool_use",
            FinishReason::ContentFilter => "refusal",
            FinishReason::Other(other) => other,
        }
    }
}

/// The boxed stream of an answer's events. It ends after the last event; an `Err` item is
/// terminal.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, Error>> + Send + 'static>>;

/// A provider's answer. A provider's future resolves with it at the first content event;
/// that event is the stream's first item and the rest follow as they arrive.
///
/// `ChatResponse` is itself a [`Stream`] of the events. Dropping it cancels the upstream
/// call.
pub struct ChatResponse {
    provider: ProviderId,
    model: ModelName,
    events: EventStream,
    extensions: Extensions,
}

impl ChatResponse {
    /// A response from a provider, the concrete model that answered, and its events.
    pub fn new(
        provider: ProviderId,
        model: impl Into<ModelName>,
        events: impl Stream<Item = Result<ChatEvent, Error>> + Send + 'static,
    ) -> Self {
        Self {
            provider,
            model: model.into(),
            events: Box::pin(events),
            extensions: Extensions::new(),
        }
    }

    /// The provider that answered.
    pub fn provider(&self) -> &ProviderId {
        &self.provider
    }

    /// The concrete model that answered.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The concrete model that answered, as a shared name.
    pub fn model_name(&self) -> &ModelName {
        &self.model
    }

    /// When the stack saw this answer's first token: the first layer to ask (the
    /// innermost that times it) reads the clock and records it as a [`FirstTokenAt`]
    /// extension; the layers above see the same answer in the same poll and read that
    /// instead of the clock.
    pub fn first_token_at(&mut self) -> Instant {
        *self
            .extensions
            .get_or_insert_with(|| FirstTokenAt(crate::CallClock::enter().now()))
            .at()
    }

    /// The extensions (degradations, attempts made, the cost charged).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The extensions, mutably.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// Replaces the event stream with a wrapper around it (an idle timeout, a settlement
    /// guard, a metrics tap), keeping provider, model and extensions.
    pub fn map_events<F, S>(mut self, wrap: F) -> Self
    where
        F: FnOnce(EventStream) -> S,
        S: Stream<Item = Result<ChatEvent, Error>> + Send + 'static,
    {
        let events = std::mem::replace(&mut self.events, Box::pin(futures_empty()));
        self.events = Box::pin(wrap(events));
        self
    }

    /// Drains the stream into one [`Completion`]; the first stream error is returned.
    pub async fn collect(mut self) -> Result<Completion, Error> {
        let mut completion = Completion {
            provider: self.provider.clone(),
            model: self.model.clone(),
            text: String::new(),
            tool_calls: Vec::new(),
            usage: None,
            finish: None,
        };
        while let Some(event) = std::future::poll_fn(|cx| self.events.as_mut().poll_next(cx)).await
        {
            completion.push(event?);
        }
        Ok(completion)
    }
}

fn futures_empty() -> impl Stream<Item = Result<ChatEvent, Error>> + Send + 'static {
    struct Empty;
    impl Stream for Empty {
        type Item = Result<ChatEvent, Error>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(None)
        }
    }
    Empty
}

impl Stream for ChatResponse {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for ChatResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatResponse")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

/// Response extension: when the stack saw the answer's first token (see
/// [`ChatResponse::first_token_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirstTokenAt(pub Instant);

impl FirstTokenAt {
    /// The instant.
    pub fn at(&self) -> &Instant {
        &self.0
    }
}

/// A whole answer, aggregated from its events (for callers that did not ask to stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The provider that answered.
    pub provider: ProviderId,
    /// The concrete model that answered.
    pub model: ModelName,
    /// The text.
    pub text: String,
    /// Complete tool calls, in index order.
    pub tool_calls: Vec<ToolCall>,
    /// Final usage, if the provider reported it.
    pub usage: Option<Usage>,
    /// Why generation stopped, if the stream said.
    pub finish: Option<FinishReason>,
}

impl Completion {
    /// Folds one event in.
    pub fn push(&mut self, event: ChatEvent) {
        match event {
            ChatEvent::Text { text } => self.text.push_str(&text),
            ChatEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let index = index as usize;
                if self.tool_calls.len() <= index {
                    self.tool_calls.resize_with(index + 1, || ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                }
                let call = &mut self.tool_calls[index];
                if let Some(id) = id {
                    call.id = id;
                }
                if let Some(name) = name {
                    call.name = name;
                }
                call.arguments.push_str(&arguments);
            }
            ChatEvent::Usage(usage) => self
                .usage
                .get_or_insert_with(Usage::default)
                .merge_max(usage),
            ChatEvent::Finish(reason) => self.finish = Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};

    #[tokio::test]
    async fn collect_aggregates_text_tool_calls_and_usage() {
        let events = vec![
            Ok(ChatEvent::text("Hel")),
            Ok(ChatEvent::text("lo")),
            Ok(ChatEvent::ToolCall {
                index: 0,
                id: Some("call_1".into()),
                name: Some("get_weather".into()),
                arguments: "{\"ci".into(),
            }),
            Ok(ChatEvent::ToolCall {
                index: 0,
                id: None,
                name: None,
                arguments: "ty\":\"Oslo\"}".into(),
            }),
            Ok(ChatEvent::Usage(Usage::new(12, 0))),
            Ok(ChatEvent::Usage(Usage::new(0, 5))),
            Ok(ChatEvent::Finish(FinishReason::ToolCalls)),
        ];
        let response = ChatResponse::new(ProviderId::OPENAI, "gpt-4o-mini", stream::iter(events));
        let done = response.collect().await.unwrap();
        assert_eq!(done.text, "Hello");
        assert_eq!(done.tool_calls.len(), 1);
        assert_eq!(done.tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
        assert_eq!(done.usage, Some(Usage::new(12, 5)));
        assert_eq!(done.finish, Some(FinishReason::ToolCalls));
    }

    #[tokio::test]
    async fn collect_returns_the_stream_error() {
        let events = vec![
            Ok(ChatEvent::text("partial")),
            Err(Error::Stream {
                provider: ProviderId::OPENAI,
                message: "EOF before [DONE]".into(),
            }),
        ];
        let response = ChatResponse::new(ProviderId::OPENAI, "m", stream::iter(events));
        let err = response.collect().await.unwrap_err();
        assert_eq!(err.reason(), "openai_stream_error");
    }

    #[tokio::test]
    async fn map_events_wraps_the_stream() {
        let response = ChatResponse::new(
            ProviderId::ANTHROPIC,
            "claude-haiku-4-5",
            stream::iter(vec![Ok(ChatEvent::text("a")), Ok(ChatEvent::text("b"))]),
        );
        let mut mapped = response.map_events(|s| s.take(1));
        assert_eq!(mapped.next().await, Some(Ok(ChatEvent::text("a"))));
        assert_eq!(mapped.next().await, None);
    }

    #[test]
    fn events_serde_round_trip() {
        let events = vec![
            ChatEvent::text("x"),
            ChatEvent::Usage(Usage::new(1, 2)),
            ChatEvent::Finish(FinishReason::Other("pause_turn".into())),
        ];
        let json = serde_json::to_string(&events).unwrap();
        let back: Vec<ChatEvent> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, events);
        assert!(events[0].is_content());
        assert!(!events[1].is_content());
    }

    #[test]
    fn finish_reasons_in_both_spellings() {
        assert_eq!(FinishReason::Length.as_openai(), "length");
        assert_eq!(FinishReason::Length.as_anthropic(), "max_tokens");
        assert_eq!(FinishReason::ToolCalls.as_anthropic(), "tool_use");
    }
}
