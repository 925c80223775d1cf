//! [`SimServer`]: loopback HTTP servers speaking the OpenAI Chat Completions and Anthropic
//! Messages wire formats, driven by the same [`SimConfig`] as the in-process provider.

mod anthropic;
mod openai;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use switchboard_core::{ChatBody, Completion, ProviderId};
use switchboard_wire::WireError;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::SimProvider;
use crate::config::SimConfig;
use crate::plan::{AnswerPlan, Ending, Plan};
use crate::provider::{Outcome, status_message};

/// The API routes a [`SimServer`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiRoute {
    /// `POST /v1/chat/completions` (OpenAI).
    ChatCompletions,
    /// `POST /v1/messages` (Anthropic).
    Messages,
    /// `GET /v1/models`.
    Models,
}

impl ApiRoute {
    const ALL: [ApiRoute; 3] = [
        ApiRoute::ChatCompletions,
        ApiRoute::Messages,
        ApiRoute::Models,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Which route.
    pub route: ApiRoute,
    /// The request headers.
    pub headers: HeaderMap,
    /// The JSON body, when it parsed.
    pub body: Option<Value>,
}

/// What a [`SimServer`] has seen: requests per route, client disconnects, the requests
/// themselves (the last 1,024).
#[derive(Clone)]
pub struct ServerStats {
    inner: Arc<ServerCounters>,
}

struct ServerCounters {
    requests: [AtomicU64; 3],
    disconnects: watch::Sender<u64>,
    recorded: Mutex<VecDeque<RecordedRequest>>,
}

const RECORDED_CAP: usize = 1024;

impl ServerStats {
    fn new() -> Self {
        Self {
            inner: Arc::new(ServerCounters {
                requests: Default::default(),
                disconnects: watch::Sender::new(0),
                recorded: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Requests received on a route.
    pub fn requests(&self, route: ApiRoute) -> u64 {
        self.inner.requests[route.index()].load(Ordering::Relaxed)
    }

    /// Requests received on all routes.
    pub fn total_requests(&self) -> u64 {
        ApiRoute::ALL.iter().map(|r| self.requests(*r)).sum()
    }

    /// Requests whose client went away before the answer was fully sent.
    pub fn disconnects(&self) -> u64 {
        *self.inner.disconnects.borrow()
    }

    /// Waits until at least `n` disconnects have been observed.
    pub async fn wait_for_disconnects(&self, n: u64) {
        let mut rx = self.inner.disconnects.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|count| *count >= n).await;
    }

    /// The requests received, oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.lock_recorded().iter().cloned().collect()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.lock_recorded().back().cloned()
    }

    fn lock_recorded(&self) -> std::sync::MutexGuard<'_, VecDeque<RecordedRequest>> {
        self.inner
            .recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, route: ApiRoute, headers: HeaderMap, body: Option<Value>) {
        let mut recorded = self.lock_recorded();
        if recorded.len() == RECORDED_CAP {
            recorded.pop_front();
        }
        recorded.push_back(RecordedRequest {
            route,
            headers,
            body,
        });
    }
}

impl fmt::Debug for ServerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerStats")
            .field(
                "chat_completions",
                &self.requests(ApiRoute::ChatCompletions),
            )
            .field("messages", &self.requests(ApiRoute::Messages))
            .field("models", &self.requests(ApiRoute::Models))
            .field("disconnects", &self.disconnects())
            .finish()
    }
}

/// Counts a disconnect if dropped before the answer was completely handed to the client.
struct RequestGuard {
    stats: ServerStats,
    finished: bool,
}

impl RequestGuard {
    fn new(stats: &ServerStats, route: ApiRoute) -> Self {
        stats.inner.requests[route.index()].fetch_add(1, Ordering::Relaxed);
        Self {
            stats: stats.clone(),
            finished: false,
        }
    }

    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.inner.disconnects.send_modify(|n| *n += 1);
        }
    }
}

