//! The history backfill and the kline repairs (thread `history`, started by the SymbolManager
//! when a store is attached; fed through [`StoreHooks`] by the backfill threads, the
//! NewSymbolDetector and the manager thread). It owns a read connection to the store, the
//! pending repairs ([`RepairBook`]) and the symbol whose history it is fetching.
//!
//! * **History.** Once a symbol is Active (never before: activations never wait for history),
//!   keep `--history-bars` closed klines per interval: `Reader::plan_history` finds what is
//!   missing (everything on an empty store; after a restart only the tail since the last stored
//!   kline, interior holes, flat fills and stale open snapshots) with the cheapest request
//!   sizes; the answers are written as `Backfilled { source: Rest }`.
//! * **Repairs** ([`super::repair`]): the periods a gap or an activation may have left wrong are
//!   fetched again and written as `Backfilled { source: Repair }`, which replaces closed live
//!   klines.
//!
//! Priority: every request is `Priority::Low` in the shared weight budget (at most
//! `--history-weight-percent` of the allowance per minute) and waits while activation packages
//! are queued; repairs go before history. Intervals the venue has no REST klines for (1s on
//! Binance futures) are skipped. One request per loop iteration, so new work and shutdown are
//! seen between requests.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use klagg_shards::kline::{Interval, Kline};
use klagg_shards::protocol::{SymbolIndex, SymbolSpec};
use slog::{Logger, info, warn};

use super::backfiller::{BackfillError, JobQueue};
use super::exchange::parse_klines;
use super::registry::RegistryView;
use super::repair::{
    ACTIVATION_SETTLE_MS, ACTIVATION_SKEW_MS, REPAIR_GAP_MARGIN_MS, RepairBook, RepairJob,
    RepairStep, last_known_good, next_step, plan_repair,
};
use super::rest::{Priority, RestClient, RestError};
use super::store_hooks::{Activation, Inbox, send_store};
pub use super::store_hooks::{HistorySettings, StoreHooks, StoreLink};
use crate::activation_dispatcher::DispatchState;
use crate::clock::epoch_ms;
use crate::shutdown::Shutdown;
use crate::status::StatusBoard;
use crate::store::history::KlineRequest;
use crate::store::{HistoryProgress, Reader, Source, StoreCmd};

/// Default of `--history-weight-percent`.
pub const HISTORY_WEIGHT_PERCENT_DEFAULT: u64 = 50;
/// A progress line every this many symbols whose history is complete.
pub const HISTORY_LOG_EVERY: u64 = 50;
/// The longest the thread sleeps without work.
const IDLE_WAIT_MS: i64 = 250;
/// The wait while activation packages are queued.
const YIELD_WAIT_MS: u64 = 50;
/// History attempts per symbol when requests fail (each plans only what is still missing).
const HISTORY_ATTEMPTS_MAX: u32 = 3;
/// History of a symbol that is still not Active this long after it was queued is given up.
const NOT_ACTIVE_GIVE_UP_MS: i64 = 600_000;
/// A repair of a symbol being (re)activated looks again after this long.
const REPAIR_RECHECK_MS: i64 = 1_000;
/// Rows read to find the last period known good before a gap.
const GAP_LOOKBACK_ROWS: u32 = 1500;

/// The history thread.
#[derive(Debug)]
pub struct HistoryThread {
    pub inbox: Arc<Inbox>,
    /// The activation package queue: history and repairs wait while it holds jobs.
    pub packages: Arc<JobQueue>,
    pub rest: RestClient,
    pub store: Sender<StoreCmd>,
    pub db_path: PathBuf,
    pub registry: RegistryView,
    pub status: Arc<StatusBoard>,
    /// Every configured interval, shortest first.
    pub intervals: Vec<Interval>,
    pub rest_has_1s: bool,
    pub settings: HistorySettings,
    pub progress: Arc<HistoryProgress>,
    pub log: Logger,
    pub shutdown: Shutdown,
}

/// The history of one symbol being fetched.
#[derive(Debug)]
struct Work {
    spec: SymbolSpec,
    requests: VecDeque<(Interval, KlineRequest)>,
    failed: bool,
}

/// The thread's own state.
#[derive(Debug)]
struct State {
    reader: Reader,
    repairs: RepairBook,
    work: Option<Work>,
    attempts: HashMap<SymbolIndex, u32>,
    started_ms: i64,
    /// `symbols_total` when "history complete" was last logged (listings log it again).
    complete_logged_total: u64,
}

