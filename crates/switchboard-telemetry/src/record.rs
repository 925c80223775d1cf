//! What one call or one attempt records, and when.

use opentelemetry::KeyValue;
use switchboard_core::{
    AttemptKind, AttemptOutcome, Attempts, ChatEvent, ChatRequest, ChatResponse, Degraded, Error,
    ProviderId, Scene, TimeoutPhase, TraceId, Usage, WinReason,
};
use tokio::time::Instant;
use tracing::Span;

use crate::Telemetry;
use crate::telemetry::micros_ceil;

/// The labels a request carries from admission.
#[derive(Debug, Clone)]
struct Labels {
    tier: &'static str,
    scene: String,
    requested: String,
}

impl Labels {
    fn of(request: &ChatRequest) -> Self {
        let ext = request.extensions();
        Self {
            tier: ext
                .get::<switchboard_core::Tier>()
                .map_or("none", |t| t.as_str()),
            scene: ext
                .get::<Scene>()
                .map_or_else(|| "none".to_owned(), |s| s.as_str().to_owned()),
            requested: request.body().model.clone(),
        }
    }

    /// `provider`, `model`, `tier`, `scene`: the switchboard counters' labels.
    fn switchboard(&self, provider: &str, model: &str) -> Vec<KeyValue> {
        vec![
            KeyValue::new("provider", provider.to_owned()),
            KeyValue::new("model", model.to_owned()),
            KeyValue::new("tier", self.tier),
            KeyValue::new("scene", self.scene.clone()),
        ]
    }

    /// The GenAI semantic conventions' attributes, plus tier and scene.
    fn gen_ai(&self, provider: &str, response_model: Option<&str>) -> Vec<KeyValue> {
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", provider.to_owned()),
            KeyValue::new("gen_ai.request.model", self.requested.clone()),
            KeyValue::new("switchboard.tier", self.tier),
            KeyValue::new("switchboard.scene", self.scene.clone()),
        ];
        if let Some(model) = response_model {
            attrs.push(KeyValue::new("gen_ai.response.model", model.to_owned()));
        }
        attrs
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
    start: Instant,
    span: Span,
    answered: Option<Answered>,
    done: bool,
}

struct Answered {
    provider: String,
    model: String,
    degraded: Option<String>,
    usage: Option<Usage>,
    /// Whether a provider answered (its model is the response model).
    responded: bool,
}

