//! Assembling the standard stack from a [`Config`].

use std::fmt;
use std::future::Ready;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use hashbrown::HashSet;

use switchboard_breaker::BreakerLayer;
use switchboard_budget::{
    BlockAction, BudgetLayer, CapAction, Caps, Degrade, EstimateLayer, Estimator, JobQueue,
    JobWorker, MemoryJobQueue, MemoryLedger, RequestCap, Thresholds,
};
use switchboard_core::{
    BoxProvider, ChatRequest, ChatResponse, Error, HealthBoard, ModelName, PriceTable, ProviderId,
    SharedService, Tier, boxed,
};
use switchboard_hedge::HedgeLayer;
use switchboard_providers::{Anthropic, HttpClient, OpenAi};
use switchboard_route::{Dispatch, Rollout, RolloutHandle, RouteLayer};
use switchboard_sim::SimProvider;
use switchboard_telemetry::Telemetry;
use switchboard_tier::{KeyPolicy, TierLayer};
use switchboard_timeout::{Scope, TimeoutLayer};
use tower::{Service, ServiceBuilder};

use crate::config::{BudgetConfig, Config, ConfigError, OnBlock, ProviderConfig};

/// The standard stack, built from one [`Config`], and the handles an operator needs.
///
/// Outermost first: admission (`TierLayer`) → call metrics (`MetricsLayer`) → cost
/// estimate (`EstimateLayer`) → budget gate (`BudgetLayer`) → routing (`RouteLayer`) → call
/// deadlines (`TimeoutLayer`, total and idle) → hedging (`HedgeLayer`) → `Dispatch` → per
/// provider: attempt metrics (`AttemptMetricsLayer`) → circuit breaker → per-attempt
/// first-token deadline → adapter. [`Switchboard::telemetry`] renders the metrics.
///
/// ```
/// use switchboard::{Config, Switchboard};
/// use switchboard_core::{ChatBody, ChatRequest, Message};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let config = Config::from_toml(switchboard::DEMO_CONFIG).unwrap();
/// let switchboard = Switchboard::build(&config).unwrap();
/// let request = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("Hello")]));
/// let answer = switchboard.service().oneshot(request).await.unwrap().collect().await.unwrap();
/// assert!(!answer.text.is_empty());
/// # }
/// ```
#[derive(Clone)]
pub struct Switchboard {
    service: BoxProvider,
    board: HealthBoard,
    ledger: Option<MemoryLedger>,
    telemetry: Telemetry,
    jobs: Option<Arc<dyn JobQueue>>,
    rollout: Option<RolloutHandle>,
    models: Vec<ModelName>,
    providers: Vec<ProviderId>,
}

impl fmt::Debug for Switchboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Switchboard")
            .field("providers", &self.providers)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

