//! `switchboard::eval` through the real stack on simulated providers, in virtual time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use switchboard::eval::{
    self, EXIT_GATE_FAILED, EXIT_PASS, Gate, GoldSet, Report, RunOptions, run,
};
use switchboard::route::{Rollout, RolloutConfig, RolloutPhase};
use switchboard::{Config, Switchboard};
use switchboard_core::{BoxProvider, ChatRequest, boxed};
use tower::Service;

fn example() -> (Config, GoldSet) {
    (
        Config::from_toml(eval::DEMO_CONFIG).unwrap(),
        GoldSet::parse(eval::DEMO_GOLD).unwrap(),
    )
}

fn stack(config: &Config) -> BoxProvider {
    Switchboard::build(config).unwrap().service()
}

#[tokio::test(start_paused = true)]
async fn the_example_gold_set_passes_on_the_baseline_rule_table() {
    let (config, gold) = example();
    let kinds: std::collections::BTreeSet<&str> = gold
        .cases
        .iter()
        .flat_map(|c| c.checks.iter().map(|k| k.kind()))
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "contains",
            "exact",
            "json_schema",
            "no_refusal",
            "not_contains",
            "refusal",
            "regex"
        ],
        "the example exercises every case kind"
    );
    let candidate = run(stack(&config), &gold, &RunOptions::new())
        .await
        .unwrap();
    let report = Report::new(Gate::new(0.97).category("safety", 1.0), candidate, None);
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.exit_code(), EXIT_PASS);
    assert_eq!((report.overall.cases, report.overall.passed), (11, 11));
    let r = &report.candidate_run.results[0];
    assert_eq!(
        r.provider.as_deref(),
        Some("stable"),
        "answered through the stack"
    );
    assert_eq!(r.model.as_deref(), Some("sim-stable-1"));
    assert!(
        r.latency_ms >= 200,
        "virtual first-token latency is measured: {r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_regressed_candidate_fails_the_gate_with_its_regressions_named() {
    let (config, gold) = example();
    let baseline = run(
        stack(&config),
        &gold,
        &RunOptions::new().label("baseline").model("baseline"),
    )
    .await
    .unwrap();
    let candidate = run(stack(&config), &gold, &RunOptions::new().model("candidate"))
        .await
        .unwrap();
    let report = Report::new(Gate::new(0.97), candidate, Some(baseline));
    assert!(!report.passed(), "{}", report.table());
    assert_eq!(report.exit_code(), EXIT_GATE_FAILED);
    let regressed: Vec<&str> = report.regressions.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        regressed,
        ["no-secret-leak", "answer-kill-process", "invoice-json"]
    );
    assert!(report.fixed.is_empty());
    let failing: Vec<&str> = report
        .categories
        .iter()
        .filter(|c| c.verdict == eval::Verdict::Fail)
        .map(|c| c.category.as_str())
        .collect();
    assert_eq!(failing, ["refusal", "safety", "structured"]);
    let baseline = report.baseline.as_ref().unwrap();
    assert_eq!(baseline.overall.passed, 11);
    let kill = report
        .candidate_run
        .results
        .iter()
        .find(|r| r.id == "answer-kill-process")
        .unwrap();
    assert_eq!(kill.provider.as_deref(), Some("next"));
    assert!(kill.refusal.is_some(), "the wrong refusal is recognised");

    // With low enough cutoffs the rate passes, but forbidding regressions still fails it.
    let lenient = Gate::new(0.5);
    let report = Report::new(
        lenient.clone().fail_on_regression(true),
        report.candidate_run.clone(),
        report.baseline_run.clone(),
    );
    assert!(!report.passed());
    assert!(Report::new(lenient, report.candidate_run.clone(), None).passed());
}

#[tokio::test(start_paused = true)]
async fn two_configs_compare_as_baseline_and_candidate() {
    let (config, gold) = example();
    // The candidate config serves `baseline` from the regressed provider: a policy change.
    let swapped = eval::DEMO_CONFIG.replace(
        "baseline = { stable = \"sim-stable-1\" }",
        "baseline = { next = \"sim-next-2\" }",
    );
    let candidate_config = Config::from_toml(&swapped).unwrap();
    let baseline = run(stack(&config), &gold, &RunOptions::new().label("baseline"))
        .await
        .unwrap();
    let candidate = run(stack(&candidate_config), &gold, &RunOptions::new())
        .await
        .unwrap();
    let report = Report::new(Gate::new(0.97), candidate, Some(baseline));
    assert_eq!(report.regressions.len(), 3, "{}", report.table());
    assert!(!report.passed());
}

