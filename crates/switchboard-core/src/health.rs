//! The [`HealthBoard`]: shared, cheap-to-read health of every provider.
//!
//! The breaker layer writes it (state, outcomes, first-token latency, in-flight calls);
//! hedging and routing read it. It lives in core so no layer crate depends on another.

use hashbrown::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::Waker;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::ProviderId;

/// A circuit breaker's state as published on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// A limited number of probe calls decide between closed and open.
    HalfOpen,
    /// Held open by an operator ([`ProviderHealth::force_open`]).
    ForcedOpen,
    /// Held closed by an operator ([`ProviderHealth::force_closed`]).
    ForcedClosed,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`, `forced_open`, `forced_closed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::ForcedClosed => "forced_closed",
        }
    }

    /// Whether the breaker refuses ordinary calls (open or forced open): a router or a
    /// hedge skips such a provider.
    pub const fn is_open(self) -> bool {
        matches!(self, BreakerState::Open | BreakerState::ForcedOpen)
    }

    const fn to_u8(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
            BreakerState::ForcedOpen => 3,
            BreakerState::ForcedClosed => 4,
        }
    }

    const fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            3 => BreakerState::ForcedOpen,
            4 => BreakerState::ForcedClosed,
            _ => BreakerState::Closed,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's override of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forced {
    /// Refuse every call.
    Open,
    /// Admit every call and never trip.
    Closed,
}

/// Shared per-provider health: cheap to clone (an `Arc`), reads are atomics or one short
/// lock. Statistics cover a rotating window (default 60 s in 6 slices of 10 s); time is
/// `tokio::time`, so paused-time tests control it.
///
/// ```
/// use std::time::Duration;
/// use switchboard_core::{BreakerState, HealthBoard, ProviderId};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let board = HealthBoard::new();
/// let openai = board.provider(&ProviderId::OPENAI);
/// for ms in [100, 200, 300, 400] {
///     openai.record_success(Duration::from_millis(ms));
/// }
/// openai.record_failure(true);
/// let snap = board.snapshot(&ProviderId::OPENAI).unwrap();
/// assert_eq!(snap.calls, 5);
/// assert_eq!(snap.timeouts, 1);
/// assert!(snap.first_token.p50.unwrap() >= Duration::from_millis(200));
/// assert_eq!(board.state(&ProviderId::ANTHROPIC), BreakerState::Closed); // unknown: closed
/// # }
/// ```
#[derive(Clone)]
pub struct HealthBoard {
    inner: Arc<BoardInner>,
}

struct BoardInner {
    window: Duration,
    slices: u32,
    providers: RwLock<HashMap<ProviderId, ProviderHealth>>,
    /// How many entries are not plainly closed (open, half-open or forced): while none is,
    /// [`HealthBoard::state`] answers without the map's lock. Shared with the entries,
    /// which keep it.
    unsettled: Arc<AtomicUsize>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthBoard {
    /// A board with a 60 s window in 6 slices.
    pub fn new() -> Self {
        Self::with_window(Duration::from_secs(60), 6)
    }

    /// A board whose statistics cover `window`, rotated in `slices` steps (at least 1;
    /// a zero window is taken as 1 ms).
    pub fn with_window(window: Duration, slices: u32) -> Self {
        Self {
            inner: Arc::new(BoardInner {
                window: window.max(Duration::from_millis(1)),
                slices: slices.max(1),
                providers: RwLock::new(HashMap::new()),
                unsettled: Arc::default(),
            }),
        }
    }

    /// The provider's entry, created on first use.
    pub fn provider(&self, id: &ProviderId) -> ProviderHealth {
        if let Some(h) = self.get(id) {
            return h;
        }
        let mut map = self
            .inner
            .providers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(id.clone())
            .or_insert_with(|| {
                ProviderHealth::new(
                    id.clone(),
                    self.inner.window,
                    self.inner.slices,
                    self.inner.unsettled.clone(),
                )
            })
            .clone()
    }

    /// The provider's entry, if anything was ever recorded or forced for it.
    pub fn get(&self, id: &ProviderId) -> Option<ProviderHealth> {
        self.inner
            .providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// The provider's breaker state; `Closed` for a provider the board has not seen.
    pub fn state(&self, id: &ProviderId) -> BreakerState {
        // The common case, every breaker closed and nothing forced: one load, no lock.
        if self.inner.unsettled.load(Ordering::Acquire) == 0 {
            return BreakerState::Closed;
        }
        // Read through the lock: no reference count on the provider's health.
        self.inner
            .providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map_or(BreakerState::Closed, ProviderHealth::state)
    }

    /// A snapshot of one provider.
    pub fn snapshot(&self, id: &ProviderId) -> Option<HealthSnapshot> {
        self.get(id).map(|h| h.snapshot())
    }

    /// Snapshots of every provider, sorted by name.
    pub fn snapshots(&self) -> Vec<HealthSnapshot> {
        let providers: Vec<ProviderHealth> = self
            .inner
            .providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut snaps: Vec<_> = providers.iter().map(ProviderHealth::snapshot).collect();
        snaps.sort_by(|a, b| a.provider.as_str().cmp(b.provider.as_str()));
        snaps
    }
}

impl fmt::Debug for HealthBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthBoard")
            .field("window", &self.inner.window)
            .field("providers", &self.snapshots())
            .finish()
    }
}

