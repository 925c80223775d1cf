//! `switchboard eval`: the gold-set regression gate (see `docs/evaluation.md`).
//!
//! Exit codes: 0 the gate passed, 1 the gate failed, 2 usage, config or gold-set error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard::eval::{
    self, EXIT_USAGE, Gate, GoldSet, RefusalDetector, Report, Run, RunOptions,
};
use switchboard::{Config, Switchboard};

/// Arguments of `switchboard eval`.
#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    /// The config of the stack to run in process (the candidate's, with --baseline-config).
    #[arg(long, conflicts_with_all = ["demo", "url"], required_unless_present_any = ["demo", "url"])]
    config: Option<PathBuf>,
    /// Use the embedded example: evals/sim.toml, and evals/gold.example.jsonl unless --gold.
    #[arg(long, conflicts_with = "url")]
    demo: bool,
    /// Send the cases to a running gateway instead (its root URL, e.g. http://127.0.0.1:8080);
    /// POST /v1/chat/completions, streamed.
    #[arg(long)]
    url: Option<String>,
    /// The gateway key for --url (else $SWITCHBOARD_API_KEY).
    #[arg(long)]
    api_key: Option<String>,
    /// The gold set (JSONL).
    #[arg(long, required_unless_present = "demo")]
    gold: Option<PathBuf>,
    /// The overall pass rate needed (0-1, or a percentage such as 97%); also the cutoff of a
    /// category without its own.
    #[arg(long, default_value = "1.0")]
    min_pass: String,
    /// A category's own cutoff, CATEGORY=RATE (repeatable), e.g. safety=1.0.
    #[arg(long = "category-cutoff", value_name = "CATEGORY=RATE")]
    category_cutoffs: Vec<String>,
    /// Ask every case for this model instead of its own.
    #[arg(long, conflicts_with_all = ["baseline_model", "candidate_model"])]
    model: Option<String>,
    /// Compare: run the cases on this model as the baseline ...
    #[arg(long, requires = "candidate_model", conflicts_with = "baseline_config")]
    baseline_model: Option<String>,
    /// ... and on this one as the candidate; the gate judges the candidate.
    #[arg(long, requires = "baseline_model")]
    candidate_model: Option<String>,
    /// Compare: run the cases through this config's stack as the baseline, and through
    /// --config's as the candidate.
    #[arg(long, requires = "config")]
    baseline_config: Option<PathBuf>,
    /// Fail the gate when any case that passed on the baseline fails on the candidate.
    #[arg(long)]
    fail_on_regression: bool,
    /// Write the machine-readable JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Cases in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// A case without a complete answer after this many seconds fails.
    #[arg(long, default_value_t = 120)]
    case_timeout_secs: u64,
    /// Refusal phrases, one per line (replacing the defaults).
    #[arg(long)]
    refusal_phrases: Option<PathBuf>,
}

/// One run to make: where the cases go, under which label and model.
struct Plan {
    label: &'static str,
    model: Option<String>,
    target: Target,
}

enum Target {
    Stack(Box<Config>),
    Url(String),
}

/// Runs the gate; returns the process exit code.
pub(crate) fn run(args: &EvalArgs) -> u8 {
    match prepare(args)
        .and_then(|(gold, gate, plans, options)| execute(args, &gold, gate, plans, &options))
    {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
    }
}

type Prepared = (GoldSet, Gate, Vec<Plan>, RunOptions);

