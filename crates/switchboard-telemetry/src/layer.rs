//! The two layers: [`MetricsLayer`] per call, [`AttemptMetricsLayer`] per upstream attempt.

use switchboard_core::ProviderId;
use tower::Layer;

use crate::{AttemptMetrics, Metrics, Telemetry};

/// Records each call's outcome, latencies, tokens, cost, hedges, failovers and
/// degradations into a [`Telemetry`], inside a `switchboard.request` tracing span.
///
/// Place it where it sees the request's `Tier` and `Scene` and the final answer: just
/// inside admission (`TierLayer`), outside the budget gate.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    telemetry: Telemetry,
}

impl MetricsLayer {
    /// A layer recording into `telemetry`.
    pub const fn new(telemetry: Telemetry) -> Self {
        Self { telemetry }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::new(inner, self.telemetry.clone())
    }
}

/// Records each upstream attempt to one provider (outcome and reason, first-token latency,
/// per-attempt timeouts) inside a `switchboard.attempt` span, a child of the call's.
///
/// Place it outermost in each provider's own stack, under the dispatcher.
#[derive(Debug, Clone)]
pub struct AttemptMetricsLayer {
    telemetry: Telemetry,
    provider: ProviderId,
}

impl AttemptMetricsLayer {
    /// A layer for `provider`'s attempts, recording into `telemetry`.
    pub const fn new(telemetry: Telemetry, provider: ProviderId) -> Self {
        Self {
            telemetry,
            provider,
        }
    }
}

impl<S> Layer<S> for AttemptMetricsLayer {
    type Service = AttemptMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptMetrics::new(inner, self.telemetry.clone(), self.provider.clone())
    }
}
