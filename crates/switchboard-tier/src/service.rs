use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::Value;
use switchboard_core::{ChatRequest, RequestHead, Tier};
use tower::Service;

use crate::rule::{Admission, Classifier, RequestFacts};

/// The service [`TierLayer`](crate::TierLayer) builds: classifies, then calls the inner
/// service. Classification is synchronous, so the inner future is returned as it is.
#[derive(Debug, Clone)]
pub struct Classify<S> {
    inner: S,
    classifier: Arc<Classifier>,
}

impl<S> Classify<S> {
    pub(crate) fn new(inner: S, classifier: Arc<Classifier>) -> Self {
        Self { inner, classifier }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Inserts an admission's tier, scene and tenant into a request's extensions (a
/// `ChatRequest`'s or an `http::Request`'s: the two maps share the API, not a type).
macro_rules! admit {
    ($extensions:expr, $admission:expr) => {{
        let extensions = $extensions;
        let admission: Admission = $admission;
        extensions.insert(admission.tier);
        extensions.insert(admission.scene);
        if let Some(tenant) = admission.tenant {
            extensions.insert(tenant);
        }
    }};
}

impl<S> Service<ChatRequest> for Classify<S>
where
    S: Service<ChatRequest>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: ChatRequest) -> Self::Future {
        // A request classified at the edge keeps its classification.
        if request.extensions().get::<Tier>().is_none() {
            let head = request.extensions().get::<RequestHead>();
            let body = request.body();
            let facts = RequestFacts {
                path: head.map(|h| h.path.as_str()),
                headers: head.map(|h| &h.headers),
                model: Some(body.model.as_str()),
                metadata: match body.extra.get("metadata") {
                    Some(Value::Object(map)) => Some(map),
                    _ => None,
                },
            };
            let admission = self.classifier.classify(&facts);
            admit!(request.extensions_mut(), admission);
        }
        self.inner.call(request)
    }
}

impl<S, B> Service<http::Request<B>> for Classify<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let facts = RequestFacts {
            path: Some(request.uri().path()),
            headers: Some(request.headers()),
            model: None,
            metadata: None,
        };
        let admission = self.classifier.classify(&facts);
        admit!(request.extensions_mut(), admission);
        self.inner.call(request)
    }
}
