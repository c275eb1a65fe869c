//! The store writer thread (`store-writer`): owns the read-write SQLite connection, the batch of
//! received writes and the latest open-kline snapshots. It consumes the shards' kline channel
//! and the control plane's [`StoreCmd`] channel and commits in batched transactions.
//!
//! # Delivery contract
//!
//! * Closed klines (`Closed`, `FlatRun`, `Corrected`) and backfills are committed within
//!   [`WriterConfig::batch_deadline`] (default 200 ms) of being received, or as soon as
//!   [`WriterConfig::batch_rows`] rows wait, in one transaction per batch.
//! * Open klines (`Update`) are coalesced: only the latest per (symbol, interval) is kept, and
//!   written at most every [`WriterConfig::snapshot_interval`] (default 1 s).
//! * Nothing received is dropped. Both inbound channels are bounded; a producer that finds one
//!   full keeps its closed klines and sends them later (the shard outbox does; control threads
//!   use [`super::WriterHandle::send`] with a timeout). Open-kline updates may be dropped by
//!   producers under backpressure: only the latest matters. The only refusals are wiring bugs,
//!   counted in `rows_refused`: a kline of a symbol never registered (after the command channel
//!   was emptied once), a backfilled kline not aligned to its interval, a trade count above
//!   `i64::MAX`. Rows are lost only when the database still fails after the shutdown retries
//!   (`rows_lost`, and the report says so).
//! * A producer uses one channel per symbol (kline channel or `StoreCmd::Klines`, not both):
//!   there is no order between the two channels.
//! * A failed commit keeps the batch and retries every [`WriterConfig::retry_delay`]; while
//!   [`WriterConfig::pending_rows_max`] rows wait, the writer stops taking klines, so the
//!   backpressure reaches the producers instead of memory growing.
//! * Klines a repair changed are sent, after their commit, to the corrections listeners as
//!   `KlineMsg::Corrected` (as a shard sends a late trade's correction), with `try_send`: a full
//!   listener misses them (counted); readers see them in the store regardless.
//! * `Flush` commits everything received so far (including what waits in the kline channel when
//!   it is taken) and snapshots, then answers. `Shutdown` (or every command sender dropped) takes
//!   what the channels hold, commits everything, checkpoints the WAL and exits. Stop the shards
//!   first: klines sent after `Shutdown` are not waited for.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, never};
use klagg_shards::kline::{Interval, Kline, Scales};
use klagg_shards::protocol::{KlineMsg, SymbolIndex};
use rusqlite::Connection;

use super::batch::{Batcher, Snapshot, SymbolRef, Write};
use super::history::KlineRequest;
use super::schema::Store;
use super::stats::{StoreCounters, WriterReport, WriterShared};
use super::{Source, wall_clock_ms};

/// Capacity of the control plane → store command channel.
pub const STORE_CMD_CAPACITY: usize = 4096;
/// Messages taken from one channel per loop iteration before committing what is due.
const DRAIN_MAX: usize = 4096;
/// Klines held back while their symbol's registration is still in the command channel.
const DEFERRED_MAX: usize = 65_536;
/// The loop wakes at least this often (heartbeat, gauges).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Commit attempts at shutdown before the remaining rows are reported lost.
const SHUTDOWN_COMMIT_TRIES: u32 = 3;

/// A command for the store writer.
#[derive(Debug)]
pub enum StoreCmd {
    /// Map a symbol index to its name and decimal places (before its first kline; again when
    /// the scales change). Also written to the `symbols` table.
    RegisterSymbol {
        index: SymbolIndex,
        name: Arc<str>,
        scales: Scales,
    },
    /// A shard's kline output (the same as on the kline channel).
    Klines(KlineMsg),
    /// Closed klines from the venue (`source: Rest` for history, `source: Repair` to correct
    /// periods a gap or an activation may have made wrong) or flat fills recorded while the
    /// symbol was not live (`source: FlatFill`), stored as closed under the precedence rule. `request` is
    /// the request that fetched them, when complete: periods it covered and the venue had no
    /// kline for are recorded so the planner does not ask again. Klines not closed by the
    /// writer's clock are skipped (counted).
    Backfilled {
        symbol: SymbolIndex,
        interval: Interval,
        klines: Vec<Kline>,
        source: Source,
        request: Option<KlineRequest>,
    },
    /// Commit everything received so far, then send on `done` (capacity ≥ 1).
    Flush { done: Sender<()> },
    /// Commit everything and stop.
    Shutdown,
}