/// One provider's entry on a [`HealthBoard`]. Clones share it.
///
/// Writers: the breaker ([`set_state`](Self::set_state), `record_*`,
/// [`call_started`](Self::call_started)). Operators: [`force_open`](Self::force_open),
/// [`force_closed`](Self::force_closed), [`clear_force`](Self::clear_force),
/// [`reset`](Self::reset); a breaker watching this entry obeys them on its next call.
#[derive(Clone)]
pub struct ProviderHealth {
    inner: Arc<HealthCell>,
}

struct HealthCell {
    id: ProviderId,
    state: AtomicU8,
    /// Nanoseconds from `epoch` to the end of the open period, while open.
    open_until: AtomicU64,
    forced: AtomicU8,
    resets: AtomicU64,
    in_flight: AtomicU64,
    epoch: Instant,
    slice_len: Duration,
    window: Mutex<Window>,
    watchers: Mutex<Vec<Waker>>,
    /// Whether this entry counts in its board's `unsettled`: changed only under this lock,
    /// after the state or override it follows was stored.
    counted: Mutex<bool>,
    unsettled: Arc<AtomicUsize>,
}

const NOT_FORCED: u8 = 0;
const FORCED_OPEN: u8 = 1;
const FORCED_CLOSED: u8 = 2;

impl ProviderHealth {
    fn new(id: ProviderId, window: Duration, slices: u32, unsettled: Arc<AtomicUsize>) -> Self {
        let slice_len = (window / slices).max(Duration::from_millis(1));
        Self {
            inner: Arc::new(HealthCell {
                id,
                state: AtomicU8::new(BreakerState::Closed.to_u8()),
                open_until: AtomicU64::new(0),
                forced: AtomicU8::new(NOT_FORCED),
                resets: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                epoch: Instant::now(),
                slice_len,
                window: Mutex::new(Window::new(slices as usize)),
                watchers: Mutex::new(Vec::new()),
                counted: Mutex::new(false),
                unsettled,
            }),
        }
    }