/// A simulated provider behind a real HTTP/1.1 server on a loopback port, answering
/// `POST /v1/chat/completions` in OpenAI's format and `POST /v1/messages` in
/// Anthropic's, streamed (SSE) or not, with their real error bodies and statuses.
///
/// Dropping the server stops it.
///
/// ```
/// use switchboard_sim::{ApiRoute, SimConfig, SimServer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let server = SimServer::start(SimConfig::instant()).await?;
/// println!("OpenAI-compatible upstream at {}/v1/chat/completions", server.base_url());
/// assert_eq!(server.stats().requests(ApiRoute::ChatCompletions), 0);
/// # Ok(()) }
/// ```
pub struct SimServer {
    addr: SocketAddr,
    sim: SimProvider,
    stats: ServerStats,
    gate: FirstTokenGate,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SimServer {
    /// Starts a server on an ephemeral loopback port.
    pub async fn start(config: SimConfig) -> io::Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts a server on `addr`.
    pub async fn bind(addr: SocketAddr, config: SimConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sim = SimProvider::new(ProviderId::from_static("sim"), config);
        let stats = ServerStats::new();
        let gate = FirstTokenGate::default();
        let app = Router::new().merge(routes()).with_state(Arc::new(AppState {
            sim: sim.clone(),
            stats: stats.clone(),
            gate: gate.clone(),
        }));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "simulated provider server stopped");
            }
        });
        Ok(Self {
            addr,
            sim,
            stats,
            gate,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the base URL to give an adapter.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests, disconnects and recorded requests.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// The underlying simulator's call counters.
    pub fn sim(&self) -> &SimProvider {
        &self.sim
    }

    /// Holds every streamed answer just before its first content event (headers and the
    /// preamble are still sent) until [`release_first_tokens`](Self::release_first_tokens):
    /// lets a test observe a client between "headers arrived" and "first token arrived"
    /// without timing anything.
    pub fn hold_first_tokens(&self) {
        self.gate.0.send_replace(false);
    }

    /// Lets held and future answers proceed.
    pub fn release_first_tokens(&self) {
        self.gate.0.send_replace(true);
    }

    /// Stops accepting connections and lets in-flight answers finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

impl fmt::Debug for SimServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimServer")
            .field("addr", &self.addr)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The router of a simulated server, to mount in an app of your own.
pub fn router(sim: SimProvider, stats: ServerStats) -> Router {
    routes().with_state(Arc::new(AppState {
        sim,
        stats,
        gate: FirstTokenGate::default(),
    }))
}

fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .fallback(not_found)
}

struct AppState {
    sim: SimProvider,
    stats: ServerStats,
    gate: FirstTokenGate,
}

/// Open (`true`) unless a test holds first tokens.
#[derive(Clone)]
struct FirstTokenGate(Arc<watch::Sender<bool>>);

impl Default for FirstTokenGate {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(true)))
    }
}

impl FirstTokenGate {
    async fn pass(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in the state this stream holds, so this cannot fail.
        let _ = rx.wait_for(|open| *open).await;
    }
}

type Shared = State<Arc<AppState>>;

/// The two dialects, as one interface the shared handler drives. Parsing and encoding are
/// `switchboard-wire`'s, the same code the gateway speaks to its callers with.
trait Dialect: Send + 'static {
    const ROUTE: ApiRoute;
    const SSE_CONTENT_TYPE: &'static str;
    const REQUEST_ID_HEADER: &'static str;
    /// The status this API uses for "overloaded".
    const OVERLOADED_STATUS: u16;

    /// The key the request carries, if any.
    fn api_key(headers: &HeaderMap) -> Option<&str>;
    /// A parsed request, or what the API would answer instead.
    fn parse(bytes: &[u8]) -> Result<Parsed, WireError>;
    /// An error body for a status.
    fn error_body(status: u16, message: &str, param: Option<&str>, request_id: &str) -> Value;
    /// This request's renderer.
    fn renderer(parsed: &Parsed, plan: &AnswerPlan, request_id: &str, ping: bool) -> Self;
    /// Frames sent with the headers, before the first token.
    fn preamble(&mut self) -> Bytes;
    /// One content token.
    fn token(&mut self, text: &str) -> Bytes;
    /// The frames after the last token of a complete answer.
    fn finish(&mut self, plan: &AnswerPlan) -> Bytes;
    /// A malformed frame.
    fn malformed(&self) -> Bytes;
    /// An `error` frame.
    fn error_event(&mut self) -> Bytes;
    /// A whole non-streamed answer.
    fn complete(&self, plan: &AnswerPlan) -> Value;
}

