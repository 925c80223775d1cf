//! The provider contract.

use tower::Service;
use tower::util::BoxCloneSyncService;

use crate::{ChatRequest, ChatResponse, Error};

/// The contract every provider and every provider-side layer stack fulfils:
/// a cloneable `Service<ChatRequest, Response = ChatResponse, Error = Error>` whose future
/// is `Send` and **resolves at the first content event**. Everything after the first
/// token is the response's event stream.
///
/// Because the future finishing *is* the first token, first-token deadlines, hedging and
/// latency statistics work the same for streaming and non-streaming callers.
///
/// This trait is implemented for every service that fits; it is never implemented by hand.
pub trait Provider:
    Service<ChatRequest, Response = ChatResponse, Error = Error, Future: Send> + Clone + Send + 'static
{
}

impl<S> Provider for S where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// A type-erased provider: what a dispatcher keeps per provider and what crosses crate
/// boundaries when the concrete stack type does not matter.
pub type BoxProvider = BoxCloneSyncService<ChatRequest, ChatResponse, Error>;

/// Erases a provider's type.
pub fn boxed<P>(provider: P) -> BoxProvider
where
    P: Provider + Sync,
{
    BoxCloneSyncService::new(provider)
}
