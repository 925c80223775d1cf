//! What one call or one attempt records, and when.

use std::sync::Arc;

use opentelemetry::KeyValue;
use switchboard_core::{
    AttemptKind, AttemptOutcome, Attempts, CallClock, ChatEvent, ChatRequest, ChatResponse,
    Degraded, Error, ProviderId, Scene, Tier, TimeoutPhase, TraceId, Usage, WinReason,
};
use tokio::time::Instant;
use tracing::Span;

use crate::Telemetry;
use crate::series::{
    AttemptSeries, CallSeries, TOKEN_TYPES, gen_ai_labels, switchboard_labels, with,
};
use crate::telemetry::micros_ceil;

/// The labels a request carries from admission.
#[derive(Debug, Clone)]
struct Labels {
    tier: &'static str,
    scene: Option<Scene>,
}

impl Labels {
    fn of(request: &ChatRequest) -> Self {
        let ext = request.extensions();
        Self {
            tier: ext.get::<Tier>().map_or("none", |t| t.as_str()),
            scene: ext.get::<Scene>().cloned(),
        }
    }

    fn scene(&self) -> &str {
        self.scene.as_ref().map_or("none", Scene::as_str)
    }

    /// `provider`, `model`, `tier`, `scene`.
    fn switchboard(&self, provider: &str, model: &str) -> Vec<KeyValue> {
        switchboard_labels(provider, model, self.tier, self.scene())
    }
}

/// The timeout phase a reason code names (`openai_first_token_timeout` → first token).
fn phase_of(reason: &str) -> Option<TimeoutPhase> {
    [
        TimeoutPhase::Connect,
        TimeoutPhase::FirstToken,
        TimeoutPhase::Idle,
        TimeoutPhase::Total,
    ]
    .into_iter()
    .find(|phase| {
        let code = format!("{}_timeout", phase.as_str());
        reason == code || reason.ends_with(&format!("_{code}"))
    })
}

fn provider_of(error: &Error) -> &str {
    error.provider().map_or("none", ProviderId::as_str)
}

// ===== impl CallRecord =====

/// One call, from `call()` to the end (or drop) of its answer's stream. Records its
/// outcome exactly once: on a failure before the first token, at the stream's end or
/// error, or, when dropped before either, as `cancelled`.
pub(crate) struct CallRecord {
    telemetry: Telemetry,
    labels: Labels,
    requested: String,
    start: Instant,
    span: Span,
    answered: Option<Answered>,
    done: bool,
}

/// A call whose answer has started: its series, and what the stream has told so far.
struct Answered {
    series: Arc<CallSeries>,
    degraded: Option<String>,
    usage: Option<Usage>,
}

