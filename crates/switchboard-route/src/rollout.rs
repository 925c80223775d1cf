//! Progressive rollout: a sticky canary split between the current policy and a candidate,
//! promoted stage by stage and rolled back automatically on a guard breach.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_core::{Cost, Error, RolloutArm};
use tokio::time::Instant;

use crate::policy::RoutePolicy;
use crate::select::Selector;

/// When a candidate counts as worse than the baseline. Each figure is compared over the
/// current stage, once both arms have enough samples of it.
///
/// | knob | default | breach when the candidate's… |
/// |---|---|---|
/// | `max_error_rate_increase` | 0.02 | error rate exceeds the baseline's by more (absolute) |
/// | `max_p95_ratio` | 1.5 | first-token p95 exceeds the baseline's × this |
/// | `max_cost_ratio` | 1.25 | mean cost per request exceeds the baseline's × this |
/// | `max_quality_drop` | 0.05 | mean quality score is lower than the baseline's by more |
/// | `min_samples` | 50 | (outcomes, latencies, costs per arm before judging them) |
/// | `min_quality_samples` | 10 | (quality scores per arm before judging them) |
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guard {
    /// Largest tolerated increase of the error rate (absolute, 0.02 = 2 points).
    pub max_error_rate_increase: f64,
    /// Largest tolerated ratio of first-token p95 latencies.
    pub max_p95_ratio: f64,
    /// Largest tolerated ratio of mean cost per request.
    pub max_cost_ratio: f64,
    /// Largest tolerated drop of the mean quality score.
    pub max_quality_drop: f64,
    /// Samples per arm before error rate, latency or cost is judged.
    pub min_samples: u64,
    /// Quality scores per arm before quality is judged.
    pub min_quality_samples: u64,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            max_error_rate_increase: 0.02,
            max_p95_ratio: 1.5,
            max_cost_ratio: 1.25,
            max_quality_drop: 0.05,
            min_samples: 50,
            min_quality_samples: 10,
        }
    }
}

/// The rollout's knobs.
///
/// | knob | default |
/// |---|---|
/// | `stages` | 1 %, 10 %, 50 %, 100 % of traffic to the candidate |
/// | `min_requests` | 1000 requests routed in a stage before it may be promoted |
/// | `min_duration` | 5 min in a stage before it may be promoted |
/// | `min_candidate_samples` | 50 candidate outcomes in a stage before it may be promoted |
/// | `guard` | see [`Guard`] |
/// | `session_header` | `x-session-id`: the sticky key, else the `TenantId` |
///
/// ```
/// use std::time::Duration;
/// use switchboard_route::RolloutConfig;
///
/// let config: RolloutConfig = serde_json::from_value(serde_json::json!({
///     "stages": [5, 25, 100],
///     "min_requests": 500,
///     "min_duration_secs": 600,
///     "guard": {"max_p95_ratio": 1.2, "max_error_rate_increase": 0.01}
/// })).unwrap();
/// assert_eq!(config.min_duration, Duration::from_secs(600));
/// assert_eq!(config.guard.max_cost_ratio, 1.25); // unlisted knobs keep their defaults
/// assert_eq!(config.session_header.as_deref(), Some("x-session-id"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// Candidate share per stage, in percent, increasing, ending at 100 (values are
    /// clamped to 1–100, sorted and de-duplicated, and 100 is appended if missing).
    pub stages: Vec<u8>,
    /// Requests routed (both arms) in a stage before it may be promoted.
    pub min_requests: u64,
    /// Time in a stage before it may be promoted.
    #[serde(with = "secs", rename = "min_duration_secs")]
    pub min_duration: Duration,
    /// Candidate outcomes in a stage before it may be promoted.
    pub min_candidate_samples: u64,
    /// The guard.
    pub guard: Guard,
    /// The header (from the request's `RequestHead`) holding the session key; requests
    /// without it are keyed by their `TenantId`, and requests with neither are spread.
    pub session_header: Option<String>,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            stages: vec![1, 10, 50, 100],
            min_requests: 1000,
            min_duration: Duration::from_secs(300),
            min_candidate_samples: 50,
            guard: Guard::default(),
            session_header: Some("x-session-id".into()),
        }
    }
}

