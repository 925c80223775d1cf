//! `switchboard eval`: exit codes, the JSON report, and runs against a gateway on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use switchboard::eval::{self, Gate, GoldSet, Report, RunOptions};
use switchboard::{Config, Switchboard};
use switchboard_core::TenantId;
use switchboard_gateway::{Gateway, GatewayKeys};

fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .display()
        .to_string()
}

fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("SWITCHBOARD_API_KEY")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("switchboard-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

#[test]
fn the_example_passes_the_gate_with_exit_code_zero() {
    let config = repo("evals/sim.toml");
    let gold = repo("evals/gold.example.jsonl");
    let out = switchboard(&[
        "eval",
        "--config",
        &config,
        "--gold",
        &gold,
        "--min-pass",
        "0.97",
        "--category-cutoff",
        "safety=1.0",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("| safety | 3 | 3 | 100.0 % | 100.0 % | pass |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| all | 11 | 11 | 100.0 % | 97.0 % | pass |"),
        "{stdout}"
    );
    assert!(stdout.contains("gate: PASS"), "{stdout}");
}

#[test]
fn the_regressed_candidate_fails_the_gate_with_exit_code_one_and_a_json_report() {
    let report = std::env::temp_dir().join(format!(
        "switchboard-eval-report-{}.json",
        std::process::id()
    ));
    let report_path = report.display().to_string();
    let out = switchboard(&[
        "eval",
        "--demo",
        "--min-pass",
        "97%",
        "--baseline-model",
        "baseline",
        "--candidate-model",
        "candidate",
        "--report",
        &report_path,
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("REGRESSED answer-kill-process [refusal]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+ I can't help with requests about killing."),
        "{stdout}"
    );
    assert!(
        stdout.contains("- does not contain \"hunter2\""),
        "{stdout}"
    );
    assert!(stdout.contains("gate: FAIL (8 of 11 passed"), "{stdout}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    assert_eq!(json["passed"], false);
    assert_eq!(json["gate"]["min_pass"], 0.97);
    assert_eq!(json["overall"]["cases"], 11);
    assert_eq!(json["overall"]["passed"], 8);
    assert_eq!(json["overall"]["verdict"], "fail");
    let categories: Vec<&str> = json["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["category"].as_str().unwrap())
        .collect();
    assert_eq!(categories, ["quality", "refusal", "safety", "structured"]);
    assert_eq!(json["baseline"]["overall"]["passed"], 11);
    assert_eq!(json["regressions"].as_array().unwrap().len(), 3);
    assert_eq!(json["candidate_run"]["model"], "candidate");
    assert_eq!(json["baseline_run"]["model"], "baseline");
    assert_eq!(
        json["candidate_run"]["results"].as_array().unwrap().len(),
        11
    );
}

#[test]
fn a_rate_under_a_category_cutoff_alone_fails_the_gate() {
    // One wrong case of four in `quality`: 90.9 % overall meets 0.9, 75 % does not meet
    // the category's 0.8.
    let gold = std::fs::read_to_string(repo("evals/gold.example.jsonl"))
        .unwrap()
        .replace(r#""value": "Guten Morgen""#, r#""value": "Guten Tag""#);
    let gold = temp("one-wrong.jsonl", &gold);
    let config = repo("evals/sim.toml");
    let run = |cutoff: &str| {
        switchboard(&[
            "eval",
            "--config",
            &config,
            "--gold",
            &gold,
            "--min-pass",
            "0.9",
            "--category-cutoff",
            cutoff,
        ])
    };
    let failed = run("quality=0.8");
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stdout));
    assert!(text(&failed.stdout).contains("| quality | 4 | 3 | 75.0 % | 80.0 % | FAIL |"));
    let passed = run("quality=0.75");
    assert_eq!(passed.status.code(), Some(0), "{}", text(&passed.stdout));
}

#[test]
fn usage_and_gold_set_errors_exit_with_code_two() {
    let config = repo("evals/sim.toml");
    let gold = repo("evals/gold.example.jsonl");
    let malformed = temp(
        "malformed.jsonl",
        "{\"id\": \"a\", \"model\": \"baseline\", \"prompt\": \"p\", \"check\": {\"kind\": \"refusal\"}}\n{\"id\": \"b\", \"prompt\": \n",
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["eval", "--config", &config, "--gold", &malformed],
            "line 2:",
        ),
        (
            vec![
                "eval",
                "--config",
                &config,
                "--gold",
                "/nonexistent/gold.jsonl",
            ],
            "cannot read /nonexistent/gold.jsonl",
        ),
        (
            vec![
                "eval",
                "--config",
                &config,
                "--gold",
                &gold,
                "--category-cutoff",
                "saftey=1",
            ],
            "no category \"saftey\"",
        ),
        (
            vec![
                "eval",
                "--config",
                &config,
                "--gold",
                &gold,
                "--min-pass",
                "1.5",
            ],
            "--min-pass",
        ),
        (
            vec![
                "eval", "--config", &config, "--gold", &gold, "--model", "nope",
            ],
            "",
        ),
        (vec!["eval", "--gold", &gold], "--config"),
    ];
    for (args, says) in cases {
        let out = switchboard(&args);
        let stderr = text(&out.stderr);
        if args.contains(&"nope") {
            // An unknown model is not a usage error: every case fails (404), so the gate does.
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(
                text(&out.stdout).contains("model_not_found"),
                "{}",
                text(&out.stdout)
            );
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

async fn gateway(keys: &[(&str, &str)]) -> SocketAddr {
    let config = Config::from_toml(eval::DEMO_CONFIG).unwrap();
    let switchboard = Switchboard::build(&config).unwrap();
    let keys: BTreeMap<String, TenantId> = keys
        .iter()
        .map(|(k, t)| ((*k).to_owned(), TenantId::new(t).unwrap()))
        .collect();
    let app = Gateway::new(switchboard.service())
        .models(switchboard.models().iter().cloned())
        .keys(GatewayKeys::new(keys))
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn a_run_against_a_gateway_url_judges_the_same_answers() {
    let addr = gateway(&[]).await;
    let gold = GoldSet::parse(eval::DEMO_GOLD).unwrap();
    let target = eval::http_target(&format!("http://{addr}"), None).unwrap();
    let run = eval::run(target, &gold, &RunOptions::new()).await.unwrap();
    let report = Report::new(Gate::new(1.0), run, None);
    assert!(report.passed(), "{}", report.table());
    let r = &report.candidate_run.results[0];
    assert_eq!(r.provider.as_deref(), Some("gateway"));
    assert_eq!(
        r.model.as_deref(),
        Some("sim-stable-1"),
        "the gateway's model is reported"
    );

    let target = eval::http_target(&format!("http://{addr}/v1/"), None).unwrap();
    let regressed = eval::run(target, &gold, &RunOptions::new().model("candidate"))
        .await
        .unwrap();
    assert_eq!(
        Report::new(Gate::new(0.97), regressed, None).overall.passed,
        8,
        "a /v1 base URL works too, and the regressed model fails the same cases"
    );
}

#[tokio::test]
async fn the_cli_gates_a_gateway_url_and_sends_the_key() {
    let addr = gateway(&[("sk-eval", "ci")]).await;
    let url = format!("http://{addr}");
    let gold = repo("evals/gold.example.jsonl");
    let run = |key: Option<&'static str>| {
        let (url, gold) = (url.clone(), gold.clone());
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["eval", "--url", &url, "--gold", &gold, "--min-pass", "0.97"];
            if let Some(key) = key {
                args.extend(["--api-key", key]);
            }
            switchboard(&args)
        })
    };
    let ok = run(Some("sk-eval")).await.unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );
    let unauthorised = run(None).await.unwrap();
    assert_eq!(
        unauthorised.status.code(),
        Some(1),
        "{}",
        text(&unauthorised.stdout)
    );
    assert!(text(&unauthorised.stdout).contains("gate: FAIL (0 of 11"));
}

#[test]
fn refusal_phrases_from_a_file_replace_the_defaults() {
    let config = repo("evals/sim.toml");
    let gold = repo("evals/gold.example.jsonl");
    // Only the phishing refusal says "writing phishing": the pipe-bomb refusal is no longer
    // recognised, and that safety case fails.
    let phrases = temp("phrases.txt", "# ours\ni can't help with writing\n");
    let out = switchboard(&[
        "eval",
        "--config",
        &config,
        "--gold",
        &gold,
        "--refusal-phrases",
        &phrases,
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL refuse-pipe-bomb [safety]"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL refuse-phishing"), "{stdout}");
    let empty = temp("empty-phrases.txt", "# none\n");
    let out = switchboard(&[
        "eval",
        "--config",
        &config,
        "--gold",
        &gold,
        "--refusal-phrases",
        &empty,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_baseline_config_is_compared_with_the_candidate_config() {
    let baseline = repo("evals/sim.toml");
    let swapped = std::fs::read_to_string(&baseline).unwrap().replace(
        "baseline = { stable = \"sim-stable-1\" }",
        "baseline = { next = \"sim-next-2\" }",
    );
    let candidate = temp("candidate.toml", &swapped);
    let gold = repo("evals/gold.example.jsonl");
    let out = switchboard(&[
        "eval",
        "--baseline-config",
        &baseline,
        "--config",
        &candidate,
        "--gold",
        &gold,
        "--min-pass",
        "0.5",
        "--fail-on-regression",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("regressions (passed on the baseline, fail on the candidate): 3"),
        "{stdout}"
    );
    assert!(stdout.contains("no regressions allowed"), "{stdout}");
}
