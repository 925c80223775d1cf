//! Progressive rollout over simulated providers, in paused (virtual) time.
//!
//! One provider serves the baseline model `chat-v1` (first token log-normal, p50 400 ms /
//! p99 1000 ms). A rollout moves the logical model `chat` to a candidate `chat-v2`, through
//! 1 → 10 → 50 → 100 % (each stage held ≥ 120 s, ≥ 2000 requests, ≥ 50 candidate
//! outcomes; guard: p95 ×1.5, error rate +2 points, cost ×1.25, 50 samples per arm).
//! 50 requests/s over 20,000 sticky sessions, each request streamed to the end.
//!
//! (a) `chat-v2` is 2× slower at every quantile (p50 800 ms / p99 2000 ms).
//! (b) `chat-v2` behaves like `chat-v1` (same distribution, another seed).
//! (c) `chat-v2` is as fast but fails 8 % of calls with a 503.
//!
//! Run: `cargo run --release -p switchboard-route --example rollout_scenarios`

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderMap;
use switchboard_core::{
    ChatBody, ChatRequest, ChatResponse, Error, Message, Price, PriceTable, ProviderId,
    RequestHead, RolloutArm, RouteDecision,
};
use switchboard_route::{
    Dispatch, Rollout, RolloutConfig, RolloutHandle, RolloutPhase, RouteLayer, RoutePolicy,
};
use switchboard_sim::{Answer, ErrorFault, Faults, Latency, SimConfig, SimProvider};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const PROVIDER: ProviderId = ProviderId::from_static("openai");
const RATE: u64 = 50; // requests per second
const SESSIONS: u64 = 20_000;
const MAX_TIME: Duration = Duration::from_secs(1800);

/// One provider serving two models, each from its own simulator.
#[derive(Clone)]
struct Models(Arc<[(String, SimProvider); 2]>);

impl Service<ChatRequest> for Models {
    type Response = ChatResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let sim = self
            .0
            .iter()
            .find(|(m, _)| *m == req.body().model)
            .map(|(_, s)| s.clone());
        let model = req.body().model.clone();
        Box::pin(async move {
            match sim {
                Some(sim) => sim.oneshot(req).await,
                None => Err(Error::ModelNotFound { model }),
            }
        })
    }
}

fn model(seed: u64, p50: u64, p99: u64) -> SimProvider {
    failing_model(seed, p50, p99, 0.0)
}

fn failing_model(seed: u64, p50: u64, p99: u64, error_rate: f64) -> SimProvider {
    let faults = Faults {
        errors: vec![ErrorFault {
            status: 503,
            probability: error_rate,
            after: Duration::from_millis(200),
            retry_after_secs: None,
        }],
        ..Faults::default()
    };
    SimProvider::new(
        PROVIDER,
        SimConfig::instant()
            .seed(seed)
            .first_token(Latency::log_normal_ms(p50, p99))
            .tokens_per_second(100.0)
            .answer(Answer::Words { count: 40 })
            .faults(faults),
    )
}

fn request(session: u64) -> ChatRequest {
    let mut headers = HeaderMap::new();
    if let Ok(v) = format!("session-{session}").parse() {
        headers.insert("x-session-id", v);
    }
    let mut r = ChatRequest::new(
        ChatBody::new("chat", vec![Message::user("tell me something")]).max_tokens(64),
    );
    r.extensions_mut()
        .insert(RequestHead::new("/v1/chat/completions", headers));
    r
}

struct Report {
    events: Vec<(Duration, String)>,
    handle: RolloutHandle,
    requests: u64,
    candidate_requests: u64,
    end: Duration,
}

