//! The Redis ledger against a real `redis-server`: several replicas, a thousand
//! concurrent reservations, zero overshoot (directly and through leased slices); and
//! the check-then-act gate it replaces.
//!
//! Each test starts its own `redis-server` on an ephemeral loopback port, or uses
//! `SWITCHBOARD_TEST_REDIS_URL`. Without either, the tests skip with a loud message,
//! except under `CI=true`, where a missing `redis-server` fails them.
#![cfg(feature = "redis")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_budget::{
    Account, BudgetLayer, Caps, Hold, LeasedLedger, Ledger, RedisLedger, Scope,
};
use switchboard_core::{ChatBody, ChatRequest, Cost, Message, ProviderId, TenantId, Tier};
use switchboard_sim::{Answer, SimConfig, SimProvider};
use tokio::sync::Barrier;
use tower::{Layer, Service, ServiceExt};

/// A `redis-server` this test started (killed on drop), or an external one.
struct TestRedis {
    url: String,
    child: Option<Child>,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn redis() -> Option<TestRedis> {
    if let Ok(url) = std::env::var("SWITCHBOARD_TEST_REDIS_URL") {
        return Some(TestRedis { url, child: None });
    }
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true: redis-server must be on PATH for the Redis ledger tests (apt-get install -y redis-server)"
            );
        }
        // Straight to stderr: the test harness captures `eprintln!` of passing tests,
        // and this must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!! SKIPPED: no redis-server on PATH and no SWITCHBOARD_TEST_REDIS_URL; the Redis ledger is NOT tested !!!!!\n"
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    // Wait for the server to say it is ready (no sleeping).
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("Ready to accept connections") => break,
            Some(Ok(_)) => continue,
            _ => panic!("redis-server on port {port} exited before it was ready"),
        }
    }
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Some(TestRedis {
        url: format!("redis://127.0.0.1:{port}"),
        child: Some(child),
    })
}

fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "sbtest:{test}:{}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn n(nanos: u64) -> Cost {
    Cost::from_nanos(nanos)
}

fn l1() -> Account {
    Account {
        tier: Tier::L1,
        tenant: Some(TenantId::new("acme").unwrap()),
    }
}

/// A long window so a test does not straddle a window boundary; per-window assertions
/// stay correct even if one does.
const WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

async fn replicas(server: &TestRedis, prefix: &str, caps: Caps, count: usize) -> Vec<RedisLedger> {
    let mut out = Vec::new();
    for _ in 0..count {
        let ledger = RedisLedger::connect(&server.url, caps.clone())
            .await
            .expect("connects");
        out.push(ledger.prefix(prefix).window(WINDOW));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_and_a_thousand_concurrent_reservations_never_overshoot() {
    let Some(server) = redis() else { return };
    let prefix = unique_prefix("overshoot");
    let amount = 1_000u64;
    let cap = 300 * amount;
    let caps = Caps::new().global(n(cap)).every_tenant(n(cap * 2));
    let ledgers = replicas(&server, &prefix, caps, 4).await;
    let barrier = Arc::new(Barrier::new(1_000));
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let ledger = ledgers[i % 4].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                ledger
                    .reserve(&l1(), n(amount))
                    .await
                    .ok()
                    .map(|hold| (i % 4, hold))
            })
        })
        .collect();
    let mut holds: Vec<(usize, Hold)> = Vec::new();
    for t in tasks {
        if let Some(h) = t.await.unwrap() {
            holds.push(h);
        }
    }
    let mut per_window = std::collections::HashMap::<u64, u64>::new();
    for (_, hold) in &holds {
        for s in hold.scopes() {
            assert!(
                s.spent <= s.cap,
                "{} at {:?} over its cap {:?}",
                s.scope,
                s.spent,
                s.cap
            );
        }
        *per_window.entry(hold.window()).or_default() += amount;
    }
    for (window, spent) in &per_window {
        assert!(
            *spent <= cap,
            "window {window}: {spent} reserved against a cap of {cap}"
        );
        assert_eq!(
            ledgers[0].spent(*window, &Scope::Global).await.unwrap(),
            n(*spent)
        );
    }
    if per_window.len() == 1 {
        assert_eq!(
            holds.len(),
            300,
            "exactly cap / amount admitted, zero overshoot"
        );
    }
    // Settle from whichever replica made the hold, concurrently.
    let committed: u64 = holds.len() as u64 * amount / 2;
    for (replica, hold) in holds {
        ledgers[replica].settle(hold, n(amount / 2));
    }
    for ledger in &ledgers {
        ledger.settled().await;
    }
    let books = ledgers[3].books().await.unwrap();
    assert_eq!(
        books.outstanding,
        Cost::ZERO,
        "nothing stays reserved at rest"
    );
    assert_eq!(books.open_holds, 0);
    assert_eq!(books.committed, n(committed), "committed = sum of actuals");
    for window in per_window.keys() {
        let spent = ledgers[1].spent(*window, &Scope::Global).await.unwrap();
        assert_eq!(
            spent,
            n(per_window[window] / 2),
            "each window keeps only the committed half"
        );
    }
}

