//! Deferred requests: a [`JobQueue`] (in memory, or in Redis with the `redis` feature)
//! that [`BlockAction::Enqueue`](crate::BlockAction::Enqueue) puts blocked requests on,
//! and a [`JobWorker`] that drains it as budget allows.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_core::{
    ChatBody, ChatRequest, ChatResponse, Completion, Error, Scene, TenantId, Tier,
};
use tower::{Service, ServiceExt};

/// The boxed future of a queue operation.
pub type JobFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A queue operation that failed (the store could not be reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError(pub String);

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job queue: {}", self.0)
    }
}

impl std::error::Error for QueueError {}

/// A deferred request: its body and admission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// What to send.
    pub body: ChatBody,
    /// Its tier.
    pub tier: Tier,
    /// Its tenant.
    pub tenant: Option<TenantId>,
    /// Its scene.
    pub scene: Option<Scene>,
}

impl Job {
    /// The job for a request (body, tier, tenant, scene; other extensions are dropped).
    pub fn from_request(request: &ChatRequest) -> Self {
        let ext = request.extensions();
        Self {
            body: request.body().clone(),
            tier: ext.get::<Tier>().copied().unwrap_or(Tier::L1),
            tenant: ext.get::<TenantId>().cloned(),
            scene: ext.get::<Scene>().cloned(),
        }
    }

    /// The request to send for this job. It is marked as coming from the queue, so a
    /// budget layer that blocks it again rejects it (the worker then waits) instead of
    /// queueing it a second time.
    pub fn to_request(&self) -> ChatRequest {
        let mut request = ChatRequest::new(self.body.clone());
        let ext = request.extensions_mut();
        ext.insert(FromQueue);
        ext.insert(self.tier);
        if let Some(t) = &self.tenant {
            ext.insert(t.clone());
        }
        if let Some(s) = &self.scene {
            ext.insert(s.clone());
        }
        request
    }
}

/// Extension marking a request a worker took from the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FromQueue;

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for budget.
    Queued,
    /// A worker is running it.
    Running,
    /// Answered.
    Done {
        /// The answer.
        completion: Completion,
    },
    /// Failed for good.
    Failed {
        /// The error's reason code.
        reason: String,
        /// The error's message.
        message: String,
    },
}

/// A queue of deferred requests, shared by the layers that enqueue and the workers that
/// drain. Ids are unique per queue. Every operation returns a `'static` future so it can
/// be stored in a response future.
pub trait JobQueue: fmt::Debug + Send + Sync + 'static {
    /// Adds a job at the back; returns its id.
    fn submit(&self, job: Job) -> JobFuture<Result<String, QueueError>>;
    /// Takes the oldest queued job and marks it running.
    fn take(&self) -> JobFuture<Result<Option<(String, Job)>, QueueError>>;
    /// Puts a taken job back at the front, queued (its budget is not there yet).
    fn retry_later(&self, id: String, job: Job) -> JobFuture<Result<(), QueueError>>;
    /// Records a job's outcome.
    fn finish(
        &self,
        id: String,
        outcome: Result<Completion, Error>,
    ) -> JobFuture<Result<(), QueueError>>;
    /// A job's status; `None` for an unknown (or expired) id.
    fn status(&self, id: String) -> JobFuture<Result<Option<JobStatus>, QueueError>>;
}

pub(crate) fn outcome_status(outcome: Result<Completion, Error>) -> JobStatus {
    match outcome {
        Ok(completion) => JobStatus::Done { completion },
        Err(error) => JobStatus::Failed {
            reason: error.reason(),
            message: error.to_string(),
        },
    }
}

/// An in-process job queue. Finished jobs' results are kept until the queue is dropped.
#[derive(Debug, Clone, Default)]
pub struct MemoryJobQueue {
    inner: Arc<Mutex<Jobs>>,
}

#[derive(Debug, Default)]
struct Jobs {
    seq: u64,
    queue: VecDeque<String>,
    jobs: HashMap<String, (Job, JobStatus)>,
}

impl MemoryJobQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Jobs waiting.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }
}

