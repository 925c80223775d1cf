//! Admission for Switchboard: [`TierLayer`] classifies every request into a business
//! [`Tier`](switchboard_core::Tier), a [`Scene`](switchboard_core::Scene) and, when a rule
//! names one, a [`TenantId`](switchboard_core::TenantId), and leaves them in the request's
//! extensions for budget, routing, timeouts and metrics to read.
//!
//! It works on a [`ChatRequest`](switchboard_core::ChatRequest) and on any
//! `http::Request<B>`, so an axum or tonic app can classify at its edge and the values
//! flow on in the extensions (a `ChatRequest` that already carries a `Tier` is left as
//! it is).
//!
//! ```
//! use http::HeaderMap;
//! use switchboard_core::{ChatBody, ChatRequest, Message, ProviderId, RequestHead, Scene, TenantId, Tier};
//! use switchboard_sim::{SimConfig, SimProvider};
//! use switchboard_tier::{Classification, KeyPolicy, TierLayer};
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = TierLayer::builder()
//!     .headers()
//!     .api_key("sk-acme", KeyPolicy::new(TenantId::new("acme").unwrap()).tier(Tier::L1).allow_header_tier(Tier::L0))
//!     .path_prefix("/v1/batch", Classification::tier(Tier::L2).with_scene(Scene::SUMMARY))
//!     .default_tier(Tier::L2)
//!     .build();
//!
//! // Inspect what reaches the provider.
//! let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
//! let sim = SimProvider::new(ProviderId::OPENAI, SimConfig::instant());
//! let spy = {
//!     let seen = seen.clone();
//!     tower::service_fn(move |req: ChatRequest| {
//!         *seen.lock().unwrap() = req.extensions().get::<Tier>().copied();
//!         sim.clone().oneshot(req)
//!     })
//! };
//! let mut service = layer.layer(spy);
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("authorization", "Bearer sk-acme".parse().unwrap());
//! headers.insert("x-switchboard-tier", "L0".parse().unwrap()); // allowed for this key
//! let mut request = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user("hi")]));
//! request.extensions_mut().insert(RequestHead::new("/v1/chat/completions", headers));
//! service.ready().await.unwrap().call(request).await.unwrap();
//! assert_eq!(*seen.lock().unwrap(), Some(Tier::L0));
//! # }
//! ```
//!
//! # Rules and defaults
//!
//! Rules apply in the order they are added; for each of tier, scene and tenant the first
//! rule that decides it wins, and what no rule decides takes the default.
//!
//! | builder method | looks at | default |
//! |---|---|---|
//! | [`headers`](TierLayerBuilder::headers) | `x-switchboard-tier`, `x-switchboard-scene` | off |
//! | [`api_key`](TierLayerBuilder::api_key) | `Authorization: Bearer` / `x-api-key` → [`KeyPolicy`] | no keys |
//! | [`path`](TierLayerBuilder::path), [`path_prefix`](TierLayerBuilder::path_prefix), [`grpc_method`](TierLayerBuilder::grpc_method) | URI path or gRPC method | none |
//! | [`model`](TierLayerBuilder::model), [`model_prefix`](TierLayerBuilder::model_prefix) | the model asked for (`ChatRequest` only) | none |
//! | [`metadata`](TierLayerBuilder::metadata) | the body's `metadata` object (`ChatRequest` only) | none |
//! | [`rule_fn`](TierLayerBuilder::rule_fn) | a closure over [`RequestFacts`] | none |
//! | [`default_tier`](TierLayerBuilder::default_tier) | | `L1` |
//! | [`default_scene`](TierLayerBuilder::default_scene) | | `chat` |
//!
//! **Self-promotion.** A tier header may ask for the tier the caller would get anyway or
//! a less valuable one. Asking for a more valuable tier (an `L1` key asking for `L0`) is
//! honoured only when that key's policy allows it with
//! [`KeyPolicy::allow_header_tier`]; otherwise the header's tier is ignored (logged at
//! debug) and the later rules decide. Unknown or missing keys may never promote above the
//! default tier. Invalid header values are ignored.
//!
//! On a `ChatRequest`, path and headers come from the
//! [`RequestHead`](switchboard_core::RequestHead) extension an edge leaves; without one,
//! only the model, metadata and closure rules can match.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod layer;
mod rule;
mod service;

pub use layer::{TierLayer, TierLayerBuilder};
pub use rule::{Admission, Classification, KeyPolicy, RequestFacts, SCENE_HEADER, TIER_HEADER};
pub use service::Classify;
