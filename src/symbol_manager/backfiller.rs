//! The KlineBackfiller (threads `backfill-0` … `backfill-N`, `--backfill-concurrency` of them):
//! takes symbols from the [`JobQueue`] (startup symbols busiest first; resyncs go to the front),
//! builds each one's initial package with the least request weight ([`PackageBuilder`]) and
//! sends `ActivateSymbol` straight into `activation_tx` (seed decision 1).
//!
//! A job gets `BACKFILL_ATTEMPTS_MAX` package attempts per round. A startup or listing job whose
//! round fails stays `Queued` and the next exchangeInfo refresh queues it again. A resync whose
//! round fails is deferred in the queue for `RESYNC_RETRY_BASE_MS`, doubled per failed round up
//! to `RESYNC_RETRY_MAX_MS`, and tried again for as long as the symbol is served: its live klines
//! are wrong until it succeeds, so it is never dropped (each failed round is a WARN line, and the
//! SymbolManager's health reports it until it succeeds).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender};
use klagg_shards::kline::Interval;
use klagg_shards::protocol::{InitialSymbolData, SymbolIndex, SymbolSpec};
use parking_lot::{Condvar, Mutex};
use slog::{Logger, debug, info, warn};

use super::exchange::{DecodeError, parse_klines};
use super::package::{ComposeError, PackagePlan};
use super::registry::{Lifecycle, RegistryView};
use super::rest::{RestClient, RestError};
use crate::activation_dispatcher::DispatcherCmd;
use crate::clock::epoch_ms;
use crate::constants::{
    BACKFILL_ATTEMPTS_MAX, BACKFILL_QUEUE_CAPACITY, RESYNC_RETRY_BASE_MS, RESYNC_RETRY_MAX_MS,
};
use crate::shutdown::Shutdown;
use crate::status::StatusBoard;

/// How long a blocked `activation_tx` send waits before it checks for shutdown.
const SEND_POLL_MS: u64 = 100;

/// Why a package could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("compose: {0}")]
    Compose(#[from] ComposeError),
}

/// Why a symbol is backfilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Startup,
    Listing,
    Resync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub symbol: SymbolIndex,
    pub kind: JobKind,
    /// Package attempts so far (over every round).
    pub attempt: u32,
}

#[derive(Debug, Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    /// Jobs waiting for their time (failed resyncs backing off), with when they are due.
    deferred: Vec<(i64, Job)>,
    queued: HashSet<SymbolIndex>,
}

impl QueueState {
    /// Move the deferred jobs due at `now_ms` to the front, earliest first.
    fn promote_due(&mut self, now_ms: i64) {
        if !self.deferred.iter().any(|(due, _)| *due <= now_ms) {
            return;
        }
        let mut due: Vec<(i64, Job)> = Vec::new();
        self.deferred.retain(|&(at, job)| {
            let ready = at <= now_ms;
            if ready {
                due.push((at, job));
            }
            !ready
        });
        due.sort_by_key(|&(at, _)| std::cmp::Reverse(at));
        for (_, job) in due {
            self.jobs.push_front(job);
        }
    }

    fn has_room(&self, symbol: SymbolIndex) -> bool {
        !self.queued.contains(&symbol)
            && self.jobs.len() + self.deferred.len() < BACKFILL_QUEUE_CAPACITY
    }
}

/// Pause before round `round + 1` of a resync whose round `round` (1-based) failed.
pub fn resync_retry_ms(round: u32) -> i64 {
    (RESYNC_RETRY_BASE_MS << round.saturating_sub(1).min(16)).min(RESYNC_RETRY_MAX_MS)
}

/// The backfill job queue (bounded by `BACKFILL_QUEUE_CAPACITY`, one job per symbol, deferred
/// ones included).
#[derive(Debug, Default)]
pub struct JobQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Startup packages still to build; 0 marks the synchronous baseline.
    pub startup_remaining: AtomicU64,
    /// Set once the startup universe is registered (the detector waits for it).
    pub universe_loaded: std::sync::atomic::AtomicBool,
}

impl JobQueue {
    /// Queue a job at the back (or the front for resyncs). False when the symbol is already
    /// queued or the queue is full.
    pub fn push(&self, job: Job) -> bool {
        let mut state = self.state.lock();
        if !state.has_room(job.symbol) {
            return false;
        }
        state.queued.insert(job.symbol);
        match job.kind {
            JobKind::Resync | JobKind::Listing => state.jobs.push_front(job),
            JobKind::Startup => state.jobs.push_back(job),
        }
        self.ready.notify_one();
        true
    }

