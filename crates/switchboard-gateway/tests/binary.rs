//! The `switchboard` binary itself: `serve` on its worker threads over real sockets, and a
//! graceful shutdown on SIGTERM that lets an in-flight stream finish.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use futures_util::StreamExt;
use serde_json::json;

/// Simulated providers that stream slowly enough for a shutdown signal to arrive
/// mid-stream: `slow` (model `fast`) at 20 tokens/s, `slower` (model `slowest`) at 10, over
/// the same answer of ~40 tokens.
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
workers = 2
drain_ms = 30000
runtime = "RUNTIME"

[providers.slow]
kind = "sim"
tokens_per_second = 20
answer = { kind = "fixed", text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty" }

[providers.slower]
kind = "sim"
tokens_per_second = 10
answer = { kind = "fixed", text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty" }

[routing]
providers = ["slow", "slower"]
models.fast = { slow = "gpt-4o-mini" }
models.slowest = { slower = "gpt-4o" }
"#;

struct Served {
    child: Child,
    url: String,
    /// Kept open: the binary prints more after its URL, and a closed pipe would fail it.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `switchboard serve` on CONFIG with `runtime` (`server.runtime`) and reads its URL
/// from the first line it prints.
fn serve(name: &str, runtime: &str) -> Served {
    let dir = std::env::temp_dir().join(format!("switchboard-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, CONFIG.replace("RUNTIME", runtime)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let url = first
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in the first line: {first:?}"))
        .to_owned();
    Served {
        child,
        url,
        _stdout: stdout,
    }
}

fn body_for(model: &str, stream: bool) -> serde_json::Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "count"}]})
}

/// Starts a streamed call of `model` and returns its body stream after its first chunk.
async fn start_stream(
    served: &Served,
    model: &str,
) -> (
    Vec<u8>,
    impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + use<>,
) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", served.url))
        .json(&body_for(model, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let first = stream.next().await.expect("a first chunk").unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    (first.to_vec(), stream)
}

/// Reads the rest of a stream and checks it ran to its end.
async fn finish(
    mut text: Vec<u8>,
    mut stream: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
) {
    while let Some(chunk) = stream.next().await {
        text.extend_from_slice(&chunk.expect("the stream is not cut by the shutdown"));
    }
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the stream ran to its end during the drain: {text}"
    );
    assert!(text.contains("twenty"), "{text}");
}

#[tokio::test]
async fn serves_many_connections_at_once_on_its_workers() {
    many_connections_at_once(serve("many", "thread_per_core")).await;
}

#[tokio::test]
async fn serves_many_connections_at_once_on_a_work_stealing_runtime() {
    many_connections_at_once(serve("many-ws", "work_stealing")).await;
}

async fn many_connections_at_once(served: Served) {
    // No pooling: every request opens its own connection, so the workers' shared listener
    // hands out several at once.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("{}/v1/chat/completions", served.url);
    let calls = (0..8).map(|_| client.post(&url).json(&body_for("fast", false)).send());
    for response in futures_util::future::join_all(calls).await {
        let response = response.expect("the gateway answers");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-switchboard-status"], "ok");
        assert_eq!(response.headers()["x-switchboard-provider"], "slow");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert!(
            answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .ends_with("twenty"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish_then_exits_cleanly() {
    drains_on_sigterm(serve("sigterm", "thread_per_core")).await;
}

#[tokio::test]
async fn sigterm_drains_a_work_stealing_runtime_too() {
    drains_on_sigterm(serve("sigterm-ws", "work_stealing")).await;
}

async fn drains_on_sigterm(mut served: Served) {
    let (first, stream) = start_stream(&served, "fast").await;
    let (first_slowest, slowest) = start_stream(&served, "slowest").await;

    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    finish(first, Box::pin(stream)).await;
    // The slowest stream still runs (twice as long), so the process is still draining: a
    // new connection is refused, not queued behind the drain.
    let addr = served.url.trim_start_matches("http://").to_owned();
    let refused = tokio::net::TcpStream::connect(&addr).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the listener closes at the signal"
    );
    finish(first_slowest, Box::pin(slowest)).await;

    let exit = tokio::task::spawn_blocking(move || served.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "a drained shutdown exits 0: {exit:?}");
}
