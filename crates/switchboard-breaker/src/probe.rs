//! Active health probes: while a breaker is open, a small real request every interval.

use std::sync::{Arc, Weak};
use std::time::Duration;

use switchboard_core::{ChatRequest, ChatResponse, Error};
use tower::{Service, ServiceExt};

use crate::shared::Shared;

#[derive(Clone)]
pub(crate) struct ActiveProbe {
    pub(crate) interval: Duration,
    pub(crate) request: Arc<dyn Fn() -> ChatRequest + Send + Sync>,
}

pub(crate) fn spawn_prober<S>(shared: Weak<Shared>, inner: S, probe: ActiveProbe)
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Send + 'static,
    S::Future: Send,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(run(shared, inner, probe));
        }
        Err(_) => tracing::warn!("no tokio runtime: breaker active health probes not started"),
    }
}

/// Ends when the last clone of the breaker is dropped.
async fn run<S>(shared: Weak<Shared>, mut inner: S, probe: ActiveProbe)
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    loop {
        tokio::time::sleep(probe.interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !shared.is_open() {
            continue;
        }
        let request = (probe.request)();
        let answer = tokio::time::timeout(probe.interval, async {
            inner.ready().await?.call(request).await
        })
        .await;
        let ok = matches!(answer, Ok(Ok(_)));
        tracing::debug!(provider = %shared.provider, ok, "active health probe");
        if ok {
            shared.active_probe_succeeded();
        }
    }
}