    /// Hold `job` until `due_ms` (epoch ms), then queue it at the front. False when the symbol
    /// is already queued or the queue is full.
    pub fn defer(&self, job: Job, due_ms: i64) -> bool {
        let mut state = self.state.lock();
        if !state.has_room(job.symbol) {
            return false;
        }
        state.queued.insert(job.symbol);
        state.deferred.push((due_ms, job));
        true
    }

    /// The next job (deferred ones once due), waiting up to `wait`.
    pub fn pop(&self, wait: Duration) -> Option<Job> {
        let mut state = self.state.lock();
        state.promote_due(epoch_ms());
        if state.jobs.is_empty() {
            let _ = self.ready.wait_for(&mut state, wait);
            state.promote_due(epoch_ms());
        }
        let job = state.jobs.pop_front()?;
        state.queued.remove(&job.symbol);
        Some(job)
    }

    /// Jobs ready to run (deferred ones not counted).
    pub fn len(&self) -> usize {
        self.state.lock().jobs.len()
    }

    /// The deferred jobs' symbols and when each is due (epoch ms).
    pub fn deferred(&self) -> Vec<(SymbolIndex, i64)> {
        let state = self.state.lock();
        state
            .deferred
            .iter()
            .map(|(due, j)| (j.symbol, *due))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds initial packages over REST (shared by the backfill threads and the detector).
#[derive(Debug, Clone)]
pub struct PackageBuilder {
    pub rest: RestClient,
    pub plan: Arc<PackagePlan>,
    pub status: Arc<StatusBoard>,
    /// Told every symbol (index, name, scales) before its first activation is sent, e.g. the
    /// store's symbol table. `try_send`: a full listener misses the message (counted).
    pub listeners: Arc<Vec<Sender<SymbolSpec>>>,
    /// The kline store, when attached: symbols are registered with its writer before their
    /// first activation (never missed), and every activation is passed to the history thread.
    pub store: Option<super::history::StoreHooks>,
}

impl PackageBuilder {
    pub fn new(
        rest: RestClient,
        intervals: &[Interval],
        rest_has_1s: bool,
        status: Arc<StatusBoard>,
    ) -> PackageBuilder {
        PackageBuilder {
            rest,
            plan: Arc::new(super::package::plan(intervals, rest_has_1s)),
            status,
            listeners: Arc::new(Vec::new()),
            store: None,
        }
    }

    /// Tell the store (waiting for room, bounded) and the listeners about `spec`, before its
    /// activation is sent.
    pub fn announce(&self, spec: &SymbolSpec) {
        if let Some(store) = &self.store {
            store.register(spec);
        }
        for listener in self.listeners.iter() {
            if listener.try_send(spec.clone()).is_err() {
                StatusBoard::add(&self.status.announcements_dropped, 1);
            }
        }
    }

    /// `symbol`'s activation (package taken at `taken_at_ms`) went to the dispatcher: the
    /// store's history thread queues its repair and, after a first activation, its history.
    pub fn activated(&self, symbol: SymbolIndex, kind: JobKind, taken_at_ms: i64) {
        if let Some(store) = &self.store {
            store.activated(symbol, kind, taken_at_ms);
        }
    }

    /// Fetch and compose `spec`'s initial package.
    ///
    /// # Errors
    /// REST failure (after retries), a malformed response or an inconsistent roll-up.
    pub fn build(&self, spec: &SymbolSpec) -> Result<InitialSymbolData, BackfillError> {
        let taken_at_ms = epoch_ms();
        let mut responses = Vec::with_capacity(self.plan.fetches.len());
        for fetch in &self.plan.fetches {
            let path = format!(
                "/fapi/v1/klines?symbol={}&interval={}&limit={}",
                spec.name,
                fetch.interval.as_str(),
                fetch.limit
            );
            let body = self.rest.get(&path, klines_weight(fetch.limit))?;
            StatusBoard::add(&self.status.package_requests, 1);
            StatusBoard::add(&self.status.package_weight, klines_weight(fetch.limit));
            responses.push(parse_klines(
                &body,
                fetch.interval,
                spec.scales,
                &spec.name,
            )?);
        }
        let klines = self.plan.compose(&responses)?;
        StatusBoard::add(&self.status.packages_built, 1);
        Ok(InitialSymbolData {
            klines,
            taken_at_ms,
            last_agg_id: None,
        })
    }
}

/// Binance's weight of a `klines` request by its limit.
pub fn klines_weight(limit: u32) -> u64 {
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}

/// Send into `activation_tx`, blocking (this is a control thread) but checking for shutdown.
/// False when stopping or the dispatcher is gone.
pub fn send_activation(
    tx: &Sender<DispatcherCmd>,
    mut cmd: DispatcherCmd,
    shutdown: &Shutdown,
) -> bool {
    loop {
        match tx.send_timeout(cmd, Duration::from_millis(SEND_POLL_MS)) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(back)) if !shutdown.is_requested() => cmd = back,
            Err(_) => return false,
        }
    }
}

