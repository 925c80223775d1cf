//! `GET /metrics` after traffic through the standard stack: the counters and histograms
//! move as they should for a plain success, a first-token timeout, a hedge that wins, a
//! failover, and the degraded answers the last two give. Paused time, no network: the
//! requests go through the gateway's router as a tower service.

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use switchboard::{Config, Switchboard};
use switchboard_gateway::Gateway;
use tower::ServiceExt;

const CONFIG: &str = r#"
[providers.fast]
kind = "sim"
first_token = { kind = "fixed", ms = 100 }

[providers.slow]
kind = "sim"
first_token = { kind = "fixed", ms = 3000 }

[providers.broken]
kind = "sim"
faults = { errors = [{ status = 503, probability = 1.0 }] }

[routing]
providers = ["broken", "slow", "fast"]

[routing.models]
plain = { fast = "gpt-4o-mini" }
stalls = { slow = "gpt-4o" }
hedged = { slow = "gpt-4o", fast = "gpt-4.1-mini" }
failover = { broken = "claude-haiku-4-5", fast = "gpt-4.1" }

[timeouts.L1]
first_token_ms = 2000
idle_ms = 10000
total_ms = 60000

[hedge]
soft_timeout = { kind = "fixed", ms = 500 }
max_attempts = 2

[budget]
global_per_minute = "1.00"
"#;

/// The sum of every sample of `name` whose labels include all of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            (n == name
                && labels
                    .iter()
                    .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\""))))
            .then(|| v.parse::<f64>().unwrap())
        })
        .sum()
}

