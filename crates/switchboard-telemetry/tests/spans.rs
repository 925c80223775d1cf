//! Tracing: a `switchboard.request` span per call, a `switchboard.attempt` span per attempt
//! inside it, each with its outcome recorded.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream;
use switchboard_core::{
    ChatBody, ChatEvent, ChatRequest, ChatResponse, Error, Message, ProviderId,
};
use switchboard_telemetry::Telemetry;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Debug, Default)]
struct SpanInfo {
    name: &'static str,
    parent: Option<u64>,
    fields: HashMap<String, String>,
}

/// Records every span, its parent (explicit or the current one) and its fields.
#[derive(Clone, Default)]
struct Recorder {
    next: Arc<AtomicU64>,
    spans: Arc<Mutex<HashMap<u64, SpanInfo>>>,
    stack: Arc<Mutex<Vec<u64>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let parent = match attrs.parent() {
            Some(p) => Some(p.into_u64()),
            None if attrs.is_contextual() => self.stack.lock().unwrap().last().copied(),
            None => None,
        };
        let mut info = SpanInfo {
            name: attrs.metadata().name(),
            parent,
            fields: HashMap::new(),
        };
        attrs.record(&mut Fields(&mut info.fields));
        self.spans.lock().unwrap().insert(id, info);
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(info) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut info.fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, span: &Id) {
        self.stack.lock().unwrap().push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut stack = self.stack.lock().unwrap();
        if let Some(i) = stack.iter().rposition(|s| *s == span.into_u64()) {
            stack.remove(i);
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn attempt_spans_are_children_of_the_request_span_and_record_outcomes() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());

    let telemetry = Telemetry::new();
    let provider = service_fn(|_req: ChatRequest| async {
        let events = stream::iter(vec![Ok(ChatEvent::text("pong"))]);
        Ok::<_, Error>(ChatResponse::new(ProviderId::OPENAI, "gpt-4o", events))
    });
    let attempt = ServiceBuilder::new()
        .layer(telemetry.attempt_layer(ProviderId::OPENAI))
        .service(provider);
    // An inner layer that, like the hedge, starts its attempt when first polled.
    let lazy = service_fn(move |req: ChatRequest| {
        let attempt = attempt.clone();
        async move { attempt.oneshot(req).await }
    });
    let stack = ServiceBuilder::new().layer(telemetry.layer()).service(lazy);
    let request = ChatRequest::new(ChatBody::new("gpt-4o", vec![Message::user("ping")]));
    stack
        .oneshot(request)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();

    let spans = recorder.spans.lock().unwrap();
    let (request_id, request_span) = spans
        .iter()
        .find(|(_, s)| s.name == "switchboard.request")
        .expect("a request span");
    let attempt_span = spans
        .values()
        .find(|s| s.name == "switchboard.attempt")
        .expect("an attempt span");
    assert_eq!(
        attempt_span.parent,
        Some(*request_id),
        "the attempt span is a child of the request span"
    );
    assert_eq!(request_span.fields["outcome"], "ok");
    assert_eq!(request_span.fields["provider"], "openai");
    assert_eq!(attempt_span.fields["outcome"], "ok");
    assert_eq!(attempt_span.fields["provider"], "openai");
}
