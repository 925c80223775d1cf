//! The [`Telemetry`] handle: the OpenTelemetry meter provider, its instruments and the
//! Prometheus registry they are exposed through.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use switchboard_core::{Cost, HealthBoard, PriceTable, ProviderId};

use crate::series::{AttemptSeries, Cache, CallSeries};
use crate::{AttemptMetricsLayer, MetricsLayer};

/// The content type of [`Telemetry::render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds of the latency histograms, in seconds: the GenAI semantic conventions'
/// advice for `gen_ai.client.operation.duration` (10 ms doubling to 82 s).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Bucket bounds of `gen_ai.client.token.usage`, in tokens: the semantic conventions'
/// advice (1, then ×4 up to 64 M).
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

type BudgetFn = Box<dyn Fn() -> (Cost, Cost) + Send + Sync>;

/// What the gauges read when Prometheus scrapes.
#[derive(Default)]
struct Sources {
    boards: Vec<HealthBoard>,
    budgets: Vec<(String, BudgetFn)>,
    rollouts: Vec<(String, RolloutFn)>,
}

/// Reads a rollout: (candidate percent, promotions so far, rollbacks so far).
type RolloutFn = Box<dyn Fn() -> (u8, u64, u64) + Send + Sync>;

/// Metrics for a Switchboard stack: the instruments the layers record into, the gauges
/// read from a [`HealthBoard`] and a budget ledger, and the Prometheus text exposition.
///
/// Cheap to clone (an `Arc`); clones share everything.
///
/// ```
/// use switchboard_telemetry::Telemetry;
///
/// let telemetry = Telemetry::new();
/// let text = telemetry.render();
/// assert!(text.contains("target_info"));
/// ```
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    meter: Meter,
    pub(crate) instruments: Instruments,
    call_series: Cache<CallSeries>,
    attempt_series: Cache<AttemptSeries>,
    prices: PriceTable,
    sources: Arc<Mutex<Sources>>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("prices", &self.inner.prices.iter().count())
            .finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`Telemetry`]: the service name and the price table costs are computed from.
#[derive(Debug, Clone)]
pub struct TelemetryBuilder {
    service_name: String,
    prices: PriceTable,
}

impl TelemetryBuilder {
    /// `service.name` of the resource (the `target_info` series). Default `switchboard`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Prices per concrete model: the cost counter charges each answer's final usage at
    /// the price of the model that answered. Models not in the table are not costed.
    /// Default: empty.
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// Builds the meter provider, the instruments and the registry.
    pub fn build(self) -> Telemetry {
        let registry = prometheus::Registry::new();
        // The exporter only fails to build with a custom reader configuration, which we
        // do not use; without it the provider still records, so metrics are never fatal.
        let mut provider = SdkMeterProvider::builder().with_resource(
            Resource::builder()
                .with_service_name(self.service_name)
                .build(),
        );
        match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
        {
            Ok(exporter) => provider = provider.with_reader(exporter),
            Err(error) => tracing::error!(%error, "the Prometheus exporter could not be built"),
        }
        let provider = provider.build();
        let meter = provider.meter("switchboard");
        let instruments = Instruments::new(&meter);
        let sources = Arc::new(Mutex::new(Sources::default()));
        register_gauges(&meter, &sources);
        Telemetry {
            inner: Arc::new(Inner {
                provider,
                registry,
                meter,
                instruments,
                call_series: Cache::default(),
                attempt_series: Cache::default(),
                prices: self.prices,
                sources,
            }),
        }
    }
}