impl HistoryThread {
    /// The thread body: runs until shutdown.
    pub fn run(mut self) {
        // Its requests wait out REST pauses and its weight share (minutes at worst): the waits
        // keep its heartbeat fresh, so a pause does not look like a hung thread.
        let progress = self.progress.clone();
        self.rest = self.rest.clone().with_wait_beat(move |now| {
            HistoryProgress::set(&progress.heartbeat_ms, now.max(0) as u64);
        });
        let reader = match Reader::open(&self.db_path) {
            Ok(reader) => reader,
            Err(error) => {
                slog::error!(self.log, "history thread cannot read the store"; "error" => error.to_string());
                return;
            }
        };
        let mut state = State {
            reader,
            repairs: RepairBook::default(),
            work: None,
            attempts: HashMap::new(),
            started_ms: epoch_ms(),
            complete_logged_total: 0,
        };
        info!(self.log, "history thread started"; "history_bars" => self.settings.bars,
            "intervals" => self.rest_intervals().iter().map(|i| i.as_str()).collect::<Vec<_>>().join(","),
            "weight_percent" => self.settings.weight_percent);
        // The thread's event loop: intentionally unbounded; each step is one request at most.
        while !self.shutdown.is_requested() {
            HistoryProgress::set(&self.progress.heartbeat_ms, epoch_ms().max(0) as u64);
            for activation in self.inbox.take_activations() {
                self.plan_activation_repair(&mut state, activation);
            }
            if let Some(wait) = self.step(&mut state) {
                self.inbox.wait(wait);
            }
        }
    }

    /// The intervals the venue serves over REST.
    fn rest_intervals(&self) -> Vec<Interval> {
        let rest_has_1s = self.rest_has_1s;
        let served = |interval: &Interval| *interval != Interval::S1 || rest_has_1s;
        self.intervals.iter().copied().filter(served).collect()
    }

    /// One request at most; `Some(wait)` when there was nothing to do now. While activation
    /// packages are queued, nothing is fetched (and the history queue is not even scanned).
    fn step(&self, state: &mut State) -> Option<Duration> {
        let now = epoch_ms();
        let repair_due = state.repairs.next_due_ms().is_some_and(|due| due <= now);
        let pending = repair_due || state.work.is_some() || self.inbox.history_len() > 0;
        if pending && !self.packages.is_empty() {
            HistoryProgress::add(&self.progress.yields, 1);
            return Some(Duration::from_millis(YIELD_WAIT_MS));
        }
        if repair_due {
            if let Some(job) = state.repairs.pop_due(now) {
                self.run_repair(state, job, now);
            }
        } else if state.work.is_some() || self.next_history(state, now) {
            self.run_history(state);
        } else {
            let next = state
                .repairs
                .next_due_ms()
                .map_or(IDLE_WAIT_MS, |due| due - now);
            return Some(Duration::from_millis(next.clamp(1, IDLE_WAIT_MS) as u64));
        }
        HistoryProgress::set(
            &self.progress.repair_jobs_pending,
            state.repairs.len() as u64,
        );
        None
    }

    /// Turn an activation into repair jobs.
    fn plan_activation_repair(&self, state: &mut State, activation: Activation) {
        let Some(spec) = self.registry.spec(activation.symbol) else {
            return;
        };
        let start_ms = match activation.gap_reported_ms {
            Some(reported_ms) => {
                HistoryProgress::add(&self.progress.repair_gaps, 1);
                self.gap_start(state, &spec.name, reported_ms)
            }
            None => activation.taken_at_ms - ACTIVATION_SKEW_MS,
        };
        let end_ms = activation.delivered_ms + ACTIVATION_SETTLE_MS;
        let intervals = self.rest_intervals();
        let max = self.settings.repair_periods_max;
        let plan = plan_repair(activation.symbol, &intervals, start_ms, end_ms, max);
        HistoryProgress::add(&self.progress.repairs, 1);
        HistoryProgress::add(&self.progress.repair_periods, plan.periods);
        if plan.capped {
            HistoryProgress::add(&self.progress.repair_capped, 1);
        }
        if let Some(reported_ms) = activation.gap_reported_ms {
            info!(self.log, "repair after a gap planned"; "symbol" => &*spec.name,
                "from_ms" => start_ms, "to_ms" => end_ms, "reported_ms" => reported_ms,
                "periods" => plan.periods, "capped" => plan.capped);
        }
        for job in plan.jobs {
            if !state.repairs.add(job) {
                HistoryProgress::add(&self.progress.repair_refused, 1);
            }
        }
    }

