//! `switchboard`: the gateway binary.
//!
//! ```text
//! switchboard serve --demo                 # simulated providers, no keys, no network
//! switchboard serve --config switchboard.toml [--listen 0.0.0.0:8080]
//! switchboard check-config --config switchboard.toml
//! switchboard simulate --demo --scenario scenario.toml
//! switchboard eval --config switchboard.toml --gold gold.jsonl --min-pass 0.97
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchboard::{Config, ServerRuntime, Switchboard};
use switchboard_core::TenantId;
use switchboard_gateway::{Gateway, GatewayKeys};

mod eval_command;

/// mimalloc: the request path allocates and frees many small buffers, and glibc's malloc
/// spent about a seventh of the gateway's instructions on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "One control plane for several LLM providers."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The config file.
        #[arg(long, conflicts_with = "demo", required_unless_present = "demo")]
        config: Option<PathBuf>,
        /// Run on the embedded demo config: simulated providers, no keys, no network.
        #[arg(long)]
        demo: bool,
        /// Listen here instead of the config's `server.listen` (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate a config file (and build its stack) without serving.
    CheckConfig {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a scenario of traffic through the configured stack on simulated providers, in
    /// virtual time, and print latency, outcome, fallback, hedge and cost per tier.
    Simulate {
        /// The config file (`--demo` for the embedded demo config).
        #[arg(long, conflicts_with = "demo", required_unless_present = "demo")]
        config: Option<PathBuf>,
        /// Use the embedded demo config.
        #[arg(long)]
        demo: bool,
        /// The scenario file.
        #[arg(long)]
        scenario: PathBuf,
    },
    /// Run a gold set through the stack (or a running gateway) and gate on its pass rate,
    /// overall and per category. Exit codes: 0 pass, 1 gate failed, 2 usage or config error.
    Eval(Box<eval_command::EvalArgs>),
}

