//! [`RedisJobQueue`]: a job queue shared by gateway replicas and workers.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script};
use switchboard_core::{Completion, Error};

use crate::jobs::{Job, JobFuture, JobQueue, JobStatus, QueueError, outcome_status};

/// ARGV: prefix, job JSON, queued status JSON. Returns the new id.
static SUBMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = 'job_' .. redis.call('INCR', ARGV[1] .. ':jobs:seq')
redis.call('HSET', ARGV[1] .. ':job:' .. id, 'job', ARGV[2], 'status', ARGV[3])
redis.call('RPUSH', ARGV[1] .. ':jobs:queue', id)
return id
",
    )
});

/// ARGV: prefix, running status JSON. Returns {id, job JSON} or nil.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('LPOP', ARGV[1] .. ':jobs:queue')
if not id then return false end
local key = ARGV[1] .. ':job:' .. id
redis.call('HSET', key, 'status', ARGV[2])
return {id, redis.call('HGET', key, 'job')}
",
    )
});

/// ARGV: prefix, id, job JSON, queued status JSON.
static RETRY_LATER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HSET', ARGV[1] .. ':job:' .. ARGV[2], 'job', ARGV[3], 'status', ARGV[4])
redis.call('LPUSH', ARGV[1] .. ':jobs:queue', ARGV[2])
return 1
",
    )
});

/// ARGV: prefix, id, status JSON, TTL ms.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key = ARGV[1] .. ':job:' .. ARGV[2]
redis.call('HSET', key, 'status', ARGV[3])
redis.call('PEXPIRE', key, ARGV[4])
return 1
",
    )
});

/// A job queue in Redis: a list of ids (`{prefix}:jobs:queue`) and a hash per job
/// (`{prefix}:job:{id}`: the job and its status as JSON). Submit, take and retry are one
/// atomic script each, so with any number of replicas and workers each job is taken by
/// exactly one worker. A finished job's status and result expire after `result_ttl`
/// (default one day).
#[derive(Clone)]
pub struct RedisJobQueue {
    conn: MultiplexedConnection,
    prefix: Arc<str>,
    result_ttl: Duration,
}

impl std::fmt::Debug for RedisJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobQueue")
            .field("prefix", &self.prefix)
            .field("result_ttl", &self.result_ttl)
            .finish_non_exhaustive()
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("jobs and statuses serialize")
}

fn queue_error(e: impl std::fmt::Display) -> QueueError {
    QueueError(e.to_string())
}

impl RedisJobQueue {
    /// Connects to `url`; keys start with `switchboard`.
    pub async fn connect(url: &str) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self::from_connection(
            client.get_multiplexed_async_connection().await?,
        ))
    }

    /// A queue over an existing connection.
    pub fn from_connection(conn: MultiplexedConnection) -> Self {
        Self {
            conn,
            prefix: Arc::from("switchboard"),
            result_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// Sets the key prefix. Default: `switchboard`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// How long a finished job's result is kept. Default: one day.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }
}

impl JobQueue for RedisJobQueue {
    fn submit(&self, job: Job) -> JobFuture<Result<String, QueueError>> {
        let mut conn = self.conn.clone();
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let mut call = SUBMIT.prepare_invoke();
            call.arg(&*prefix)
                .arg(json(&job))
                .arg(json(&JobStatus::Queued));
            call.invoke_async(&mut conn).await.map_err(queue_error)
        })
    }

    fn take(&self) -> JobFuture<Result<Option<(String, Job)>, QueueError>> {
        let mut conn = self.conn.clone();
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let mut call = TAKE.prepare_invoke();
            call.arg(&*prefix).arg(json(&JobStatus::Running));
            let taken: Option<(String, String)> =
                call.invoke_async(&mut conn).await.map_err(queue_error)?;
            match taken {
                None => Ok(None),
                Some((id, job)) => Ok(Some((id, serde_json::from_str(&job).map_err(queue_error)?))),
            }
        })
    }

    fn retry_later(&self, id: String, job: Job) -> JobFuture<Result<(), QueueError>> {
        let mut conn = self.conn.clone();
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let mut call = RETRY_LATER.prepare_invoke();
            call.arg(&*prefix)
                .arg(id)
                .arg(json(&job))
                .arg(json(&JobStatus::Queued));
            call.invoke_async::<i64>(&mut conn)
                .await
                .map_err(queue_error)?;
            Ok(())
        })
    }

    fn finish(
        &self,
        id: String,
        outcome: Result<Completion, Error>,
    ) -> JobFuture<Result<(), QueueError>> {
        let mut conn = self.conn.clone();
        let prefix = self.prefix.clone();
        let ttl = u64::try_from(self.result_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Box::pin(async move {
            let mut call = FINISH.prepare_invoke();
            call.arg(&*prefix)
                .arg(id)
                .arg(json(&outcome_status(outcome)))
                .arg(ttl);
            call.invoke_async::<i64>(&mut conn)
                .await
                .map_err(queue_error)?;
            Ok(())
        })
    }

    fn status(&self, id: String) -> JobFuture<Result<Option<JobStatus>, QueueError>> {
        let mut conn = self.conn.clone();
        let key = format!("{}:job:{id}", self.prefix);
        Box::pin(async move {
            let status: Option<String> = redis::cmd("HGET")
                .arg(key)
                .arg("status")
                .query_async(&mut conn)
                .await
                .map_err(queue_error)?;
            status
                .map(|s| serde_json::from_str(&s).map_err(queue_error))
                .transpose()
        })
    }
}