impl CallRecord {
    pub(crate) fn start(telemetry: Telemetry, request: &ChatRequest, now: Instant) -> Self {
        let labels = Labels::of(request);
        let requested = request.body().model.clone();
        // Field values are only evaluated when the span is enabled.
        let span = tracing::info_span!(
            "switchboard.request",
            tier = labels.tier,
            scene = labels.scene(),
            model = requested.as_str(),
            trace_id = request
                .extensions()
                .get::<TraceId>()
                .map(tracing::field::display),
            provider = tracing::field::Empty,
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
        );
        Self {
            telemetry,
            labels,
            requested,
            start: now,
            span,
            answered: None,
            done: false,
        }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Seconds since the call started, by the enclosing pass's reading.
    fn elapsed(&self) -> f64 {
        CallClock::enter()
            .now()
            .saturating_duration_since(self.start)
            .as_secs_f64()
    }

    /// The first content event arrived: first-token latency, attempts, degradations.
    pub(crate) fn answered(&mut self, response: &mut ChatResponse) {
        let first_token = response
            .first_token_at()
            .saturating_duration_since(self.start);
        let telemetry = &self.telemetry;
        let m = telemetry.instruments();
        let (provider, model) = (response.provider().as_str(), response.model());
        let (tier, scene) = (self.labels.tier, self.labels.scene());
        let series =
            telemetry
                .call_series()
                .get(&[tier, scene, &self.requested, provider, model], || {
                    let price = telemetry.prices().get(model).copied();
                    CallSeries::bind(m, tier, scene, &self.requested, (provider, model), price)
                });
        series.first_token.record(first_token.as_secs_f64());

        let degraded = response.extensions().get::<Degraded>();
        if let Some(degraded) = degraded {
            for d in degraded.iter() {
                m.degraded.add(
                    1,
                    &with(
                        series.labels.clone(),
                        [KeyValue::new("reason", d.reason.clone())],
                    ),
                );
            }
        }
        if let Some(attempts) = response.extensions().get::<Attempts>() {
            self.count_attempts(attempts);
        }
        self.span.record("provider", provider);
        self.answered = Some(Answered {
            series,
            degraded: degraded.and_then(Degraded::first_reason).map(str::to_owned),
            usage: None,
        });
    }

    /// Hedges and failovers, from the hedge layer's record of the call.
    fn count_attempts(&self, attempts: &Attempts) {
        let m = self.telemetry.instruments();
        let mut last_failure: Option<&str> = None;
        for attempt in attempts.iter() {
            let sent = !matches!(attempt.outcome, AttemptOutcome::Skipped { .. });
            match attempt.kind {
                AttemptKind::Hedge if sent => {
                    let labels = self
                        .labels
                        .switchboard(attempt.provider.as_str(), &attempt.model);
                    let won = matches!(attempt.outcome, AttemptOutcome::Won);
                    m.hedges.add(1, &with(labels, [KeyValue::new("won", won)]));
                }
                AttemptKind::Failover if sent => {
                    let labels = self
                        .labels
                        .switchboard(attempt.provider.as_str(), &attempt.model);
                    let reason = last_failure.unwrap_or("unknown").to_owned();
                    m.fallbacks
                        .add(1, &with(labels, [KeyValue::new("reason", reason)]));
                }
                _ => {}
            }
            if let AttemptOutcome::Failed { reason } | AttemptOutcome::Skipped { reason } =
                &attempt.outcome
            {
                last_failure = Some(reason);
            }
        }
        if let Some(WinReason::Failover { reason }) = attempts.why() {
            tracing::debug!(parent: &self.span, %reason, "answered after failover");
        }
    }

    pub(crate) fn observe(&mut self, event: &ChatEvent) {
        if let (ChatEvent::Usage(u), Some(a)) = (event, &mut self.answered) {
            a.usage.get_or_insert_with(Usage::default).merge_max(*u);
        }
    }

    /// The stream ended cleanly.
    pub(crate) fn completed(&mut self) {
        let Some(answered) = self.answered.take() else {
            return;
        };
        self.done = true;
        let series = &answered.series;
        let elapsed = self.elapsed();
        match &answered.degraded {
            None => {
                series.ok.add(1);
                self.span.record("outcome", "ok");
            }
            Some(reason) => {
                let attrs = [
                    KeyValue::new("outcome", "degraded"),
                    KeyValue::new("reason", reason.clone()),
                ];
                self.telemetry
                    .instruments()
                    .requests
                    .add(1, &with(series.labels.clone(), attrs));
                self.span.record("outcome", "degraded");
                self.span.record("reason", reason.as_str());
            }
        }
        series.duration.record(elapsed);
        record_usage(series, answered.usage);
    }

    /// The call failed, before its first token or mid-stream.
    pub(crate) fn failed(&mut self, error: &Error) {
        self.done = true;
        let m = self.telemetry.instruments();
        let answered = self.answered.take();
        let provider = provider_of(error);
        let labels = match &answered {
            Some(a) => a.series.labels.clone(),
            None => self.labels.switchboard(provider, &self.requested),
        };
        if let Error::Timeout { phase, .. } = error {
            let attrs = [
                KeyValue::new("phase", phase.as_str()),
                KeyValue::new("scope", "call"),
            ];
            m.timeouts.add(1, &with(labels.clone(), attrs));
        }
        let reason = error.reason();
        let attrs = [
            KeyValue::new("outcome", "error"),
            KeyValue::new("reason", reason.clone()),
        ];
        m.requests.add(1, &with(labels, attrs));
        let gen_ai = match &answered {
            Some(a) => a.series.gen_ai.clone(),
            None => gen_ai_labels(
                provider,
                &self.requested,
                None,
                self.labels.tier,
                self.labels.scene(),
            ),
        };
        m.operation_duration.record(
            self.elapsed(),
            &with(gen_ai, [KeyValue::new("error.type", error.code())]),
        );
        if let Some(answered) = &answered {
            record_usage(&answered.series, answered.usage);
        }
        self.span.record("outcome", "error");
        self.span.record("reason", reason.as_str());
    }
}

/// Tokens and cost from an answer's final usage.
fn record_usage(series: &CallSeries, usage: Option<Usage>) {
    let Some(usage) = usage else {
        return;
    };
    let counts = [
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
    ];
    for (counter, n) in series.tokens.iter().zip(counts) {
        // Adding zero changes nothing and costs an atomic operation (no cached input is
        // the common case).
        if n > 0 {
            counter.add(n);
        }
    }
    for (histogram, n) in series.token_usage.iter().zip(counts) {
        histogram.record(n);
    }
    if let Some(cost) = series.price.and_then(|price| price.cost_of(&usage)) {
        series.cost.add(micros_ceil(cost));
    }
    debug_assert_eq!(TOKEN_TYPES.len(), counts.len());
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The caller went away before the end of the answer (or before its start).
        let m = self.telemetry.instruments();
        let elapsed = self.elapsed();
        match self.answered.take() {
            Some(answered) => {
                let series = &answered.series;
                m.requests.add(
                    1,
                    &with(
                        series.labels.clone(),
                        [KeyValue::new("outcome", "cancelled")],
                    ),
                );
                series.duration.record(elapsed);
                record_usage(series, answered.usage);
            }
            None => {
                let labels = self.labels.switchboard("none", &self.requested);
                m.requests
                    .add(1, &with(labels, [KeyValue::new("outcome", "cancelled")]));
                let gen_ai = gen_ai_labels(
                    "none",
                    &self.requested,
                    None,
                    self.labels.tier,
                    self.labels.scene(),
                );
                m.operation_duration.record(elapsed, &gen_ai);
            }
        }
        self.span.record("outcome", "cancelled");
    }
}

