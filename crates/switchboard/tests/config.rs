//! The config: the documented example parses, mistakes name their key and fix, the demo
//! builds and answers.

use std::path::PathBuf;

use switchboard::{Config, ConfigError, ProviderConfig, Switchboard};
use switchboard_core::{ChatBody, ChatRequest, Error, Message, Tier};
use tower::ServiceExt;

/// The first ```toml block of docs/configuration.md.
fn documented_example() -> String {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let text = std::fs::read_to_string(doc).unwrap();
    let start = text.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + text[start..].find("```").unwrap();
    text[start..end].to_owned()
}

fn error(toml: &str) -> ConfigError {
    Config::from_toml(toml).expect_err("the config should be refused")
}

const MINIMAL: &str = r#"
[providers.a]
kind = "sim"
[routing]
providers = ["a"]
models.fast = { a = "m" }
"#;

#[test]
fn the_documented_production_example_parses() {
    let config = Config::from_toml(&documented_example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.providers.len(), 2);
    assert!(matches!(
        config.providers.values().next(),
        Some(ProviderConfig::Anthropic(_))
    ));
    assert_eq!(config.server.keys["sk-gw-support"].tier, Some(Tier::L0));
    assert_eq!(config.hedge.max_attempts, 2);
    assert_eq!(
        config.budget.unwrap().global_per_minute.as_micros(),
        5_000_000
    );
}

#[test]
fn the_demo_config_parses() {
    let config = Config::from_toml(switchboard::DEMO_CONFIG).unwrap();
    assert_eq!(config.providers.len(), 2);
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    let e = error(&format!("{MINIMAL}\n[hedge]\nmax_attempt = 2\n"));
    assert!(e.problem.contains("max_attempt"), "{e}");
    assert!(e.key.starts_with("line "), "{e}");
}

#[test]
fn an_unknown_server_runtime_names_the_choices() {
    let e = error(&format!("[server]\nruntime = \"green_threads\"\n{MINIMAL}"));
    assert!(e.problem.contains("green_threads"), "{e}");
    assert!(
        e.problem.contains("thread_per_core") && e.problem.contains("work_stealing"),
        "{e}"
    );
}

