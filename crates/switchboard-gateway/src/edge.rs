//! The HTTP edge: OpenAI- and Anthropic-compatible endpoints over one provider stack.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::{Value, json};
use switchboard::budget::{JobQueue, JobStatus};
use switchboard_core::{
    BoxProvider, ChatBody, ChatRequest, ChatResponse, Completion, Degraded, Disposition, Error,
    JobTicket, RequestHead, Status, TenantId, TraceId,
};
use switchboard_wire::{WireError, anthropic, openai};
use tower::ServiceExt;

use crate::auth::GatewayKeys;
use crate::trace_context;

/// Default request body limit: 4 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

type StatusFn = Arc<dyn Fn() -> Value + Send + Sync>;
type ReadyFn = Arc<dyn Fn() -> bool + Send + Sync>;
type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// The gateway's HTTP application: the endpoints, over a provider stack.
///
/// ```
/// use switchboard_core::{ProviderId, boxed};
/// use switchboard_gateway::Gateway;
/// use switchboard_sim::{SimConfig, SimProvider};
///
/// let stack = boxed(SimProvider::new(ProviderId::OPENAI, SimConfig::instant()));
/// let app: axum::Router = Gateway::new(stack).models(["gpt-4o-mini"]).router();
/// ```
#[derive(Clone)]
pub struct Gateway {
    stack: BoxProvider,
    keys: GatewayKeys,
    body_limit: usize,
    models: Arc<Vec<String>>,
    status: StatusFn,
    ready: ReadyFn,
    jobs: Option<Arc<dyn JobQueue>>,
    metrics: Option<MetricsFn>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("keys", &self.keys)
            .field("body_limit", &self.body_limit)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway over `stack`, open (no keys), with the default body limit.
    pub fn new(stack: BoxProvider) -> Self {
        Self {
            stack,
            keys: GatewayKeys::open(),
            body_limit: DEFAULT_BODY_LIMIT,
            models: Arc::new(Vec::new()),
            status: Arc::new(|| json!({})),
            ready: Arc::new(|| true),
            jobs: None,
            metrics: None,
        }
    }

    /// The job queue behind `GET /v1/jobs/{id}`; requests the budget queued get a `202`
    /// with their job id.
    pub fn jobs(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.jobs = Some(queue);
        self
    }

    /// Requires one of these keys.
    pub fn keys(mut self, keys: GatewayKeys) -> Self {
        self.keys = keys;
        self
    }

    /// Larger request bodies get a 413. Default [`DEFAULT_BODY_LIMIT`].
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The model names `GET /v1/models` lists.
    pub fn models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = Arc::new(models.into_iter().map(Into::into).collect());
        self
    }

    /// What `GET /switchboard/status` shows (health board, breakers, budget, rollout).
    pub fn status(mut self, status: impl Fn() -> Value + Send + Sync + 'static) -> Self {
        self.status = Arc::new(status);
        self
    }

    /// What `GET /readyz` asks (for example: is any provider's breaker closed?).
    pub fn ready(mut self, ready: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.ready = Arc::new(ready);
        self
    }

    /// What `GET /metrics` serves: Prometheus text, for example
    /// `move || switchboard.telemetry().render()`. Without it `/metrics` is a 404.
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/messages", post(messages))
            .route("/v1/models", get(models))
            .route("/v1/jobs/{id}", get(job))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/switchboard/status", get(status))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .with_state(Arc::new(self))
    }
}

type Shared = State<Arc<Gateway>>;

/// What the handler knows about one call, for every answer it may give.
struct Call {
    trace: TraceId,
    id: String,
}