impl Telemetry {
    /// Telemetry with the defaults (service `switchboard`, no prices).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder {
            service_name: "switchboard".to_owned(),
            prices: PriceTable::new(),
        }
    }

    /// The call-level layer: one span and one outcome per request. Place it where it sees
    /// the final outcome and the request's `Tier` and `Scene`: just inside admission.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer::new(self.clone())
    }

    /// The attempt-level layer for one provider: one span and one outcome per upstream
    /// attempt. Place it outermost in each provider's own stack (under the dispatcher).
    pub fn attempt_layer(&self, provider: ProviderId) -> AttemptMetricsLayer {
        AttemptMetricsLayer::new(self.clone(), provider)
    }

    /// The OpenTelemetry meter, for an application's own instruments (exposed beside ours).
    pub fn meter(&self) -> &Meter {
        &self.inner.meter
    }

    /// The meter provider (to add another reader, or to shut it down).
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.inner.provider
    }

    /// The Prometheus registry the exporter writes into.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.inner.registry
    }

    /// Exports `switchboard_breaker_open` and `switchboard_provider_in_flight` for every
    /// provider on `board`, read at each scrape.
    pub fn watch_board(&self, board: HealthBoard) {
        self.sources().boards.push(board);
    }

    /// Exports `switchboard_budget_spent_microdollars{scope}` and
    /// `switchboard_budget_cap_microdollars{scope}`, read from `read` (spent in the current
    /// window, cap) at each scrape.
    pub fn watch_budget(
        &self,
        scope: impl Into<String>,
        read: impl Fn() -> (Cost, Cost) + Send + Sync + 'static,
    ) {
        self.sources().budgets.push((scope.into(), Box::new(read)));
    }

    /// Exports `switchboard_rollout_candidate_percent{rollout}`,
    /// `switchboard_rollout_promotions_total{rollout}` and
    /// `switchboard_rollout_rollbacks_total{rollout}`, read from `read` (candidate share in
    /// percent, promotions so far, rollbacks so far) at each scrape.
    pub fn watch_rollout(
        &self,
        name: impl Into<String>,
        read: impl Fn() -> (u8, u64, u64) + Send + Sync + 'static,
    ) {
        self.sources().rollouts.push((name.into(), Box::new(read)));
    }

    /// Everything in the Prometheus text exposition format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let families = self.inner.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|error| format!("# encoding failed: {error}\n"))
    }

    pub(crate) fn instruments(&self) -> &Instruments {
        &self.inner.instruments
    }

    pub(crate) fn call_series(&self) -> &Cache<CallSeries> {
        &self.inner.call_series
    }

    pub(crate) fn attempt_series(&self) -> &Cache<AttemptSeries> {
        &self.inner.attempt_series
    }

    pub(crate) fn prices(&self) -> &PriceTable {
        &self.inner.prices
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.inner
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Micro-dollars, rounded up (a ledger never under-counts; neither do we).
pub(crate) fn micros_ceil(cost: Cost) -> u64 {
    cost.as_nanos().div_ceil(1000)
}

fn register_gauges(meter: &Meter, sources: &Arc<Mutex<Sources>>) {
    let s = sources.clone();
    let _breaker = meter
        .u64_observable_gauge("switchboard.breaker.open")
        .with_description(
            "1 while the provider's circuit breaker refuses calls (open or forced open), else 0",
        )
        .with_callback(move |observer| {
            let sources = s.lock().unwrap_or_else(PoisonError::into_inner);
            for board in &sources.boards {
                for snapshot in board.snapshots() {
                    let open = u64::from(snapshot.state.is_open());
                    observer.observe(
                        open,
                        &[KeyValue::new(
                            "provider",
                            snapshot.provider.as_str().to_owned(),
                        )],
                    );
                }
            }
        })
        .build();
    let s = sources.clone();
    let _in_flight = meter
        .u64_observable_gauge("switchboard.provider.in_flight")
        .with_description("Upstream calls under way per provider")
        .with_callback(move |observer| {
            let sources = s.lock().unwrap_or_else(PoisonError::into_inner);
            for board in &sources.boards {
                for snapshot in board.snapshots() {
                    observer.observe(
                        snapshot.in_flight,
                        &[KeyValue::new(
                            "provider",
                            snapshot.provider.as_str().to_owned(),
                        )],
                    );
                }
            }
        })
        .build();
    let s = sources.clone();
    let _spent = meter
        .u64_observable_gauge("switchboard.budget.spent_microdollars")
        .with_description("Spend admitted in the budget's current window, in micro-dollars")
        .with_callback(move |observer| {
            let sources = s.lock().unwrap_or_else(PoisonError::into_inner);
            for (scope, read) in &sources.budgets {
                let (spent, _) = read();
                observer.observe(micros_ceil(spent), &[KeyValue::new("scope", scope.clone())]);
            }
        })
        .build();
    let s = sources.clone();
    let _rollout_percent = meter
        .u64_observable_gauge("switchboard.rollout.candidate_percent")
        .with_description(
            "The rollout candidate's share of traffic now, in percent (0 once rolled back)",
        )
        .with_callback(move |observer| {
            let sources = s.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, read) in &sources.rollouts {
                let (percent, _, _) = read();
                observer.observe(
                    u64::from(percent),
                    &[KeyValue::new("rollout", name.clone())],
                );
            }
        })
        .build();
    let s = sources.clone();
    let _promotions = meter
        .u64_observable_counter("switchboard.rollout.promotions")
        .with_description("Rollout stage promotions")
        .with_callback(move |observer| {
            let sources = s.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, read) in &sources.rollouts {
                let (_, promotions, _) = read();
                observer.observe(promotions, &[KeyValue::new("rollout", name.clone())]);
            }
        })
        .build();
    let s = sources.clone();
    let _rollbacks = meter
        .u64_observable_counter("switchboard.rollout.rollbacks")
        .with_description("Automatic and operator rollbacks of the rollout candidate")
        .with_callback(move |observer| {
            let sources = s.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, read) in &sources.rollouts {
                let (_, _, rollbacks) = read();
                observer.observe(rollbacks, &[KeyValue::new("rollout", name.clone())]);
            }
        })
        .build();
    let s = sources.clone();
    let _cap = meter
        .u64_observable_gauge("switchboard.budget.cap_microdollars")
        .with_description("The budget's cap per window, in micro-dollars")
        .with_callback(move |observer| {
            let sources = s.lock().unwrap_or_else(PoisonError::into_inner);
            for (scope, read) in &sources.budgets {
                let (_, cap) = read();
                observer.observe(
                    cap.as_nanos() / 1000,
                    &[KeyValue::new("scope", scope.clone())],
                );
            }
        })
        .build();
}