/// The writer's timing and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// The longest a received closed kline waits before its batch is committed.
    pub batch_deadline: Duration,
    /// How often the latest open klines are written.
    pub snapshot_interval: Duration,
    /// Commit as soon as this many rows wait.
    pub batch_rows: u64,
    /// Stop taking klines while this many rows wait (only reached while commits fail).
    pub pending_rows_max: u64,
    /// Wait between commit attempts after a failure.
    pub retry_delay: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            batch_deadline: Duration::from_millis(200),
            snapshot_interval: Duration::from_secs(1),
            batch_rows: 4096,
            pending_rows_max: 131_072,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    conn: Connection,
    config: WriterConfig,
    commands: Receiver<StoreCmd>,
    klines: Receiver<KlineMsg>,
    shared: Arc<WriterShared>,
    symbols: HashMap<SymbolIndex, SymbolRef>,
    writes: Vec<Write>,
    pending_rows: u64,
    oldest: Option<Instant>,
    snapshots: HashMap<(SymbolIndex, Interval), Snapshot>,
    snapshots_written_at: Instant,
    deferred: Vec<KlineMsg>,
    retry_at: Option<Instant>,
    flush_waiters: Vec<Sender<()>>,
    shutdown: bool,
    batcher: Batcher,
    /// Told every kline a repair changed, as `KlineMsg::Corrected` (`try_send`).
    corrections: Vec<Sender<KlineMsg>>,
}

impl Writer {
    pub(crate) fn new(
        store: Store,
        config: WriterConfig,
        commands: Receiver<StoreCmd>,
        klines: Receiver<KlineMsg>,
        shared: Arc<WriterShared>,
        corrections: Vec<Sender<KlineMsg>>,
    ) -> Writer {
        Writer {
            conn: store.conn,
            config,
            commands,
            klines,
            shared,
            symbols: HashMap::new(),
            writes: Vec::new(),
            pending_rows: 0,
            oldest: None,
            snapshots: HashMap::new(),
            snapshots_written_at: Instant::now(),
            deferred: Vec::new(),
            retry_at: None,
            flush_waiters: Vec::new(),
            shutdown: false,
            batcher: Batcher::default(),
            corrections,
        }
    }

    /// The thread's event loop: runs until `Shutdown` or until every command sender is gone.
    pub(crate) fn run(mut self) -> WriterReport {
        self.beat();
        while !self.shutdown {
            self.wait();
            self.take_input();
            self.commit_if_due(Instant::now());
            self.beat();
        }
        self.finish()
    }

    /// Block until input arrives or the next deadline (batch, snapshot, retry, heartbeat).
    fn wait(&self) {
        let now = Instant::now();
        let timeout = self.next_deadline(now).saturating_duration_since(now);
        if timeout.is_zero() {
            return;
        }
        let mut select = Select::new();
        if self.pending_rows < self.config.pending_rows_max.saturating_mul(2) {
            select.recv(&self.commands);
        }
        if self.pending_rows < self.config.pending_rows_max {
            select.recv(&self.klines);
        }
        let _ = select.ready_timeout(timeout);
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = now + HEARTBEAT_INTERVAL;
        if let Some(retry_at) = self.retry_at {
            return deadline.min(retry_at);
        }
        if !self.deferred.is_empty() || self.pending_rows >= self.config.batch_rows {
            return now;
        }
        if let Some(oldest) = self.oldest {
            deadline = deadline.min(oldest + self.config.batch_deadline);
        }
        if !self.snapshots.is_empty() {
            deadline = deadline.min(self.snapshots_written_at + self.config.snapshot_interval);
        }
        deadline
    }