impl Switchboard {
    /// Builds the stack. Real providers' keys are read here (config, then environment).
    pub fn build(config: &Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let board = HealthBoard::new();
        let client = lazy_client(config)?;
        let estimator = Arc::new(estimator(config));
        let prices = prices(config, &estimator);
        let telemetry = Telemetry::builder().prices(prices.clone()).build();
        telemetry.watch_board(board.clone());

        let mut dispatch = Dispatch::new();
        for (id, provider) in &config.providers {
            // One enum rather than a box: the provider's stack below is boxed once, whole.
            let adapter = match provider {
                ProviderConfig::Sim(sim) => {
                    Adapter::Sim(SimProvider::new(id.clone(), (**sim).clone()))
                }
                ProviderConfig::Openai(c) => {
                    let client = client.clone().ok_or_else(no_client)?;
                    Adapter::OpenAi(
                        OpenAi::new(id.clone(), c.clone(), client)
                            .map_err(|e| invalid_provider(id, e))?,
                    )
                }
                ProviderConfig::Anthropic(c) => {
                    let client = client.clone().ok_or_else(no_client)?;
                    Adapter::Anthropic(
                        Anthropic::new(id.clone(), c.clone(), client)
                            .map_err(|e| invalid_provider(id, e))?,
                    )
                }
            };
            let stack = ServiceBuilder::new()
                .layer(telemetry.attempt_layer(id.clone()))
                .layer(
                    BreakerLayer::new(id.clone())
                        .config(config.breaker.clone())
                        .board(board.clone()),
                )
                .layer(
                    TimeoutLayer::new(config.timeouts)
                        .scope(Scope::Attempt)
                        .provider(id.clone()),
                )
                .service(adapter);
            dispatch = dispatch.boxed_provider(id.clone(), boxed(stack));
        }

        let mut route = RouteLayer::new(config.routing.clone())
            .board(board.clone())
            .prices(prices);
        if let Some(rollout) = &config.rollout {
            route = route.rollout(Rollout::new(
                rollout.candidate.clone(),
                rollout.settings.clone(),
            ));
        }
        let rollout = route.rollout_handle();
        if let Some(handle) = rollout.clone() {
            telemetry.watch_rollout("routing", move || {
                let status = handle.status();
                (status.percent, status.promotions, status.rollbacks)
            });
        }
        let core = ServiceBuilder::new()
            .layer(route)
            .layer(TimeoutLayer::new(config.timeouts).scope(Scope::Call))
            .layer(HedgeLayer::new(config.hedge.clone()).board(board.clone()))
            .service(dispatch);

        let mut models: Vec<ModelName> = config.routing.models.keys().cloned().collect();
        for per_provider in config.routing.models.values() {
            models.extend(per_provider.values().cloned());
        }
        if let Some(rollout) = &config.rollout {
            models.extend(rollout.candidate.models.keys().cloned());
            for per_provider in rollout.candidate.models.values() {
                models.extend(per_provider.values().cloned());
            }
        }
        models.sort();
        models.dedup();
        let known: Arc<HashSet<String>> =
            Arc::new(models.iter().map(ToString::to_string).collect());
        let admission = tier_layer(config);
        let (service, ledger, jobs) = match &config.budget {
            Some(budget) => {
                let ledger = MemoryLedger::new(caps(budget));
                watch_budget(&telemetry, budget, &ledger);
                let jobs: Option<Arc<dyn JobQueue>> = budget
                    .on_block
                    .values()
                    .any(|a| *a == OnBlock::Enqueue)
                    .then(|| Arc::new(MemoryJobQueue::new()) as Arc<dyn JobQueue>);
                let gate = budget_layer(budget, ledger.clone(), estimator.clone(), jobs.clone());
                let service = ServiceBuilder::new()
                    .layer(admission)
                    .layer(telemetry.layer())
                    .layer(EstimateLayer::new(estimator))
                    .layer(gate)
                    .service(core);
                (
                    boxed(SharedService::new(KnownModels::new(service, known))),
                    Some(ledger),
                    jobs,
                )
            }
            None => {
                let service = ServiceBuilder::new()
                    .layer(admission)
                    .layer(telemetry.layer())
                    .layer(EstimateLayer::new(estimator))
                    .service(core);
                (
                    boxed(SharedService::new(KnownModels::new(service, known))),
                    None,
                    None,
                )
            }
        };

        Ok(Self {
            service,
            board,
            ledger,
            telemetry,
            jobs,
            rollout,
            models,
            providers: config.providers.keys().cloned().collect(),
        })
    }

    /// The rollout's handle (stage, figures, operator rollback, quality scores), when a
    /// `[rollout]` is configured.
    pub fn rollout(&self) -> Option<&RolloutHandle> {
        self.rollout.as_ref()
    }

    /// The whole stack as one provider service. Cloning it (as axum and tonic do for each
    /// request) is one box and one reference count: the stack is a [`SharedService`],
    /// called in place when no other request is using it.
    pub fn service(&self) -> BoxProvider {
        self.service.clone()
    }

    /// The shared health board (breaker state and latency per provider).
    pub fn board(&self) -> &HealthBoard {
        &self.board
    }

    /// The budget ledger, when a budget is configured.
    pub fn ledger(&self) -> Option<&MemoryLedger> {
        self.ledger.as_ref()
    }

    /// The job queue blocked requests go to, when a tier's `on_block` is `enqueue`.
    pub fn jobs(&self) -> Option<&Arc<dyn JobQueue>> {
        self.jobs.as_ref()
    }

    /// Starts the worker that runs queued jobs through the stack as budget allows (on the
    /// current tokio runtime). `None` when no tier enqueues.
    pub fn spawn_job_worker(&self) -> Option<tokio::task::JoinHandle<()>> {
        let queue = self.jobs.clone()?;
        Some(tokio::spawn(
            JobWorker::new(queue, self.service.clone()).run(),
        ))
    }