/// The log filter when `RUST_LOG` is unset: `info`, except the per-request
/// `switchboard.request` / `switchboard.attempt` spans, which cost more CPU per request than
/// the rest of the edge. `RUST_LOG=info` turns them on (docs/operations.md, "Spans").
const DEFAULT_LOG_FILTER: &str = "info,switchboard_telemetry::record=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Simulate {
        config,
        demo,
        scenario,
    } = &cli.command
    {
        return exit(simulate(config.as_deref(), *demo, scenario));
    }
    if let Command::Eval(args) = &cli.command {
        return ExitCode::from(eval_command::run(args));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .init();
    // The control runtime (signals, background tasks); requests are served by the worker
    // threads `serve` starts.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                config,
                demo,
                listen,
            } => {
                let config = if demo {
                    Config::from_toml(switchboard::DEMO_CONFIG)
                        .map_err(|e| format!("demo config: {e}"))?
                } else {
                    load(config.as_deref().unwrap_or(Path::new("switchboard.toml")))?
                };
                serve(config, listen, demo).await
            }
            Command::Simulate { .. } | Command::Eval(_) => Ok(()),
            Command::CheckConfig { config } => {
                let path = config.display().to_string();
                let config = load(&config)?;
                let built = Switchboard::build(&config).map_err(|e| format!("{path}: {e}"))?;
                println!(
                    "{path}: ok ({} providers, {} model names)",
                    built.providers().len(),
                    built.models().len()
                );
                Ok(())
            }
        }
    });
    exit(result)
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs on a current-thread runtime with paused time: virtual time, deterministic.
fn simulate(config: Option<&Path>, demo: bool, scenario: &Path) -> Result<(), String> {
    let config = if demo {
        Config::from_toml(switchboard::DEMO_CONFIG).map_err(|e| format!("demo config: {e}"))?
    } else {
        load(config.unwrap_or(Path::new("switchboard.toml")))?
    };
    let text = std::fs::read_to_string(scenario)
        .map_err(|e| format!("cannot read {}: {e}", scenario.display()))?;
    let scenario_spec = switchboard::simulate::Scenario::from_toml(&text)
        .map_err(|e| format!("{}: {e}", scenario.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let wall = std::time::Instant::now();
    let report = runtime
        .block_on(switchboard::simulate::run(&config, &scenario_spec))
        .map_err(|e| e.to_string())?;
    print!("{}", report.table());
    println!("\n(wall time {:.2} s)", wall.elapsed().as_secs_f64());
    Ok(())
}

fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
}

async fn serve(config: Config, listen: Option<SocketAddr>, demo: bool) -> Result<(), String> {
    let switchboard = Switchboard::build(&config).map_err(|e| e.to_string())?;
    let keys = GatewayKeys::new(
        config
            .server
            .keys
            .iter()
            .map(|(key, k)| (key.clone(), k.tenant.clone()))
            .collect::<std::collections::BTreeMap<String, TenantId>>(),
    );
    let open = keys.is_open();
    let status = switchboard.clone();
    let ready = switchboard.clone();
    let telemetry = switchboard.telemetry().clone();
    let mut gateway = Gateway::new(switchboard.service());
    if let Some(queue) = switchboard.jobs() {
        gateway = gateway.jobs(queue.clone());
        switchboard.spawn_job_worker();
    }
    let app = gateway
        .keys(keys)
        .body_limit(config.server.body_limit_bytes)
        .models(switchboard.models().iter().cloned())
        .status(move || status.status())
        .ready(move || ready.ready())
        .metrics(move || telemetry.render())
        .router();

    let addr = listen.unwrap_or(config.server.listen);
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let url = format!("http://{addr}");
    println!(
        "switchboard listening on {url}{}",
        if demo {
            " (demo: simulated providers)"
        } else {
            ""
        }
    );
    let auth = if open {
        ""
    } else {
        " -H 'authorization: Bearer YOUR_GATEWAY_KEY'"
    };
    println!(
        "try:\n  curl -s {url}/v1/chat/completions -H 'content-type: application/json'{auth} \\\n    -d '{{\"model\": \"gpt-4o-mini\", \"messages\": [{{\"role\": \"user\", \"content\": \"Say this is a test\"}}]}}'"
    );
    let runtime = config.server.runtime;
    tracing::info!(workers, ?runtime, "serving");

    // Thread per core: every worker accepts from the one listener (a clone of its socket)
    // and serves each connection it accepted on its own single-threaded runtime, so a
    // request, its upstream connection (the HTTP client pools per thread) and its timers
    // never wake another thread. Work stealing: one multi-thread runtime serves the
    // listener. Either way this thread keeps the control tasks: signals, the job worker,
    // breaker probes, Redis connections.
    let drain = Duration::from_millis(config.server.drain_ms);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let servers = match runtime {
        ServerRuntime::ThreadPerCore => workers,
        ServerRuntime::WorkStealing => 1,
    };
    for index in 0..servers {
        let listener = listener
            .try_clone()
            .map_err(|e| format!("cannot share the listener with worker {index}: {e}"))?;
        let app = app.clone();
        let stop = stop_rx.clone();
        let done = done_tx.clone();
        std::thread::Builder::new()
            .name(format!("switchboard-worker-{index}"))
            .spawn(move || {
                // A worker that panics reports it, so the gateway stops instead of serving on
                // with one worker fewer.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve_on_worker(runtime, workers, listener, app, stop, drain)
                }));
                let _ = done.send(served.unwrap_or_else(|_| Err("a worker panicked".to_owned())));
            })
            .map_err(|e| format!("cannot start worker {index}: {e}"))?;
    }
    // The workers hold the socket now: when the last of them stops accepting, it closes,
    // and a connection attempt during the drain is refused rather than left waiting.
    drop(listener);
    drop(done_tx);

    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!(
                drain_ms = drain.as_millis() as u64,
                "shutting down: draining in-flight requests"
            );
        }
        // A worker only ends on its own when it failed.
        Some(result) = done_rx.recv() => {
            let _ = stop_tx.send(true);
            return Err(result.err().unwrap_or_else(|| "a worker stopped".to_owned()));
        }
    }
    let _ = stop_tx.send(true);
    let mut failure = None;
    while let Some(result) = done_rx.recv().await {
        if let Err(message) = result {
            failure.get_or_insert(message);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// One worker thread: builds its runtime (`runtime` decides which) and serves on it.
fn serve_on_worker(
    runtime: ServerRuntime,
    workers: usize,
    listener: std::net::TcpListener,
    app: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), String> {
    let built = match runtime {
        ServerRuntime::ThreadPerCore => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        ServerRuntime::WorkStealing => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("switchboard-worker")
            .enable_all()
            .build(),
    };
    let runtime = built.map_err(|e| format!("cannot start a worker runtime: {e}"))?;
    run_server(&runtime, listener, app, stop, drain)
}

/// Serves the connections accepted from `listener` on `runtime` until `stop`, then lets
/// in-flight requests finish for at most `drain`.
fn run_server(
    runtime: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), String> {
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot listen in a worker: {e}"))?;
        // Answers and SSE frames go out as soon as they are written (no Nagle delay).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
        });
        let mut signalled = stop.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = signalled.wait_for(|stopped| *stopped).await;
        });
        let server = std::pin::pin!(server.into_future());
        // After the signal, in-flight streams get `drain` to finish; then we stop anyway.
        let deadline = async move {
            if stop.wait_for(|stopped| *stopped).await.is_ok() {
                tokio::time::sleep(drain).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = server => result.map_err(|e| format!("server error: {e}")),
            () = deadline => {
                tracing::warn!("drain deadline passed; closing the remaining connections");
                Ok(())
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
