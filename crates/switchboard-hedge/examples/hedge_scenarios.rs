//! Resilience scenarios over simulated providers, in paused (virtual) time.
//!
//! (a) Provider A: first token log-normal p50 400 ms / p99 1000 ms with 3 % stalls of 10 s;
//!     provider B healthy, log-normal p50 600 ms / p99 1500 ms. 10,000 requests at 50/s.
//!     First-token latency percentiles and extra upstream calls for: no hedging,
//!     `tower::hedge` on A alone, and `HedgeLayer` A→B with several soft timeouts.
//! (b) A fails completely (503) for 120 s, then recovers; B healthy. 20 requests/s for
//!     300 s through hedge → dispatch → breaker → per-attempt timeout → provider: when
//!     traffic shifts, client-visible failures, when A's breaker closes again.
//!
//! Run: `cargo run --release -p switchboard-hedge --example hedge_scenarios`

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use switchboard_breaker::BreakerLayer;
use switchboard_core::{
    Attempts, BoxProvider, BreakerState, ChatBody, ChatRequest, ChatResponse, Error, HealthBoard,
    Message, ProviderId, Route, Target, boxed,
};
use switchboard_hedge::{BudgetConfig, HedgeConfig, HedgeLayer, SoftTimeout};
use switchboard_sim::{Answer, Faults, Latency, Outage, SimConfig, SimProvider, Stall};
use switchboard_timeout::{Scope, TimeoutLayer, TimeoutTiers, Timeouts};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

const A: ProviderId = ProviderId::from_static("a");
const B: ProviderId = ProviderId::from_static("b");

/// Sends each attempt to the provider its `Target` names.
#[derive(Clone)]
struct Dispatch(Arc<HashMap<ProviderId, BoxProvider>>);

impl Service<ChatRequest> for Dispatch {
    type Response = ChatResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let svc = req
            .extensions()
            .get::<Target>()
            .and_then(|t| self.0.get(&t.provider).cloned());
        Box::pin(async move {
            match svc {
                Some(svc) => svc.oneshot(req).await,
                None => Err(Error::NoProvider {
                    message: "unknown target".into(),
                }),
            }
        })
    }
}

fn request() -> ChatRequest {
    ChatRequest::new(ChatBody::new("chat", vec![Message::user("hello")]).max_tokens(16))
}

fn provider_a(seed: u64, faults: Faults, stalls: bool) -> SimProvider {
    let mut config = SimConfig::instant()
        .seed(seed)
        .first_token(Latency::log_normal_ms(400, 1000))
        .answer(Answer::Fixed { text: "ok".into() })
        .faults(faults);
    if stalls {
        config.first_token_stall = Some(Stall {
            probability: 0.03,
            duration: Duration::from_secs(10),
        });
    }
    SimProvider::new(A, config)
}

fn provider_b(seed: u64) -> SimProvider {
    SimProvider::new(
        B,
        SimConfig::instant()
            .seed(seed)
            .first_token(Latency::log_normal_ms(600, 1500))
            .answer(Answer::Fixed { text: "ok".into() }),
    )
}

/// Each provider as it sits in a dispatcher: breaker ∘ per-attempt first-token timeout.
fn provider_stack(sim: &SimProvider, board: &HealthBoard, probe: bool) -> BoxProvider {
    let timeout = TimeoutLayer::new(TimeoutTiers::uniform(
        Timeouts::NONE.first_token(Duration::from_secs(30)),
    ))
    .scope(Scope::Attempt)
    .provider(sim.id().clone());
    let mut breaker = BreakerLayer::new(sim.id().clone()).board(board.clone());
    if probe {
        breaker = breaker.active_probe(Duration::from_secs(2), request);
    }
    boxed(breaker.layer(timeout.layer(sim.clone())))
}

struct Outcome {
    start: Duration,
    latency: Duration,
    result: Result<Option<Attempts>, String>,
}

/// Sends `n` requests, one every `gap`, each on its own task; waits for all.
async fn drive<S>(svc: S, n: usize, gap: Duration) -> Vec<Outcome>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    S::Future: Send,
{
    let epoch = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let answer = svc.oneshot(request()).await;
            let latency = start.elapsed();
            let result = match answer {
                Ok(response) => {
                    let attempts = response.extensions().get::<Attempts>().cloned();
                    match response.collect().await {
                        Ok(_) => Ok(attempts),
                        Err(e) => Err(e.reason()),
                    }
                }
                Err(e) => {
                    let e: BoxError = e.into();
                    Err(match e.downcast_ref::<Error>() {
                        Some(e) => e.reason(),
                        None => e.to_string(),
                    })
                }
            };
            Outcome {
                start: start - epoch,
                latency,
                result,
            }
        }));
        tokio::time::sleep(gap).await;
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(o) = t.await {
            out.push(o);
        }
    }
    out
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn fmt_ms(d: Duration) -> String {
    format!("{}", d.as_millis())
}

