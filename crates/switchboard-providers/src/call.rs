//! What both adapters share: building and sending the request, mapping failures, and
//! turning the SSE body into [`ChatEvent`]s with the future resolving at the first content
//! event.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use switchboard_core::{ChatBody, ChatEvent, ChatRequest, ChatResponse, Error, ProviderId};

use crate::HttpClient;
use crate::sse::{SseDecoder, SseEvent};

/// A provider's stream format: how its SSE events become [`ChatEvent`]s.
pub(crate) trait Dialect: Send + Unpin + 'static {
    /// The terminal event, for error messages (`[DONE]`, `message_stop`).
    const TERMINAL: &'static str;

    /// Maps one event onto `out`; `Ok(true)` when it was the terminal event.
    fn on_event(
        &mut self,
        provider: &ProviderId,
        event: SseEvent,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, Error>;

    /// The concrete model the stream named, once seen.
    fn model(&mut self) -> Option<String>;
}

/// What one provider's API adds to an [`Adapter`]: its request body and its stream format.
pub(crate) trait Protocol: Send + Sync + 'static {
    /// How the answer's stream is read; a fresh one per answer.
    type Dialect: Dialect + Default;

    /// The request body, or a sentence for what the API cannot express.
    fn body(&self, body: &ChatBody) -> Result<Vec<u8>, String>;
}

/// The future every adapter returns. A network round-trip dwarfs one allocation; boxing
/// keeps the future nameable.
pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

/// An adapter's settings, built once and shared by its clones: where and how to send, and
/// the API's [`Protocol`].
pub(crate) struct Adapter<P> {
    pub(crate) id: ProviderId,
    pub(crate) endpoint: Uri,
    /// Sent after `content-type` and `accept`, in this order (keys, versions, org ids).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) client: HttpClient,
    pub(crate) protocol: P,
}

impl<P: Protocol> Adapter<P> {
    /// The provider `Service`'s `call`: always streams, resolves at the first content event.
    pub(crate) fn call(&self, request: ChatRequest) -> ResponseFuture {
        let built = self.build_request(request.body());
        let id = self.id.clone();
        let client = self.client.clone();
        let model = request.body().model.clone();
        Box::pin(async move { send(id, client, built?, model, P::Dialect::default()).await })
    }

