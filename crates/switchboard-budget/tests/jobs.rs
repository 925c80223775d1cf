//! Blocked requests queued as jobs, drained by a worker as budget allows.

use std::sync::Arc;
use std::time::Duration;

use switchboard_budget::{
    Account, BlockAction, BudgetLayer, Caps, Job, JobQueue, JobStatus, JobWorker, Ledger,
    MemoryJobQueue, MemoryLedger, Scope, Step,
};
use switchboard_core::{
    ChatBody, ChatRequest, Cost, Degraded, JobTicket, Message, ProviderId, Tier,
};
use switchboard_sim::{Answer, ErrorFault, Faults, SimConfig, SimProvider};
use tower::{Layer, Service, ServiceExt};

fn usd(s: &str) -> Cost {
    s.parse().unwrap()
}

fn request(text: &str, tier: Tier) -> ChatRequest {
    let mut r =
        ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user(text)]).max_tokens(100));
    r.extensions_mut().insert(tier);
    r
}

#[tokio::test(start_paused = true)]
async fn a_blocked_request_is_queued_and_the_worker_runs_it_when_the_window_resets() {
    let ledger = MemoryLedger::new(Caps::new().global(usd("0.01")));
    let queue = Arc::new(MemoryJobQueue::new());
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().answer(Answer::Fixed {
            text: "done later".into(),
        }),
    );
    let layer = BudgetLayer::builder(ledger.clone())
        .on_block(Tier::L2, BlockAction::Enqueue)
        .jobs(queue.clone())
        .build();
    let mut service = layer.layer(sim.clone());
    // The window is spent.
    let filler = ledger
        .try_reserve(
            &Account {
                tier: Tier::L1,
                tenant: None,
            },
            usd("0.01"),
        )
        .unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;

    let response = service
        .ready()
        .await
        .unwrap()
        .call(request("batch summary please", Tier::L2))
        .await
        .unwrap();
    let ticket = response.extensions().get::<JobTicket>().cloned().unwrap();
    assert_eq!(ticket.id, "job_1");
    let degraded = response.extensions().get::<Degraded>().unwrap();
    assert_eq!(degraded.first_reason(), Some("budget_enqueued"));
    assert_eq!(response.provider(), &"switchboard");
    let queued_answer = response.collect().await.unwrap();
    assert_eq!(queued_answer.text, "", "nothing is answered now");
    assert_eq!(sim.stats().calls(), 0);
    assert_eq!(
        queue.status(ticket.id.clone()).await.unwrap(),
        Some(JobStatus::Queued)
    );

    // The worker finds the window still spent: the job goes back and it waits 50 s.
    let mut worker = JobWorker::new(queue.clone(), layer.layer(sim.clone()));
    let step = worker.step().await.unwrap();
    assert_eq!(
        step,
        Step::Deferred {
            id: "job_1".into(),
            waited: Duration::from_secs(50)
        }
    );
    assert_eq!(
        queue.status("job_1".into()).await.unwrap(),
        Some(JobStatus::Queued)
    );
    ledger.settle(filler, usd("0.01"));

    // New window: it runs, and its result is retrievable.
    let step = worker.step().await.unwrap();
    assert_eq!(
        step,
        Step::Ran {
            id: "job_1".into(),
            answered: true
        }
    );
    match queue.status("job_1".into()).await.unwrap() {
        Some(JobStatus::Done { completion }) => assert_eq!(completion.text, "done later"),
        other => panic!("expected a finished job, got {other:?}"),
    }
    assert_eq!(sim.stats().calls(), 1);
    assert!(ledger.spent(&Scope::Global) > Cost::ZERO);
    assert_eq!(worker.step().await.unwrap(), Step::Idle);
    assert_eq!(
        queue.queued(),
        0,
        "the worker's blocked retry was not queued a second time"
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_that_fails_upstream_records_the_reason() {
    let queue = Arc::new(MemoryJobQueue::new());
    let faults = Faults {
        errors: vec![ErrorFault {
            status: 404,
            probability: 1.0,
            after: Duration::ZERO,
            retry_after_secs: None,
        }],
        ..Faults::default()
    };
    let sim = SimProvider::new(ProviderId::OPENAI, SimConfig::instant().faults(faults));
    let id = queue
        .submit(Job::from_request(&request("hi", Tier::L2)))
        .await
        .unwrap();
    let mut worker = JobWorker::new(queue.clone(), sim);
    assert_eq!(
        worker.step().await.unwrap(),
        Step::Ran {
            id: id.clone(),
            answered: false
        }
    );
    match queue.status(id).await.unwrap() {
        Some(JobStatus::Failed { reason, .. }) => assert_eq!(reason, "openai_upstream_not_found"),
        other => panic!("expected a failed job, got {other:?}"),
    }
    assert_eq!(queue.status("job_999".into()).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_job_that_can_never_fit_fails_instead_of_waiting_forever() {
    let ledger = MemoryLedger::new(Caps::new().global(Cost::from_nanos(10)));
    let queue = Arc::new(MemoryJobQueue::new());
    let sim = SimProvider::new(ProviderId::OPENAI, SimConfig::instant());
    let service = BudgetLayer::new(ledger).layer(sim.clone());
    let id = queue
        .submit(Job::from_request(&request("hi", Tier::L1)))
        .await
        .unwrap();
    let mut worker = JobWorker::new(queue.clone(), service);
    assert_eq!(
        worker.step().await.unwrap(),
        Step::Ran {
            id: id.clone(),
            answered: false
        }
    );
    assert!(matches!(
        queue.status(id).await.unwrap(),
        Some(JobStatus::Failed { reason, .. }) if reason == "budget_exceeded"
    ));
    assert_eq!(sim.stats().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn jobs_run_in_order_and_keep_their_admission() {
    let queue = MemoryJobQueue::new();
    let mut first = request("one", Tier::L0);
    first
        .extensions_mut()
        .insert(switchboard_core::TenantId::new("acme").unwrap());
    let a = queue.submit(Job::from_request(&first)).await.unwrap();
    let b = queue
        .submit(Job::from_request(&request("two", Tier::L2)))
        .await
        .unwrap();
    let (id, job) = queue.take().await.unwrap().unwrap();
    assert_eq!(id, a);
    let rebuilt = job.to_request();
    assert_eq!(rebuilt.extensions().get::<Tier>(), Some(&Tier::L0));
    assert_eq!(
        rebuilt
            .extensions()
            .get::<switchboard_core::TenantId>()
            .unwrap(),
        &"acme"
    );
    assert_eq!(
        queue.status(a.clone()).await.unwrap(),
        Some(JobStatus::Running)
    );
    queue.retry_later(a.clone(), job).await.unwrap();
    assert_eq!(
        queue.take().await.unwrap().unwrap().0,
        a,
        "a retried job keeps its place"
    );
    assert_eq!(queue.take().await.unwrap().unwrap().0, b);
    assert!(queue.take().await.unwrap().is_none());
}

/// A request whose cost bound exceeds the whole window's cap can never run: it is refused
/// at once (no Retry-After), not queued to fail later.
#[tokio::test(start_paused = true)]
async fn a_request_larger_than_the_cap_is_refused_not_queued() {
    // 100 output tokens of gpt-4o-mini cost more than a 1 µ$ cap in any window.
    let ledger = MemoryLedger::new(Caps::new().global(usd("0.000001")));
    let queue = Arc::new(MemoryJobQueue::new());
    let sim = SimProvider::new(ProviderId::OPENAI, SimConfig::instant());
    let layer = BudgetLayer::builder(ledger.clone())
        .on_block(Tier::L2, BlockAction::Enqueue)
        .jobs(queue.clone())
        .build();
    let mut service = layer.layer(sim.clone());
    let error = service
        .ready()
        .await
        .unwrap()
        .call(request("batch summary please", Tier::L2))
        .await
        .expect_err("no window can hold it");
    match &error {
        switchboard_core::Error::BudgetExceeded { scope, retry_after } => {
            assert_eq!(scope, "global");
            assert_eq!(*retry_after, None, "waiting would not help");
        }
        other => panic!("expected budget_exceeded, got {other:?}"),
    }
    assert_eq!(queue.queued(), 0, "nothing was queued");
    assert_eq!(sim.stats().calls(), 0);
}
