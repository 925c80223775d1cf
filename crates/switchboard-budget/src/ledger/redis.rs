//! [`RedisLedger`]: one ledger shared by every gateway replica.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script};
use switchboard_core::Cost;
use tokio::sync::Notify;

use super::{Account, Books, Caps, Hold, LeasedLedger, Ledger, Refusal, Scope, ScopeSpend};

/// Checks every scope and reserves in all of them, or in none, in one atomic script.
/// The window comes from the server's clock, so replicas agree on it.
/// ARGV: prefix, window ms, amount, n, then n × (scope, cap).
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local len = tonumber(ARGV[2])
local w = math.floor(now / len)
local resets = len - (now % len)
local amount = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local keys = {}
for i = 1, n do
  local key = ARGV[1] .. ':w:' .. w .. ':' .. ARGV[3 + 2 * i]
  local cap = tonumber(ARGV[4 + 2 * i])
  local spent = tonumber(redis.call('GET', key) or '0')
  if amount > cap or spent + amount > cap then
    return {0, i, spent, resets, w}
  end
  keys[i] = key
end
local out = {1, w, resets}
for i = 1, n do
  out[#out + 1] = redis.call('INCRBY', keys[i], amount)
  redis.call('PEXPIRE', keys[i], len * 2)
end
redis.call('INCRBY', ARGV[1] .. ':outstanding', amount)
redis.call('INCR', ARGV[1] .. ':holds')
return out
",
    )
});

/// Settles (or shrinks) a hold: moves each scope's window spend by `delta` (never below
/// zero; skipped once the window's key has expired) and updates the books.
/// ARGV: prefix, window, delta, outstanding change, committed change, overrun change,
/// holds change, n, then n scopes.
static ADJUST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(ARGV[8])
local delta = tonumber(ARGV[3])
for i = 1, n do
  local key = ARGV[1] .. ':w:' .. ARGV[2] .. ':' .. ARGV[8 + i]
  if delta ~= 0 and redis.call('EXISTS', key) == 1 then
    if redis.call('INCRBY', key, delta) < 0 then
      redis.call('SET', key, 0, 'KEEPTTL')
    end
  end
end
redis.call('INCRBY', ARGV[1] .. ':outstanding', ARGV[4])
redis.call('INCRBY', ARGV[1] .. ':committed', ARGV[5])
redis.call('INCRBY', ARGV[1] .. ':overrun', ARGV[6])
redis.call('INCRBY', ARGV[1] .. ':holds', ARGV[7])
return 1
",
    )
});

/// A ledger in Redis, correct across any number of gateway replicas.
///
/// - **One round trip per operation**: reserve is one Lua script that checks the cap of
///   every scope and reserves in all or none (Redis runs scripts atomically); settle and
///   shrink are one script each.
/// - **Fixed windows by the server's clock** (`TIME` inside the script), so replicas with
///   skewed clocks still agree on the window. Window keys
///   (`{prefix}:w:{window}:{scope}`) expire after two windows.
/// - **Settlement in the background**: [`Ledger::settle`] is synchronous (a drop guard
///   calls it), so it spawns the script on the current tokio runtime;
///   [`settled`](RedisLedger::settled) waits for those in flight.
/// - **Fails closed**: if Redis cannot be reached, a reservation is refused with scope
///   `ledger_unavailable` and a one-second Retry-After.
///
/// The script builds its keys from the prefix, so on Redis Cluster give the prefix a hash
/// tag (`{switchboard}`) to keep every key on one slot.
#[derive(Clone)]
pub struct RedisLedger {
    conn: MultiplexedConnection,
    caps: Arc<Caps>,
    prefix: Arc<str>,
    window: Duration,
    pending: Arc<Pending>,
}

#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