impl RolloutConfig {
    /// Sets the stages.
    pub fn stages(mut self, stages: impl IntoIterator<Item = u8>) -> Self {
        self.stages = stages.into_iter().collect();
        self
    }

    /// Sets the requests a stage must route before promotion.
    pub fn min_requests(mut self, n: u64) -> Self {
        self.min_requests = n;
        self
    }

    /// Sets the time a stage must last before promotion.
    pub fn min_duration(mut self, d: Duration) -> Self {
        self.min_duration = d;
        self
    }

    /// Sets the candidate outcomes a stage needs before promotion.
    pub fn min_candidate_samples(mut self, n: u64) -> Self {
        self.min_candidate_samples = n;
        self
    }

    /// Sets the guard.
    pub fn guard(mut self, guard: Guard) -> Self {
        self.guard = guard;
        self
    }

    /// Sets the session header (`None`: key by tenant only).
    pub fn session_header(mut self, header: Option<String>) -> Self {
        self.session_header = header;
        self
    }

    fn sanitized_stages(&self) -> Vec<u8> {
        let mut stages: Vec<u8> = self.stages.iter().map(|&p| p.clamp(1, 100)).collect();
        stages.sort_unstable();
        stages.dedup();
        if stages.last() != Some(&100) {
            stages.push(100);
        }
        stages
    }
}

/// Why a candidate was rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "guard", rename_all = "snake_case")]
pub enum Breach {
    /// Error rate over the baseline's plus the allowance.
    ErrorRate {
        /// Candidate error rate.
        candidate: f64,
        /// Baseline error rate.
        baseline: f64,
    },
    /// First-token p95 over the baseline's times the allowed ratio.
    FirstTokenP95 {
        /// Candidate p95.
        candidate: Duration,
        /// Baseline p95.
        baseline: Duration,
    },
    /// Mean cost per request over the baseline's times the allowed ratio.
    CostPerRequest {
        /// Candidate mean.
        candidate: Cost,
        /// Baseline mean.
        baseline: Cost,
    },
    /// Mean quality score under the baseline's minus the allowed drop.
    Quality {
        /// Candidate mean score.
        candidate: f64,
        /// Baseline mean score.
        baseline: f64,
    },
    /// An operator rolled it back.
    Manual {
        /// Why.
        why: String,
    },
}

impl Breach {
    /// `error_rate`, `first_token_p95`, `cost_per_request`, `quality` or `manual`.
    pub const fn code(&self) -> &'static str {
        match self {
            Breach::ErrorRate { .. } => "error_rate",
            Breach::FirstTokenP95 { .. } => "first_token_p95",
            Breach::CostPerRequest { .. } => "cost_per_request",
            Breach::Quality { .. } => "quality",
            Breach::Manual { .. } => "manual",
        }
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::ErrorRate {
                candidate,
                baseline,
            } => write!(
                f,
                "error rate {:.1} % vs baseline {:.1} %",
                candidate * 100.0,
                baseline * 100.0
            ),
            Breach::FirstTokenP95 {
                candidate,
                baseline,
            } => write!(
                f,
                "first-token p95 {} ms vs baseline {} ms",
                candidate.as_millis(),
                baseline.as_millis()
            ),
            Breach::CostPerRequest {
                candidate,
                baseline,
            } => write!(f, "cost per request {candidate} vs baseline {baseline}"),
            Breach::Quality {
                candidate,
                baseline,
            } => write!(f, "quality {candidate:.3} vs baseline {baseline:.3}"),
            Breach::Manual { why } => write!(f, "rolled back by an operator: {why}"),
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    /// Splitting traffic at the current stage.
    Running,
    /// Promoted to 100 %: every request goes to the candidate.
    Complete,
    /// Rolled back: every request goes to the baseline.
    RolledBack,
}

/// One arm's figures over the current stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmStats {
    /// Outcomes observed (answers and errors).
    pub outcomes: u64,
    /// Errors among them (mid-stream failures included).
    pub errors: u64,
    /// First-token p95 of the answers.
    pub p95: Option<Duration>,
    /// Answers whose first-token latency was measured.
    pub latency_samples: u64,
    /// Mean cost of the requests whose stream ended with usage at a known price.
    pub cost_per_request: Option<Cost>,
    /// Mean quality score reported for the arm (over the whole rollout).
    pub quality: Option<f64>,
}

