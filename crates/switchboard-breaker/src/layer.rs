use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{ChatRequest, ChatResponse, Error, HealthBoard, ProviderId};
use tower::{Layer, Service};

use crate::probe::{ActiveProbe, spawn_prober};
use crate::shared::{Classifier, Shared};
use crate::{Breaker, BreakerConfig};

/// Wraps one provider's service in a [`Breaker`]. See the [crate docs](crate).
#[derive(Clone)]
pub struct BreakerLayer {
    provider: ProviderId,
    config: BreakerConfig,
    board: HealthBoard,
    classifier: Classifier,
    probe: Option<ActiveProbe>,
}

impl BreakerLayer {
    /// A breaker for `provider` with the default [`BreakerConfig`], publishing to a board
    /// of its own (share one with [`board`](Self::board)).
    pub fn new(provider: ProviderId) -> Self {
        Self {
            provider,
            config: BreakerConfig::default(),
            board: HealthBoard::new(),
            classifier: Arc::new(Error::counts_against_provider),
            probe: None,
        }
    }

    /// Sets the configuration.
    pub fn config(mut self, config: BreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// Publishes to (and takes overrides from) this board.
    pub fn board(mut self, board: HealthBoard) -> Self {
        self.board = board;
        self
    }

    /// Decides which errors count as failures. Default
    /// [`Error::counts_against_provider`], so a caller's bad request never trips it.
    pub fn classifier(mut self, f: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.classifier = Arc::new(f);
        self
    }

    /// While open, sends `request()` to the provider every `interval` (bypassing the
    /// breaker, with `interval` as its first-token deadline); a first token moves the
    /// breaker to half-open early. Needs a tokio runtime when [`layer`](Layer::layer) is
    /// called; without one the probe is not started (and a warning is logged).
    pub fn active_probe(
        mut self,
        interval: Duration,
        request: impl Fn() -> ChatRequest + Send + Sync + 'static,
    ) -> Self {
        self.probe = Some(ActiveProbe {
            interval: interval.max(Duration::from_millis(1)),
            request: Arc::new(request),
        });
        self
    }

    /// The board this layer publishes to.
    pub fn health_board(&self) -> &HealthBoard {
        &self.board
    }
}

impl fmt::Debug for BreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("provider", &self.provider)
            .field("config", &self.config)
            .field("active_probe", &self.probe.as_ref().map(|p| p.interval))
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for BreakerLayer
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
{
    type Service = Breaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = Arc::new(Shared::new(
            self.provider.clone(),
            self.config.clone(),
            self.board.provider(&self.provider),
            self.classifier.clone(),
        ));
        if let Some(probe) = &self.probe {
            spawn_prober(Arc::downgrade(&shared), inner.clone(), probe.clone());
        }
        Breaker::from_shared(inner, shared)
    }
}