impl JobQueue for MemoryJobQueue {
    fn submit(&self, job: Job) -> JobFuture<Result<String, QueueError>> {
        let mut jobs = self.lock();
        jobs.seq += 1;
        let id = format!("job_{}", jobs.seq);
        jobs.queue.push_back(id.clone());
        jobs.jobs.insert(id.clone(), (job, JobStatus::Queued));
        Box::pin(std::future::ready(Ok(id)))
    }

    fn take(&self) -> JobFuture<Result<Option<(String, Job)>, QueueError>> {
        let mut jobs = self.lock();
        let taken = jobs.queue.pop_front().and_then(|id| {
            let entry = jobs.jobs.get_mut(&id)?;
            entry.1 = JobStatus::Running;
            Some((id, entry.0.clone()))
        });
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn retry_later(&self, id: String, job: Job) -> JobFuture<Result<(), QueueError>> {
        let mut jobs = self.lock();
        jobs.queue.push_front(id.clone());
        jobs.jobs.insert(id, (job, JobStatus::Queued));
        Box::pin(std::future::ready(Ok(())))
    }

    fn finish(
        &self,
        id: String,
        outcome: Result<Completion, Error>,
    ) -> JobFuture<Result<(), QueueError>> {
        if let Some(entry) = self.lock().jobs.get_mut(&id) {
            entry.1 = outcome_status(outcome);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn status(&self, id: String) -> JobFuture<Result<Option<JobStatus>, QueueError>> {
        let status = self.lock().jobs.get(&id).map(|(_, s)| s.clone());
        Box::pin(std::future::ready(Ok(status)))
    }
}

/// What one [`JobWorker::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No job was waiting.
    Idle,
    /// A job ran; `Ok` if it was answered.
    Ran {
        /// The job.
        id: String,
        /// Whether it was answered (else it failed for good).
        answered: bool,
    },
    /// A job met a spent budget again and went back to the front of the queue; the
    /// worker waited for the window to reset.
    Deferred {
        /// The job.
        id: String,
        /// How long the worker waited.
        waited: Duration,
    },
}

/// Drains a [`JobQueue`] through a service (normally the budget-gated stack), as budget
/// allows: a job refused with `BudgetExceeded` goes back to the front of the queue and
/// the worker waits for the Retry-After (the window's reset) before trying again, so
/// jobs run in order, never past the cap.
#[derive(Debug)]
pub struct JobWorker<S> {
    queue: Arc<dyn JobQueue>,
    service: S,
    idle_poll: Duration,
}

impl<S> JobWorker<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    /// A worker taking jobs from `queue` and sending them to `service`. Polls an empty
    /// queue every second.
    pub fn new(queue: Arc<dyn JobQueue>, service: S) -> Self {
        Self {
            queue,
            service,
            idle_poll: Duration::from_secs(1),
        }
    }

    /// How often an empty queue is polled. Default: one second.
    pub fn idle_poll(mut self, every: Duration) -> Self {
        self.idle_poll = every;
        self
    }

    /// Takes one job and runs it (or defers it).
    pub async fn step(&mut self) -> Result<Step, QueueError> {
        let Some((id, job)) = self.queue.take().await? else {
            return Ok(Step::Idle);
        };
        let answer = match self.service.ready().await {
            Ok(service) => service.call(job.to_request()).await,
            Err(error) => Err(error),
        };
        let outcome = match answer {
            Ok(response) => response.collect().await,
            // Blocked by a window: wait for it to reset. (Without a Retry-After the
            // request can never fit, so it fails below.)
            Err(Error::BudgetExceeded {
                retry_after: Some(waited),
                ..
            }) => {
                self.queue.retry_later(id.clone(), job).await?;
                tokio::time::sleep(waited).await;
                return Ok(Step::Deferred { id, waited });
            }
            Err(error) => Err(error),
        };
        let answered = outcome.is_ok();
        self.queue.finish(id.clone(), outcome).await?;
        Ok(Step::Ran { id, answered })
    }

    /// Runs forever (spawn it): steps, and sleeps `idle_poll` when the queue is empty or
    /// unreachable.
    pub async fn run(mut self) {
        loop {
            match self.step().await {
                Ok(Step::Idle) => tokio::time::sleep(self.idle_poll).await,
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(%error, "job worker: queue unreachable");
                    tokio::time::sleep(self.idle_poll).await;
                }
            }
        }
    }
}
