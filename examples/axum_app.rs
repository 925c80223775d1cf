//! An axum app whose own handler calls LLMs through the Switchboard stack.
//!
//! `POST /ask {"question": "..."}` answers with the text, the provider that answered and
//! any degradation; the caller's `x-switchboard-tier` header (or API key) decides the tier.
//! `GET /metrics` serves the stack's Prometheus metrics. Runs on the demo's simulated
//! providers: no keys, no network.
//!
//! ```sh
//! cargo run -p switchboard-examples --example axum_app
//! curl -s localhost:3000/ask -H 'content-type: application/json' -d '{"question": "Say this is a test"}'
//! ```

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard::core::{Degraded, RequestHead};
use switchboard::prelude::*;
use tower::ServiceExt;

#[derive(Deserialize)]
struct Ask {
    question: String,
    #[serde(default = "default_model")]
    model: String,
}

fn default_model() -> String {
    "fast".to_owned()
}

async fn ask(
    State(switchboard): State<Switchboard>,
    headers: HeaderMap,
    Json(ask): Json<Ask>,
) -> (StatusCode, Json<Value>) {
    let body = ChatBody::new(ask.model, vec![Message::user(ask.question)])
        .system("Answer in one sentence.");
    let mut request = ChatRequest::new(body);
    // Admission (tier, scene, tenant) reads the headers from the head the edge leaves.
    request
        .extensions_mut()
        .insert(RequestHead::new("/ask", headers));
    let failed = |e: Error| (e.status(), Json(json!({"error": e.reason()})));
    let response = match switchboard.service().oneshot(request).await {
        Ok(response) => response,
        Err(e) => return failed(e),
    };
    let degraded: Vec<String> = response
        .extensions()
        .get::<Degraded>()
        .map(|d| d.iter().map(|x| x.reason.clone()).collect())
        .unwrap_or_default();
    match response.collect().await {
        Ok(answer) => (
            StatusCode::OK,
            Json(json!({
                "answer": answer.text,
                "provider": answer.provider,
                "model": answer.model,
                "degraded": degraded,
            })),
        ),
        Err(e) => failed(e),
    }
}

async fn metrics(State(switchboard): State<Switchboard>) -> impl axum::response::IntoResponse {
    (
        [(header::CONTENT_TYPE, switchboard::telemetry::CONTENT_TYPE)],
        switchboard.telemetry().render(),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_toml(switchboard::DEMO_CONFIG)?;
    let switchboard = Switchboard::build(&config)?;
    let app = Router::new()
        .route("/ask", post(ask))
        .route("/metrics", get(metrics))
        .with_state(switchboard);

    // One call in-process first, to show the shape of an answer.
    let request = http::Request::post("/ask")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-switchboard-tier", "L2")
        .body(axum::body::Body::from(
            r#"{"question": "Say this is a test"}"#,
        ))?;
    let response = app.clone().oneshot(request).await?;
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    println!("POST /ask → {}", String::from_utf8_lossy(&bytes));

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!(
        "listening on http://{}: POST /ask, GET /metrics",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