    /// The metrics: [`Telemetry::render`] is what `GET /metrics` serves.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Every model name a request may use: logical and concrete.
    pub fn models(&self) -> &[ModelName] {
        &self.models
    }

    /// The configured providers.
    pub fn providers(&self) -> &[ProviderId] {
        &self.providers
    }

    /// Whether at least one provider's breaker admits traffic.
    pub fn ready(&self) -> bool {
        self.providers
            .iter()
            .any(|p| !self.board.provider(p).snapshot().state.is_open())
    }

    /// A JSON view of the health board and the budget window.
    pub fn status(&self) -> serde_json::Value {
        let providers: serde_json::Map<String, serde_json::Value> = self
            .providers
            .iter()
            .map(|p| {
                let snapshot = self.board.provider(p).snapshot();
                (
                    p.to_string(),
                    serde_json::to_value(&snapshot).unwrap_or_default(),
                )
            })
            .collect();
        let budget = self.ledger.as_ref().map(|l| {
            let (window, resets_in) = l.now();
            let books = l.books();
            serde_json::json!({
                "window": window,
                "resets_in_ms": resets_in.as_millis() as u64,
                "global_spent": l.spent(&switchboard_budget::Scope::Global).to_string(),
                "outstanding": books.outstanding.to_string(),
                "committed": books.committed.to_string(),
                "open_holds": books.open_holds,
            })
        });
        let rollout = self
            .rollout
            .as_ref()
            .map(|r| serde_json::to_value(r.status()).unwrap_or_default());
        serde_json::json!({"providers": providers, "budget": budget, "rollout": rollout})
    }
}

/// Refuses unknown models up front with `ModelNotFound` (a 404 at the edge), before
/// admission, estimation or the budget spend any work on a request nobody can serve.
/// A provider's adapter, whichever kind it is.
#[derive(Clone)]
enum Adapter {
    Sim(SimProvider),
    OpenAi(OpenAi),
    Anthropic(Anthropic),
}

type AdapterFuture<S> = <S as Service<ChatRequest>>::Future;

impl Service<ChatRequest> for Adapter {
    type Response = ChatResponse;
    type Error = Error;
    type Future =
        Either<AdapterFuture<SimProvider>, Either<AdapterFuture<OpenAi>, AdapterFuture<Anthropic>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self {
            Adapter::Sim(s) => s.poll_ready(cx),
            Adapter::OpenAi(s) => s.poll_ready(cx),
            Adapter::Anthropic(s) => s.poll_ready(cx),
        }
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        match self {
            Adapter::Sim(s) => Either::Left(s.call(request)),
            Adapter::OpenAi(s) => Either::Right(Either::Left(s.call(request))),
            Adapter::Anthropic(s) => Either::Right(Either::Right(s.call(request))),
        }
    }
}

/// Answers `ModelNotFound` for a model no route or rollout knows, before anything else
/// runs: the gateway turns it into a 404 in the caller's API shape.
#[derive(Clone)]
struct KnownModels<S> {
    inner: S,
    models: Arc<HashSet<String>>,
}

impl<S> KnownModels<S> {
    fn new(inner: S, models: Arc<HashSet<String>>) -> Self {
        Self { inner, models }
    }
}

impl<S> Service<ChatRequest> for KnownModels<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = Either<S::Future, Ready<Result<ChatResponse, Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        if self.models.contains(&request.body().model) {
            Either::Left(self.inner.call(request))
        } else {
            let model = request.body().model.clone();
            Either::Right(std::future::ready(Err(Error::ModelNotFound { model })))
        }
    }
}

/// An adapter refused its settings.
fn invalid_provider(id: &ProviderId, error: impl fmt::Display) -> ConfigError {
    ConfigError::new(
        format!("providers.{id}"),
        error.to_string(),
        "fix the provider's settings",
    )
}

fn no_client() -> ConfigError {
    ConfigError::new(
        "client",
        "the HTTP client could not be created",
        "check [client] tls_roots (\"native\" needs a readable system certificate store)",
    )
}

/// One HTTP client for every real provider; none when all providers are simulated.
fn lazy_client(config: &Config) -> Result<Option<HttpClient>, ConfigError> {
    let needs = config
        .providers
        .values()
        .any(|p| !matches!(p, ProviderConfig::Sim(_)));
    if !needs {
        return Ok(None);
    }
    HttpClient::with_config(&config.client)
        .map(Some)
        .map_err(|e| {
            ConfigError::new(
                "client.tls_roots",
                e.to_string(),
                "use tls_roots = \"webpki\"",
            )
        })
}