impl std::fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger")
            .field("prefix", &self.prefix)
            .field("window", &self.window)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl RedisLedger {
    /// Connects to `url` (`redis://127.0.0.1:6379`). Keys start with `switchboard`;
    /// windows are one minute.
    pub async fn connect(url: &str, caps: Caps) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Self::from_connection(conn, caps))
    }

    /// A ledger over an existing connection.
    pub fn from_connection(conn: MultiplexedConnection, caps: Caps) -> Self {
        Self {
            conn,
            caps: Arc::new(caps),
            prefix: Arc::from("switchboard"),
            window: Duration::from_secs(60),
            pending: Arc::default(),
        }
    }

    /// Sets the key prefix (one ledger per prefix). Default: `switchboard`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// Sets the window length (whole milliseconds, at least one). Default: one minute.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window.max(Duration::from_millis(1));
        self
    }

    /// The caps.
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// This ledger behind a local lease of budget slices of `slice`: most reservations
    /// are then served in process, one round trip per slice (see [`LeasedLedger`] for
    /// the trade-off).
    pub fn leased(self, slice: Cost) -> LeasedLedger<Self> {
        LeasedLedger::new(self, slice)
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }

    /// The running totals, as every replica sees them.
    pub async fn books(&self) -> RedisResult<Books> {
        let mut conn = self.conn.clone();
        let p = &self.prefix;
        let (outstanding, committed, overrun, holds): (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        ) = redis::cmd("MGET")
            .arg(format!("{p}:outstanding"))
            .arg(format!("{p}:committed"))
            .arg(format!("{p}:overrun"))
            .arg(format!("{p}:holds"))
            .query_async(&mut conn)
            .await?;
        let cost = |v: Option<i64>| Cost::from_nanos(u64::try_from(v.unwrap_or(0)).unwrap_or(0));
        Ok(Books {
            outstanding: cost(outstanding),
            committed: cost(committed),
            overrun: cost(overrun),
            open_holds: u64::try_from(holds.unwrap_or(0)).unwrap_or(0),
        })
    }

    /// A scope's spend in window number `window`.
    pub async fn spent(&self, window: u64, scope: &Scope) -> RedisResult<Cost> {
        let mut conn = self.conn.clone();
        let v: Option<i64> = redis::cmd("GET")
            .arg(format!("{}:w:{window}:{scope}", self.prefix))
            .query_async(&mut conn)
            .await?;
        Ok(Cost::from_nanos(u64::try_from(v.unwrap_or(0)).unwrap_or(0)))
    }

    /// Waits until every settlement started by this ledger (and its clones) has reached
    /// Redis.
    pub async fn settled(&self) {
        loop {
            let idle = self.pending.idle.notified();
            if self.pending.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    async fn try_reserve(self, account: Account, amount: Cost) -> Result<Hold, Refusal> {
        let scopes = self.caps.scopes(&account);
        let mut invocation = RESERVE.prepare_invoke();
        invocation
            .arg(&*self.prefix)
            .arg(self.window_ms())
            .arg(amount.as_nanos())
            .arg(scopes.len());
        for (scope, cap) in &scopes {
            invocation.arg(scope.to_string()).arg(cap.as_nanos());
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = match invocation.invoke_async(&mut conn).await {
            Ok(reply) => reply,
            Err(error) => {
                tracing::error!(%error, "redis ledger unavailable: refusing (fail closed)");
                return Err(Refusal::unavailable());
            }
        };
        let int = |i: usize| u64::try_from(reply.get(i).copied().unwrap_or(0)).unwrap_or(0);
        if reply.first() == Some(&0) {
            let (scope, cap) = scopes[(int(1) as usize).saturating_sub(1)].clone();
            let fits_alone = amount <= cap;
            return Err(Refusal {
                scope,
                spent: Cost::from_nanos(int(2)),
                cap,
                retry_after: fits_alone.then(|| Duration::from_millis(int(3))),
                unavailable: false,
            });
        }
        let spends = scopes
            .into_iter()
            .enumerate()
            .map(|(i, (scope, cap))| ScopeSpend {
                scope,
                spent: Cost::from_nanos(int(3 + i)),
                cap,
            })
            .collect();
        Ok(Hold {
            window: int(1),
            amount,
            scopes: spends,
            resets_in: Duration::from_millis(int(2)),
            lease: None,
        })
    }

    /// Runs an adjustment in the background.
    fn adjust(
        &self,
        hold: &Hold,
        delta: i64,
        outstanding: i64,
        committed: i64,
        overrun: i64,
        holds: i64,
    ) {
        let mut invocation = ADJUST.prepare_invoke();
        invocation
            .arg(&*self.prefix)
            .arg(hold.window)
            .arg(delta)
            .arg(outstanding)
            .arg(committed)
            .arg(overrun)
            .arg(holds)
            .arg(hold.scopes.len());
        for s in &hold.scopes {
            invocation.arg(s.scope.to_string());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("redis ledger: settlement outside a tokio runtime is lost");
            return;
        };
        let mut conn = self.conn.clone();
        let pending = self.pending.clone();
        pending.count.fetch_add(1, Ordering::AcqRel);
        runtime.spawn(async move {
            if let Err(error) = invocation.invoke_async::<i64>(&mut conn).await {
                tracing::error!(%error, "redis ledger: settlement failed; the window key expires with its window");
            }
            if pending.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                pending.idle.notify_waiters();
            }
        });
    }
}

fn signed(cost: Cost) -> i64 {
    i64::try_from(cost.as_nanos()).unwrap_or(i64::MAX)
}

impl Ledger for RedisLedger {
    type Reserve = Pin<Box<dyn Future<Output = Result<Hold, Refusal>> + Send>>;

    fn reserve(&self, account: &Account, amount: Cost) -> Self::Reserve {
        Box::pin(self.clone().try_reserve(account.clone(), amount))
    }

    fn shrink(&self, hold: &mut Hold, to: Cost) {
        let Some(freed) = hold.amount.checked_sub(to).filter(|f| !f.is_zero()) else {
            return;
        };
        self.adjust(hold, -signed(freed), -signed(freed), 0, 0, 0);
        for s in &mut hold.scopes {
            s.spent = s.spent.saturating_sub(freed);
        }
        hold.amount = to;
    }

    fn settle(&self, hold: Hold, actual: Cost) {
        let held = signed(hold.amount);
        let actual = signed(actual);
        self.adjust(
            &hold,
            actual - held,
            -held,
            actual,
            (actual - held).max(0),
            -1,
        );
    }
}
