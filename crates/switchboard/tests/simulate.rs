//! `switchboard simulate`: scenarios through the real stack in virtual time.

use switchboard::Config;
use switchboard::simulate::{Scenario, run};

const CONFIG: &str = r#"
[providers.a]
kind = "sim"
[providers.b]
kind = "sim"
[routing]
providers = ["a", "b"]
models.fast = { a = "gpt-4o-mini", b = "claude-haiku-4-5" }
[hedge]
soft_timeout = { kind = "fixed", ms = 1000 }
max_attempts = 2
budget = { ratio = 1.0, reserve = 100, cap = 1000 }
"#;

fn scenario(extra: &str) -> Scenario {
    Scenario::from_toml(&format!(
        r#"
requests = 400
rate_per_second = 10
[[mix]]
weight = 3
tier = "L1"
model = "fast"
max_tokens = 20
[[mix]]
weight = 1
tier = "L0"
model = "fast"
max_tokens = 20
{extra}
"#
    ))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_request_is_accounted_for_per_tier() {
    let report = run(&Config::from_toml(CONFIG).unwrap(), &scenario(""))
        .await
        .unwrap();
    let rows = report.rows();
    assert_eq!(
        rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(),
        ["L0", "L1", "all"]
    );
    assert_eq!(
        (rows[0].requests, rows[1].requests, rows[2].requests),
        (100, 300, 400)
    );
    let all = &rows[2];
    assert_eq!(all.ok, 400, "healthy providers answer everything");
    assert_eq!(all.fallbacks + all.hedged + all.errors, 0);
    assert!(all.cost > switchboard_core::Cost::ZERO, "spend is priced");
    assert!(
        report.table().contains("| all | 400 | 100.0 %"),
        "{}",
        report.table()
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_on_the_primary_shows_as_fallbacks_not_errors() {
    let outage = r#"
[providers.a]
faults = { outages = [{ start_ms = 10000, duration_ms = 10000, status = 503 }] }
"#;
    let report = run(&Config::from_toml(CONFIG).unwrap(), &scenario(outage))
        .await
        .unwrap();
    let all = report.rows().pop().unwrap();
    assert_eq!(all.errors, 0, "{}", report.table());
    assert!(all.fallbacks > 0, "{}", report.table());
    assert!(
        all.degraded >= all.fallbacks,
        "a fallback answer is a degraded answer"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_primary_is_hedged() {
    let slow = r#"
[providers.a]
first_token = { kind = "fixed", ms = 3000 }
"#;
    let report = run(&Config::from_toml(CONFIG).unwrap(), &scenario(slow))
        .await
        .unwrap();
    let all = report.rows().pop().unwrap();
    assert_eq!(all.hedged, 400, "{}", report.table());
    let p50 = all.first_token[0].unwrap();
    assert_eq!(
        p50.as_millis(),
        1000,
        "the hedge answers at the soft timeout: {}",
        report.table()
    );
}

#[tokio::test(start_paused = true)]
async fn runs_are_deterministic_and_real_providers_are_refused() {
    let config = Config::from_toml(CONFIG).unwrap();
    let a = run(&config, &scenario("")).await.unwrap().table();
    let b = run(&config, &scenario("")).await.unwrap().table();
    assert_eq!(a, b);

    let real = CONFIG.replace(
        "[providers.b]\nkind = \"sim\"",
        "[providers.b]\nkind = \"anthropic\"\napi_key = \"k\"",
    );
    let err = run(&Config::from_toml(&real).unwrap(), &scenario(""))
        .await
        .unwrap_err();
    assert_eq!(err.key, "providers.b");
    assert!(err.fix.contains("[providers.b]"), "{err}");
}