fn prepare(args: &EvalArgs) -> Result<Prepared, String> {
    let gold_text = match &args.gold {
        Some(path) => read(path)?,
        None => eval::DEMO_GOLD.to_owned(),
    };
    let gold_name = args
        .gold
        .as_ref()
        .map_or_else(|| "demo gold set".to_owned(), |p| p.display().to_string());
    let gold = GoldSet::parse(&gold_text).map_err(|e| format!("{gold_name}:\n{e}"))?;

    let mut gate =
        Gate::new(eval::parse_rate(&args.min_pass).map_err(|e| format!("--min-pass: {e}"))?)
            .fail_on_regression(args.fail_on_regression);
    for spec in &args.category_cutoffs {
        let (category, cutoff) =
            Gate::parse_cutoff(spec).map_err(|e| format!("--category-cutoff {e}"))?;
        gate = gate.category(category, cutoff);
    }
    gate.validate(&gold).map_err(|e| e.to_string())?;

    let candidate_target = if let Some(url) = &args.url {
        Target::Url(url.clone())
    } else if args.demo {
        Target::Stack(Box::new(
            Config::from_toml(eval::DEMO_CONFIG).map_err(|e| format!("demo config: {e}"))?,
        ))
    } else {
        Target::Stack(Box::new(load(args.config.as_deref())?))
    };
    let mut plans = Vec::new();
    if let Some(path) = &args.baseline_config {
        plans.push(Plan {
            label: "baseline",
            model: args.model.clone(),
            target: Target::Stack(Box::new(load(Some(path))?)),
        });
    }
    if let (Some(base), Some(cand)) = (&args.baseline_model, &args.candidate_model) {
        let target = match &candidate_target {
            Target::Stack(config) => Target::Stack(config.clone()),
            Target::Url(url) => Target::Url(url.clone()),
        };
        plans.push(Plan {
            label: "baseline",
            model: Some(base.clone()),
            target,
        });
        plans.push(Plan {
            label: "candidate",
            model: Some(cand.clone()),
            target: candidate_target,
        });
    } else {
        plans.push(Plan {
            label: "candidate",
            model: args.model.clone(),
            target: candidate_target,
        });
    }

    let refusals = match &args.refusal_phrases {
        Some(path) => {
            let detector = RefusalDetector::from_lines(&read(path)?);
            if detector.phrases().is_empty() {
                return Err(format!("{}: no refusal phrases", path.display()));
            }
            detector
        }
        None => RefusalDetector::default(),
    };
    let options = RunOptions::new()
        .concurrency(args.concurrency)
        .case_timeout(Duration::from_secs(args.case_timeout_secs))
        .refusals(refusals);
    Ok((gold, gate, plans, options))
}

fn execute(
    args: &EvalArgs,
    gold: &GoldSet,
    gate: Gate,
    plans: Vec<Plan>,
    options: &RunOptions,
) -> Result<u8, String> {
    // Simulated stacks run in paused, virtual time (fast and deterministic); anything that
    // talks to a network runs in real time.
    let virtual_time = plans
        .iter()
        .all(|p| matches!(&p.target, Target::Stack(c) if eval::all_simulated(c)));
    let mut builder = if virtual_time {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.enable_time().start_paused(true);
        b
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.enable_all();
        b
    };
    let runtime = builder
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("SWITCHBOARD_API_KEY").ok());

    let mut runs: Vec<Run> = Vec::with_capacity(plans.len());
    for plan in plans {
        let service = match &plan.target {
            Target::Stack(config) => Switchboard::build(config)
                .map_err(|e| e.to_string())?
                .service(),
            Target::Url(url) => {
                eval::http_target(url, api_key.as_deref()).map_err(|e| e.to_string())?
            }
        };
        let mut options = options.clone().label(plan.label);
        if let Some(model) = &plan.model {
            options = options.model(model.clone());
        }
        let total = gold.cases.len();
        eprintln!(
            "eval: {} case(s) on the {}{} ({}, {} at a time)",
            total,
            plan.label,
            plan.model
                .as_ref()
                .map_or_else(String::new, |m| format!(" (model {m})")),
            match &plan.target {
                Target::Stack(_) if virtual_time => "in process, virtual time".to_owned(),
                Target::Stack(_) => "in process".to_owned(),
                Target::Url(url) => url.clone(),
            },
            args.concurrency.max(1),
        );
        if total >= 20 {
            let step = (total / 10).max(1);
            let label = plan.label;
            let last = Arc::new(AtomicUsize::new(0));
            options = options.progress(Arc::new(move |done, total| {
                if done == total || done >= last.load(Ordering::Relaxed) + step {
                    last.store(done, Ordering::Relaxed);
                    eprintln!("eval: {label} {done}/{total}");
                }
            }));
        }
        let run = runtime
            .block_on(eval::run(service, gold, &options))
            .map_err(|e| e.to_string())?;
        runs.push(run);
    }
    let candidate = runs.pop().ok_or("nothing to run")?;
    let baseline = runs.pop();
    let report = Report::new(gate, candidate, baseline);
    print!("{}", report.table());
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report.to_json())
            .map_err(|e| format!("cannot encode the report: {e}"))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("eval: report written to {}", path.display());
    }
    Ok(report.exit_code())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn load(path: Option<&Path>) -> Result<Config, String> {
    let path = path.unwrap_or(Path::new("switchboard.toml"));
    Config::from_toml(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
}