    /// Brings the board's count of unsettled entries up to date after a change of state
    /// or override. Under the entry's lock, the last recount of concurrent changes sees
    /// all of them, so the count ends right.
    fn recount(&self) {
        let cell = &*self.inner;
        let mut counted = cell.counted.lock().unwrap_or_else(PoisonError::into_inner);
        let unsettled = cell.forced.load(Ordering::Acquire) != NOT_FORCED
            || cell.state.load(Ordering::Acquire) != BreakerState::Closed.to_u8();
        if unsettled != *counted {
            *counted = unsettled;
            if unsettled {
                cell.unsettled.fetch_add(1, Ordering::AcqRel);
            } else {
                cell.unsettled.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// The provider.
    pub fn id(&self) -> &ProviderId {
        &self.inner.id
    }

    /// The breaker state, operator overrides first. An open breaker whose open period is
    /// over reads as half-open (it admits probes), even before any call arrived.
    pub fn state(&self) -> BreakerState {
        match self.inner.forced.load(Ordering::Acquire) {
            FORCED_OPEN => BreakerState::ForcedOpen,
            FORCED_CLOSED => BreakerState::ForcedClosed,
            _ => match BreakerState::from_u8(self.inner.state.load(Ordering::Acquire)) {
                BreakerState::Open if self.retry_after() == Some(Duration::ZERO) => {
                    BreakerState::HalfOpen
                }
                state => state,
            },
        }
    }

    /// Publishes the breaker's own state (closed or half-open; use
    /// [`set_open`](Self::set_open) for open). Written by the breaker.
    pub fn set_state(&self, state: BreakerState) {
        self.inner.state.store(state.to_u8(), Ordering::Release);
        self.recount();
    }

    /// Publishes that the breaker is open until `until`. Written by the breaker.
    pub fn set_open(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.inner.epoch).as_nanos();
        self.inner
            .open_until
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
        self.inner
            .state
            .store(BreakerState::Open.to_u8(), Ordering::Release);
        self.recount();
    }

    /// While the breaker is open: the time left of its open period (zero once over).
    pub fn retry_after(&self) -> Option<Duration> {
        if BreakerState::from_u8(self.inner.state.load(Ordering::Acquire)) != BreakerState::Open {
            return None;
        }
        let until = Duration::from_nanos(self.inner.open_until.load(Ordering::Acquire));
        Some(until.saturating_sub(self.inner.epoch.elapsed()))
    }

    /// The operator override, if any.
    pub fn forced(&self) -> Option<Forced> {
        match self.inner.forced.load(Ordering::Acquire) {
            FORCED_OPEN => Some(Forced::Open),
            FORCED_CLOSED => Some(Forced::Closed),
            _ => None,
        }
    }

    /// Holds the breaker open: every call is refused until [`clear_force`](Self::clear_force)
    /// or [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.inner.forced.store(FORCED_OPEN, Ordering::Release);
        self.recount();
        self.wake_watchers();
    }

    /// Holds the breaker closed: every call is admitted and nothing trips it.
    pub fn force_closed(&self) {
        self.inner.forced.store(FORCED_CLOSED, Ordering::Release);
        self.recount();
        self.wake_watchers();
    }

    /// Removes an override; the breaker's own state applies again.
    pub fn clear_force(&self) {
        self.inner.forced.store(NOT_FORCED, Ordering::Release);
        self.recount();
        self.wake_watchers();
    }

    /// Removes any override and asks the breaker to forget its history and close.
    pub fn reset(&self) {
        self.inner.forced.store(NOT_FORCED, Ordering::Release);
        self.recount();
        self.inner.resets.fetch_add(1, Ordering::AcqRel);
        self.wake_watchers();
    }

    /// How many resets were asked for; a breaker compares it with the last it applied.
    pub fn resets(&self) -> u64 {
        self.inner.resets.load(Ordering::Acquire)
    }

    /// Registers a waker to be woken by the next override or reset (a breaker in
    /// backpressure mode waits on it).
    pub fn watch(&self, waker: &Waker) {
        let mut watchers = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !watchers.iter().any(|w| w.will_wake(waker)) {
            watchers.push(waker.clone());
        }
    }

    /// Wakes every registered waker (used on overrides, resets and breaker transitions).
    pub fn wake_watchers(&self) {
        let watchers = std::mem::take(
            &mut *self
                .inner
                .watchers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for w in watchers {
            w.wake();
        }
    }

    /// Counts a call as started; the returned guard counts it as finished when dropped.
    pub fn call_started(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            health: self.clone(),
        }
    }

    /// Calls under way now.
    pub fn in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Records a successful call and its first-token latency.
    pub fn record_success(&self, first_token: Duration) {
        self.with_slice(|s| {
            s.successes += 1;
            s.latency[bucket_of(first_token)] += 1;
        });
    }

    /// Records a failed call; `timeout` marks a first-token, idle or connect timeout.
    pub fn record_failure(&self, timeout: bool) {
        self.with_slice(|s| {
            s.failures += 1;
            if timeout {
                s.timeouts += 1;
            }
        });
    }

    /// The `q` quantile (0.0–1.0) of first-token latency over the window, if at least
    /// `min_samples` successes were recorded. Accurate to about 5 % (log buckets),
    /// rounded up.
    pub fn first_token_quantile(&self, q: f64, min_samples: u64) -> Option<Duration> {
        let totals = self.totals();
        if totals.samples() < min_samples.max(1) {
            return None;
        }
        totals.quantile(q)
    }

    /// Everything the board knows about this provider now.
    pub fn snapshot(&self) -> HealthSnapshot {
        let totals = self.totals();
        let calls = totals.successes + totals.failures;
        let ratio = |n: u64| (calls > 0).then(|| n as f64 / calls as f64);
        HealthSnapshot {
            provider: self.inner.id.clone(),
            state: self.state(),
            calls,
            successes: totals.successes,
            failures: totals.failures,
            timeouts: totals.timeouts,
            success_rate: ratio(totals.successes),
            timeout_ratio: ratio(totals.timeouts),
            first_token: LatencySummary {
                samples: totals.samples(),
                p50: totals.quantile(0.50),
                p95: totals.quantile(0.95),
                p99: totals.quantile(0.99),
            },
            in_flight: self.in_flight(),
        }
    }

    fn slice_index(&self) -> u64 {
        // The enclosing pass's reading: the breaker records its outcome in the same pass.
        let elapsed = crate::CallClock::enter()
            .now()
            .saturating_duration_since(self.inner.epoch)
            .as_nanos();
        let len = self.inner.slice_len.as_nanos().max(1);
        u64::try_from(elapsed / len).unwrap_or(u64::MAX)
    }

    fn with_slice(&self, f: impl FnOnce(&mut Slice)) {
        let index = self.slice_index();
        let mut window = self
            .inner
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = window.slices.len() as u64;
        let slot = &mut window.slices[(index % n) as usize];
        if slot.index != Some(index) {
            slot.clear(index);
        }
        f(slot);
    }

    fn totals(&self) -> Slice {
        let index = self.slice_index();
        let window = self
            .inner
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = window.slices.len() as u64;
        let mut total = Slice::empty();
        for s in &window.slices {
            if let Some(i) = s.index
                && i <= index
                && index - i < n
            {
                total.add(s);
            }
        }
        total
    }
}

impl fmt::Debug for ProviderHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderHealth")
            .field("provider", &self.inner.id)
            .field("state", &self.state())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// Counts a call as in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    health: ProviderHealth,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.health.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// First-token latency percentiles over the window (`None` without samples).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Successful calls measured.
    pub samples: u64,
    /// Median.
    pub p50: Option<Duration>,
    /// 95th percentile.
    pub p95: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
}

