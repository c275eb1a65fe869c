//! The KlineBackfiller (threads `backfill-0` … `backfill-N`, `--backfill-concurrency` of them):
//! takes symbols from the [`JobQueue`] (startup symbols busiest first; resyncs go to the front),
//! builds each one's initial package with the least request weight ([`PackageBuilder`]) and
//! sends `ActivateSymbol` straight into `activation_tx` (seed decision 1).

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
use crate::constants::BACKFILL_QUEUE_CAPACITY;
use crate::shutdown::Shutdown;
use crate::status::StatusBoard;

/// Package attempts per job before the symbol is left alone (logged; the next exchangeInfo
/// refresh or resync may queue it again).
const BACKFILL_ATTEMPTS_MAX: u32 = 3;
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
    pub attempt: u32,
}

#[derive(Debug, Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    queued: HashSet<SymbolIndex>,
}

/// The backfill job queue (bounded by `BACKFILL_QUEUE_CAPACITY`, one job per symbol).
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
        if state.queued.contains(&job.symbol) || state.jobs.len() >= BACKFILL_QUEUE_CAPACITY {
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

    /// The next job, waiting up to `wait`.
    pub fn pop(&self, wait: Duration) -> Option<Job> {
        let mut state = self.state.lock();
        if state.jobs.is_empty() {
            let _ = self.ready.wait_for(&mut state, wait);
        }
        let job = state.jobs.pop_front()?;
        state.queued.remove(&job.symbol);
        Some(job)
    }

    pub fn len(&self) -> usize {
        self.state.lock().jobs.len()
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
        if job.attempt + 1 < BACKFILL_ATTEMPTS_MAX {
            warn!(self.log, "initial package failed, queued again";
                "symbol" => &*spec.name, "attempt" => job.attempt + 1, "error" => error.to_string());
            self.queue.push(Job {
                attempt: job.attempt + 1,
                ..job
            });
        } else {
            slog::error!(self.log, "initial package failed, giving up until the next refresh";
                "symbol" => &*spec.name, "error" => error.to_string());
            if job.kind == JobKind::Startup {
                self.queue.startup_remaining.fetch_sub(1, Ordering::Relaxed);
            }
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
    fn klines_weight_follows_binance() {
        assert_eq!(klines_weight(99), 1);
        assert_eq!(klines_weight(100), 2);
        assert_eq!(klines_weight(499), 2);
        assert_eq!(klines_weight(500), 5);
        assert_eq!(klines_weight(1500), 10);
    }
}