    fn build_request(&self, body: &ChatBody) -> Result<Request<Full<Bytes>>, Error> {
        let json = self
            .protocol
            .body(body)
            .map_err(|message| Error::InvalidRequest {
                provider: Some(self.id.clone()),
                message,
            })?;
        // Built in place (the builder re-validates every header): the same headers, in
        // the same order.
        let mut request = Request::new(Full::new(Bytes::from(json)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        let headers = request.headers_mut();
        headers.reserve(2 + self.headers.len());
        headers.append(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.append(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        Ok(request)
    }
}

/// Error bodies are read up to this size; the rest is not worth waiting for.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Sends `request` and resolves at the first content event (or at the end of an answer
/// that has none).
pub(crate) async fn send<D: Dialect>(
    provider: ProviderId,
    client: HttpClient,
    request: Request<Full<Bytes>>,
    requested_model: String,
    dialect: D,
) -> Result<ChatResponse, Error> {
    let response = client
        .request(request)
        .await
        .map_err(|e| transport_error(&provider, &e, client.connect_timeout()))?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = retry_after(response.headers());
        let body = Limited::new(response.into_body(), ERROR_BODY_LIMIT)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = error_message(&body)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        return Err(Error::from_status(
            provider,
            status.as_u16(),
            message,
            retry_after,
        ));
    }
    let mut reader = EventReader {
        provider: provider.clone(),
        body: response.into_body(),
        decoder: SseDecoder::new(),
        decoded: Vec::new(),
        dialect,
        pending: VecDeque::new(),
        seen_content: false,
        state: ReadState::Reading,
    };
    std::future::poll_fn(|cx| reader.poll_first_content(cx)).await?;
    let model = reader.dialect.model().unwrap_or(requested_model);
    Ok(ChatResponse::new(provider, model, reader))
}

/// Maps a client error: a connect timeout names its phase; everything else is transport.
fn transport_error(
    provider: &ProviderId,
    error: &hyper_util::client::legacy::Error,
    connect_timeout: Duration,
) -> Error {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    let mut chain = Vec::new();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut && error.is_connect() {
                return Error::Timeout {
                    phase: switchboard_core::TimeoutPhase::Connect,
                    provider: Some(provider.clone()),
                    after: connect_timeout,
                };
            }
        }
        chain.push(e.to_string());
        source = e.source();
    }
    chain.dedup();
    Error::Transport {
        provider: provider.clone(),
        message: chain.join(": "),
    }
}

/// `retry-after-ms` (milliseconds), else `retry-after` (seconds or an HTTP date).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `error.message` of an OpenAI or Anthropic error body, else the body's text.
fn error_message(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if let Some(message) = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(|m| m.as_str())
    {
        return Some(message.to_owned());
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    Some(text.chars().take(500).collect())
}

/// Maps an error event inside a 200 stream (Anthropic `event: error`, OpenAI
/// `data: {"error": ...}`) by its type.
pub(crate) fn stream_error_event(provider: &ProviderId, kind: &str, message: &str) -> Error {
    let provider = provider.clone();
    let message = message.to_owned();
    match kind {
        "overloaded_error" | "overloaded" => Error::Overloaded {
            provider,
            retry_after: None,
            message,
        },
        "rate_limit_error" | "rate_limit_exceeded" | "tokens" | "requests" => Error::RateLimited {
            provider,
            retry_after: None,
            message,
        },
        "api_error" | "server_error" => Error::Upstream {
            provider,
            status: 500,
            retry_after: None,
            message,
        },
        _ => Error::Stream {
            provider,
            message: format!("error event ({kind}): {message}"),
        },
    }
}

/// A malformed event: the stream cannot be trusted past it.
pub(crate) fn malformed(provider: &ProviderId, error: &serde_json::Error, data: &str) -> Error {
    let excerpt: String = data.chars().take(120).collect();
    Error::Stream {
        provider: provider.clone(),
        message: format!("malformed event ({error}): {excerpt}"),
    }
}

/// Decodes and maps a whole stream held in memory (benches and tests): the CPU work an
/// adapter does per answer, without the network.
pub(crate) fn map_bytes<D: Dialect>(
    provider: &ProviderId,
    mut dialect: D,
    bytes: &[u8],
) -> Result<Vec<ChatEvent>, Error> {
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    decoder
        .feed(bytes, &mut events)
        .map_err(|e| Error::Stream {
            provider: provider.clone(),
            message: e.to_string(),
        })?;
    let mut out = VecDeque::new();
    for event in events {
        if dialect.on_event(provider, event, &mut out)? {
            break;
        }
    }
    Ok(out.into())
}

enum ReadState {
    Reading,
    /// The terminal event was seen: drain `pending`, then end.
    Done,
    /// An error was returned: end.
    Failed,
}

/// The response body as a stream of [`ChatEvent`]s.
pub(crate) struct EventReader<D> {
    provider: ProviderId,
    body: Incoming,
    decoder: SseDecoder,
    decoded: Vec<SseEvent>,
    dialect: D,
    pending: VecDeque<ChatEvent>,
    seen_content: bool,
    state: ReadState,
}

impl<D: Dialect> EventReader<D> {
    /// Ready when a content event is pending or the stream is over.
    fn poll_first_content(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if self.pending.iter().any(ChatEvent::is_content)
                || matches!(self.state, ReadState::Done)
            {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Reads body frames until at least one event is pending or the stream is over.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if !matches!(self.state, ReadState::Reading) {
                return Poll::Ready(Ok(()));
            }
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Poll::Ready(Err(self.fail_connection(&error))),
                None => {
                    self.state = ReadState::Failed;
                    return Poll::Ready(Err(Error::Stream {
                        provider: self.provider.clone(),
                        message: format!("upstream closed the stream before {}", D::TERMINAL),
                    }));
                }
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if let Err(error) = self.decoder.feed(&data, &mut self.decoded) {
                self.state = ReadState::Failed;
                return Poll::Ready(Err(Error::Stream {
                    provider: self.provider.clone(),
                    message: error.to_string(),
                }));
            }
            let before = self.pending.len();
            for event in self.decoded.drain(..) {
                match self
                    .dialect
                    .on_event(&self.provider, event, &mut self.pending)
                {
                    Ok(false) => {}
                    Ok(true) => {
                        self.state = ReadState::Done;
                        break;
                    }
                    Err(error) => {
                        self.state = ReadState::Failed;
                        return Poll::Ready(Err(error));
                    }
                }
            }
            self.decoded.clear();
            if self.pending.len() > before || matches!(self.state, ReadState::Done) {
                return Poll::Ready(Ok(()));
            }
        }
    }

    fn fail_connection(&mut self, error: &hyper::Error) -> Error {
        self.state = ReadState::Failed;
        let message = format!("connection failed mid-body: {error}");
        if self.seen_content {
            Error::Stream {
                provider: self.provider.clone(),
                message,
            }
        } else {
            Error::Transport {
                provider: self.provider.clone(),
                message,
            }
        }
    }
}

impl<D: Dialect> Stream for EventReader<D> {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.pending.pop_front() {
                this.seen_content |= event.is_content();
                return Poll::Ready(Some(Ok(event)));
            }
            if !matches!(this.state, ReadState::Reading) {
                return Poll::Ready(None);
            }
            if let Err(error) = ready!(this.poll_fill(cx)) {
                return Poll::Ready(Some(Err(error)));
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.pending.len(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_ms_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_messages_come_from_either_providers_body() {
        let openai = br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(error_message(openai).as_deref(), Some("Incorrect API key"));
        assert_eq!(error_message(anthropic).as_deref(), Some("Overloaded"));
        assert_eq!(
            error_message(b"<html>bad gateway</html>").as_deref(),
            Some("<html>bad gateway</html>")
        );
        assert_eq!(error_message(b""), None);
    }

    #[test]
    fn error_events_map_by_type() {
        let p = ProviderId::ANTHROPIC;
        assert_eq!(
            stream_error_event(&p, "overloaded_error", "x").reason(),
            "anthropic_overloaded"
        );
        assert_eq!(
            stream_error_event(&p, "rate_limit_error", "x").reason(),
            "anthropic_rate_limited"
        );
        assert_eq!(
            stream_error_event(&p, "api_error", "x").reason(),
            "anthropic_upstream_server_error"
        );
        assert_eq!(
            stream_error_event(&p, "weird", "x").reason(),
            "anthropic_stream_error"
        );
    }
}
