//! A simulated OpenAI/Anthropic upstream as a standalone process, for load runs.
//!
//! `cargo run --release -p switchboard-sim --example serve -- 127.0.0.1:9000`
//! serves an instant provider (first token at once, every token at once).

use std::net::SocketAddr;

use switchboard_sim::{Answer, SimConfig, SimServer};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let config = SimConfig::instant().answer(Answer::Fixed {
        text: "This is a test.".into(),
    });
    let server = SimServer::bind(addr, config).await?;
    println!("simulated upstream on {}", server.base_url());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