/// A request as the handler needs it.
struct Parsed {
    body: ChatBody,
    include_usage: bool,
}

/// The whole answer a plan streams, for non-streamed responses.
fn completion(plan: &AnswerPlan, model: &str) -> Completion {
    Completion {
        provider: ProviderId::from_static("sim"),
        model: model.into(),
        text: plan.tokens.concat(),
        tool_calls: Vec::new(),
        usage: Some(plan.usage),
        finish: Some(plan.finish.clone()),
    }
}

/// The overloaded error a scripted `error_event` fault sends.
fn overloaded() -> switchboard_core::Error {
    switchboard_core::Error::Overloaded {
        provider: ProviderId::from_static("sim"),
        retry_after: None,
        message: "Overloaded".into(),
    }
}

/// Runs `write` against a fresh buffer.
fn frame(write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut out = Vec::new();
    write(&mut out);
    Bytes::from(out)
}

fn request_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}{:024x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn chat_completions(state: Shared, request: Request) -> Response {
    handle::<openai::OpenAi>(state, request).await
}

async fn messages(state: Shared, request: Request) -> Response {
    handle::<anthropic::Anthropic>(state, request).await
}

async fn models(State(state): Shared, request: Request) -> Response {
    let mut guard = RequestGuard::new(&state.stats, ApiRoute::Models);
    state
        .stats
        .record(ApiRoute::Models, request.headers().clone(), None);
    let data: Vec<Value> = state
        .sim
        .config()
        .http
        .models
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "switchboard-sim"}))
        .collect();
    guard.finish();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

