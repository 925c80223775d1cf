//! The floor for any gateway on a machine: a bare pass-through proxy on the same stack
//! (axum over hyper, hyper-util's pooled client, TCP_NODELAY, mimalloc) and the same
//! threading as the gateway (a single-threaded runtime per core, each with its own
//! upstream pool, accepting from one shared listener) that
//! forwards each request's method, path, headers and body to the upstream and streams the
//! answer back untouched. No parsing, no policy. `scripts/load-run.sh` measures it beside
//! the gateway so the gateway's added latency can be read against what any proxy costs.
//!
//! `cargo run --release -p switchboard-gateway --example bare_proxy -- 127.0.0.1:19081 127.0.0.1:19000`

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use http::uri::{Authority, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

// The same allocator as the gateway binary, so the two differ only in what they do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, Body>,
    authority: Authority,
}

async fn forward(State(upstream): State<Upstream>, mut request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri = Uri::builder()
        .scheme("http")
        .authority(upstream.authority.clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        return status(StatusCode::BAD_REQUEST);
    };
    *request.uri_mut() = uri;
    request.headers_mut().remove(http::header::HOST);
    match upstream.client.request(request).await {
        Ok(response) => response.map(Body::new),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:19081".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let authority: Authority = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:19000".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    println!("bare proxy on http://{listen}");
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (0..workers)
        .map(|_| {
            let listener = listener.try_clone()?;
            let authority = authority.clone();
            Ok(std::thread::spawn(move || worker(listener, authority)))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for thread in threads {
        thread
            .join()
            .map_err(|_| std::io::Error::other("a worker panicked"))??;
    }
    Ok(())
}

fn worker(listener: std::net::TcpListener, authority: Authority) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let app = Router::new()
            .fallback(forward)
            .with_state(Upstream { client, authority });
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await
    })
}