/// One backfill thread.
#[derive(Debug)]
pub struct Backfiller {
    pub id: usize,
    pub queue: Arc<JobQueue>,
    pub builder: PackageBuilder,
    pub registry: RegistryView,
    pub activation_tx: Sender<DispatcherCmd>,
    pub log: Logger,
    pub shutdown: Shutdown,
}

impl Backfiller {
    /// The thread body: runs until shutdown.
    pub fn run(self) {
        debug!(self.log, "backfill thread started"; "id" => self.id);
        // The thread's event loop: intentionally unbounded; each job is bounded.
        while !self.shutdown.is_requested() {
            if let Some(job) = self.queue.pop(Duration::from_millis(SEND_POLL_MS)) {
                self.run_job(job);
            }
        }
    }

    fn run_job(&self, job: Job) {
        let claimed = {
            let mut registry = self.registry.write();
            let from: &[Lifecycle] = match job.kind {
                JobKind::Resync => &[Lifecycle::Sent],
                _ => &[Lifecycle::Queued],
            };
            let ok = registry.transition(job.symbol, from, Lifecycle::Backfilling);
            ok.then(|| registry.get(job.symbol).map(|e| (e.spec(), e.ticker.count)))
                .flatten()
        };
        let Some((spec, expected_trades_24h)) = claimed else {
            return; // delisted or already handled
        };
        match self.builder.build(&spec) {
            Ok(initial_data) => self.deliver(job, spec, initial_data, expected_trades_24h),
            Err(BackfillError::Rest(RestError::Stopped)) => {}
            Err(error) => self.retry(job, &spec, &error),
        }
    }

    fn deliver(&self, job: Job, spec: SymbolSpec, initial_data: InitialSymbolData, expected: u64) {
        // Delisted while we fetched: do not activate.
        if !self
            .registry
            .write()
            .transition(job.symbol, &[Lifecycle::Backfilling], Lifecycle::Sent)
        {
            return;
        }
        if job.kind != JobKind::Resync {
            self.builder.announce(&spec);
        }
        let (symbol, taken_at_ms) = (spec.index, initial_data.taken_at_ms);
        let cmd = DispatcherCmd::ActivateSymbol {
            symbol: spec,
            initial_data,
            expected_trades_24h: expected,
        };
        if !send_activation(&self.activation_tx, cmd, &self.shutdown) {
            return;
        }
        self.builder.activated(symbol, job.kind, taken_at_ms);
        if job.kind == JobKind::Startup
            && self.queue.startup_remaining.fetch_sub(1, Ordering::Relaxed) == 1
        {
            self.builder.status.mark_last_package();
            info!(self.log, "every startup package is ready (synchronous baseline)";
                "ms_since_start" => self.builder.status.last_package_ms());
        }
    }