/// The same load through four replicas that each lease slices of ten requests: zero
/// overshoot, early refusals bounded by slice × replicas, unused slices returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_leased_replicas_and_a_thousand_concurrent_reservations_never_overshoot() {
    let Some(server) = redis() else { return };
    let prefix = unique_prefix("leased");
    let amount = 1_000u64;
    let cap = 300 * amount;
    let slice = 10 * amount;
    let caps = Caps::new().global(n(cap)).every_tenant(n(cap * 2));
    let ledgers: Vec<LeasedLedger<RedisLedger>> = replicas(&server, &prefix, caps, 4)
        .await
        .into_iter()
        .map(|r| r.leased(n(slice)))
        .collect();
    let barrier = Arc::new(Barrier::new(1_000));
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let ledger = ledgers[i % 4].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                ledger
                    .reserve(&l1(), n(amount))
                    .await
                    .ok()
                    .map(|hold| (i % 4, hold))
            })
        })
        .collect();
    let mut holds: Vec<(usize, Hold)> = Vec::new();
    for t in tasks {
        if let Some(h) = t.await.unwrap() {
            holds.push(h);
        }
    }
    let mut per_window = std::collections::HashMap::<u64, u64>::new();
    for (_, hold) in &holds {
        *per_window.entry(hold.window()).or_default() += amount;
    }
    for (window, admitted) in &per_window {
        let spent = ledgers[0]
            .inner()
            .spent(*window, &Scope::Global)
            .await
            .unwrap();
        assert!(spent <= n(cap), "window {window}: {spent:?} against {cap}");
        assert!(
            *admitted <= spent.as_nanos(),
            "window {window}: {admitted} admitted beyond the {spent:?} reserved"
        );
    }
    if per_window.len() == 1 {
        let admitted = holds.len() as u64 * amount;
        assert!(
            admitted >= cap - 4 * slice,
            "early refusals bounded by slice × replicas: {admitted} of {cap}"
        );
    }
    let mut committed = 0;
    for (k, (replica, hold)) in holds.into_iter().enumerate() {
        let actual = (k as u64 * 13) % (amount + 1);
        committed += actual;
        ledgers[replica].settle(hold, n(actual));
    }
    for ledger in &ledgers {
        ledger.return_leases();
        assert_eq!(ledger.leases(), 0);
    }
    for ledger in &ledgers {
        ledger.inner().settled().await;
    }
    let books = ledgers[2].inner().books().await.unwrap();
    assert_eq!(books.outstanding, Cost::ZERO, "every slice came back");
    assert_eq!(books.open_holds, 0);
    assert_eq!(books.committed, n(committed), "committed = sum of actuals");
    let mut spent = 0;
    for window in per_window.keys() {
        spent += ledgers[1]
            .inner()
            .spent(*window, &Scope::Global)
            .await
            .unwrap()
            .as_nanos();
    }
    assert_eq!(spent, committed, "the windows keep only what was committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_slice_goes_back_at_the_end_of_its_window() {
    let Some(server) = redis() else { return };
    let prefix = unique_prefix("lease_window");
    let ledger = RedisLedger::connect(&server.url, Caps::new().global(n(1_000)))
        .await
        .unwrap()
        .prefix(&prefix)
        .window(Duration::from_secs(1))
        .leased(n(300));
    // Start at the beginning of a window, so both reservations fall in it.
    tokio::time::sleep(until_after(ledger.inner(), 0).await).await;
    let first = ledger.reserve(&l1(), n(100)).await.unwrap();
    let window = first.window();
    assert_eq!(
        ledger.inner().spent(window, &Scope::Global).await.unwrap(),
        n(300),
        "one slice reserved in Redis"
    );
    let second = ledger.reserve(&l1(), n(150)).await.unwrap();
    assert_eq!(second.window(), window, "served from the same slice");
    ledger.settle(first, n(40));
    ledger.settle(second, n(150));
    tokio::time::sleep(until_after(ledger.inner(), window).await).await;
    assert_eq!(ledger.leases(), 0, "the lease ended with its window");
    ledger.inner().settled().await;
    assert_eq!(
        ledger.inner().spent(window, &Scope::Global).await.unwrap(),
        n(190),
        "the unused 110 went back"
    );
    let next = ledger.reserve(&l1(), n(10)).await.unwrap();
    assert!(next.window() > window, "a fresh slice in a new window");
    ledger.settle(next, n(10));
    ledger.return_leases();
    ledger.inner().settled().await;
    let books = ledger.inner().books().await.unwrap();
    assert_eq!((books.outstanding, books.open_holds), (Cost::ZERO, 0));
    assert_eq!(books.committed, n(200));
}