    /// The start of a gap's repair (see `repair::last_known_good`).
    fn gap_start(&self, state: &State, name: &str, reported_ms: i64) -> i64 {
        let shortest = self.intervals[0];
        let cutoff = reported_ms - REPAIR_GAP_MARGIN_MS;
        let end = shortest.open_time(cutoff) - 1;
        let rows =
            state
                .reader
                .stored_klines(name, shortest, None, Some(end), Some(GAP_LOOKBACK_ROWS));
        rows.ok()
            .and_then(|rows| last_known_good(&rows))
            .unwrap_or(cutoff)
    }

    fn run_repair(&self, state: &mut State, job: RepairJob, now: i64) {
        match self.status.symbol(job.symbol).state {
            DispatchState::Active => {}
            DispatchState::Failed | DispatchState::Deactivated => {
                HistoryProgress::add(&self.progress.repair_dropped, 1);
                return;
            }
            _ => {
                let later = RepairJob {
                    due_ms: now + REPAIR_RECHECK_MS,
                    ..job
                };
                self.keep_repair(state, later);
                return;
            }
        }
        let (request, rest) = match next_step(job, now) {
            RepairStep::Wait(job) => return self.keep_repair(state, job),
            RepairStep::Fetch { request, rest } => (request, rest),
        };
        if let Some(rest) = rest {
            self.keep_repair(state, rest);
        }
        let Some(spec) = self.registry.spec(job.symbol) else {
            HistoryProgress::add(&self.progress.repair_dropped, 1);
            return;
        };
        let p = &self.progress;
        if let Ok(klines) = self.fetch(&spec, job.interval, request) {
            HistoryProgress::add(&p.repair_requests, 1);
            HistoryProgress::add(&p.repair_weight, u64::from(request.weight()));
            HistoryProgress::add(&p.repair_klines, klines.len() as u64);
            self.write(&spec, job.interval, klines, Source::Repair, request);
        }
    }

    fn keep_repair(&self, state: &mut State, job: RepairJob) {
        if !state.repairs.add(job) {
            HistoryProgress::add(&self.progress.repair_refused, 1);
        }
    }

    /// Find the next symbol whose history can start now and plan it; false when none.
    fn next_history(&self, state: &mut State, now: i64) -> bool {
        let mut waiting = self.inbox.take_history();
        let mut keep = VecDeque::with_capacity(waiting.len());
        let mut found = false;
        while let Some((symbol, queued_ms)) = waiting.pop_front() {
            if found {
                keep.push_back((symbol, queued_ms));
                continue;
            }
            match self.status.symbol(symbol).state {
                DispatchState::Active => {
                    if let Some(work) = self.plan_history(state, symbol) {
                        state.work = Some(work);
                        found = true;
                    }
                }
                DispatchState::Failed | DispatchState::Deactivated => self.skip(state),
                _ if now - queued_ms > NOT_ACTIVE_GIVE_UP_MS => self.skip(state),
                _ => keep.push_back((symbol, queued_ms)),
            }
        }
        self.inbox.return_history(keep);
        found
    }

    /// Plan every REST interval of `symbol`; `None` when nothing is missing (it is done).
    fn plan_history(&self, state: &mut State, symbol: SymbolIndex) -> Option<Work> {
        let Some(spec) = self.registry.spec(symbol) else {
            self.skip(state);
            return None;
        };
        // Up to the period before now: the activation's package started the live klines at a
        // period no later than the current one, so the window always meets them (no hole).
        let now = epoch_ms();
        let mut requests = VecDeque::new();
        for interval in self.rest_intervals() {
            let bars = self.settings.bars;
            match state.reader.plan_history(&spec.name, interval, bars, now) {
                Ok(plan) => {
                    let missing: u64 = plan.missing.iter().map(|m| m.periods).sum();
                    HistoryProgress::add(&self.progress.periods_missing, missing);
                    requests.extend(plan.requests.iter().map(|r| (interval, *r)));
                }
                Err(error) => {
                    HistoryProgress::add(&self.progress.errors, 1);
                    warn!(self.log, "history plan failed"; "symbol" => &*spec.name, "error" => error.to_string());
                }
            }
        }
        if requests.is_empty() {
            self.done(state);
            return None;
        }
        Some(Work {
            spec,
            requests,
            failed: false,
        })
    }