    fn retry(&self, job: Job, spec: &SymbolSpec, error: &BackfillError) {
        let back = match job.kind {
            JobKind::Resync => Lifecycle::Sent,
            _ => Lifecycle::Queued,
        };
        self.registry
            .write()
            .transition(job.symbol, &[Lifecycle::Backfilling], back);
        let next = Job {
            attempt: job.attempt + 1,
            ..job
        };
        if !next.attempt.is_multiple_of(BACKFILL_ATTEMPTS_MAX) {
            warn!(self.log, "initial package failed, queued again";
                "symbol" => &*spec.name, "kind" => format!("{:?}", job.kind),
                "attempt" => next.attempt, "error" => error.to_string());
            self.queue.push(next);
        } else if job.kind == JobKind::Resync {
            self.defer_resync(next, spec, error);
        } else {
            slog::error!(self.log, "initial package failed, waiting for the next exchangeInfo refresh to queue it again";
                "symbol" => &*spec.name, "attempts" => next.attempt, "error" => error.to_string());
            if job.kind == JobKind::Startup {
                self.queue.startup_remaining.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// A resync round failed: try again after the round's back-off (never given up while the
    /// symbol is served; a delisting drops it when it comes due).
    fn defer_resync(&self, next: Job, spec: &SymbolSpec, error: &BackfillError) {
        let round = next.attempt / BACKFILL_ATTEMPTS_MAX;
        let pause_ms = resync_retry_ms(round);
        StatusBoard::add(&self.builder.status.resync_rounds_failed, 1);
        if self.queue.defer(next, epoch_ms() + pause_ms) {
            warn!(self.log, "resync failed; its live klines stay unverified, trying again later";
                "symbol" => &*spec.name, "failed_rounds" => round, "retry_in_ms" => pause_ms,
                "error" => error.to_string());
        } else {
            // A job for the symbol is queued already (a newer resync request) or the queue is
            // full (then the symbol's next gap report queues it again).
            warn!(self.log, "resync failed and could not be deferred";
                "symbol" => &*spec.name, "failed_rounds" => round, "error" => error.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_dedupes_and_puts_resyncs_first() {
        let queue = JobQueue::default();
        let job = |i, kind| Job {
            symbol: SymbolIndex(i),
            kind,
            attempt: 0,
        };
        assert!(queue.push(job(0, JobKind::Startup)));
        assert!(queue.push(job(1, JobKind::Startup)));
        assert!(!queue.push(job(1, JobKind::Startup)));
        assert!(queue.push(job(2, JobKind::Resync)));
        assert_eq!(queue.len(), 3);
        let order: Vec<u32> = (0..3)
            .map(|_| queue.pop(Duration::ZERO).unwrap().symbol.0)
            .collect();
        assert_eq!(order, vec![2, 0, 1]);
        assert!(queue.pop(Duration::from_millis(1)).is_none());
        assert!(queue.is_empty());
    }

    #[test]
    fn deferred_jobs_wait_for_their_time_and_count_against_the_queue() {
        let queue = JobQueue::default();
        let job = |i| Job {
            symbol: SymbolIndex(i),
            kind: JobKind::Resync,
            attempt: BACKFILL_ATTEMPTS_MAX,
        };
        let now = epoch_ms();
        assert!(queue.defer(job(1), now + 3_600_000));
        assert!(queue.defer(job(2), now - 10));
        assert!(!queue.defer(job(2), now), "one job per symbol");
        assert!(!queue.push(job(1)), "a deferred symbol is queued");
        assert!(queue.push(Job {
            kind: JobKind::Startup,
            ..job(3)
        }));
        assert_eq!(queue.len(), 1);
        // The due resync goes first; the other one waits.
        assert_eq!(queue.pop(Duration::ZERO).map(|j| j.symbol.0), Some(2));
        assert_eq!(queue.pop(Duration::ZERO).map(|j| j.symbol.0), Some(3));
        assert!(queue.pop(Duration::from_millis(1)).is_none());
        assert_eq!(queue.deferred(), vec![(SymbolIndex(1), now + 3_600_000)]);
    }

    #[test]
    fn resync_back_off_doubles_up_to_its_cap() {
        assert_eq!(resync_retry_ms(1), RESYNC_RETRY_BASE_MS);
        assert_eq!(resync_retry_ms(2), 2 * RESYNC_RETRY_BASE_MS);
        assert_eq!(resync_retry_ms(60), RESYNC_RETRY_MAX_MS);
        assert!((1..100).all(|r| resync_retry_ms(r) <= resync_retry_ms(r + 1)));
    }

    #[test]
    fn klines_weight_follows_binance() {
        assert_eq!(klines_weight(99), 1);
        assert_eq!(klines_weight(100), 2);
        assert_eq!(klines_weight(499), 2);
        assert_eq!(klines_weight(500), 5);
        assert_eq!(klines_weight(1500), 10);
    }
}
