//! Shared fixtures: simulated providers behind a `Dispatch`, a policy, prices.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use switchboard_core::{
    ChatBody, ChatRequest, ChatResponse, Error, Message, Price, PriceTable, ProviderId, Route, Tier,
};
use switchboard_route::{Dispatch, LatencyRanking, RoutePolicy, TierPolicy};
use switchboard_sim::{Answer, Latency, SimConfig, SimProvider};
use tower::{Service, ServiceExt};

pub const OPENAI: ProviderId = ProviderId::OPENAI;
pub const ANTHROPIC: ProviderId = ProviderId::ANTHROPIC;
pub const MISTRAL: ProviderId = ProviderId::from_static("mistral");
pub const LOCAL: ProviderId = ProviderId::from_static("local");

pub fn sim(id: ProviderId, first_token_ms: u64) -> SimProvider {
    SimProvider::new(
        id,
        SimConfig::instant()
            .first_token(Latency::fixed_ms(first_token_ms))
            .answer(Answer::Fixed {
                text: "ok fine".into(),
            }),
    )
}

pub fn request(model: &str, tier: Option<Tier>) -> ChatRequest {
    let mut r = ChatRequest::new(ChatBody::new(model, vec![Message::user("hello")]).max_tokens(16));
    if let Some(tier) = tier {
        r.extensions_mut().insert(tier);
    }
    r
}

/// Three pools over three providers; L0 pinned to quality (anthropic, openai); L1 capped
/// at $0.01 per request; L2 may fall back to a local last resort.
pub fn policy() -> RoutePolicy {
    RoutePolicy::new([OPENAI, ANTHROPIC, MISTRAL])
        .model(
            "quality",
            [
                (OPENAI, "gpt-4o"),
                (ANTHROPIC, "claude-sonnet-4-5"),
                (MISTRAL, "mistral-large"),
            ],
        )
        .model(
            "fast",
            [
                (OPENAI, "gpt-4o-mini"),
                (ANTHROPIC, "claude-haiku-4-5"),
                (MISTRAL, "mistral-small"),
            ],
        )
        .tier(
            Tier::L0,
            TierPolicy::pinned("quality", [ANTHROPIC, OPENAI]).cost_cap(cost("0.01")),
        )
        .tier(Tier::L1, TierPolicy::new().cost_cap(cost("0.01")))
        .latency(LatencyRanking {
            min_samples: 20,
            ..LatencyRanking::default()
        })
}

pub fn cost(s: &str) -> switchboard_core::Cost {
    s.parse().unwrap()
}

pub fn prices() -> PriceTable {
    let mut t = PriceTable::new();
    for (model, input, output) in [
        ("gpt-4o", "2.50", "10"),
        ("claude-sonnet-4-5", "3", "15"),
        ("mistral-large", "2", "6"),
        ("gpt-4o-mini", "0.15", "0.60"),
        ("claude-haiku-4-5", "1", "5"),
        ("mistral-small", "0.10", "0.30"),
    ] {
        t.insert(model, Price::per_million(input, output).unwrap());
    }
    t
}

/// The last `Route` a request carried into the dispatcher.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Option<Route>>>);

impl Seen {
    pub fn take(&self) -> Option<Route> {
        self.0.lock().unwrap().take()
    }

    /// Wraps a service so that it records each request's `Route`.
    pub fn watch<S>(
        &self,
        inner: S,
    ) -> impl Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone
    where
        S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone,
    {
        let slot = self.0.clone();
        inner.map_request(move |req: ChatRequest| {
            *slot.lock().unwrap() = req.extensions().get::<Route>().cloned();
            req
        })
    }
}

pub fn providers(route: &Route) -> Vec<(String, String)> {
    route
        .targets()
        .map(|t| (t.provider.to_string(), t.model.to_string()))
        .collect()
}

/// One provider that serves two models from two simulators (so a candidate model can
/// behave differently from the baseline model at the same provider).
#[derive(Clone)]
pub struct ByModel {
    pub models: Arc<Vec<(String, SimProvider)>>,
}

impl ByModel {
    pub fn new(models: impl IntoIterator<Item = (&'static str, SimProvider)>) -> Self {
        Self {
            models: Arc::new(models.into_iter().map(|(m, s)| (m.to_owned(), s)).collect()),
        }
    }
}

impl Service<ChatRequest> for ByModel {
    type Response = ChatResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let sim = self
            .models
            .iter()
            .find(|(m, _)| *m == req.body().model)
            .map(|(_, s)| s.clone());
        let model = req.body().model.clone();
        Box::pin(async move {
            match sim {
                Some(sim) => sim.oneshot(req).await,
                None => Err(Error::ModelNotFound { model }),
            }
        })
    }
}

pub fn dispatch(sims: &[&SimProvider]) -> Dispatch {
    sims.iter().fold(Dispatch::new(), |d, s| {
        d.provider(s.id().clone(), (*s).clone())
    })
}