async fn scenario(candidate: SimProvider) -> Report {
    let baseline = model(1, 400, 1000);
    let upstream = Models(Arc::new([
        ("chat-v1".to_owned(), baseline),
        ("chat-v2".to_owned(), candidate),
    ]));
    let mut prices = PriceTable::new();
    for m in ["chat-v1", "chat-v2"] {
        prices.insert(m, Price::per_million("0.50", "1.50").expect("price"));
    }
    let config = RolloutConfig::default()
        .min_requests(2000)
        .min_duration(Duration::from_secs(120))
        .min_candidate_samples(50);
    let rollout = Rollout::new(
        RoutePolicy::new([PROVIDER]).model("chat", [(PROVIDER, "chat-v2")]),
        config,
    );
    let handle = rollout.handle();
    let router =
        RouteLayer::new(RoutePolicy::new([PROVIDER]).model("chat", [(PROVIDER, "chat-v1")]))
            .prices(prices)
            .rollout(rollout)
            .layer(Dispatch::new().provider(PROVIDER, upstream));

    let epoch = Instant::now();
    let gap = Duration::from_micros(1_000_000 / RATE);
    let mut events = vec![(Duration::ZERO, format!("start at {} %", handle.percent()))];
    let mut last = (handle.percent(), handle.phase());
    let mut tasks = Vec::new();
    let mut requests = 0u64;
    let mut settled_at: Option<Duration> = None;
    while epoch.elapsed() < MAX_TIME {
        // Keep sending for 60 s after the rollout settles, to show where traffic goes.
        if settled_at.is_some_and(|t| epoch.elapsed() > t + Duration::from_secs(60)) {
            break;
        }
        let session = requests.wrapping_mul(7919) % SESSIONS;
        let svc = router.clone();
        tasks.push(tokio::spawn(async move {
            match svc.oneshot(request(session)).await {
                Ok(response) => {
                    let arm = response.extensions().get::<RouteDecision>().map(|d| d.arm);
                    let _ = response.collect().await;
                    arm
                }
                Err(_) => None,
            }
        }));
        requests += 1;
        tokio::time::sleep(gap).await;
        let now = (handle.percent(), handle.phase());
        if now != last {
            let status = handle.status();
            let what = match status.phase {
                RolloutPhase::RolledBack => format!(
                    "rolled back from {} %: {}",
                    last.0,
                    status
                        .breach
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string)
                ),
                RolloutPhase::Complete => format!("promoted {} % → 100 % (complete)", last.0),
                RolloutPhase::Running => format!("promoted {} % → {} %", last.0, now.0),
            };
            events.push((epoch.elapsed(), format!("{what} (request {requests})")));
            if status.phase != RolloutPhase::Running {
                settled_at = Some(epoch.elapsed());
            }
            last = now;
        }
    }
    let mut candidate_requests = 0;
    for t in tasks {
        if let Ok(Some(RolloutArm::Candidate)) = t.await {
            candidate_requests += 1;
        }
    }
    Report {
        events,
        handle,
        requests,
        candidate_requests,
        end: epoch.elapsed(),
    }
}

fn print(name: &str, r: &Report) {
    println!("\n### {name}\n");
    println!("| virtual time | event |\n|---|---|");
    for (t, e) in &r.events {
        println!("| {:.1} s | {e} |", t.as_secs_f64());
    }
    let s = r.handle.status();
    println!(
        "\nfinal: {:?} at {} %, promotions {}, rollbacks {}; {} requests in {:.0} s, {} ({:.1} %) answered by the candidate",
        s.phase,
        s.percent,
        s.promotions,
        s.rollbacks,
        r.requests,
        r.end.as_secs_f64(),
        r.candidate_requests,
        100.0 * r.candidate_requests as f64 / r.requests.max(1) as f64
    );
    let p95 = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()));
    let rate = |a: &switchboard_route::ArmStats| {
        format!(
            "{:.1} %",
            100.0 * a.errors as f64 / a.outcomes.max(1) as f64
        )
    };
    println!(
        "\n| stage | lasted | requests | baseline p95 | candidate p95 (answers) | baseline errors | candidate errors | ended |\n|---|---|---|---|---|---|---|---|"
    );
    for h in &s.history {
        println!(
            "| {} % | {:.1} s | {} | {} | {} ({}) | {} | {} | {} |",
            h.percent,
            h.lasted.as_secs_f64(),
            h.requests,
            p95(h.baseline.p95),
            p95(h.candidate.p95),
            h.candidate.latency_samples,
            rate(&h.baseline),
            rate(&h.candidate),
            h.ended
        );
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let wall = std::time::Instant::now();
    let slow = scenario(model(2, 800, 2000)).await;
    print("(a) candidate 2× slower (p50 800 ms / p99 2000 ms)", &slow);
    let healthy = scenario(model(3, 400, 1000)).await;
    print("(b) healthy candidate (p50 400 ms / p99 1000 ms)", &healthy);
    let failing = scenario(failing_model(4, 400, 1000, 0.08)).await;
    print(
        "(c) candidate as fast, but 8 % of calls fail with 503",
        &failing,
    );
    println!("\nwall time {:.1} s", wall.elapsed().as_secs_f64());
}