    /// Take commands first (registrations come before their symbols' klines), then klines held
    /// back last time, then new klines. A held-back kline whose symbol is still unknown after
    /// the command channel was emptied is refused.
    fn take_input(&mut self) {
        let mut commands_emptied = false;
        for _ in 0..DRAIN_MAX {
            if self.pending_rows >= self.config.pending_rows_max.saturating_mul(2) {
                break;
            }
            match self.commands.try_recv() {
                Ok(cmd) => self.on_command(cmd),
                Err(TryRecvError::Empty) => {
                    commands_emptied = true;
                    break;
                }
                Err(TryRecvError::Disconnected) => {
                    commands_emptied = true;
                    self.shutdown = true;
                    break;
                }
            }
        }
        for msg in std::mem::take(&mut self.deferred) {
            self.on_kline(msg, !commands_emptied);
        }
        self.take_klines(DRAIN_MAX, self.config.pending_rows_max);
    }

    fn take_klines(&mut self, max: usize, pending_rows_max: u64) {
        for _ in 0..max {
            if self.pending_rows >= pending_rows_max {
                break;
            }
            match self.klines.try_recv() {
                Ok(msg) => self.on_kline(msg, true),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.klines = never();
                    break;
                }
            }
        }
    }

    fn on_command(&mut self, cmd: StoreCmd) {
        match cmd {
            StoreCmd::RegisterSymbol {
                index,
                name,
                scales,
            } => {
                let symbol = SymbolRef { name, scales };
                self.symbols.insert(index, symbol.clone());
                self.push(Write::Symbol(symbol));
            }
            StoreCmd::Klines(msg) => self.on_kline(msg, true),
            StoreCmd::Backfilled {
                symbol,
                interval,
                klines,
                source,
                request,
            } => match self.symbols.get(&symbol).cloned() {
                Some(symbol_ref) => self.push(Write::Backfill {
                    index: symbol,
                    symbol: symbol_ref,
                    interval,
                    klines,
                    source,
                    request,
                }),
                None => self.refuse(symbol, "backfill", klines.len() as u64),
            },
            StoreCmd::Flush { done } => {
                // Take what the producers sent before the flush.
                self.take_klines(self.klines.len(), u64::MAX);
                self.flush_waiters.push(done);
            }
            StoreCmd::Shutdown => self.shutdown = true,
        }
    }

    fn on_kline(&mut self, msg: KlineMsg, may_defer: bool) {
        let index = msg.symbol();
        let Some(symbol) = self.symbols.get(&index).cloned() else {
            if may_defer && self.deferred.len() < DEFERRED_MAX {
                self.deferred.push(msg);
            } else {
                self.refuse(index, "kline", 1);
            }
            return;
        };
        match msg {
            KlineMsg::Update {
                interval, kline, ..
            } => self.snapshot(index, symbol, interval, kline),
            KlineMsg::Closed {
                interval, kline, ..
            }
            | KlineMsg::Corrected {
                interval, kline, ..
            } => {
                self.drop_snapshot(index, interval, kline.open_time_ms);
                self.push(Write::Kline {
                    symbol,
                    interval,
                    kline,
                    closed: true,
                    source: Source::Live,
                });
            }
            KlineMsg::FlatRun {
                interval,
                first_open_ms,
                count,
                price,
                ..
            } => {
                self.drop_snapshot(
                    index,
                    interval,
                    last_open_of_run(interval, first_open_ms, count),
                );
                self.push(Write::FlatRun {
                    symbol,
                    interval,
                    first_open_ms,
                    count,
                    price,
                });
            }
        }
    }

    /// Keep the latest open kline (by open time, then arrival) of a symbol and interval.
    fn snapshot(
        &mut self,
        index: SymbolIndex,
        symbol: SymbolRef,
        interval: Interval,
        kline: Kline,
    ) {
        let slot = self.snapshots.entry((index, interval));
        let entry = slot.or_insert_with(|| Snapshot {
            symbol: symbol.clone(),
            interval,
            kline,
        });
        if entry.kline.open_time_ms <= kline.open_time_ms {
            entry.kline = kline;
            entry.symbol = symbol;
        }
    }

    /// Forget a snapshot that a closed kline at `closed_open_ms` made stale.
    fn drop_snapshot(&mut self, index: SymbolIndex, interval: Interval, closed_open_ms: i64) {
        let key = (index, interval);
        if self
            .snapshots
            .get(&key)
            .is_some_and(|snapshot| snapshot.kline.open_time_ms <= closed_open_ms)
        {
            self.snapshots.remove(&key);
        }
    }

    fn refuse(&mut self, index: SymbolIndex, what: &str, rows: u64) {
        StoreCounters::add(&self.shared.counters.rows_refused, rows.max(1));
        *self.shared.last_refused.lock() = Some(format!(
            "{what} for unregistered symbol index {} refused",
            index.0
        ));
    }

    fn push(&mut self, write: Write) {
        self.pending_rows += write.rows();
        self.oldest.get_or_insert_with(Instant::now);
        self.writes.push(write);
    }

    fn commit_if_due(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|retry_at| now < retry_at) {
            return;
        }
        let forced = !self.flush_waiters.is_empty() || self.shutdown;
        let writes_due = self.pending_rows >= self.config.batch_rows
            || self
                .oldest
                .is_some_and(|oldest| now >= oldest + self.config.batch_deadline);
        let snapshots_due = !self.snapshots.is_empty()
            && now >= self.snapshots_written_at + self.config.snapshot_interval;
        if forced || writes_due || snapshots_due {
            self.commit(now, forced || snapshots_due);
        }
    }

    /// Commit the pending writes (and the snapshots when `with_snapshots`). On failure keep
    /// everything and schedule a retry.
    fn commit(&mut self, now: Instant, with_snapshots: bool) -> bool {
        let nothing = self.writes.is_empty() && (!with_snapshots || self.snapshots.is_empty());
        if nothing {
            self.answer_flushes();
            return true;
        }
        let started = Instant::now();
        let snapshots = with_snapshots
            .then(|| self.snapshots.values())
            .into_iter()
            .flatten();
        let result = self
            .batcher
            .commit(&mut self.conn, &self.writes, snapshots, wall_clock_ms());
        match result {
            Ok(stats) => {
                let counters = &self.shared.counters;
                StoreCounters::add(&counters.rows_written, stats.written);
                StoreCounters::add(&counters.rows_kept, stats.kept);
                StoreCounters::add(&counters.rows_refused, stats.refused);
                StoreCounters::add(&counters.snapshots_written, stats.snapshots);
                StoreCounters::add(&counters.backfill_open_skipped, stats.open_skipped);
                StoreCounters::add(&counters.venue_gaps_recorded, stats.gaps);
                StoreCounters::add(&counters.rows_repaired, stats.repaired);
                StoreCounters::add(&counters.rows_confirmed, stats.confirmed);
                self.publish_corrections();
                self.committed(now, started.elapsed(), with_snapshots);
                true
            }
            Err(error) => {
                StoreCounters::add(&self.shared.counters.batch_errors, 1);
                *self.shared.write_error.lock() = Some(error.to_string());
                self.retry_at = Some(now + self.config.retry_delay);
                false
            }
        }
    }

    /// Tell the corrections listeners (the WebSocket API) every kline a repair changed.
    fn publish_corrections(&self) {
        let counters = &self.shared.counters;
        for &(symbol, interval, kline) in &self.batcher.repaired {
            let msg = KlineMsg::Corrected {
                symbol,
                interval,
                kline,
            };
            for listener in &self.corrections {
                match listener.try_send(msg) {
                    Ok(()) => StoreCounters::add(&counters.corrections_sent, 1),
                    Err(_) => StoreCounters::add(&counters.corrections_dropped, 1),
                }
            }
        }
    }

    fn committed(&mut self, now: Instant, took: Duration, with_snapshots: bool) {
        let counters = &self.shared.counters;
        let took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        StoreCounters::add(&counters.batches, 1);
        StoreCounters::set(&counters.last_batch_us, took_us);
        counters.max_batch_us.fetch_max(took_us, Ordering::Relaxed);
        let now_ms = u64::try_from(wall_clock_ms()).unwrap_or(0);
        StoreCounters::set(&counters.last_write_ms, now_ms);
        *self.shared.write_error.lock() = None;
        self.writes.clear();
        self.pending_rows = 0;
        self.oldest = None;
        self.retry_at = None;
        if with_snapshots {
            self.snapshots.clear();
            self.snapshots_written_at = now;
        }
        self.answer_flushes();
    }

    fn answer_flushes(&mut self) {
        for done in self.flush_waiters.drain(..) {
            let _ = done.try_send(());
        }
    }

    fn beat(&self) {
        let counters = &self.shared.counters;
        let now_ms = u64::try_from(wall_clock_ms()).unwrap_or(0);
        StoreCounters::set(&counters.heartbeat_ms, now_ms);
        StoreCounters::set(&counters.pending_rows, self.pending_rows);
        let depth = self.commands.len() + self.klines.len() + self.deferred.len();
        StoreCounters::set(&counters.queue_depth, depth as u64);
    }

    /// Shutdown: take what the channels hold, commit everything (a bounded number of tries),
    /// checkpoint the WAL.
    fn finish(mut self) -> WriterReport {
        for _ in 0..self.commands.len() {
            match self.commands.try_recv() {
                Ok(cmd) => self.on_command(cmd),
                Err(_) => break,
            }
        }
        for msg in std::mem::take(&mut self.deferred) {
            self.on_kline(msg, false);
        }
        self.take_klines(self.klines.len(), u64::MAX);
        for msg in std::mem::take(&mut self.deferred) {
            self.on_kline(msg, false);
        }
        let mut committed = false;
        for attempt in 0..SHUTDOWN_COMMIT_TRIES {
            if attempt > 0 {
                std::thread::sleep(self.config.retry_delay);
            }
            self.retry_at = None;
            committed = self.commit(Instant::now(), true);
            if committed {
                break;
            }
        }
        let counters = &self.shared.counters;
        if !committed {
            let lost = self.pending_rows + self.snapshots.len() as u64;
            StoreCounters::add(&counters.rows_lost, lost);
        }
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        self.beat();
        WriterReport {
            rows_written: StoreCounters::get(&counters.rows_written),
            batches: StoreCounters::get(&counters.batches),
            rows_lost: StoreCounters::get(&counters.rows_lost),
            error: self.shared.write_error.lock().clone(),
        }
    }
}