fn tier_layer(config: &Config) -> TierLayer {
    let admission = &config.admission;
    let mut builder = TierLayer::builder();
    if admission.headers {
        builder = builder.headers();
    }
    for (key, k) in &config.server.keys {
        let mut policy = KeyPolicy::new(k.tenant.clone());
        if let Some(tier) = k.tier {
            policy = policy.tier(tier);
        }
        if let Some(ceiling) = k.allow_header_tier {
            policy = policy.allow_header_tier(ceiling);
        }
        builder = builder.api_key(key.clone(), policy);
    }
    builder
        .default_tier(admission.default_tier)
        .default_scene(admission.default_scene.clone())
        .build()
}

/// Logical models are priced as their first provider's concrete model.
fn estimator(config: &Config) -> Estimator {
    let mut builder = Estimator::builder();
    for (logical, per_provider) in &config.routing.models {
        let first = config
            .routing
            .providers
            .iter()
            .find_map(|p| per_provider.get(p))
            .or_else(|| per_provider.values().next());
        if let Some(concrete) = first {
            builder = builder.alias(logical.clone(), concrete.clone());
        }
    }
    builder.build()
}

/// The price of every concrete model the routing names, for cheapest-first routing.
fn prices(config: &Config, estimator: &Estimator) -> PriceTable {
    config
        .routing
        .models
        .values()
        .flat_map(|m| m.values())
        .filter_map(|model| estimator.known_price(model).map(|p| (model.to_string(), p)))
        .collect()
}

/// Budget gauges: the global window, and each tier with its own cap.
fn watch_budget(telemetry: &Telemetry, budget: &BudgetConfig, ledger: &MemoryLedger) {
    let l = ledger.clone();
    let cap = budget.global_per_minute;
    telemetry.watch_budget("global", move || {
        (l.spent(&switchboard_budget::Scope::Global), cap)
    });
    for (tier, cap) in &budget.tier_per_minute {
        let (l, tier, cap) = (ledger.clone(), *tier, *cap);
        telemetry.watch_budget(format!("tier:{tier}"), move || {
            (l.spent(&switchboard_budget::Scope::Tier(tier)), cap)
        });
    }
}

fn caps(budget: &BudgetConfig) -> Caps {
    let mut caps = Caps::new().global(budget.global_per_minute);
    for (tier, cap) in &budget.tier_per_minute {
        caps = caps.tier(*tier, *cap);
    }
    if let Some(cap) = budget.tenant_per_minute {
        caps = caps.every_tenant(cap);
    }
    caps
}

fn budget_layer(
    budget: &BudgetConfig,
    ledger: MemoryLedger,
    estimator: Arc<Estimator>,
    jobs: Option<Arc<dyn JobQueue>>,
) -> BudgetLayer<MemoryLedger> {
    let t = budget.thresholds;
    let mut degrade = Degrade::new();
    for (model, cheaper) in &budget.degrade.cheaper_model {
        degrade = degrade.cheaper_model(model.clone(), cheaper.clone());
    }
    if let Some(cap) = budget.degrade.max_tokens {
        degrade = degrade.max_tokens(cap);
    }
    if let Some(cap) = budget.degrade.temperature {
        degrade = degrade.temperature(cap);
    }
    if let Some(tokens) = budget.degrade.context_tokens {
        degrade = degrade.context_tokens(tokens);
    }
    let mut builder = BudgetLayer::builder(ledger)
        .estimator(estimator)
        .thresholds_all(Thresholds::percent(t.warn, t.degrade, t.block))
        .degrade(degrade);
    for tier in Tier::ALL {
        builder = builder.exempt_from_degrade(tier, budget.exempt_from_degrade.contains(&tier));
    }
    for (tier, action) in &budget.on_block {
        let action = match action {
            OnBlock::Reject => BlockAction::Reject,
            OnBlock::Enqueue => BlockAction::Enqueue,
        };
        builder = builder.on_block(*tier, action);
    }
    if let Some(jobs) = jobs {
        builder = builder.jobs(jobs);
    }
    if let Some(limit) = budget.per_request {
        builder = builder.request_cap(RequestCap {
            limit,
            action: CapAction::Reject,
        });
    }
    builder.build()
}