/// Every synchronous instrument the layers record into.
pub(crate) struct Instruments {
    /// `gen_ai.client.operation.duration` (s): the whole call, to the stream's end.
    pub(crate) operation_duration: Histogram<f64>,
    /// `gen_ai.client.token.usage` ({token}), by `gen_ai.token.type`.
    pub(crate) token_usage: Histogram<u64>,
    /// `switchboard.first_token.duration` (s): call start to the first content event.
    pub(crate) first_token: Histogram<f64>,
    /// `switchboard.attempt.first_token.duration` (s): per upstream attempt.
    pub(crate) attempt_first_token: Histogram<f64>,
    pub(crate) requests: Counter<u64>,
    pub(crate) attempts: Counter<u64>,
    pub(crate) hedges: Counter<u64>,
    pub(crate) fallbacks: Counter<u64>,
    pub(crate) timeouts: Counter<u64>,
    pub(crate) degraded: Counter<u64>,
    pub(crate) tokens: Counter<u64>,
    pub(crate) cost: Counter<u64>,
}

impl Instruments {
    fn new(meter: &Meter) -> Self {
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        Self {
            operation_duration: seconds(
                "gen_ai.client.operation.duration",
                "GenAI operation duration: from the call to the end of the answer's stream",
            ),
            token_usage: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Number of input and output tokens used per call")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            first_token: seconds(
                "switchboard.first_token.duration",
                "Time from the call to its first content event (all attempts included)",
            ),
            attempt_first_token: seconds(
                "switchboard.attempt.first_token.duration",
                "Time from one upstream attempt's start to its first content event",
            ),
            requests: counter(
                "switchboard.requests",
                "Calls by outcome (ok, degraded, error, cancelled) and reason",
            ),
            attempts: counter(
                "switchboard.attempts",
                "Upstream attempts by provider and outcome (ok, error, cancelled) and reason",
            ),
            hedges: counter(
                "switchboard.hedges",
                "Hedge attempts started after the soft timeout, by the provider hedged to and whether they won",
            ),
            fallbacks: counter(
                "switchboard.fallbacks",
                "Failover attempts started after a retryable failure, by the provider failed over to and the reason",
            ),
            timeouts: counter(
                "switchboard.timeouts",
                "Timeouts by phase (connect, first_token, idle, total) and scope (attempt, call)",
            ),
            degraded: counter(
                "switchboard.degraded",
                "Degraded answers by degradation reason (one per reason an answer carries)",
            ),
            tokens: counter(
                "switchboard.tokens",
                "Tokens by type (input, output, cached_input) from each answer's final usage",
            ),
            cost: counter(
                "switchboard.cost.microdollars",
                "Cost of answers at the answering model's price, in micro-dollars (rounded up per call)",
            ),
        }
    }
}