/// The open time of the last kline of a flat run (`first_open_ms` for an empty run).
fn last_open_of_run(interval: Interval, first_open_ms: i64, count: u64) -> i64 {
    match interval.fixed_ms() {
        Some(len) => {
            let steps = i64::try_from(count.saturating_sub(1)).unwrap_or(i64::MAX);
            first_open_ms.saturating_add(steps.saturating_mul(len))
        }
        None => {
            let mut open = first_open_ms;
            for _ in 1..count {
                open = interval.next_open(open);
            }
            open
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_open_of_a_flat_run() {
        assert_eq!(last_open_of_run(Interval::M1, 0, 1), 0);
        assert_eq!(last_open_of_run(Interval::M1, 0, 3), 120_000);
        assert_eq!(last_open_of_run(Interval::M1, 60_000, 0), 60_000);
        // 2026-01-01 + 2 months = 2026-03-01.
        assert_eq!(
            last_open_of_run(Interval::Mo1, 1_767_225_600_000, 3),
            1_772_323_200_000
        );
        assert_eq!(last_open_of_run(Interval::M1, 0, u64::MAX), i64::MAX);
    }

    #[test]
    fn defaults_meet_the_delivery_contract() {
        let config = WriterConfig::default();
        assert!(config.batch_deadline <= Duration::from_secs(1));
        assert_eq!(config.snapshot_interval, Duration::from_secs(1));
        assert!(config.batch_rows < config.pending_rows_max);
        let msg = KlineMsg::FlatRun {
            symbol: SymbolIndex(7),
            interval: Interval::M1,
            first_open_ms: 0,
            count: 1,
            price: 1,
        };
        assert_eq!(msg.symbol(), SymbolIndex(7));
    }
}