// ===== impl AttemptRecord =====

/// One upstream attempt, from `call()` to its first content event or failure.
pub(crate) struct AttemptRecord {
    series: Arc<AttemptSeries>,
    start: Instant,
    span: Span,
    done: bool,
}

impl AttemptRecord {
    pub(crate) fn start(
        telemetry: &Telemetry,
        provider: &ProviderId,
        request: &ChatRequest,
        now: Instant,
    ) -> Self {
        let labels = Labels::of(request);
        let model = request.body().model.as_str();
        // Set by the hedge layer on each attempt; without one, an attempt is the first.
        let kind = match request.extensions().get::<AttemptKind>() {
            None | Some(AttemptKind::Primary) => "primary",
            Some(AttemptKind::Hedge) => "hedge",
            Some(AttemptKind::Failover) => "failover",
        };
        let (tier, scene) = (labels.tier, labels.scene());
        let series =
            telemetry
                .attempt_series()
                .get(&[tier, scene, provider.as_str(), model, kind], || {
                    AttemptSeries::bind(
                        telemetry.instruments(),
                        tier,
                        scene,
                        provider.as_str(),
                        model,
                        kind,
                    )
                });
        let span = tracing::info_span!(
            "switchboard.attempt",
            provider = provider.as_str(),
            model,
            kind,
            tier,
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
        );
        Self {
            series,
            start: now,
            span,
            done: false,
        }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// The attempt ended: its first token at `Ok(instant)`, or failed.
    pub(crate) fn finished(&mut self, result: Result<Instant, &Error>) {
        self.done = true;
        let series = &self.series;
        match result {
            Ok(at) => {
                series
                    .first_token
                    .record(at.saturating_duration_since(self.start).as_secs_f64());
                series.ok.add(1);
                self.span.record("outcome", "ok");
            }
            Err(error) => {
                let reason = error.reason();
                if let Some(phase) = phase_of(&reason) {
                    let attrs = [
                        KeyValue::new("phase", phase.as_str()),
                        KeyValue::new("scope", "attempt"),
                    ];
                    series.timeouts.add(1, &with(series.labels.clone(), attrs));
                }
                self.span.record("outcome", "error");
                self.span.record("reason", reason.as_str());
                series.attempts.add(1, &series.error_labels(reason));
            }
        }
    }
}

impl Drop for AttemptRecord {
    fn drop(&mut self) {
        if !self.done {
            // Another attempt won, or the call ended: the upstream request was cancelled.
            self.series.cancelled.add(1);
            self.span.record("outcome", "cancelled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_phases_are_read_from_reason_codes() {
        assert_eq!(
            phase_of("openai_first_token_timeout"),
            Some(TimeoutPhase::FirstToken)
        );
        assert_eq!(phase_of("total_timeout"), Some(TimeoutPhase::Total));
        assert_eq!(
            phase_of("my_co_connect_timeout"),
            Some(TimeoutPhase::Connect)
        );
        assert_eq!(phase_of("openai_overloaded"), None);
    }
}