struct Row {
    name: String,
    latencies: Vec<Duration>,
    upstream_calls: u64,
    failures: usize,
}

fn print_row(row: &Row, n: usize, baseline_p99: Option<Duration>) {
    let mut l = row.latencies.clone();
    l.sort();
    let p99 = percentile(&l, 0.99);
    let cut = baseline_p99.map_or("1.0×".to_owned(), |b| {
        format!("{:.1}×", b.as_secs_f64() / p99.as_secs_f64().max(1e-9))
    });
    let extra = row.upstream_calls.saturating_sub(n as u64);
    println!(
        "| {} | {} | {} | {} | {} | {} ({:.2} %) | {} | {} |",
        row.name,
        fmt_ms(percentile(&l, 0.50)),
        fmt_ms(percentile(&l, 0.95)),
        fmt_ms(p99),
        fmt_ms(percentile(&l, 0.999)),
        extra,
        100.0 * extra as f64 / n as f64,
        cut,
        row.failures,
    );
}

#[derive(Clone)]
struct AnyRequest;

impl tower::hedge::Policy<ChatRequest> for AnyRequest {
    fn clone_request(&self, req: &ChatRequest) -> Option<ChatRequest> {
        Some(req.clone())
    }

    fn can_retry(&self, _: &ChatRequest) -> bool {
        true
    }
}

async fn scenario_a() {
    const N: usize = 10_000;
    let gap = Duration::from_millis(20);
    println!("### (a) slow tail on A: {N} requests at 50/s\n");
    println!(
        "| configuration | p50 ms | p95 ms | p99 ms | p99.9 ms | extra upstream calls | p99 cut | failures |"
    );
    println!("|---|---|---|---|---|---|---|---|");

    let collect = |name: &str, outcomes: Vec<Outcome>, calls: u64| Row {
        name: name.to_owned(),
        latencies: outcomes
            .iter()
            .filter(|o| o.result.is_ok())
            .map(|o| o.latency)
            .collect(),
        upstream_calls: calls,
        failures: outcomes.iter().filter(|o| o.result.is_err()).count(),
    };

    // No hedging.
    let a = provider_a(1, Faults::default(), true);
    let out = drive(a.clone(), N, gap).await;
    let base = collect("A alone, no hedging", out, a.stats().calls());
    let mut sorted = base.latencies.clone();
    sorted.sort();
    let baseline = percentile(&sorted, 0.99);
    print_row(&base, N, None);

    // tower::hedge on A alone: p95 of its own latency histogram, 100 data points min.
    for pct in [0.90f32, 0.95] {
        let a = provider_a(1, Faults::default(), true);
        let hedge = tower::hedge::Hedge::new::<ChatRequest>(
            a.clone(),
            AnyRequest,
            100,
            pct,
            Duration::from_secs(10),
        );
        // tower's Hedge is not Clone; a Buffer shares it between the request tasks.
        let out = drive(tower::buffer::Buffer::new(hedge, 1024), N, gap).await;
        let row = collect(
            &format!("tower::hedge on A (p{:.0})", pct * 100.0),
            out,
            a.stats().calls(),
        );
        print_row(&row, N, Some(baseline));
    }

    // HedgeLayer A→B over breaker ∘ timeout stacks.
    let configs: Vec<(String, SoftTimeout, f64)> = vec![
        (
            "fixed 1200 ms".into(),
            SoftTimeout::fixed(Duration::from_millis(1200)),
            0.1,
        ),
        (
            "fixed 1000 ms".into(),
            SoftTimeout::fixed(Duration::from_millis(1000)),
            0.1,
        ),
        (
            "fixed 800 ms".into(),
            SoftTimeout::fixed(Duration::from_millis(800)),
            0.1,
        ),
        (
            "fixed 800 ms, budget 5 %".into(),
            SoftTimeout::fixed(Duration::from_millis(800)),
            0.05,
        ),
        (
            "fixed 600 ms".into(),
            SoftTimeout::fixed(Duration::from_millis(600)),
            0.1,
        ),
        ("adaptive p95 of A".into(), SoftTimeout::adaptive_p95(), 0.1),
        (
            "adaptive p99 of A".into(),
            SoftTimeout::Adaptive {
                quantile: 0.99,
                min_samples: 100,
                min: Duration::from_millis(250),
                max: Duration::from_secs(5),
                fallback: Duration::from_millis(1200),
            },
            0.1,
        ),
    ];
    for (name, soft, budget) in configs {
        let board = HealthBoard::new();
        let a = provider_a(1, Faults::default(), true);
        let b = provider_b(2);
        let dispatch = Dispatch(Arc::new(HashMap::from([
            (A, provider_stack(&a, &board, false)),
            (B, provider_stack(&b, &board, false)),
        ])));
        let route = Route::new(Target::new(A, "a-model")).fallback(Target::new(B, "b-model"));
        let config = HedgeConfig::default()
            .soft_timeout(soft)
            .budget(BudgetConfig {
                ratio: budget,
                ..BudgetConfig::default()
            });
        let hedge = HedgeLayer::new(config)
            .route(route)
            .board(board.clone())
            .layer(dispatch);
        let out = drive(hedge, N, gap).await;
        let row = collect(
            &format!("HedgeLayer A→B, {name}"),
            out,
            a.stats().calls() + b.stats().calls(),
        );
        print_row(&row, N, Some(baseline));
    }
    println!();
}