impl Call {
    fn new(headers: &HeaderMap) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let trace = trace_context::incoming(headers);
        // `{:08x}{:016x}` of a counter and a random number, without `fmt`.
        let mut id = String::with_capacity(24);
        trace_context::push_hex(&mut id, NEXT.fetch_add(1, Ordering::Relaxed), 8);
        trace_context::push_hex(&mut id, rand::random::<u64>(), 16);
        Self { id, trace }
    }

    /// The call's id behind `prefix` (`chatcmpl-`, `msg_`, `req_`).
    fn prefixed(&self, prefix: &str) -> String {
        let mut out = String::with_capacity(prefix.len() + self.id.len());
        out.push_str(prefix);
        out.push_str(&self.id);
        out
    }

    /// The `x-switchboard-*` and `traceparent` headers of a disposition.
    fn headers(&self, d: &Disposition, headers: &mut HeaderMap) {
        const STATUS: HeaderName = HeaderName::from_static("x-switchboard-status");
        const PROVIDER: HeaderName = HeaderName::from_static("x-switchboard-provider");
        const REASON: HeaderName = HeaderName::from_static("x-switchboard-reason");
        const TRACE_ID: HeaderName = HeaderName::from_static("x-switchboard-trace-id");
        const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
        headers.insert(STATUS, HeaderValue::from_static(d.status.as_str()));
        let mut put = |name: HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::try_from(value) {
                headers.insert(name, v);
            }
        };
        if let Some(p) = &d.provider {
            put(PROVIDER, p.as_str());
        }
        if let Some(r) = &d.reason {
            put(REASON, r);
        }
        put(TRACE_ID, trace_context::TraceHex::new(d.trace_id).as_str());
        put(TRACEPARENT, &trace_context::outgoing(self.trace));
    }

    /// The disposition of an edge refusal (before any provider was involved).
    fn refused(&self, reason: &str) -> Disposition {
        Disposition {
            status: Status::Error,
            provider: None,
            reason: Some(reason.to_owned()),
            trace_id: self.trace,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One of the two APIs the gateway speaks.
trait Api: Send + 'static {
    const PATH: &'static str;

    /// The body, and whether to send OpenAI's usage chunk.
    fn parse(bytes: &[u8]) -> Result<(ChatBody, bool), WireError>;
    /// The status and body for a failure.
    fn error(error: &Error, call: &Call) -> (u16, Value);
    /// The status and body for a refused request.
    fn refusal(status: u16, message: &str, param: Option<&str>, call: &Call) -> Value;
    /// A streamed answer's body.
    fn stream(response: ChatResponse, include_usage: bool, call: &Call) -> Body;
    /// A whole answer, with the `switchboard` block, as JSON bytes.
    fn complete(
        completion: &Completion,
        call: &Call,
        block: &Block<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error>;
}

struct OpenAiApi;
struct AnthropicApi;

impl Api for OpenAiApi {
    const PATH: &'static str = "/v1/chat/completions";

    fn parse(bytes: &[u8]) -> Result<(ChatBody, bool), WireError> {
        openai::parse_request(bytes).map(|p| (p.body, p.include_usage))
    }

    fn error(error: &Error, _: &Call) -> (u16, Value) {
        openai::error_for(error)
    }

    fn refusal(status: u16, message: &str, param: Option<&str>, _: &Call) -> Value {
        openai::error_body(status, message, param, None)
    }

    fn stream(response: ChatResponse, include_usage: bool, call: &Call) -> Body {
        let encoder = openai::StreamEncoder::new(
            call.prefixed("chatcmpl-"),
            response.model().to_owned(),
            unix_now(),
            include_usage,
        );
        sse_body(response, Encoder::OpenAi(encoder))
    }

    fn complete(
        completion: &Completion,
        call: &Call,
        block: &Block<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error> {
        let id = call.prefixed("chatcmpl-");
        openai::write_completion(out, completion, &id, unix_now(), Some(block))
    }
}

impl Api for AnthropicApi {
    const PATH: &'static str = "/v1/messages";

    fn parse(bytes: &[u8]) -> Result<(ChatBody, bool), WireError> {
        anthropic::parse_request(bytes).map(|b| (b, true))
    }

    fn error(error: &Error, call: &Call) -> (u16, Value) {
        anthropic::error_for(error, &call.prefixed("req_"))
    }

    fn refusal(status: u16, message: &str, _: Option<&str>, call: &Call) -> Value {
        anthropic::error_body(status, message, &call.prefixed("req_"))
    }

    fn stream(response: ChatResponse, _: bool, call: &Call) -> Body {
        let encoder =
            anthropic::StreamEncoder::new(call.prefixed("msg_"), response.model().to_owned(), 0)
                .request_id(call.prefixed("req_"));
        sse_body(response, Encoder::Anthropic(Box::new(encoder)))
    }

    fn complete(
        completion: &Completion,
        call: &Call,
        block: &Block<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error> {
        anthropic::write_message(out, completion, &call.prefixed("msg_"), Some(block))
    }
}

enum Encoder {
    OpenAi(openai::StreamEncoder),
    Anthropic(Box<anthropic::StreamEncoder>),
}

impl Encoder {
    fn start(&mut self, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.start(out),
            Encoder::Anthropic(e) => e.start(out),
        }
    }

    fn event(&mut self, event: &switchboard_core::ChatEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.event(event, out),
            Encoder::Anthropic(e) => e.event(event, out),
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.end(out),
            Encoder::Anthropic(e) => e.end(out),
        }
    }

    fn error(&mut self, error: &Error, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.error(error, out),
            Encoder::Anthropic(e) => e.error(error, out),
        }
    }
}

/// The SSE body of a streamed answer. A failure after the first token ends the stream
/// with the API's explicit error event. Dropping the body (the client went away) drops the
/// response, which cancels the upstream call and settles its budget.
fn sse_body(response: ChatResponse, encoder: Encoder) -> Body {
    struct State {
        response: ChatResponse,
        encoder: Encoder,
        started: bool,
        done: bool,
    }
    let state = State {
        response,
        encoder,
        started: false,
        done: false,
    };
    let frames = futures_util::stream::unfold(state, |mut s| async move {
        let mut out = Vec::new();
        if !s.started {
            s.started = true;
            s.encoder.start(&mut out);
        }
        // Some events (usage, finish) write nothing until the end: never send an empty frame.
        while out.is_empty() {
            if s.done {
                return None;
            }
            match s.response.next().await {
                Some(Ok(event)) => s.encoder.event(&event, &mut out),
                Some(Err(error)) => {
                    tracing::warn!(reason = %error.reason(), %error, "stream failed after the first token");
                    s.encoder.error(&error, &mut out);
                    s.done = true;
                }
                None => {
                    s.encoder.end(&mut out);
                    s.done = true;
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        Some((Ok::<_, Infallible>(Bytes::from(out)), s))
    });
    Body::from_stream(frames)
}

async fn chat_completions(state: Shared, request: Request) -> Response {
    handle::<OpenAiApi>(state, request).await
}

async fn messages(state: Shared, request: Request) -> Response {
    handle::<AnthropicApi>(state, request).await
}

/// A disposition as the `switchboard` block of an answer written straight to bytes: the
/// fields of `Disposition`'s `Serialize`, in the (sorted) order the `serde_json::Value`
/// path of [`json_response`] writes them, so both bodies carry the same block.
#[derive(Serialize)]
struct Block<'a> {
    provider: Option<&'a str>,
    reason: Option<&'a str>,
    status: &'static str,
    trace_id: &'a str,
}

fn with_block<T>(d: &Disposition, f: impl FnOnce(&Block<'_>) -> T) -> T {
    let trace = trace_context::TraceHex::new(d.trace_id);
    f(&Block {
        provider: d.provider.as_ref().map(|p| p.as_str()),
        reason: d.reason.as_deref(),
        status: d.status.as_str(),
        trace_id: trace.as_str(),
    })
}

fn json_response(status: u16, mut body: Value, disposition: &Disposition, call: &Call) -> Response {
    if let (Some(obj), Ok(block)) = (body.as_object_mut(), serde_json::to_value(disposition)) {
        obj.insert("switchboard".into(), block);
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (code, axum::Json(body)).into_response();
    call.headers(disposition, response.headers_mut());
    response
}

/// A 200 with a whole answer written by `A`, as `json_response` would send it.
fn answer<A: Api>(completion: &Completion, disposition: &Disposition, call: &Call) -> Response {
    let mut body = Vec::with_capacity(1024);
    let written = with_block(disposition, |block| {
        A::complete(completion, call, block, &mut body)
    });
    let mut response = match written {
        Ok(()) => {
            let mut response = Response::new(Body::from(body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        // As `axum::Json` answers a body it cannot serialize.
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    call.headers(disposition, response.headers_mut());
    response
}

fn refuse<A: Api>(
    status: u16,
    reason: &str,
    message: &str,
    param: Option<&str>,
    call: &Call,
) -> Response {
    let body = A::refusal(status, message, param, call);
    json_response(status, body, &call.refused(reason), call)
}

fn fail<A: Api>(error: &Error, call: &Call) -> Response {
    let (status, body) = A::error(error, call);
    let disposition = Disposition::failed(error, call.trace);
    tracing::info!(trace_id = %call.trace, reason = %error.reason(), status, "request failed");
    let mut response = json_response(status, body, &disposition, call);
    if let Some(after) = error.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}

async fn handle<A: Api>(State(gateway): Shared, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let call = Call::new(&parts.headers);

    let tenant: Option<TenantId> = match gateway.keys.authenticate(&parts.headers) {
        Ok(tenant) => tenant,
        Err(why) => return refuse::<A>(401, "unauthorized", why.message(), None, &call),
    };

    let too_large = || {
        let message = format!(
            "Request body exceeds the limit of {} bytes.",
            gateway.body_limit
        );
        refuse::<A>(413, "payload_too_large", &message, None, &call)
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > gateway.body_limit) {
        return too_large();
    }
    let bytes = match Limited::new(body, gateway.body_limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(e) => {
            let message = format!("Could not read the request body: {e}");
            return refuse::<A>(400, "invalid_request", &message, None, &call);
        }
    };
    let (body, include_usage) = match A::parse(&bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            return refuse::<A>(
                e.status,
                "invalid_request",
                &e.message,
                e.param.as_deref(),
                &call,
            );
        }
    };
    let stream = body.stream;

    let mut request = ChatRequest::new(body);
    let ext = request.extensions_mut();
    ext.insert(call.trace);
    ext.insert(RequestHead::new(A::PATH, parts.headers));
    if let Some(tenant) = tenant {
        ext.insert(tenant);
    }

    let response = match gateway.stack.clone().oneshot(request).await {
        Ok(response) => response,
        Err(error) => return fail::<A>(&error, &call),
    };
    let degraded = response
        .extensions()
        .get::<Degraded>()
        .cloned()
        .unwrap_or_default();
    let disposition =
        Disposition::answered(Some(response.provider().clone()), &degraded, call.trace);
    if let Some(ticket) = response.extensions().get::<JobTicket>() {
        // The budget queued the request: 202 and where to find the answer.
        let location = format!("/v1/jobs/{}", ticket.id);
        let body = json!({"id": ticket.id, "object": "switchboard.job", "status": "queued", "location": location});
        let mut accepted = json_response(202, body, &disposition, &call);
        if let Ok(value) = HeaderValue::try_from(location) {
            accepted.headers_mut().insert(header::LOCATION, value);
        }
        return accepted;
    }

    if stream {
        let mut http = Response::new(A::stream(response, include_usage, &call));
        let headers = http.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        call.headers(&disposition, headers);
        return http;
    }
    match response.collect().await {
        Ok(completion) => answer::<A>(&completion, &disposition, &call),
        Err(error) => fail::<A>(&error, &call),
    }
}

async fn models(State(gateway): Shared, headers: HeaderMap) -> Response {
    if headers.contains_key("anthropic-version") {
        let data: Vec<Value> = gateway
            .models
            .iter()
            .map(|id| json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"}))
            .collect();
        let first = gateway.models.first();
        let last = gateway.models.last();
        return axum::Json(
            json!({"data": data, "has_more": false, "first_id": first, "last_id": last}),
        )
        .into_response();
    }
    let data: Vec<Value> = gateway
        .models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "switchboard"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn job(State(gateway): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let call = Call::new(&headers);
    let missing = || {
        let message = format!("No job with id '{id}'.");
        refuse::<OpenAiApi>(404, "job_not_found", &message, None, &call)
    };
    let Some(queue) = &gateway.jobs else {
        return missing();
    };
    let status = match queue.status(id.clone()).await {
        Ok(Some(status)) => status,
        Ok(None) => return missing(),
        Err(error) => {
            let message = error.to_string();
            return refuse::<OpenAiApi>(503, "job_queue_unavailable", &message, None, &call);
        }
    };
    let mut body = json!({"id": id, "object": "switchboard.job"});
    match status {
        JobStatus::Queued => body["status"] = json!("queued"),
        JobStatus::Running => body["status"] = json!("running"),
        JobStatus::Done { completion } => {
            body["status"] = json!("done");
            body["result"] =
                openai::completion_json(&completion, &format!("chatcmpl-{id}"), unix_now());
        }
        JobStatus::Failed { reason, message } => {
            body["status"] = json!("failed");
            body["error"] = json!({"reason": reason, "message": message});
        }
    }
    axum::Json(body).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(gateway): Shared) -> Response {
    if (gateway.ready)() {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "no provider available"})),
        )
            .into_response()
    }
}

async fn metrics(State(gateway): Shared, request: Request) -> Response {
    match &gateway.metrics {
        Some(render) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(switchboard::telemetry::CONTENT_TYPE),
            )],
            render(),
        )
            .into_response(),
        None => not_found(request).await,
    }
}

async fn status(State(gateway): Shared) -> Response {
    axum::Json((gateway.status)()).into_response()
}

async fn not_found(request: Request) -> Response {
    let call = Call::new(request.headers());
    let message = format!(
        "Unknown request URL: {} {}.",
        request.method(),
        request.uri().path()
    );
    refuse::<OpenAiApi>(404, "not_found", &message, None, &call)
}

/// How long in-flight requests get to finish after a shutdown signal: 30 s.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use switchboard_core::ProviderId;

    use super::*;

    #[test]
    fn the_block_is_the_dispositions_json() {
        let trace = TraceId::random();
        let mut degraded = Degraded::default();
        degraded.push("budget_max_tokens_capped", "max_tokens 4096 → 512");
        for d in [
            Disposition::answered(Some(ProviderId::OPENAI), &Degraded::default(), trace),
            Disposition::answered(Some(ProviderId::ANTHROPIC), &degraded, trace),
            Disposition::answered(None, &degraded, trace),
            Disposition::failed(
                &Error::ModelNotFound {
                    model: "gpt-9".into(),
                },
                trace,
            ),
        ] {
            let expected = serde_json::to_value(&d).unwrap();
            assert_eq!(
                with_block(&d, |b| serde_json::to_value(b).unwrap()),
                expected
            );
            assert_eq!(
                with_block(&d, |b| serde_json::to_string(b).unwrap()),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }

    #[test]
    fn call_ids_are_24_hex_digits() {
        let call = Call::new(&HeaderMap::new());
        assert_eq!(call.id.len(), 24);
        assert!(
            call.id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(call.prefixed("msg_"), format!("msg_{}", call.id));
    }
}