/// One provider's health at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSnapshot {
    /// The provider.
    pub provider: ProviderId,
    /// Its breaker state.
    pub state: BreakerState,
    /// Calls that ended in the window (successes + failures; cancelled calls not counted).
    pub calls: u64,
    /// Successful calls in the window.
    pub successes: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Failed calls that were timeouts.
    pub timeouts: u64,
    /// successes / calls.
    pub success_rate: Option<f64>,
    /// timeouts / calls.
    pub timeout_ratio: Option<f64>,
    /// First-token latency of the successes.
    pub first_token: LatencySummary,
    /// Calls under way now.
    pub in_flight: u64,
}

// Log buckets: bucket 0 holds < 1 ms, bucket i ≥ 1 holds [1.05^(i-1), 1.05^i) ms, the last
// one everything longer (1.05^291 ms ≈ 24 min).
const BUCKETS: usize = 292;
const GROWTH: f64 = 1.05;

fn bucket_of(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        return 0;
    }
    let i = (ms.ln() / GROWTH.ln()).floor() as usize + 1;
    i.min(BUCKETS - 1)
}

fn bucket_upper(i: usize) -> Duration {
    if i == 0 {
        return Duration::from_millis(1);
    }
    Duration::from_secs_f64(GROWTH.powi(i as i32) / 1000.0)
}

struct Window {
    slices: Vec<Slice>,
}

impl Window {
    fn new(slices: usize) -> Self {
        Self {
            slices: (0..slices).map(|_| Slice::empty()).collect(),
        }
    }
}

struct Slice {
    index: Option<u64>,
    successes: u64,
    failures: u64,
    timeouts: u64,
    latency: Box<[u32; BUCKETS]>,
}

impl Slice {
    fn empty() -> Self {
        Self {
            index: None,
            successes: 0,
            failures: 0,
            timeouts: 0,
            latency: Box::new([0; BUCKETS]),
        }
    }

    fn clear(&mut self, index: u64) {
        self.index = Some(index);
        self.successes = 0;
        self.failures = 0;
        self.timeouts = 0;
        self.latency.fill(0);
    }