async fn scenario_b(probe: bool) {
    let outage_start = Duration::from_secs(30);
    let outage_len = Duration::from_secs(120);
    let n = 6_000;
    let gap = Duration::from_millis(50);
    let board = HealthBoard::new();
    let faults = Faults {
        outages: vec![Outage {
            start: outage_start,
            duration: outage_len,
            status: 503,
        }],
        ..Faults::default()
    };
    let a = provider_a(3, faults, false);
    let b = provider_b(4);
    let dispatch = Dispatch(Arc::new(HashMap::from([
        (A, provider_stack(&a, &board, probe)),
        (B, provider_stack(&b, &board, false)),
    ])));
    let route = Route::new(Target::new(A, "a-model")).fallback(Target::new(B, "b-model"));
    let hedge = HedgeLayer::new(HedgeConfig::default())
        .route(route)
        .board(board.clone())
        .layer(dispatch);

    // Watch A's breaker state every 10 ms of virtual time.
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (board, stop) = (board.clone(), stop.clone());
        tokio::spawn(async move {
            let mut changes = vec![(Duration::ZERO, BreakerState::Closed)];
            while !stop.load(Ordering::Relaxed) {
                let s = board.state(&A);
                if changes.last().map(|c| c.1) != Some(s) {
                    changes.push((epoch.elapsed(), s));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            changes
        })
    };
    let out = drive(hedge, n, gap).await;
    stop.store(true, Ordering::Relaxed);
    let changes = watcher.await.unwrap_or_default();

    let outage_end = outage_start + outage_len;
    let opened = changes
        .iter()
        .find(|(t, s)| *t >= outage_start && *s == BreakerState::Open)
        .map(|c| c.0);
    let closed = changes
        .iter()
        .find(|(t, s)| *t >= outage_end && *s == BreakerState::Closed)
        .map(|c| c.0);
    let failures = out.iter().filter(|o| o.result.is_err()).count();
    let during: Vec<&Outcome> = out
        .iter()
        .filter(|o| o.start >= outage_start && o.start < outage_end)
        .collect();
    let a_sent_during = during
        .iter()
        .filter(|o| {
            matches!(&o.result, Ok(Some(att)) if att.iter().any(|x| x.provider == A
                && !matches!(x.outcome, switchboard_core::AttemptOutcome::Skipped { .. })))
        })
        .count();
    let mut lat: Vec<Duration> = during.iter().map(|o| o.latency).collect();
    lat.sort();
    let opens = changes
        .iter()
        .filter(|(t, s)| *t >= outage_start && *s == BreakerState::Open)
        .count();
    let fmt =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    println!(
        "| {} | {} | {} | {} / {} | {} | {} | {} | {} |",
        if probe {
            "breaker + active probe every 2 s"
        } else {
            "breaker, no active probe"
        },
        fmt(opened.map(|t| t - outage_start)),
        failures,
        a_sent_during,
        during.len(),
        fmt_ms(percentile(&lat, 0.99)),
        opens,
        fmt(closed.map(|t| t - outage_end)),
        a.stats().calls() + b.stats().calls() - n as u64,
    );
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let wall = std::time::Instant::now();
    scenario_a().await;
    println!("### (b) A down (503) from 30 s to 150 s; 20 requests/s for 300 s\n");
    println!(
        "| stack | traffic shifted after | client-visible failures | requests sent to A during the outage | p99 first token during the outage (ms) | opens during the outage | closed again after recovery | extra upstream calls |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    scenario_b(false).await;
    scenario_b(true).await;
    println!("\n(wall time {:.1} s)", wall.elapsed().as_secs_f64());
}
