//! Each admission rule, its order, defaults and the self-promotion policy, on
//! `ChatRequest`s sent to a simulated provider and on plain `http::Request`s.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use serde_json::json;
use switchboard_core::{
    ChatBody, ChatRequest, Message, ProviderId, RequestHead, Scene, TenantId, Tier,
};
use switchboard_sim::{SimConfig, SimProvider};
use switchboard_tier::{Classification, KeyPolicy, TierLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

type Seen = (Option<Tier>, Option<Scene>, Option<TenantId>);

/// Sends `request` through `layer` to a simulated provider and returns what reached it.
async fn admit(layer: &TierLayer, request: ChatRequest) -> Seen {
    let seen = Arc::new(Mutex::new(None));
    let sim = SimProvider::new(ProviderId::OPENAI, SimConfig::instant());
    let spy = {
        let seen = seen.clone();
        let sim = sim.clone();
        service_fn(move |req: ChatRequest| {
            let ext = req.extensions();
            *seen.lock().unwrap() = Some((
                ext.get::<Tier>().copied(),
                ext.get::<Scene>().cloned(),
                ext.get::<TenantId>().cloned(),
            ));
            sim.clone().oneshot(req)
        })
    };
    let mut service = layer.layer(spy);
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    response.collect().await.unwrap();
    assert_eq!(
        sim.stats().completed(),
        1,
        "the request reached the provider"
    );
    seen.lock().unwrap().take().unwrap()
}

fn request(model: &str) -> ChatRequest {
    ChatRequest::new(ChatBody::new(model, vec![Message::user("hello")]))
}

fn with_head(mut req: ChatRequest, path: &str, headers: &[(&'static str, &str)]) -> ChatRequest {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(*k, v.parse().unwrap());
    }
    req.extensions_mut().insert(RequestHead::new(path, map));
    req
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

#[tokio::test(start_paused = true)]
async fn no_rules_give_the_default_tier_and_scene() {
    let seen = admit(&TierLayer::new(), request("gpt-4o-mini")).await;
    assert_eq!(seen, (Some(Tier::L1), Some(Scene::CHAT), None));
    let custom = TierLayer::builder()
        .default_tier(Tier::L2)
        .default_scene(Scene::CODE)
        .build();
    let seen = admit(&custom, request("gpt-4o-mini")).await;
    assert_eq!(seen, (Some(Tier::L2), Some(Scene::CODE), None));
}

#[tokio::test(start_paused = true)]
async fn headers_set_tier_and_scene() {
    let layer = TierLayer::builder().headers().build();
    let req = with_head(
        request("m"),
        "/v1/chat/completions",
        &[
            ("x-switchboard-tier", "L2"),
            ("x-switchboard-scene", "summary"),
        ],
    );
    assert_eq!(
        admit(&layer, req).await,
        (Some(Tier::L2), Some(Scene::SUMMARY), None)
    );
}

#[tokio::test(start_paused = true)]
async fn header_cannot_self_promote_without_a_grant() {
    let layer = TierLayer::builder()
        .headers()
        .api_key("sk-plain", KeyPolicy::new(tenant("plain")).tier(Tier::L1))
        .build();
    // No key: the ceiling is the default tier (L1).
    let anonymous = with_head(request("m"), "/", &[("x-switchboard-tier", "L0")]);
    assert_eq!(admit(&layer, anonymous).await.0, Some(Tier::L1));
    // An L1 key without a grant asking for L0 stays L1.
    let keyed = with_head(
        request("m"),
        "/",
        &[
            ("x-switchboard-tier", "L0"),
            ("authorization", "Bearer sk-plain"),
        ],
    );
    let seen = admit(&layer, keyed).await;
    assert_eq!(seen.0, Some(Tier::L1), "self-promotion to L0 is refused");
    assert_eq!(seen.2, Some(tenant("plain")));
}

#[tokio::test(start_paused = true)]
async fn header_self_promotion_is_honoured_where_the_key_allows_it() {
    let layer = TierLayer::builder()
        .headers()
        .api_key(
            "sk-vip",
            KeyPolicy::new(tenant("vip"))
                .tier(Tier::L1)
                .allow_header_tier(Tier::L0),
        )
        .build();
    let req = with_head(
        request("m"),
        "/",
        &[("x-switchboard-tier", "l0"), ("x-api-key", "sk-vip")],
    );
    assert_eq!(
        admit(&layer, req).await,
        (Some(Tier::L0), Some(Scene::CHAT), Some(tenant("vip")))
    );
}

#[tokio::test(start_paused = true)]
async fn header_may_always_demote() {
    let layer = TierLayer::builder()
        .headers()
        .api_key("sk-gold", KeyPolicy::new(tenant("gold")).tier(Tier::L0))
        .build();
    let req = with_head(
        request("m"),
        "/",
        &[
            ("x-switchboard-tier", "L2"),
            ("authorization", "Bearer sk-gold"),
        ],
    );
    assert_eq!(admit(&layer, req).await.0, Some(Tier::L2));
}

#[tokio::test(start_paused = true)]
async fn invalid_header_values_are_ignored() {
    let layer = TierLayer::builder()
        .headers()
        .default_tier(Tier::L2)
        .build();
    let req = with_head(
        request("m"),
        "/",
        &[
            ("x-switchboard-tier", "gold"),
            ("x-switchboard-scene", "Not A Scene"),
        ],
    );
    assert_eq!(
        admit(&layer, req).await,
        (Some(Tier::L2), Some(Scene::CHAT), None)
    );
}

#[tokio::test(start_paused = true)]
async fn api_key_maps_to_tenant_tier_and_scene() {
    let layer = TierLayer::builder()
        .api_key(
            "sk-acme",
            KeyPolicy::new(tenant("acme"))
                .tier(Tier::L0)
                .scene(Scene::CODE),
        )
        .api_key("sk-beta", KeyPolicy::new(tenant("beta")))
        .build();
    let acme = with_head(request("m"), "/", &[("authorization", "Bearer sk-acme")]);
    assert_eq!(
        admit(&layer, acme).await,
        (Some(Tier::L0), Some(Scene::CODE), Some(tenant("acme")))
    );
    let beta = with_head(request("m"), "/", &[("x-api-key", "sk-beta")]);
    assert_eq!(
        admit(&layer, beta).await,
        (Some(Tier::L1), Some(Scene::CHAT), Some(tenant("beta"))),
        "a key without a tier gets the default tier"
    );
    let unknown = with_head(request("m"), "/", &[("x-api-key", "sk-nobody")]);
    assert_eq!(admit(&layer, unknown).await.2, None);
}

#[tokio::test(start_paused = true)]
async fn path_and_grpc_method_rules_match_exactly_or_by_prefix() {
    let layer = TierLayer::builder()
        .path_prefix("/v1/batch", Classification::tier(Tier::L2))
        .grpc_method(
            "/switchboard.v1.Chat/Summarize",
            Classification::tier(Tier::L1).with_scene(Scene::SUMMARY),
        )
        .path("/v1/vip", Classification::tier(Tier::L0))
        .default_tier(Tier::L1)
        .build();
    let batch = with_head(request("m"), "/v1/batch/jobs", &[]);
    assert_eq!(admit(&layer, batch).await.0, Some(Tier::L2));
    let grpc = with_head(request("m"), "/switchboard.v1.Chat/Summarize", &[]);
    assert_eq!(
        admit(&layer, grpc).await,
        (Some(Tier::L1), Some(Scene::SUMMARY), None)
    );
    let not_exact = with_head(request("m"), "/v1/vip/more", &[]);
    assert_eq!(
        admit(&layer, not_exact).await.0,
        Some(Tier::L1),
        "exact path rules do not match longer paths"
    );
}

#[tokio::test(start_paused = true)]
async fn model_rule_matches_the_requested_model() {
    let layer = TierLayer::builder()
        .model("quality", Classification::tier(Tier::L0))
        .model_prefix("gpt-4.1-nano", Classification::tier(Tier::L2))
        .build();
    assert_eq!(admit(&layer, request("quality")).await.0, Some(Tier::L0));
    assert_eq!(
        admit(&layer, request("gpt-4.1-nano-2025-04-14")).await.0,
        Some(Tier::L2)
    );
    assert_eq!(admit(&layer, request("gpt-4o")).await.0, Some(Tier::L1));
}

#[tokio::test(start_paused = true)]
async fn metadata_rule_matches_a_key_and_value() {
    let layer = TierLayer::builder()
        .metadata(
            "team",
            "growth",
            Classification::tier(Tier::L2).with_tenant(tenant("growth")),
        )
        .build();
    let mut body = ChatBody::new("m", vec![Message::user("hi")]);
    body.extra
        .insert("metadata".into(), json!({"team": "growth", "run": 7}));
    let seen = admit(&layer, ChatRequest::new(body)).await;
    assert_eq!(seen.0, Some(Tier::L2));
    assert_eq!(seen.2, Some(tenant("growth")));
    let mut other = ChatBody::new("m", vec![Message::user("hi")]);
    other
        .extra
        .insert("metadata".into(), json!({"team": "search"}));
    assert_eq!(
        admit(&layer, ChatRequest::new(other)).await.0,
        Some(Tier::L1)
    );
}

#[tokio::test(start_paused = true)]
async fn closure_rule_sees_the_facts() {
    let layer = TierLayer::builder()
        .rule_fn(|facts| {
            let long = facts.model.is_some_and(|m| m.ends_with("-long"));
            long.then(|| Classification::scene(Scene::new("long_context").unwrap()))
        })
        .build();
    let seen = admit(&layer, request("gpt-4o-long")).await;
    assert_eq!(seen.1.as_ref().map(Scene::as_str), Some("long_context"));
}

#[tokio::test(start_paused = true)]
async fn first_rule_to_decide_a_field_wins() {
    let layer = TierLayer::builder()
        .model("quality", Classification::tier(Tier::L0))
        .path_prefix(
            "/v1",
            Classification::tier(Tier::L2).with_scene(Scene::CODE),
        )
        .build();
    let req = with_head(request("quality"), "/v1/chat/completions", &[]);
    assert_eq!(
        admit(&layer, req).await,
        (Some(Tier::L0), Some(Scene::CODE), None),
        "tier from the first rule, scene from the second"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_classified_at_the_edge_is_left_alone() {
    let layer = TierLayer::builder()
        .model("m", Classification::tier(Tier::L2))
        .build();
    let mut req = request("m");
    req.extensions_mut().insert(Tier::L0);
    assert_eq!(admit(&layer, req).await.0, Some(Tier::L0));
}

#[tokio::test(start_paused = true)]
async fn http_requests_are_classified_at_the_edge() {
    let layer = TierLayer::builder()
        .headers()
        .api_key("sk-acme", KeyPolicy::new(tenant("acme")).tier(Tier::L0))
        .path_prefix("/batch", Classification::tier(Tier::L2))
        .build();
    let mut service = layer.layer(service_fn(|req: http::Request<()>| async move {
        let ext = req.extensions();
        Ok::<_, Infallible>((
            ext.get::<Tier>().copied(),
            ext.get::<Scene>().cloned(),
            ext.get::<TenantId>().cloned(),
        ))
    }));
    let req = http::Request::builder()
        .uri("/v1/chat/completions")
        .header("authorization", "Bearer sk-acme")
        .header("x-switchboard-scene", "code")
        .body(())
        .unwrap();
    let seen = service.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(
        seen,
        (Some(Tier::L0), Some(Scene::CODE), Some(tenant("acme")))
    );
    let batch = http::Request::builder().uri("/batch/1").body(()).unwrap();
    let seen = service.ready().await.unwrap().call(batch).await.unwrap();
    assert_eq!(seen.0, Some(Tier::L2));
}

#[test]
fn debug_output_never_shows_api_keys() {
    let layer = TierLayer::builder()
        .api_key("sk-secret-123", KeyPolicy::new(tenant("acme")))
        .build();
    let debug = format!("{layer:?}");
    assert!(!debug.contains("sk-secret-123"), "{debug}");
    assert!(debug.contains("api_keys: 1"), "{debug}");
}