    fn run_history(&self, state: &mut State) {
        let Some(work) = state.work.as_mut() else {
            return;
        };
        if let Some((interval, request)) = work.requests.pop_front() {
            match self.fetch(&work.spec, interval, request) {
                Ok(klines) => {
                    let p = &self.progress;
                    HistoryProgress::add(&p.requests, 1);
                    HistoryProgress::add(&p.weight, u64::from(request.weight()));
                    HistoryProgress::add(&p.klines, klines.len() as u64);
                    self.write(&work.spec, interval, klines, Source::Rest, request);
                }
                Err(BackfillError::Rest(RestError::Stopped)) => return,
                Err(_) => work.failed = true,
            }
        }
        if !work.requests.is_empty() {
            return;
        }
        let Some(work) = state.work.take() else {
            return;
        };
        let symbol = work.spec.index;
        let attempt = state.attempts.entry(symbol).or_insert(0);
        *attempt += 1;
        match (work.failed, *attempt < HISTORY_ATTEMPTS_MAX) {
            (false, _) => self.done(state),
            (true, true) => self.inbox.requeue_history((symbol, epoch_ms())),
            (true, false) => self.skip(state),
        }
    }

    /// `GET /fapi/v1/klines` for `request` at low priority; the klines inside it.
    fn fetch(
        &self,
        spec: &SymbolSpec,
        interval: Interval,
        request: KlineRequest,
    ) -> Result<Vec<Kline>, BackfillError> {
        let path = format!(
            "/fapi/v1/klines?symbol={}&interval={}&startTime={}&endTime={}&limit={}",
            spec.name,
            interval.as_str(),
            request.start_ms,
            interval.close_time(request.end_ms),
            request.limit
        );
        let priority = Priority::Low {
            share_percent: self.settings.weight_percent,
        };
        let result = self
            .rest
            .get_as(&path, u64::from(request.weight()), priority)
            .map_err(BackfillError::from)
            .and_then(|body| {
                parse_klines(&body, interval, spec.scales, &spec.name).map_err(Into::into)
            });
        match result {
            Ok(mut klines) => {
                klines.retain(|k| {
                    request.start_ms <= k.open_time_ms && k.open_time_ms <= request.end_ms
                });
                Ok(klines)
            }
            Err(error) => {
                if !matches!(error, BackfillError::Rest(RestError::Stopped)) {
                    HistoryProgress::add(&self.progress.errors, 1);
                    warn!(self.log, "klines request failed"; "symbol" => &*spec.name,
                        "interval" => interval.as_str(), "error" => error.to_string());
                }
                Err(error)
            }
        }
    }

    fn write(
        &self,
        spec: &SymbolSpec,
        interval: Interval,
        klines: Vec<Kline>,
        source: Source,
        request: KlineRequest,
    ) {
        let cmd = StoreCmd::Backfilled {
            symbol: spec.index,
            interval,
            klines,
            source,
            request: Some(request),
        };
        send_store(&self.store, cmd, &self.shutdown, &self.progress);
    }

    fn done(&self, state: &mut State) {
        HistoryProgress::add(&self.progress.symbols_done, 1);
        self.log_progress(state);
    }

    fn skip(&self, state: &mut State) {
        HistoryProgress::add(&self.progress.symbols_skipped, 1);
        self.log_progress(state);
    }

    fn log_progress(&self, state: &mut State) {
        let p = &self.progress;
        let (done, total) = (
            HistoryProgress::get(&p.symbols_done),
            HistoryProgress::get(&p.symbols_total),
        );
        let weight = HistoryProgress::get(&p.weight);
        if done % HISTORY_LOG_EVERY == 0 && done > 0 {
            info!(self.log, "history progress"; "symbols_done" => done, "symbols_total" => total,
                "weight" => weight);
        }
        let complete = p.history_complete() && self.inbox.history_len() == 0;
        if complete && total > state.complete_logged_total {
            state.complete_logged_total = total;
            info!(self.log, "history complete"; "symbols_done" => done,
                "symbols_skipped" => HistoryProgress::get(&p.symbols_skipped),
                "requests" => HistoryProgress::get(&p.requests), "weight" => weight,
                "klines" => HistoryProgress::get(&p.klines),
                "ms" => epoch_ms() - state.started_ms);
        }
    }
}