async fn not_found(request: Request) -> Response {
    let body = switchboard_wire::openai::error_body(
        404,
        &format!(
            "Unknown request URL: {} {}.",
            request.method(),
            request.uri().path()
        ),
        None,
        None,
    );
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn error_response<D: Dialect>(
    status: u16,
    message: &str,
    param: Option<&str>,
    retry_after_secs: Option<u64>,
    request_id: &str,
) -> Response {
    let body = D::error_body(status, message, param, request_id);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (code, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let (false, Ok(id)) = (request_id.is_empty(), HeaderValue::from_str(request_id)) {
        headers.insert(D::REQUEST_ID_HEADER, id);
    }
    if let Some(secs) = retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

async fn handle<D: Dialect>(State(state): Shared, request: Request) -> Response {
    let mut guard = RequestGuard::new(&state.stats, D::ROUTE);
    let rid = request_id(if D::ROUTE == ApiRoute::Messages {
        "req_sim"
    } else {
        "req_"
    });
    let config = state.sim.config();
    let (parts, body) = request.into_parts();

    let bytes = match axum::body::to_bytes(body, config.http.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            state.stats.record(D::ROUTE, parts.headers, None);
            guard.finish();
            // Anthropic's 413 comes from its edge proxy, without a request id.
            return error_response::<D>(413, status_message(413), None, None, "");
        }
    };
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    state.stats.record(D::ROUTE, parts.headers.clone(), json);

    if let Some(expected) = &config.http.api_key {
        if D::api_key(&parts.headers) != Some(expected.as_str()) {
            guard.finish();
            return error_response::<D>(401, status_message(401), None, None, &rid);
        }
    }
    let parsed = match D::parse(&bytes) {
        Ok(parsed) => parsed,
        Err(error) => {
            guard.finish();
            return error_response::<D>(
                error.status,
                &error.message,
                error.param.as_deref(),
                None,
                &rid,
            );
        }
    };
    let models = &config.http.models;
    if !models.is_empty() && !models.contains(&parsed.body.model) {
        guard.finish();
        let message = format!(
            "The model `{}` does not exist or you do not have access to it.",
            parsed.body.model
        );
        return error_response::<D>(404, &message, Some("model"), None, &rid);
    }

    let (plan, mut call) = state.sim.begin(&parsed.body);
    let plan = match plan {
        Plan::Fail {
            after,
            status,
            retry_after_secs,
        } => {
            sleep(after).await;
            guard.finish();
            call.end(Outcome::Failed);
            return error_response::<D>(
                status,
                status_message(status),
                None,
                retry_after_secs,
                &rid,
            );
        }
        Plan::Answer(plan) => plan,
    };
    let mut dialect = D::renderer(&parsed, &plan, &rid, config.http.ping);

    if !parsed.body.stream {
        let total: Duration = (0..plan.sent_tokens()).map(|i| plan.delay_before(i)).sum();
        sleep(total).await;
        guard.finish();
        if plan.sent_tokens() > 0 {
            call.first_token();
        }
        call.end(match plan.ending {
            Ending::Complete => Outcome::Completed,
            _ => Outcome::Failed,
        });
        return match plan.ending {
            Ending::Complete => {
                let mut response = axum::Json(dialect.complete(&plan)).into_response();
                if let Ok(id) = HeaderValue::from_str(&rid) {
                    response.headers_mut().insert(D::REQUEST_ID_HEADER, id);
                }
                response
            }
            Ending::ErrorEvent { .. } => error_response::<D>(
                D::OVERLOADED_STATUS,
                status_message(D::OVERLOADED_STATUS),
                None,
                None,
                &rid,
            ),
            Ending::Malformed { .. } => Response::new(Body::from(dialect.malformed())),
            Ending::Truncate { .. } => {
                Response::new(Body::from_stream(stream::iter([Err::<Bytes, _>(
                    io::Error::new(io::ErrorKind::ConnectionReset, "simulated reset"),
                )])))
            }
        };
    }

    let outcome = match plan.ending {
        Ending::Complete => Outcome::Completed,
        _ => Outcome::Failed,
    };
    let frames = schedule(&mut dialect, &plan);
    let gate = state.gate.clone();
    let state = (frames, guard, call);
    let body = Body::from_stream(stream::unfold(
        state,
        move |(mut frames, mut guard, mut call)| {
            let gate = gate.clone();
            async move {
                let Some((delay, frame)) = frames.pop_front() else {
                    guard.finish();
                    call.end(outcome);
                    return None;
                };
                sleep(delay).await;
                let item = match frame {
                    Frame::Data(bytes) => Ok(bytes),
                    Frame::FirstToken(bytes) => {
                        gate.pass().await;
                        call.first_token();
                        Ok(bytes)
                    }
                    Frame::Reset => {
                        // Let the connection flush what came before, so that the client sees
                        // the connection die mid-body: that is what this fault is.
                        tokio::task::yield_now().await;
                        guard.finish();
                        call.end(Outcome::Failed);
                        Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "simulated reset",
                        ))
                    }
                };
                Some((item, (frames, guard, call)))
            }
        },
    ));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(D::SSE_CONTENT_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(id) = HeaderValue::from_str(&rid) {
        headers.insert(D::REQUEST_ID_HEADER, id);
    }
    response
}

enum Frame {
    Data(Bytes),
    /// The first content token: counted in the simulator's stats.
    FirstToken(Bytes),
    Reset,
}

/// The frames of a streamed answer and the delay before each.
fn schedule<D: Dialect>(dialect: &mut D, plan: &AnswerPlan) -> VecDeque<(Duration, Frame)> {
    let mut frames = VecDeque::with_capacity(plan.tokens.len() + 3);
    frames.push_back((Duration::ZERO, Frame::Data(dialect.preamble())));
    for (i, token) in plan.tokens[..plan.sent_tokens()].iter().enumerate() {
        let bytes = dialect.token(token);
        let frame = if i == 0 {
            Frame::FirstToken(bytes)
        } else {
            Frame::Data(bytes)
        };
        frames.push_back((plan.delay_before(i), frame));
    }
    let last = match plan.ending {
        Ending::Complete => Frame::Data(dialect.finish(plan)),
        Ending::Truncate { reset: true, .. } => Frame::Reset,
        Ending::Truncate { reset: false, .. } => return frames,
        Ending::Malformed { .. } => Frame::Data(dialect.malformed()),
        Ending::ErrorEvent { .. } => Frame::Data(dialect.error_event()),
    };
    frames.push_back((Duration::ZERO, last));
    frames
}

async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}