/// How a finished stage went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSummary {
    /// The stage's candidate share, in percent.
    pub percent: u8,
    /// How long it lasted.
    pub lasted: Duration,
    /// Requests routed in it.
    pub requests: u64,
    /// Baseline figures at its end.
    pub baseline: ArmStats,
    /// Candidate figures at its end.
    pub candidate: ArmStats,
    /// `promoted` or `rolled_back`.
    pub ended: &'static str,
}

/// A rollout's state, as the gateway exposes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutStatus {
    /// Running, complete or rolled back.
    pub phase: RolloutPhase,
    /// Index of the current stage.
    pub stage: usize,
    /// Candidate share now, in percent (100 once complete, 0 once rolled back).
    pub percent: u8,
    /// Time in the current stage.
    pub in_stage: Duration,
    /// Requests routed in the current stage.
    pub stage_requests: u64,
    /// Promotions so far.
    pub promotions: u64,
    /// Rollbacks so far (0 or 1).
    pub rollbacks: u64,
    /// Why it was rolled back.
    pub breach: Option<Breach>,
    /// Baseline figures.
    pub baseline: ArmStats,
    /// Candidate figures.
    pub candidate: ArmStats,
    /// The stages that ended, in order.
    pub history: Vec<StageSummary>,
}

/// A rollout of a candidate [`RoutePolicy`] (a new model behind a logical name, or a new
/// policy), given to [`RouteLayer::rollout`](crate::RouteLayer::rollout).
#[derive(Debug, Clone)]
pub struct Rollout {
    pub(crate) candidate: Arc<Selector>,
    pub(crate) handle: RolloutHandle,
}

impl Rollout {
    /// Starts a rollout of `candidate` at the first stage (the clock starts now).
    pub fn new(candidate: RoutePolicy, config: RolloutConfig) -> Self {
        Self {
            candidate: Arc::new(Selector::new(candidate)),
            handle: RolloutHandle::new(config),
        }
    }

    /// The handle: current stage, counters, quality reports, manual rollback.
    pub fn handle(&self) -> RolloutHandle {
        self.handle.clone()
    }
}

/// A cloneable view of and control over a running rollout.
#[derive(Clone)]
pub struct RolloutHandle {
    inner: Arc<Shared>,
}

struct Shared {
    config: RolloutConfig,
    stages: Vec<u8>,
    state: Mutex<State>,
}

struct State {
    phase: RolloutPhase,
    stage: usize,
    epoch: u64,
    stage_started: Instant,
    stage_requests: u64,
    baseline: Arm,
    candidate: Arm,
    quality: [Quality; 2],
    promotions: u64,
    rollbacks: u64,
    breach: Option<Breach>,
    unkeyed: u64,
    history: Vec<StageSummary>,
}

/// Which arm served a request, at which epoch (stage) of the rollout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Assignment {
    pub(crate) arm: RolloutArm,
    pub(crate) percent: u8,
    pub(crate) epoch: u64,
}

/// What happened to one request of an arm.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    FirstToken(Duration),
    Failed,
    /// After a first token: the stream broke.
    StreamFailed,
    Cost(Cost),
}