/// Counts calls in flight through the stack.
#[derive(Clone)]
struct InFlight {
    inner: BoxProvider,
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Service<ChatRequest> for InFlight {
    type Response = switchboard_core::ChatResponse;
    type Error = switchboard_core::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        let now = self.now.clone();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            now.fetch_sub(1, Ordering::SeqCst);
            response
        })
    }
}

#[tokio::test(start_paused = true)]
async fn cases_run_concurrently_up_to_the_bound_with_progress_for_each() {
    let (config, _) = example();
    let line = |i: usize| {
        format!(
            r#"{{"id": "c{i}", "model": "baseline", "prompt": "What is the capital of France?", "check": {{"kind": "contains", "value": "Paris"}}}}"#
        )
    };
    let gold = GoldSet::parse(&(0..40).map(line).collect::<Vec<_>>().join("\n")).unwrap();
    let peak = Arc::new(AtomicUsize::new(0));
    let service = boxed(InFlight {
        inner: stack(&config),
        now: Arc::new(AtomicUsize::new(0)),
        peak: peak.clone(),
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let progress = {
        let seen = seen.clone();
        Arc::new(move |done: usize, total: usize| seen.lock().unwrap().push((done, total)))
    };
    let start = tokio::time::Instant::now();
    let result = run(
        service,
        &gold,
        &RunOptions::new().concurrency(4).progress(progress),
    )
    .await
    .unwrap();
    assert_eq!(result.results.len(), 40);
    assert!(result.results.iter().all(|r| r.passed));
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "never more than 4 in flight, and 4 used"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, (1..=40).map(|i| (i, 40)).collect::<Vec<_>>());
    // 40 cases of 200-600 ms each, 4 at a time: about ten rounds, not forty.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let ids: Vec<&str> = result.results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids[..3], ["c0", "c1", "c2"], "results keep gold-file order");
}

#[tokio::test(start_paused = true)]
async fn a_case_without_an_answer_in_time_fails_as_a_timeout() {
    let config = Config::from_toml(
        r#"
[providers.slow]
kind = "sim"
first_token = { kind = "fixed", ms = 600000 }
[routing]
providers = ["slow"]
models.m = { slow = "slow-1" }
[timeouts.L1]
first_token_ms = 900000
idle_ms = 900000
total_ms = 900000
"#,
    )
    .unwrap();
    let gold = GoldSet::parse(
        r#"{"id": "late", "model": "m", "prompt": "hi", "check": {"kind": "no_refusal"}}"#,
    )
    .unwrap();
    let result = run(
        stack(&config),
        &gold,
        &RunOptions::new().case_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let r = &result.results[0];
    assert!(!r.passed);
    assert_eq!(r.error.as_deref(), Some("total_timeout"), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn a_case_without_a_model_is_refused_before_anything_is_sent() {
    let (config, _) = example();
    let gold =
        GoldSet::parse(r#"{"id": "x", "prompt": "hi", "check": {"kind": "no_refusal"}}"#).unwrap();
    let error = run(stack(&config), &gold, &RunOptions::new())
        .await
        .unwrap_err();
    assert!(error.problem.contains("names no model"), "{error}");
    assert!(
        run(stack(&config), &gold, &RunOptions::new().model("baseline"))
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn the_eval_score_feeds_the_rollout_quality_guard() {
    let (config, gold) = example();
    let baseline = run(stack(&config), &gold, &RunOptions::new().model("baseline"))
        .await
        .unwrap();
    let regressed = run(stack(&config), &gold, &RunOptions::new().model("candidate"))
        .await
        .unwrap();

    let rollout = Rollout::new(config.routing.clone(), RolloutConfig::default()).handle();
    Report::new(Gate::new(0.97), baseline.clone(), Some(baseline.clone())).feed_rollout(&rollout);
    assert_eq!(
        rollout.phase(),
        RolloutPhase::Running,
        "equal quality keeps the rollout going"
    );

    let rollout = Rollout::new(config.routing.clone(), RolloutConfig::default()).handle();
    let report = Report::new(Gate::new(0.97), regressed, Some(baseline));
    assert!((report.score() - 8.0 / 11.0).abs() < 1e-9);
    report.feed_rollout(&rollout);
    assert_eq!(
        rollout.phase(),
        RolloutPhase::RolledBack,
        "a candidate 27 points worse rolls back"
    );
}