async fn chat(app: &axum::Router, model: &str) -> StatusCode {
    let body =
        json!({"model": model, "messages": [{"role": "user", "content": "Say this is a test"}]});
    let request = Request::post("/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

async fn scrape(app: &axum::Router) -> String {
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn app(switchboard: &Switchboard) -> axum::Router {
    let telemetry = switchboard.telemetry().clone();
    Gateway::new(switchboard.service())
        .models(switchboard.models().iter().cloned())
        .metrics(move || telemetry.render())
        .router()
}

#[tokio::test(start_paused = true)]
async fn metrics_move_for_success_timeout_hedge_failover_and_degraded_answers() {
    let config = Config::from_toml(CONFIG).unwrap();
    let switchboard = Switchboard::build(&config).unwrap();
    let app = app(&switchboard);

    let before = scrape(&app).await;
    assert_eq!(value(&before, "switchboard_requests_total", &[]), 0.0);

    assert_eq!(chat(&app, "plain").await, StatusCode::OK);
    assert_eq!(chat(&app, "stalls").await, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(chat(&app, "hedged").await, StatusCode::OK);
    assert_eq!(chat(&app, "failover").await, StatusCode::OK);
    let text = scrape(&app).await;

    // Success: one ok call, first token at 100 ms, tokens and cost counted.
    let plain = [
        ("provider", "fast"),
        ("model", "gpt-4o-mini"),
        ("tier", "L1"),
        ("scene", "chat"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| [plain.as_slice(), extra].concat();
    assert_eq!(
        value(
            &text,
            "switchboard_requests_total",
            &with(&[("outcome", "ok")])
        ),
        1.0,
        "one plain success:\n{text}"
    );
    let ft = "switchboard_first_token_duration_seconds_bucket";
    assert_eq!(value(&text, ft, &with(&[("le", "0.08")])), 0.0);
    assert_eq!(
        value(&text, ft, &with(&[("le", "0.16")])),
        1.0,
        "first token at 100 ms"
    );
    assert!(
        value(
            &text,
            "switchboard_tokens_total",
            &with(&[("type", "output")])
        ) > 0.0
    );
    assert!(
        value(
            &text,
            "switchboard_tokens_total",
            &with(&[("type", "input")])
        ) > 0.0
    );
    assert!(value(&text, "switchboard_cost_microdollars_total", &plain) > 0.0);
    let usage = [
        ("gen_ai_response_model", "gpt-4o-mini"),
        ("gen_ai_token_type", "output"),
    ];
    assert_eq!(value(&text, "gen_ai_client_token_usage_count", &usage), 1.0);

    // Timeout: the attempt and the call time out at the 2 s first-token deadline.
    let reason = ("reason", "slow_first_token_timeout");
    let stalls = [("provider", "slow"), ("outcome", "error"), reason];
    assert_eq!(value(&text, "switchboard_requests_total", &stalls), 1.0);
    assert_eq!(value(&text, "switchboard_attempts_total", &stalls), 1.0);
    let timeout = |scope| {
        [
            ("provider", "slow"),
            ("phase", "first_token"),
            ("scope", scope),
        ]
    };
    assert_eq!(
        value(&text, "switchboard_timeouts_total", &timeout("attempt")),
        1.0
    );
    assert_eq!(
        value(&text, "switchboard_timeouts_total", &timeout("call")),
        1.0
    );
    let op = [
        ("gen_ai_provider_name", "slow"),
        ("error_type", "first_token_timeout"),
    ];
    let op_bucket = |le| [op.as_slice(), &[("le", le)]].concat();
    let bucket = "gen_ai_client_operation_duration_seconds_bucket";
    assert_eq!(value(&text, bucket, &op_bucket("1.28")), 0.0);
    assert_eq!(
        value(&text, bucket, &op_bucket("2.56")),
        1.0,
        "failed after 2 s"
    );

    // Hedge: `slow` has no first token after 500 ms, `fast` is started and wins at 600 ms;
    // the answer is degraded (`hedge_faster`) and the slow attempt is cancelled.
    let hedged = [("provider", "fast"), ("model", "gpt-4.1-mini")];
    let h = |extra: &[(&'static str, &'static str)]| [hedged.as_slice(), extra].concat();
    assert_eq!(
        value(&text, "switchboard_hedges_total", &h(&[("won", "true")])),
        1.0
    );
    assert_eq!(
        value(&text, "switchboard_hedges_total", &[]),
        1.0,
        "one hedge in all"
    );
    let degraded = h(&[("outcome", "degraded"), ("reason", "hedge_faster")]);
    assert_eq!(value(&text, "switchboard_requests_total", &degraded), 1.0);
    assert_eq!(
        value(
            &text,
            "switchboard_degraded_total",
            &h(&[("reason", "hedge_faster")])
        ),
        1.0
    );
    assert_eq!(value(&text, ft, &h(&[("le", "0.32")])), 0.0);
    assert_eq!(
        value(&text, ft, &h(&[("le", "0.64")])),
        1.0,
        "first token at 600 ms"
    );
    let cancelled = [
        ("provider", "slow"),
        ("model", "gpt-4o"),
        ("kind", "primary"),
        ("outcome", "cancelled"),
    ];
    assert_eq!(value(&text, "switchboard_attempts_total", &cancelled), 1.0);
    let hedge_attempt = h(&[("kind", "hedge"), ("outcome", "ok")]);
    assert_eq!(
        value(&text, "switchboard_attempts_total", &hedge_attempt),
        1.0
    );

    // Failover: `broken` answers 503, `fast` takes over at once.
    let failed = ("reason", "broken_upstream_server_error");
    let f = [("provider", "fast"), ("model", "gpt-4.1")];
    let f_with = |extra: &[(&'static str, &'static str)]| [f.as_slice(), extra].concat();
    assert_eq!(
        value(&text, "switchboard_fallbacks_total", &f_with(&[failed])),
        1.0
    );
    assert_eq!(
        value(&text, "switchboard_fallbacks_total", &[]),
        1.0,
        "one failover in all"
    );
    let why = ("reason", "fallback_after_broken_upstream_server_error");
    assert_eq!(
        value(
            &text,
            "switchboard_requests_total",
            &f_with(&[("outcome", "degraded"), why])
        ),
        1.0
    );
    assert_eq!(
        value(&text, "switchboard_degraded_total", &f_with(&[why])),
        1.0
    );
    let broken = [
        ("provider", "broken"),
        ("kind", "primary"),
        ("outcome", "error"),
        failed,
    ];
    assert_eq!(value(&text, "switchboard_attempts_total", &broken), 1.0);
    let failover_attempt = f_with(&[("kind", "failover"), ("outcome", "ok")]);
    assert_eq!(
        value(&text, "switchboard_attempts_total", &failover_attempt),
        1.0
    );

    // Four calls, four outcomes; only the stalled provider timed out.
    assert_eq!(value(&text, "switchboard_requests_total", &[]), 4.0);
    assert_eq!(value(&text, "switchboard_timeouts_total", &[]), 2.0);
    assert_eq!(
        value(&text, "switchboard_breaker_open", &[("provider", "broken")]),
        0.0
    );
    let global = [("scope", "global")];
    assert_eq!(
        value(&text, "switchboard_budget_cap_microdollars", &global),
        1_000_000.0
    );
    assert!(value(&text, "switchboard_budget_spent_microdollars", &global) > 0.0);
}

#[tokio::test]
async fn metrics_is_a_404_when_not_configured() {
    let config = Config::from_toml(CONFIG).unwrap();
    let switchboard = Switchboard::build(&config).unwrap();
    let app = Gateway::new(switchboard.service()).router();
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