impl RolloutHandle {
    fn new(config: RolloutConfig) -> Self {
        let stages = config.sanitized_stages();
        let phase = if stages.len() == 1 {
            RolloutPhase::Complete
        } else {
            RolloutPhase::Running
        };
        Self {
            inner: Arc::new(Shared {
                config,
                stages,
                state: Mutex::new(State {
                    phase,
                    stage: 0,
                    epoch: 0,
                    stage_started: Instant::now(),
                    stage_requests: 0,
                    baseline: Arm::default(),
                    candidate: Arm::default(),
                    quality: [Quality::default(), Quality::default()],
                    promotions: 0,
                    rollbacks: 0,
                    breach: None,
                    unkeyed: 0,
                    history: Vec::new(),
                }),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration.
    pub fn config(&self) -> &RolloutConfig {
        &self.inner.config
    }

    /// The stages in effect (sanitized), in percent.
    pub fn stages(&self) -> &[u8] {
        &self.inner.stages
    }

    /// The candidate's share of traffic now, in percent.
    pub fn percent(&self) -> u8 {
        let state = self.state();
        self.percent_of(&state)
    }

    /// Running, complete or rolled back.
    pub fn phase(&self) -> RolloutPhase {
        self.state().phase
    }

    /// Promotions so far.
    pub fn promotions(&self) -> u64 {
        self.state().promotions
    }

    /// Rollbacks so far.
    pub fn rollbacks(&self) -> u64 {
        self.state().rollbacks
    }

    /// Everything at once.
    pub fn status(&self) -> RolloutStatus {
        let state = self.state();
        RolloutStatus {
            phase: state.phase,
            stage: state.stage,
            percent: self.percent_of(&state),
            in_stage: state.stage_started.elapsed(),
            stage_requests: state.stage_requests,
            promotions: state.promotions,
            rollbacks: state.rollbacks,
            breach: state.breach.clone(),
            baseline: state.baseline.stats(&state.quality[0]),
            candidate: state.candidate.stats(&state.quality[1]),
            history: state.history.clone(),
        }
    }

    /// The arm a request keyed `key` is assigned to now. Assignment is a pure function of
    /// the key and the stage: a key in the candidate stays there as the stage grows.
    pub fn arm_for(&self, key: &str) -> RolloutArm {
        let percent = self.percent();
        arm_of(bucket(key.as_bytes()), percent)
    }

    /// Feeds an external quality score (a gold-set gate, an evaluator, user feedback)
    /// for an arm; higher is better. Scores accumulate over the whole rollout and are
    /// judged once both arms have `min_quality_samples`. Non-finite scores are ignored.
    pub fn report_quality(&self, arm: RolloutArm, score: f64) {
        if !score.is_finite() {
            return;
        }
        let mut state = self.state();
        if state.phase != RolloutPhase::Running {
            return;
        }
        let q = &mut state.quality[arm_index(arm)];
        q.total += score;
        q.samples += 1;
        self.evaluate(&mut state);
    }

    /// Rolls the candidate back now.
    pub fn roll_back(&self, why: impl Into<String>) {
        let mut state = self.state();
        if state.phase == RolloutPhase::Running {
            self.roll_back_locked(&mut state, Breach::Manual { why: why.into() });
        }
    }

    fn percent_of(&self, state: &State) -> u8 {
        match state.phase {
            RolloutPhase::Running => self.inner.stages.get(state.stage).copied().unwrap_or(100),
            RolloutPhase::Complete => 100,
            RolloutPhase::RolledBack => 0,
        }
    }

    pub(crate) fn session_header(&self) -> Option<&str> {
        self.inner.config.session_header.as_deref()
    }

    /// Assigns a request to an arm and counts it in the stage.
    pub(crate) fn assign(&self, key: Option<&[u8]>) -> Assignment {
        let mut state = self.state();
        let percent = self.percent_of(&state);
        let bucket = match key {
            Some(key) => bucket(key),
            None => {
                state.unkeyed = state.unkeyed.wrapping_add(1);
                bucket(&state.unkeyed.to_le_bytes())
            }
        };
        if state.phase == RolloutPhase::Running {
            state.stage_requests += 1;
        }
        Assignment {
            arm: arm_of(bucket, percent),
            percent,
            epoch: state.epoch,
        }
    }

    /// Records an outcome; outcomes of an earlier stage, or after the rollout ended, are
    /// ignored.
    pub(crate) fn observe(&self, assignment: Assignment, outcome: Outcome) {
        let mut state = self.state();
        if state.phase != RolloutPhase::Running || state.epoch != assignment.epoch {
            return;
        }
        let arm = match assignment.arm {
            RolloutArm::Baseline => &mut state.baseline,
            RolloutArm::Candidate => &mut state.candidate,
        };
        match outcome {
            Outcome::FirstToken(latency) => {
                arm.outcomes += 1;
                arm.latency.record(latency);
            }
            Outcome::Failed => {
                arm.outcomes += 1;
                arm.errors += 1;
            }
            Outcome::StreamFailed => arm.errors += 1,
            Outcome::Cost(cost) => {
                arm.cost_total = arm.cost_total.saturating_add(u128::from(cost.as_nanos()));
                arm.cost_samples += 1;
            }
        }
        self.evaluate(&mut state);
    }

    fn evaluate(&self, state: &mut State) {
        let config = &self.inner.config;
        if let Some(breach) = judge(&config.guard, state) {
            self.roll_back_locked(state, breach);
            return;
        }
        let guard = &config.guard;
        let ready = state.stage_started.elapsed() >= config.min_duration
            && state.stage_requests >= config.min_requests
            && state.candidate.outcomes >= config.min_candidate_samples.max(1)
            && state.baseline.outcomes >= guard.min_samples
            && state.candidate.outcomes >= guard.min_samples;
        if ready && state.stage + 1 < self.inner.stages.len() {
            let from = self.percent_of(state);
            self.close_stage(state, "promoted");
            state.stage += 1;
            state.epoch += 1;
            state.promotions += 1;
            state.stage_started = Instant::now();
            state.stage_requests = 0;
            state.baseline = Arm::default();
            state.candidate = Arm::default();
            if state.stage + 1 == self.inner.stages.len() {
                state.phase = RolloutPhase::Complete;
            }
            let to = self.percent_of(state);
            tracing::info!(
                from_percent = from,
                to_percent = to,
                promotions = state.promotions,
                complete = state.phase == RolloutPhase::Complete,
                "rollout promoted"
            );
        }
    }

    fn close_stage(&self, state: &mut State, ended: &'static str) {
        let summary = StageSummary {
            percent: self.percent_of(state),
            lasted: state.stage_started.elapsed(),
            requests: state.stage_requests,
            baseline: state.baseline.stats(&state.quality[0]),
            candidate: state.candidate.stats(&state.quality[1]),
            ended,
        };
        state.history.push(summary);
    }

    fn roll_back_locked(&self, state: &mut State, breach: Breach) {
        let from = self.percent_of(state);
        self.close_stage(state, "rolled_back");
        state.phase = RolloutPhase::RolledBack;
        state.epoch += 1;
        state.rollbacks += 1;
        tracing::warn!(
            from_percent = from,
            guard = breach.code(),
            detail = %breach,
            rollbacks = state.rollbacks,
            "rollout rolled back"
        );
        state.breach = Some(breach);
    }
}

impl fmt::Debug for RolloutHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("RolloutHandle")
            .field("phase", &state.phase)
            .field("percent", &self.percent_of(&state))
            .field("promotions", &state.promotions)
            .field("rollbacks", &state.rollbacks)
            .finish_non_exhaustive()
    }
}

/// The first breached guard, if any.
fn judge(guard: &Guard, state: &State) -> Option<Breach> {
    let (b, c) = (&state.baseline, &state.candidate);
    let n = guard.min_samples.max(1);
    if b.outcomes >= n && c.outcomes >= n {
        let (br, cr) = (b.error_rate(), c.error_rate());
        if cr > br + guard.max_error_rate_increase {
            return Some(Breach::ErrorRate {
                candidate: cr,
                baseline: br,
            });
        }
    }
    if b.latency.samples >= n && c.latency.samples >= n {
        if let (Some(bp), Some(cp)) = (b.latency.quantile(0.95), c.latency.quantile(0.95)) {
            if cp.as_secs_f64() > bp.as_secs_f64() * guard.max_p95_ratio {
                return Some(Breach::FirstTokenP95 {
                    candidate: cp,
                    baseline: bp,
                });
            }
        }
    }
    if b.cost_samples >= n && c.cost_samples >= n {
        let (bm, cm) = (b.mean_cost(), c.mean_cost());
        if cm.as_nanos() as f64 > bm.as_nanos() as f64 * guard.max_cost_ratio {
            return Some(Breach::CostPerRequest {
                candidate: cm,
                baseline: bm,
            });
        }
    }
    let (bq, cq) = (&state.quality[0], &state.quality[1]);
    let nq = guard.min_quality_samples.max(1);
    if bq.samples >= nq && cq.samples >= nq {
        let (bm, cm) = (bq.mean(), cq.mean());
        if cm < bm - guard.max_quality_drop {
            return Some(Breach::Quality {
                candidate: cm,
                baseline: bm,
            });
        }
    }
    None
}

const BUCKETS: u64 = 10_000;

/// FNV-1a of the key, in 10,000 buckets (0.01 % each): stable across processes and
/// replicas, so a session lands on the same arm everywhere.
fn bucket(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % BUCKETS
}

fn arm_of(bucket: u64, percent: u8) -> RolloutArm {
    if bucket < u64::from(percent.min(100)) * (BUCKETS / 100) {
        RolloutArm::Candidate
    } else {
        RolloutArm::Baseline
    }
}

fn arm_index(arm: RolloutArm) -> usize {
    match arm {
        RolloutArm::Baseline => 0,
        RolloutArm::Candidate => 1,
    }
}

#[derive(Default)]
struct Arm {
    outcomes: u64,
    errors: u64,
    latency: Histogram,
    cost_total: u128,
    cost_samples: u64,
}

impl Arm {
    fn error_rate(&self) -> f64 {
        if self.outcomes == 0 {
            0.0
        } else {
            self.errors.min(self.outcomes) as f64 / self.outcomes as f64
        }
    }

    fn mean_cost(&self) -> Cost {
        let n = u128::from(self.cost_samples.max(1));
        Cost::from_nanos(u64::try_from(self.cost_total / n).unwrap_or(u64::MAX))
    }

    fn stats(&self, quality: &Quality) -> ArmStats {
        ArmStats {
            outcomes: self.outcomes,
            errors: self.errors,
            p95: self.latency.quantile(0.95),
            latency_samples: self.latency.samples,
            cost_per_request: (self.cost_samples > 0).then(|| self.mean_cost()),
            quality: (quality.samples > 0).then(|| quality.mean()),
        }
    }
}

#[derive(Default)]
struct Quality {
    total: f64,
    samples: u64,
}

impl Quality {
    fn mean(&self) -> f64 {
        self.total / self.samples.max(1) as f64
    }
}

// Log buckets as on the health board: bucket 0 < 1 ms, bucket i ≥ 1 covers
// [1.05^(i-1), 1.05^i) ms, the last one everything longer (≈ 24 min).
const LATENCY_BUCKETS: usize = 292;
const GROWTH: f64 = 1.05;

/// First-token latencies of one arm in one stage; quantiles accurate to about 5 %,
/// rounded up.
struct Histogram {
    counts: Box<[u32; LATENCY_BUCKETS]>,
    samples: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; LATENCY_BUCKETS]),
            samples: 0,
        }
    }
}