#[test]
fn the_server_runs_thread_per_core_on_every_core_by_default() {
    let config = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(
        config.server.runtime,
        switchboard::ServerRuntime::ThreadPerCore
    );
    assert_eq!(config.server.workers, 0, "0 = one per available core");
    let config = Config::from_toml(&format!(
        "[server]\nruntime = \"work_stealing\"\nworkers = 3\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(
        config.server.runtime,
        switchboard::ServerRuntime::WorkStealing
    );
    assert_eq!(config.server.workers, 3);
}

#[test]
fn routing_to_an_unconfigured_provider_names_the_key_and_the_choices() {
    let e = error(&MINIMAL.replace("providers = [\"a\"]", "providers = [\"a\", \"b\"]"));
    assert_eq!(e.key, "routing.providers[1]");
    assert!(e.problem.contains("\"b\" is not configured"), "{e}");
    assert!(e.fix.contains("use one of: a"), "{e}");
}

#[test]
fn a_pin_to_an_unknown_logical_model_is_refused() {
    let e = error(&format!(
        "{MINIMAL}\n[routing.tiers.L0]\npin = \"quality\"\n"
    ));
    assert_eq!(e.key, "routing.tiers.L0.pin");
}

#[test]
fn thresholds_out_of_order_are_refused() {
    let e = error(&format!(
        "{MINIMAL}\n[budget]\nglobal_per_minute = \"1\"\nthresholds = {{ warn = 90, degrade = 80, block = 100 }}\n"
    ));
    assert_eq!(e.key, "budget.thresholds");
    assert!(e.fix.contains("warn <= degrade <= block"), "{e}");
}

#[test]
fn invalid_values_say_what_is_wrong() {
    let e = error(&MINIMAL.replace("[providers.a]", "[providers.Bad-Name]"));
    assert!(e.problem.contains("snake_case"), "{e}");
    let e = error(&format!(
        "{MINIMAL}\n[budget]\nglobal_per_minute = \"-1\"\n"
    ));
    assert!(e.problem.contains("non-negative"), "{e}");
}

#[test]
fn a_missing_api_key_names_the_environment_variable() {
    let toml = r#"
[providers.anthropic]
kind = "anthropic"
[routing]
providers = ["anthropic"]
models.fast = { anthropic = "claude-haiku-4-5" }
"#;
    let config = Config::from_toml(toml).unwrap();
    if std::env::var_os("ANTHROPIC_API_KEY").is_none() {
        let e = Switchboard::build(&config).unwrap_err();
        assert_eq!(e.key, "providers.anthropic");
        assert!(e.problem.contains("ANTHROPIC_API_KEY"), "{e}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_demo_stack_answers_and_refuses_unknown_models() {
    let config = Config::from_toml(switchboard::DEMO_CONFIG).unwrap();
    let sb = Switchboard::build(&config).unwrap();
    assert!(sb.models().iter().any(|m| m == "claude-haiku-4-5"));
    let request = ChatRequest::new(ChatBody::new(
        "fast",
        vec![Message::user("Say this is a test")],
    ));
    let answer = sb
        .service()
        .oneshot(request)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(answer.text, "This is a test.");
    let request = ChatRequest::new(ChatBody::new("gpt-9", vec![Message::user("x")]));
    let err = sb.service().oneshot(request).await.unwrap_err();
    assert!(matches!(err, Error::ModelNotFound { .. }), "{err}");
    assert!(sb.ready());
    let status = sb.status();
    assert!(status["providers"]["fast"].is_object(), "{status}");
    assert!(status["budget"]["committed"].is_string(), "{status}");
}

#[tokio::test(start_paused = true)]
async fn blocked_requests_of_an_enqueueing_tier_run_when_the_window_resets() {
    use switchboard::budget::JobStatus;
    use switchboard_core::JobTicket;
    let priced = MINIMAL.replace("a = \"m\"", "a = \"gpt-4o-mini\"");
    let config = Config::from_toml(&format!(
        "{priced}\n[budget]\nglobal_per_minute = \"0.00003\"\non_block = {{ L1 = \"enqueue\" }}\n"
    ))
    .unwrap();
    let sb = Switchboard::build(&config).unwrap();
    let request =
        || ChatRequest::new(ChatBody::new("fast", vec![Message::user("hello")]).max_tokens(10));
    let mut ticket = None;
    for _ in 0..50 {
        let response = sb.service().oneshot(request()).await.unwrap();
        if let Some(t) = response.extensions().get::<JobTicket>() {
            ticket = Some(t.clone());
            break;
        }
        response.collect().await.unwrap();
    }
    let ticket = ticket.expect("the cap is reached within 50 requests and the request is queued");
    let queue = sb.jobs().unwrap().clone();
    assert_eq!(
        queue.status(ticket.id.clone()).await.unwrap(),
        Some(JobStatus::Queued)
    );
    let _worker = sb.spawn_job_worker().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(61)).await;
    match queue.status(ticket.id.clone()).await.unwrap() {
        Some(JobStatus::Done { completion }) => assert_eq!(completion.text, "hello"),
        other => panic!("expected the job done after the window reset, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_configured_rollout_starts_at_its_first_stage_and_shows_in_status() {
    let config = Config::from_toml(&format!(
        r#"{MINIMAL}
[rollout.candidate]
providers = ["a"]
models.fast = {{ a = "m2" }}
[rollout.settings]
stages = [5, 50, 100]
min_requests = 10
min_duration_secs = 1
min_candidate_samples = 1
"#
    ))
    .unwrap();
    let sb = Switchboard::build(&config).unwrap();
    let handle = sb.rollout().expect("a rollout handle").clone();
    assert_eq!(handle.stages(), &[5, 50, 100]);
    let status = sb.status();
    assert!(status["rollout"].is_object(), "{status}");
    assert!(
        sb.models().iter().any(|m| m == "m2"),
        "candidate models are servable"
    );

    let e = error(&format!(
        "{MINIMAL}\n[rollout.candidate]\nproviders = [\"zz\"]\n"
    ));
    assert_eq!(e.key, "rollout.candidate.providers[0]");
}

#[tokio::test(start_paused = true)]
async fn the_rollout_stage_and_counts_are_exported_as_metrics() {
    let config = Config::from_toml(&format!(
        r#"{MINIMAL}
[rollout.candidate]
providers = ["a"]
models.fast = {{ a = "m2" }}
[rollout.settings]
stages = [5, 50, 100]
"#
    ))
    .unwrap();
    let sb = Switchboard::build(&config).unwrap();
    let text = sb.telemetry().render();
    assert!(
        text.contains("switchboard_rollout_candidate_percent{otel_scope_name=\"switchboard\",rollout=\"routing\"} 5")
            || text.lines().any(|l| l.starts_with("switchboard_rollout_candidate_percent") && l.contains("rollout=\"routing\"") && l.ends_with(" 5")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("switchboard_rollout_rollbacks_total") && l.ends_with(" 0")),
        "{text}"
    );
    sb.rollout().unwrap().roll_back("operator");
    let text = sb.telemetry().render();
    assert!(
        text.lines()
            .any(|l| l.starts_with("switchboard_rollout_rollbacks_total") && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("switchboard_rollout_candidate_percent") && l.ends_with(" 0")),
        "{text}"
    );
}