impl CallRecord {
    pub(crate) fn start(telemetry: Telemetry, request: &ChatRequest) -> Self {
        let labels = Labels::of(request);
        let trace_id = request
            .extensions()
            .get::<TraceId>()
            .map(ToString::to_string);
        let span = tracing::info_span!(
            "switchboard.request",
            tier = labels.tier,
            scene = %labels.scene,
            model = %labels.requested,
            trace_id = trace_id.as_deref().unwrap_or(""),
            provider = tracing::field::Empty,
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
        );
        Self {
            telemetry,
            labels,
            start: Instant::now(),
            span,
            answered: None,
            done: false,
        }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// The first content event arrived: first-token latency, attempts, degradations.
    pub(crate) fn answered(&mut self, response: &ChatResponse) {
        let m = self.telemetry.instruments();
        let provider = response.provider().as_str().to_owned();
        let model = response.model().to_owned();
        let labels = self.labels.switchboard(&provider, &model);
        m.first_token
            .record(self.start.elapsed().as_secs_f64(), &labels);

        let degraded = response.extensions().get::<Degraded>();
        if let Some(degraded) = degraded {
            for d in degraded.iter() {
                let mut attrs = labels.clone();
                attrs.push(KeyValue::new("reason", d.reason.clone()));
                m.degraded.add(1, &attrs);
            }
        }
        if let Some(attempts) = response.extensions().get::<Attempts>() {
            self.count_attempts(attempts);
        }
        self.span.record("provider", provider.as_str());
        self.answered = Some(Answered {
            provider,
            model,
            degraded: degraded.and_then(Degraded::first_reason).map(str::to_owned),
            usage: None,
            responded: true,
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
                    let mut attrs = self
                        .labels
                        .switchboard(attempt.provider.as_str(), &attempt.model);
                    let won = matches!(attempt.outcome, AttemptOutcome::Won);
                    attrs.push(KeyValue::new("won", won));
                    m.hedges.add(1, &attrs);
                }
                AttemptKind::Failover if sent => {
                    let mut attrs = self
                        .labels
                        .switchboard(attempt.provider.as_str(), &attempt.model);
                    attrs.push(KeyValue::new(
                        "reason",
                        last_failure.unwrap_or("unknown").to_owned(),
                    ));
                    m.fallbacks.add(1, &attrs);
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
        let outcome = if answered.degraded.is_some() {
            "degraded"
        } else {
            "ok"
        };
        self.finish(&answered, outcome, answered.degraded.as_deref(), None);
    }

    /// The call failed, before its first token or mid-stream.
    pub(crate) fn failed(&mut self, error: &Error) {
        let m = self.telemetry.instruments();
        let answered = self.answered.take();
        let (provider, model) = match &answered {
            Some(a) => (a.provider.clone(), a.model.clone()),
            None => (provider_of(error).to_owned(), self.labels.requested.clone()),
        };
        if let Error::Timeout { phase, .. } = error {
            let mut attrs = self.labels.switchboard(&provider, &model);
            attrs.push(KeyValue::new("phase", phase.as_str()));
            attrs.push(KeyValue::new("scope", "call"));
            m.timeouts.add(1, &attrs);
        }
        let reason = error.reason();
        let answered = answered.unwrap_or(Answered {
            provider,
            model,
            degraded: None,
            usage: None,
            responded: false,
        });
        self.finish(&answered, "error", Some(&reason), Some(error.code()));
    }

    fn finish(
        &mut self,
        answered: &Answered,
        outcome: &'static str,
        reason: Option<&str>,
        error_type: Option<&'static str>,
    ) {
        self.done = true;
        let m = self.telemetry.instruments();
        let mut attrs = self.labels.switchboard(&answered.provider, &answered.model);
        attrs.push(KeyValue::new("outcome", outcome));
        if let Some(reason) = reason {
            attrs.push(KeyValue::new("reason", reason.to_owned()));
        }
        m.requests.add(1, &attrs);

        let response_model = answered.responded.then_some(answered.model.as_str());
        let mut gen_ai = self.labels.gen_ai(&answered.provider, response_model);
        if let Some(error_type) = error_type {
            gen_ai.push(KeyValue::new("error.type", error_type));
        }
        m.operation_duration
            .record(self.start.elapsed().as_secs_f64(), &gen_ai);

        if let Some(usage) = answered.usage {
            let labels = self.labels.switchboard(&answered.provider, &answered.model);
            for (kind, n) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cached_input", usage.cached_input_tokens),
            ] {
                let mut attrs = labels.clone();
                attrs.push(KeyValue::new("type", kind));
                m.tokens.add(n, &attrs);
                if kind != "cached_input" {
                    let mut attrs = gen_ai.clone();
                    attrs.push(KeyValue::new("gen_ai.token.type", kind));
                    m.token_usage.record(n, &attrs);
                }
            }
            if let Some(price) = self.telemetry.prices().get(&answered.model) {
                if let Some(cost) = price.cost_of(&usage) {
                    m.cost.add(micros_ceil(cost), &labels);
                }
            }
        }
        self.span.record("outcome", outcome);
        if let Some(reason) = reason {
            self.span.record("reason", reason);
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The caller went away before the end of the answer (or before its start).
        let answered = self.answered.take().unwrap_or(Answered {
            provider: "none".to_owned(),
            model: self.labels.requested.clone(),
            degraded: None,
            usage: None,
            responded: false,
        });
        self.finish(&answered, "cancelled", None, None);
    }
}

// ===== impl AttemptRecord =====

/// One upstream attempt, from `call()` to its first content event or failure.
pub(crate) struct AttemptRecord {
    telemetry: Telemetry,
    provider: ProviderId,
    model: String,
    kind: &'static str,
    labels: Labels,
    start: Instant,
    span: Span,
    done: bool,
}

impl AttemptRecord {
    pub(crate) fn start(telemetry: Telemetry, provider: ProviderId, request: &ChatRequest) -> Self {
        let labels = Labels::of(request);
        let model = request.body().model.clone();
        // Set by the hedge layer on each attempt; without one, an attempt is the first.
        let kind = match request.extensions().get::<AttemptKind>() {
            None | Some(AttemptKind::Primary) => "primary",
            Some(AttemptKind::Hedge) => "hedge",
            Some(AttemptKind::Failover) => "failover",
        };
        let span = tracing::info_span!(
            "switchboard.attempt",
            provider = provider.as_str(),
            model = %model,
            kind,
            tier = labels.tier,
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
        );
        Self {
            telemetry,
            provider,
            model,
            kind,
            labels,
            start: Instant::now(),
            span,
            done: false,
        }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    pub(crate) fn finished(&mut self, result: Result<(), &Error>) {
        self.done = true;
        let m = self.telemetry.instruments();
        let labels = self.labels.switchboard(self.provider.as_str(), &self.model);
        let mut attrs = labels.clone();
        attrs.push(KeyValue::new("kind", self.kind));
        match result {
            Ok(()) => {
                m.attempt_first_token
                    .record(self.start.elapsed().as_secs_f64(), &labels);
                attrs.push(KeyValue::new("outcome", "ok"));
                self.span.record("outcome", "ok");
            }
            Err(error) => {
                let reason = error.reason();
                if let Some(phase) = phase_of(&reason) {
                    let mut t = labels.clone();
                    t.push(KeyValue::new("phase", phase.as_str()));
                    t.push(KeyValue::new("scope", "attempt"));
                    m.timeouts.add(1, &t);
                }
                self.span.record("outcome", "error");
                self.span.record("reason", reason.as_str());
                attrs.push(KeyValue::new("outcome", "error"));
                attrs.push(KeyValue::new("reason", reason));
            }
        }
        m.attempts.add(1, &attrs);
    }
}

impl Drop for AttemptRecord {
    fn drop(&mut self) {
        if !self.done {
            // Another attempt won, or the call ended: the upstream request was cancelled.
            let mut attrs = self.labels.switchboard(self.provider.as_str(), &self.model);
            attrs.push(KeyValue::new("kind", self.kind));
            attrs.push(KeyValue::new("outcome", "cancelled"));
            self.telemetry.instruments().attempts.add(1, &attrs);
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