/// Time until a window after `window` (and after the current one) has begun, plus a
/// margin for the lease's timer.
async fn until_after(ledger: &RedisLedger, window: u64) -> Duration {
    let probe = ledger.reserve(&l1(), Cost::ZERO).await.unwrap();
    let wait = if window > 0 && probe.window() > window {
        Duration::ZERO
    } else {
        probe.resets_in()
    };
    ledger.settle(probe, Cost::ZERO);
    wait + Duration::from_millis(50)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_then_act_gate_on_redis_overshoots_under_the_same_load() {
    let Some(server) = redis() else { return };
    let key = format!("{}:naive", unique_prefix("naive"));
    let amount = 1_000i64;
    let cap = 300 * amount;
    let client = redis::Client::open(server.url.as_str()).unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(client.get_multiplexed_async_connection().await.unwrap());
    }
    let barrier = Arc::new(Barrier::new(1_000));
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let mut conn = conns[i % 4].clone();
            let barrier = barrier.clone();
            let key = key.clone();
            tokio::spawn(async move {
                // Read the total...
                let spent: Option<i64> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                // ...every replica's request is in flight at this point...
                barrier.wait().await;
                // ...then act on the stale read.
                if spent.unwrap_or(0) + amount <= cap {
                    let _: i64 = redis::cmd("INCRBY")
                        .arg(&key)
                        .arg(amount)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    true
                } else {
                    false
                }
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += i64::from(t.await.unwrap());
    }
    let mut conn = conns[0].clone();
    let spent: i64 = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        spent > cap,
        "check-then-act spent {spent} against a cap of {cap}"
    );
    assert_eq!(admitted, 1_000, "every caller read the same stale total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_names_the_scope_and_the_windows_retry_after() {
    let Some(server) = redis() else { return };
    let prefix = unique_prefix("refusal");
    let caps = Caps::new().global(n(1_000_000)).every_tenant(n(500));
    let ledger = RedisLedger::connect(&server.url, caps)
        .await
        .unwrap()
        .prefix(&prefix);
    let hold = ledger.reserve(&l1(), n(400)).await.unwrap();
    assert!(hold.resets_in() <= Duration::from_secs(60));
    let refusal = ledger.reserve(&l1(), n(101)).await.unwrap_err();
    assert_eq!(refusal.scope, Scope::Tenant(TenantId::new("acme").unwrap()));
    assert_eq!((refusal.spent, refusal.cap), (n(400), n(500)));
    let retry = refusal.retry_after.unwrap();
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(60),
        "{retry:?}"
    );
    assert_eq!(refusal.into_error().reason(), "budget_exceeded");
    assert_eq!(
        ledger.spent(hold.window(), &Scope::Global).await.unwrap(),
        n(400),
        "the refused reservation took nothing"
    );
    // Window keys expire after two windows.
    let client = redis::Client::open(server.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:w:{}:global", hold.window()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 60_000 && ttl <= 120_000,
        "TTL {ttl} ms is two windows"
    );
    ledger.settle(hold, Cost::ZERO);
    ledger.settled().await;
    assert_eq!(ledger.books().await.unwrap().outstanding, Cost::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_layer_over_redis_commits_the_real_cost_at_the_end_of_the_stream() {
    let Some(server) = redis() else { return };
    let ledger = RedisLedger::connect(&server.url, Caps::new().global(n(1_000_000_000)))
        .await
        .unwrap()
        .prefix(unique_prefix("layer"));
    let sim = SimProvider::new(
        ProviderId::OPENAI,
        SimConfig::instant().answer(Answer::Words { count: 20 }),
    );
    let mut service = BudgetLayer::new(ledger.clone()).layer(sim);
    let request = ChatRequest::new(
        ChatBody::new("gpt-4o-mini", vec![Message::user("hello")]).max_tokens(100),
    );
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    assert!(
        response
            .extensions()
            .get::<switchboard_core::BudgetStatus>()
            .is_some()
    );
    let done = response.collect().await.unwrap();
    ledger.settled().await;
    let price = switchboard_budget::Estimator::default().price_of("gpt-4o-mini");
    let books = ledger.books().await.unwrap();
    assert_eq!(books.outstanding, Cost::ZERO);
    assert_eq!(
        books.committed,
        price.cost_of(&done.usage.unwrap()).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_closed() {
    let Some(mut server) = redis() else { return };
    if server.child.is_none() {
        eprintln!("skipping: cannot stop an external Redis");
        return;
    }
    let ledger = RedisLedger::connect(&server.url, Caps::new().global(n(1_000)))
        .await
        .unwrap();
    let mut child = server.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let refusal = ledger.reserve(&l1(), n(1)).await.unwrap_err();
    assert!(refusal.unavailable);
    let error = refusal.into_error();
    assert_eq!(
        error,
        switchboard_core::Error::BudgetExceeded {
            scope: "ledger_unavailable".into(),
            retry_after: Some(Duration::from_secs(1))
        }
    );
}

mod job_queue {
    use super::*;
    use std::collections::HashSet;
    use switchboard_budget::{
        BlockAction, Job, JobQueue, JobStatus, JobWorker, MemoryLedger, RedisJobQueue, Step,
    };
    use switchboard_core::JobTicket;

    fn job(text: &str) -> Job {
        let mut request = ChatRequest::new(ChatBody::new("gpt-4o-mini", vec![Message::user(text)]));
        request.extensions_mut().insert(Tier::L2);
        Job::from_request(&request)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_job_is_taken_by_exactly_one_worker_across_replicas() {
        let Some(server) = redis() else { return };
        let prefix = unique_prefix("jobs");
        let a = RedisJobQueue::connect(&server.url)
            .await
            .unwrap()
            .prefix(&prefix);
        let b = RedisJobQueue::connect(&server.url)
            .await
            .unwrap()
            .prefix(&prefix);
        let mut submitted = HashSet::new();
        for i in 0..100 {
            let queue = if i % 2 == 0 { &a } else { &b };
            submitted.insert(queue.submit(job(&format!("q{i}"))).await.unwrap());
        }
        assert_eq!(submitted.len(), 100, "ids are unique across replicas");
        let takers: Vec<_> = (0..4)
            .map(|w| {
                let queue = if w % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while let Some((id, _)) = queue.take().await.unwrap() {
                        mine.push(id);
                    }
                    mine
                })
            })
            .collect();
        let mut taken = Vec::new();
        for t in takers {
            taken.extend(t.await.unwrap());
        }
        assert_eq!(taken.len(), 100, "every job taken once");
        assert_eq!(taken.iter().cloned().collect::<HashSet<_>>(), submitted);
        let id = taken[0].clone();
        assert_eq!(
            b.status(id.clone()).await.unwrap(),
            Some(JobStatus::Running)
        );
        a.retry_later(id.clone(), job("again")).await.unwrap();
        assert_eq!(b.status(id.clone()).await.unwrap(), Some(JobStatus::Queued));
        let (again, back) = b.take().await.unwrap().unwrap();
        assert_eq!((again.as_str(), back.tier), (id.as_str(), Tier::L2));
        assert_eq!(b.status("job_0".into()).await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_queued_on_one_replica_is_answered_by_a_worker_on_another() {
        let Some(server) = redis() else { return };
        let prefix = unique_prefix("jobs_layer");
        let gateway_queue = Arc::new(
            RedisJobQueue::connect(&server.url)
                .await
                .unwrap()
                .prefix(&prefix),
        );
        let worker_queue = Arc::new(
            RedisJobQueue::connect(&server.url)
                .await
                .unwrap()
                .prefix(&prefix),
        );
        // The window is spent: the L2 request fits a later window, so it is queued.
        let cap: Cost = "0.01".parse().unwrap();
        let ledger = MemoryLedger::new(Caps::new().global(cap));
        let _filler = ledger.try_reserve(&l1(), cap).unwrap();
        let sim = SimProvider::new(
            ProviderId::OPENAI,
            SimConfig::instant().answer(Answer::Fixed {
                text: "later".into(),
            }),
        );
        let mut gateway = BudgetLayer::builder(ledger)
            .on_block(Tier::L2, BlockAction::Enqueue)
            .jobs(gateway_queue.clone())
            .build()
            .layer(sim.clone());
        let mut request = ChatRequest::new(
            ChatBody::new("gpt-4o-mini", vec![Message::user("nightly report")]).max_tokens(50),
        );
        request.extensions_mut().insert(Tier::L2);
        let response = gateway.ready().await.unwrap().call(request).await.unwrap();
        let ticket = response.extensions().get::<JobTicket>().cloned().unwrap();
        assert_eq!(
            gateway_queue.status(ticket.id.clone()).await.unwrap(),
            Some(JobStatus::Queued)
        );
        // The worker runs elsewhere, straight to the provider here.
        let mut worker = JobWorker::new(worker_queue, sim.clone());
        assert_eq!(
            worker.step().await.unwrap(),
            Step::Ran {
                id: ticket.id.clone(),
                answered: true
            }
        );
        match gateway_queue.status(ticket.id).await.unwrap() {
            Some(JobStatus::Done { completion }) => assert_eq!(completion.text, "later"),
            other => panic!("expected the job's result, got {other:?}"),
        }
        assert_eq!(sim.stats().calls(), 1);
    }
}

mod response_cache {
    use super::*;
    use switchboard_budget::{BlockAction, MemoryLedger, RedisResponseCache};
    use switchboard_core::Degraded;

    fn body(text: &str) -> ChatBody {
        ChatBody::new("gpt-4o-mini", vec![Message::user(text)]).max_tokens(50)
    }

    fn answer(text: &str) -> Vec<switchboard_core::ChatEvent> {
        vec![
            switchboard_core::ChatEvent::text(text),
            switchboard_core::ChatEvent::Finish(switchboard_core::FinishReason::Stop),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_stored_by_one_replica_answers_the_identical_request_on_another() {
        let Some(server) = redis() else { return };
        let prefix = unique_prefix("cache");
        let ttl = Duration::from_secs(300);
        let a = RedisResponseCache::connect(&server.url, ttl)
            .await
            .unwrap()
            .prefix(&prefix);
        let b = RedisResponseCache::connect(&server.url, ttl)
            .await
            .unwrap()
            .prefix(&prefix);
        assert!(b.get(&body("capital of France?")).await.is_none());
        assert!(a.insert(
            &body("capital of France?"),
            ProviderId::OPENAI,
            "gpt-4o-mini-2024-07-18".into(),
            answer("Paris.")
        ));
        a.flushed().await;
        let hit = b.get(&body("capital of France?")).await.expect("a hit");
        assert_eq!(hit.provider(), &ProviderId::OPENAI);
        assert_eq!(hit.collect().await.unwrap().text, "Paris.");
        let mut streaming = body("capital of France?");
        streaming.stream = true;
        assert!(
            b.get(&streaming).await.is_some(),
            "the stream flag is not part of the key"
        );
        assert!(
            b.get(&body("capital of Spain?")).await.is_none(),
            "exact match only"
        );
        assert!(
            b.get(&body("capital of France?").max_tokens(51))
                .await
                .is_none(),
            "every field is part of the key"
        );
        let client = redis::Client::open(server.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1);
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl_ms > 290_000 && ttl_ms <= 300_000, "TTL {ttl_ms} ms");
        // An entry under the right hash but for another key (a collision) is a miss.
        let stored: String = redis::cmd("GET")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .unwrap();
        let forged = stored.replace("capital of France?", "capital of Italy?");
        let _: () = redis::cmd("SET")
            .arg(&keys[0])
            .arg(forged)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(b.get(&body("capital of France?")).await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_expire_and_oversized_answers_are_not_stored() {
        let Some(server) = redis() else { return };
        let prefix = unique_prefix("cache_ttl");
        let cache = RedisResponseCache::connect(&server.url, Duration::from_millis(200))
            .await
            .unwrap()
            .prefix(&prefix)
            .max_entry_bytes(400);
        assert!(cache.insert(&body("short"), ProviderId::OPENAI, "m".into(), answer("ok")));
        assert!(
            !cache.insert(
                &body("long"),
                ProviderId::OPENAI,
                "m".into(),
                answer(&"x".repeat(500))
            ),
            "over the entry size bound"
        );
        cache.flushed().await;
        assert!(cache.get(&body("short")).await.is_some());
        assert!(cache.get(&body("long")).await.is_none());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(cache.get(&body("short")).await.is_none(), "expired");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocked_request_on_one_replica_is_answered_from_what_another_stored() {
        let Some(server) = redis() else { return };
        let prefix = unique_prefix("cache_layer");
        let ttl = Duration::from_secs(60);
        let stored_by = RedisResponseCache::connect(&server.url, ttl)
            .await
            .unwrap()
            .prefix(&prefix);
        let answered_by = RedisResponseCache::connect(&server.url, ttl)
            .await
            .unwrap()
            .prefix(&prefix);
        let sim = SimProvider::new(
            ProviderId::OPENAI,
            SimConfig::instant().answer(Answer::Fixed {
                text: "Paris is the capital.".into(),
            }),
        );
        let request = || {
            let mut r = ChatRequest::new(body("capital of France?"));
            r.extensions_mut().insert(Tier::L2);
            r
        };
        // Replica A has budget: it answers and stores.
        let mut a = BudgetLayer::builder(MemoryLedger::new(Caps::new().global(n(1_000_000_000))))
            .on_block(Tier::L2, BlockAction::Cache)
            .cache(stored_by.clone())
            .build()
            .layer(sim.clone());
        let first = a.ready().await.unwrap().call(request()).await.unwrap();
        assert_eq!(first.collect().await.unwrap().text, "Paris is the capital.");
        stored_by.flushed().await;
        // Replica B has none: the blocked request is answered from the shared cache.
        let mut b = BudgetLayer::builder(MemoryLedger::new(Caps::new().global(n(1))))
            .on_block(Tier::L2, BlockAction::Cache)
            .cache(answered_by)
            .build()
            .layer(sim.clone());
        let cached = b.ready().await.unwrap().call(request()).await.unwrap();
        let degraded = cached.extensions().get::<Degraded>().cloned().unwrap();
        assert!(
            degraded
                .iter()
                .any(|s| s.reason == switchboard_budget::CACHED_ANSWER),
            "{degraded:?}"
        );
        assert_eq!(
            cached.collect().await.unwrap().text,
            "Paris is the capital."
        );
        assert_eq!(sim.stats().calls(), 1, "the provider was called once");
        // A request not in the cache is refused with the budget error.
        let mut other = ChatRequest::new(body("capital of Spain?"));
        other.extensions_mut().insert(Tier::L2);
        let refused = b.ready().await.unwrap().call(other).await.unwrap_err();
        assert_eq!(refused.reason(), "budget_exceeded");
    }
}
