//! The circuit breaker and the timeout tiers reused over a plain (non-LLM) HTTP client.
//!
//! Switchboard's layers speak the provider contract (`ChatRequest` in, `ChatResponse`
//! out), so a non-LLM client joins in through a small adapter: here, the request's last
//! user message is an item id, the adapter GETs it from an inventory service and the
//! body becomes the single event of the answer. HTTP failures map onto the core `Error`
//! (`Error::from_status`), which is what the breaker counts.
//!
//! The example starts a loopback inventory service; the timeout tiers give an `L0` caller
//! 200 ms and an `L2` caller 2 s for the same slow lookup; then the service fails, the
//! breaker opens (default trigger: half of at least five calls in 30 s failed) and
//! refuses at once (`circuit_open`) without touching the service.
//!
//! ```sh
//! cargo run -p switchboard-examples --example breaker_http_client
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use futures_util::stream;
use switchboard::breaker::BreakerLayer;
use switchboard::core::{BreakerState, ChatEvent, HealthBoard, Tier};
use switchboard::prelude::*;
use switchboard::timeout::{Scope, TimeoutLayer, TimeoutTiers, Timeouts};
use tower::{Service, ServiceBuilder, ServiceExt};

#[derive(Default)]
struct Inventory {
    failing: AtomicBool,
    hits: AtomicU64,
}

async fn item(State(inv): State<Arc<Inventory>>, Path(id): Path<String>) -> (StatusCode, String) {
    inv.hits.fetch_add(1, Ordering::Relaxed);
    if inv.failing.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable".into(),
        );
    }
    if id == "slow" {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (
        StatusCode::OK,
        format!("{{\"id\": \"{id}\", \"stock\": 12}}"),
    )
}

fn lookup(id: &str, tier: Tier) -> ChatRequest {
    let mut request = ChatRequest::new(ChatBody::new("inventory", vec![Message::user(id)]));
    request.extensions_mut().insert(tier);
    request
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inventory = Arc::new(Inventory::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/items/{id}", get(item))
        .with_state(inventory.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The adapter: an HTTP GET as a provider Service.
    let id = ProviderId::new("inventory")?;
    let http = reqwest::Client::new();
    let client = {
        let id = id.clone();
        tower::service_fn(move |request: ChatRequest| {
            let (http, id, base) = (http.clone(), id.clone(), base.clone());
            async move {
                let item = request.body().last_user_text().unwrap_or_default();
                let transport = |e: reqwest::Error| Error::Transport {
                    provider: id.clone(),
                    message: e.to_string(),
                };
                let response = http
                    .get(format!("{base}/items/{item}"))
                    .send()
                    .await
                    .map_err(transport)?;
                let status = response.status().as_u16();
                let body = response.text().await.map_err(transport)?;
                if status >= 400 {
                    return Err(Error::from_status(id, status, body, None));
                }
                let events = stream::iter([Ok(ChatEvent::text(body))]);
                Ok(ChatResponse::new(id, "inventory", events))
            }
        })
    };

    let board = HealthBoard::new();
    let tiers = TimeoutTiers::uniform(Timeouts::new(
        Duration::from_secs(2),
        Duration::from_secs(5),
        Duration::from_secs(10),
    ))
    .tier(
        Tier::L0,
        Timeouts::new(
            Duration::from_millis(200),
            Duration::from_secs(1),
            Duration::from_secs(2),
        ),
    );
    let mut service = ServiceBuilder::new()
        .layer(BreakerLayer::new(id.clone()).board(board.clone()))
        .layer(
            TimeoutLayer::new(tiers)
                .scope(Scope::Attempt)
                .provider(id.clone()),
        )
        .service(client);

    let mut call = async |item: &str, tier: Tier| -> Result<String, Error> {
        let response = service.ready().await?.call(lookup(item, tier)).await?;
        Ok(response.collect().await?.text)
    };

    println!("healthy: {:?}", call("42", Tier::L1).await);
    println!(
        "slow lookup as L0 (200 ms first-byte deadline): {:?}",
        call("slow", Tier::L0).await.map_err(|e| e.reason())
    );
    println!(
        "slow lookup as L2 (2 s deadline): {:?}",
        call("slow", Tier::L2).await.map_err(|e| e.reason())
    );

    inventory.failing.store(true, Ordering::Relaxed);
    for _ in 0..5 {
        let e = call("42", Tier::L1).await.unwrap_err();
        println!("inventory failing: {}", e.reason());
    }
    println!("breaker: {}", board.state(&id));
    assert_eq!(board.state(&id), BreakerState::Open);
    let hits = inventory.hits.load(Ordering::Relaxed);
    let e = call("42", Tier::L1).await.unwrap_err();
    println!(
        "while open: {} (the service was not called: {} hits before and after)",
        e.reason(),
        hits
    );
    assert_eq!(inventory.hits.load(Ordering::Relaxed), hits);
    Ok(())
}
