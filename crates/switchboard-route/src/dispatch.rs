//! [`Dispatch`]: the shared provider service that sends each attempt where it names.

use hashbrown::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use switchboard_core::{
    BoxProvider, ChatRequest, ChatResponse, Error, Provider, ProviderId, Route, SharedFuture,
    SharedService, Target, boxed,
};
use tower::Service;

/// The shared provider `Service`: a map from [`ProviderId`] to a boxed provider stack
/// (typically breaker ∘ per-attempt timeout ∘ adapter). Each attempt goes to the provider
/// its [`Target`] extension names (the hedge layer inserts one per attempt); a request
/// without a `Target` goes to its [`Route`]'s primary.
///
/// Readiness: `Dispatch` itself is always ready. Each provider's stack is a
/// [`SharedService`]: called in place when no other call is using it and it is ready at
/// once (the common case: no clone of the stack per attempt); otherwise the call drives a
/// clone's readiness inside its future. So a provider that is not ready (a breaker
/// in backpressure mode, a full concurrency limit) holds up only the attempts sent to it,
/// never those for another provider, and no call ever waits for another to leave the
/// instance kept in place.
///
/// Cloning is cheap (an `Arc`).
///
/// ```
/// use switchboard_core::{ChatBody, ChatRequest, Message, ProviderId, Target};
/// use switchboard_route::Dispatch;
/// use switchboard_sim::{SimConfig, SimProvider};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let openai = SimProvider::new(ProviderId::OPENAI, SimConfig::instant());
/// let anthropic = SimProvider::new(ProviderId::ANTHROPIC, SimConfig::instant());
/// let dispatch = Dispatch::new()
///     .provider(ProviderId::OPENAI, openai.clone())
///     .provider(ProviderId::ANTHROPIC, anthropic.clone());
///
/// let mut request = ChatRequest::new(ChatBody::new("claude-haiku-4-5", vec![Message::user("hi")]));
/// request.extensions_mut().insert(Target::new(ProviderId::ANTHROPIC, "claude-haiku-4-5"));
/// let response = dispatch.oneshot(request).await.unwrap();
/// assert_eq!(response.provider(), &ProviderId::ANTHROPIC);
/// assert_eq!((openai.stats().calls(), anthropic.stats().calls()), (0, 1));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Dispatch {
    providers: Arc<HashMap<ProviderId, Entry>>,
}

/// One provider: its stack, called in place when free and ready, else cloned.
type Entry = SharedService<BoxProvider>;

impl Dispatch {
    /// A dispatcher with no providers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a provider.
    pub fn provider<P>(mut self, id: ProviderId, provider: P) -> Self
    where
        P: Provider + Sync,
    {
        Arc::make_mut(&mut self.providers).insert(id, SharedService::new(boxed(provider)));
        self
    }

    /// Adds (or replaces) an already boxed provider.
    pub fn boxed_provider(mut self, id: ProviderId, provider: BoxProvider) -> Self {
        Arc::make_mut(&mut self.providers).insert(id, SharedService::new(provider));
        self
    }

    /// The providers it knows, in name order.
    pub fn providers(&self) -> Vec<&ProviderId> {
        let mut ids: Vec<&ProviderId> = self.providers.keys().collect();
        ids.sort();
        ids
    }
}

impl FromIterator<(ProviderId, BoxProvider)> for Dispatch {
    fn from_iter<I: IntoIterator<Item = (ProviderId, BoxProvider)>>(iter: I) -> Self {
        Self {
            providers: Arc::new(
                iter.into_iter()
                    .map(|(id, provider)| (id, SharedService::new(provider)))
                    .collect(),
            ),
        }
    }
}

impl fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatch")
            .field("providers", &self.providers())
            .finish()
    }
}

impl Service<ChatRequest> for Dispatch {
    type Response = ChatResponse;
    type Error = Error;
    type Future = DispatchFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Readiness is per provider, driven in the call's future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: ChatRequest) -> Self::Future {
        let ext = request.extensions();
        let target = ext
            .get::<Target>()
            .or_else(|| ext.get::<Route>().map(|r| &r.primary));
        let Some(target) = target else {
            return DispatchFuture::failed(Error::NoProvider {
                message: "the request names no provider: no Target or Route extension".into(),
            });
        };
        let Some(provider) = self.providers.get(&target.provider) else {
            let known: Vec<&str> = self.providers().iter().map(|p| p.as_str()).collect();
            return DispatchFuture::failed(Error::NoProvider {
                message: format!(
                    "the attempt names provider {:?}, which the dispatcher does not have (it has: {})",
                    target.provider.as_str(),
                    known.join(", ")
                ),
            });
        };
        // The hedge layer has usually set the target's model already.
        if let Some(model) =
            (request.body().model != target.model).then(|| target.model.to_string())
        {
            request.body_mut().model = model;
        }
        DispatchFuture {
            kind: Kind::Sent {
                future: provider.call_shared(request),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Dispatch`]: waits for the named provider's readiness, then its
    /// first token.
    pub struct DispatchFuture {
        #[pin]
        kind: Kind,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind {
        Sent {
            #[pin]
            future: SharedFuture<BoxProvider, ChatRequest>,
        },
        Failed {
            error: Option<Error>,
        },
    }
}

impl DispatchFuture {
    fn failed(error: Error) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl fmt::Debug for DispatchFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatchFuture").finish_non_exhaustive()
    }
}

impl Future for DispatchFuture {
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Sent { future } => future.poll(cx),
            KindProj::Failed { error } => {
                Poll::Ready(Err(error.take().unwrap_or_else(|| Error::NoProvider {
                    message: "dispatch future polled after completion".into(),
                })))
            }
        }
    }
}