    fn add(&mut self, other: &Slice) {
        self.successes += other.successes;
        self.failures += other.failures;
        self.timeouts += other.timeouts;
        for (a, b) in self.latency.iter_mut().zip(other.latency.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    fn samples(&self) -> u64 {
        self.latency.iter().map(|&c| u64::from(c)).sum()
    }

    fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.samples();
        if n == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (i, &c) in self.latency.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(bucket_upper(i));
            }
        }
        Some(bucket_upper(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_board_answers_each_state_through_its_unsettled_count() {
        let board = HealthBoard::new();
        let (a, b) = (ProviderId::OPENAI, ProviderId::ANTHROPIC);
        let (ha, hb) = (board.provider(&a), board.provider(&b));
        let unsettled = || board.inner.unsettled.load(Ordering::Acquire);
        assert_eq!((board.state(&a), unsettled()), (BreakerState::Closed, 0));

        ha.set_open(Instant::now() + Duration::from_secs(5));
        hb.force_closed();
        assert_eq!(unsettled(), 2);
        assert_eq!(board.state(&a), BreakerState::Open);
        assert_eq!(board.state(&b), BreakerState::ForcedClosed);
        // Publishing the same state again counts nothing twice.
        ha.set_open(Instant::now() + Duration::from_secs(5));
        assert_eq!(unsettled(), 2);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(board.state(&a), BreakerState::HalfOpen);

        ha.set_state(BreakerState::HalfOpen);
        hb.clear_force();
        assert_eq!((board.state(&b), unsettled()), (BreakerState::Closed, 1));
        ha.force_open();
        ha.reset(); // clears the override; the breaker itself is still half-open
        assert_eq!((board.state(&a), unsettled()), (BreakerState::HalfOpen, 1));
        ha.set_state(BreakerState::Closed);
        assert_eq!(
            (board.state(&a), board.state(&b), unsettled()),
            (BreakerState::Closed, BreakerState::Closed, 0)
        );
    }

    #[test]
    fn concurrent_changes_leave_the_count_right() {
        let board = HealthBoard::new();
        let h = board.provider(&ProviderId::OPENAI);
        std::thread::scope(|s| {
            for t in 0..4 {
                let h = h.clone();
                s.spawn(move || {
                    for i in 0..2_000 {
                        match (t + i) % 3 {
                            0 => h.force_open(),
                            1 => h.clear_force(),
                            _ => h.set_state(BreakerState::HalfOpen),
                        }
                    }
                });
            }
        });
        h.clear_force();
        h.set_state(BreakerState::Closed);
        assert_eq!(board.inner.unsettled.load(Ordering::Acquire), 0);
        h.force_open();
        assert_eq!(board.inner.unsettled.load(Ordering::Acquire), 1);
        assert_eq!(board.state(&ProviderId::OPENAI), BreakerState::ForcedOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn percentiles_are_within_five_percent_and_rounded_up() {
        let board = HealthBoard::new();
        let h = board.provider(&ProviderId::OPENAI);
        for ms in 1..=1000u64 {
            h.record_success(Duration::from_millis(ms));
        }
        let snap = h.snapshot();
        let p99 = snap.first_token.p99.unwrap().as_secs_f64() * 1000.0;
        assert!((990.0..=990.0 * 1.06).contains(&p99), "p99 {p99}");
        let p50 = snap.first_token.p50.unwrap().as_secs_f64() * 1000.0;
        assert!((500.0..=500.0 * 1.06).contains(&p50), "p50 {p50}");
        assert_eq!(snap.success_rate, Some(1.0));
    }

    #[tokio::test(start_paused = true)]
    async fn old_slices_rotate_out_of_the_window() {
        let board = HealthBoard::with_window(Duration::from_secs(30), 3);
        let h = board.provider(&ProviderId::OPENAI);
        h.record_failure(true);
        tokio::time::advance(Duration::from_secs(20)).await;
        h.record_success(Duration::from_millis(5));
        assert_eq!(h.snapshot().calls, 2);
        tokio::time::advance(Duration::from_secs(15)).await;
        let snap = h.snapshot();
        assert_eq!(snap.calls, 1, "the failure 35 s ago left the 30 s window");
        assert_eq!(snap.timeout_ratio, Some(0.0));
        assert_eq!(h.first_token_quantile(0.5, 2), None, "below min samples");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(h.snapshot().calls, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn overrides_and_in_flight_are_visible_to_readers() {
        let board = HealthBoard::new();
        let h = board.provider(&ProviderId::ANTHROPIC);
        h.set_open(Instant::now() + Duration::from_secs(5));
        assert_eq!(board.state(&ProviderId::ANTHROPIC), BreakerState::Open);
        assert_eq!(h.retry_after(), Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            board.state(&ProviderId::ANTHROPIC),
            BreakerState::HalfOpen,
            "an open period that is over reads as half-open"
        );
        h.force_open();
        assert!(board.state(&ProviderId::ANTHROPIC).is_open());
        h.reset();
        assert_eq!(h.resets(), 1);
        assert_eq!(h.forced(), None);
        let guard = h.call_started();
        assert_eq!(board.snapshot(&ProviderId::ANTHROPIC).unwrap().in_flight, 1);
        drop(guard);
        assert_eq!(h.in_flight(), 0);
    }

    #[test]
    fn huge_and_tiny_latencies_do_not_panic() {
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::MAX), BUCKETS - 1);
        assert!(bucket_upper(BUCKETS - 1) > Duration::from_secs(20 * 60));
    }
}