impl Histogram {
    fn record(&mut self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let i = if ms < 1.0 {
            0
        } else {
            ((ms.ln() / GROWTH.ln()).floor() as usize + 1).min(LATENCY_BUCKETS - 1)
        };
        self.counts[i] = self.counts[i].saturating_add(1);
        self.samples += 1;
    }

    fn quantile(&self, q: f64) -> Option<Duration> {
        let n: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(upper(i));
            }
        }
        Some(upper(LATENCY_BUCKETS - 1))
    }
}

fn upper(i: usize) -> Duration {
    if i == 0 {
        Duration::from_millis(1)
    } else {
        Duration::from_secs_f64(GROWTH.powi(i as i32) / 1000.0)
    }
}

/// Whether an error says something about the arm (not the caller's own mistake or budget).
pub(crate) fn counts_for_rollout(error: &Error) -> bool {
    !matches!(
        error,
        Error::InvalidRequest { .. } | Error::BudgetExceeded { .. } | Error::ModelNotFound { .. }
    )
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_sanitized_to_end_at_one_hundred() {
        let c = RolloutConfig::default().stages([50, 0, 10, 10, 200]);
        assert_eq!(c.sanitized_stages(), vec![1, 10, 50, 100]);
        assert_eq!(
            RolloutConfig::default().stages([]).sanitized_stages(),
            vec![100]
        );
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket(b"session-1"), bucket(b"session-1"));
        let candidates = (0..10_000)
            .filter(|i| arm_of(bucket(format!("s{i}").as_bytes()), 10) == RolloutArm::Candidate)
            .count();
        assert!(
            (800..1200).contains(&candidates),
            "{candidates} of 10,000 at 10 %"
        );
    }

    #[test]
    fn histogram_quantile_is_within_five_percent() {
        let mut h = Histogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p95 = h.quantile(0.95).unwrap().as_secs_f64() * 1000.0;
        assert!((950.0..=950.0 * 1.06).contains(&p95), "p95 {p95}");
        assert_eq!(Histogram::default().quantile(0.5), None);
        h.record(Duration::MAX);
    }
}
