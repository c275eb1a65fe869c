//! The status board (written by the control threads, read by the gateway and the watchdog): the
//! startup timeline, per-symbol activation state and a few gauges, as atomics. Each field has one
//! writer: the dispatcher writes the activation cells and counts, the SymbolManager the totals and
//! the backfill gauges, the REST client its weight counters. Readers get a consistent-enough view
//! for operations; nothing on a shard's hot path touches it.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

use klagg_shards::protocol::{ShardId, SymbolIndex};

use crate::activation_dispatcher::DispatchState;
use crate::clock::ProcessStart;
use crate::constants::SYMBOLS_MAX;

const NONE_MS: i64 = -1;
const NO_SHARD: u16 = u16::MAX;

/// One symbol's activation cell (written by the dispatcher thread).
#[derive(Debug)]
struct SymbolCell {
    state: AtomicU8,
    shard: AtomicU16,
    /// First activation, ms since process start (`-1`: never).
    activated_ms: AtomicI64,
}

impl SymbolCell {
    fn new() -> SymbolCell {
        SymbolCell {
            state: AtomicU8::new(encode_state(DispatchState::Unknown)),
            shard: AtomicU16::new(NO_SHARD),
            activated_ms: AtomicI64::new(NONE_MS),
        }
    }
}

const STATES: [DispatchState; 7] = [
    DispatchState::Unknown,
    DispatchState::Queued,
    DispatchState::Activating,
    DispatchState::Backoff,
    DispatchState::Active,
    DispatchState::Failed,
    DispatchState::Deactivated,
];

fn encode_state(state: DispatchState) -> u8 {
    STATES
        .iter()
        .position(|&s| s == state)
        .map_or(0, |i| i as u8)
}

fn decode_state(code: u8) -> DispatchState {
    STATES
        .get(usize::from(code))
        .copied()
        .unwrap_or(DispatchState::Unknown)
}

/// A symbol's activation status as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolStatus {
    pub state: DispatchState,
    pub shard: Option<ShardId>,
    /// First activation, ms since process start.
    pub activated_ms: Option<i64>,
}

/// Startup timeline, counts and gauges shared by the control threads.
#[derive(Debug)]
pub struct StatusBoard {
    pub start: ProcessStart,
    cells: Box<[SymbolCell]>,
    /// Symbols that should be active (universe minus delisted); SymbolManager.
    pub symbols_total: AtomicU64,
    /// Dispatcher.
    pub symbols_active: AtomicU64,
    pub symbols_failed: AtomicU64,
    first_active_ms: AtomicI64,
    all_active_ms: AtomicI64,
    /// When every symbol first was Active or Failed (startup has nothing left to try).
    settled_ms: AtomicI64,
    /// When the last initial package of the startup universe was ready (ms since start): the
    /// "synchronous baseline", when a prepare-everything-first design would have started serving.
    last_package_ms: AtomicI64,
    /// Activation requests waiting in `activation_tx` / the dispatcher's backlog / acks in flight.
    pub activation_queue_depth: AtomicU64,
    pub dispatcher_backlog: AtomicU64,
    pub dispatcher_in_flight: AtomicU64,
    pub activation_retries: AtomicU64,
    pub stale_acks: AtomicU64,
    /// SymbolManager: backfill jobs waiting, packages built, weight spent on packages.
    pub backfill_queue_depth: AtomicU64,
    pub packages_built: AtomicU64,
    pub package_weight: AtomicU64,
    pub package_requests: AtomicU64,
    pub resyncs: AtomicU64,
    /// Resync rounds that failed and were deferred (backfill threads).
    pub resync_rounds_failed: AtomicU64,
    pub listings: AtomicU64,
    pub delistings: AtomicU64,
    /// Heartbeats (epoch ms) of the control threads, written on their own timers.
    pub dispatcher_heartbeat_ms: AtomicI64,
    pub manager_heartbeat_ms: AtomicI64,
    pub detector_heartbeat_ms: AtomicI64,
    /// Frames seen by the NewSymbolDetector and its reconnects.
    pub detector_frames: AtomicU64,
    pub detector_reconnects: AtomicU64,
    pub detector_connected: AtomicU32,
    /// Closed, flat-run and corrected kline messages received from the shards.
    pub klines_received: AtomicU64,
    /// Symbol announcements a full listener missed.
    pub announcements_dropped: AtomicU64,
}

impl StatusBoard {
    pub fn new(start: ProcessStart) -> StatusBoard {
        let now = start.started_at_ms;
        StatusBoard {
            start,
            cells: (0..SYMBOLS_MAX).map(|_| SymbolCell::new()).collect(),
            symbols_total: AtomicU64::new(0),
            symbols_active: AtomicU64::new(0),
            symbols_failed: AtomicU64::new(0),
            first_active_ms: AtomicI64::new(NONE_MS),
            all_active_ms: AtomicI64::new(NONE_MS),
            settled_ms: AtomicI64::new(NONE_MS),
            last_package_ms: AtomicI64::new(NONE_MS),
            activation_queue_depth: AtomicU64::new(0),
            dispatcher_backlog: AtomicU64::new(0),
            dispatcher_in_flight: AtomicU64::new(0),
            activation_retries: AtomicU64::new(0),
            stale_acks: AtomicU64::new(0),
            backfill_queue_depth: AtomicU64::new(0),
            packages_built: AtomicU64::new(0),
            package_weight: AtomicU64::new(0),
            package_requests: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            resync_rounds_failed: AtomicU64::new(0),
            listings: AtomicU64::new(0),
            delistings: AtomicU64::new(0),
            dispatcher_heartbeat_ms: AtomicI64::new(now),
            manager_heartbeat_ms: AtomicI64::new(now),
            detector_heartbeat_ms: AtomicI64::new(now),
            detector_frames: AtomicU64::new(0),
            detector_reconnects: AtomicU64::new(0),
            detector_connected: AtomicU32::new(0),
            klines_received: AtomicU64::new(0),
            announcements_dropped: AtomicU64::new(0),
        }
    }

    /// Publish a symbol's state (dispatcher thread). The first Active sets its activation time
    /// and the startup timeline.
    pub fn set_symbol(&self, symbol: SymbolIndex, state: DispatchState, shard: Option<ShardId>) {
        let Some(cell) = self.cells.get(symbol.0 as usize) else {
            return;
        };
        cell.state.store(encode_state(state), Ordering::Relaxed);
        cell.shard
            .store(shard.map_or(NO_SHARD, |s| s.0), Ordering::Relaxed);
        if state == DispatchState::Active {
            let since_start = self.start.elapsed_ms();
            let _ = cell.activated_ms.compare_exchange(
                NONE_MS,
                since_start,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            let _ = self.first_active_ms.compare_exchange(
                NONE_MS,
                since_start,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Publish the counts (dispatcher thread) and note when every symbol first was Active.
    pub fn set_counts(&self, active: u64, failed: u64) {
        self.symbols_active.store(active, Ordering::Relaxed);
        self.symbols_failed.store(failed, Ordering::Relaxed);
        let total = self.symbols_total.load(Ordering::Relaxed);
        let first_time = |cell: &AtomicI64| {
            let now = self.start.elapsed_ms();
            let _ = cell.compare_exchange(NONE_MS, now, Ordering::Relaxed, Ordering::Relaxed);
        };
        if total > 0 && active >= total {
            first_time(&self.all_active_ms);
        }
        if total > 0 && active + failed >= total {
            first_time(&self.settled_ms);
        }
    }

    /// A symbol's published status.
    pub fn symbol(&self, symbol: SymbolIndex) -> SymbolStatus {
        let Some(cell) = self.cells.get(symbol.0 as usize) else {
            return SymbolStatus {
                state: DispatchState::Unknown,
                shard: None,
                activated_ms: None,
            };
        };
        let shard = cell.shard.load(Ordering::Relaxed);
        let activated = cell.activated_ms.load(Ordering::Relaxed);
        SymbolStatus {
            state: decode_state(cell.state.load(Ordering::Relaxed)),
            shard: (shard != NO_SHARD).then_some(ShardId(shard)),
            activated_ms: (activated != NONE_MS).then_some(activated),
        }
    }

    /// First symbol Active, ms since start.
    pub fn first_active_ms(&self) -> Option<i64> {
        let ms = self.first_active_ms.load(Ordering::Relaxed);
        (ms != NONE_MS).then_some(ms)
    }

    /// Every symbol Active (first time), ms since start.
    pub fn all_active_ms(&self) -> Option<i64> {
        let ms = self.all_active_ms.load(Ordering::Relaxed);
        (ms != NONE_MS).then_some(ms)
    }

    /// Every symbol Active or Failed (first time), ms since start.
    pub fn settled_ms(&self) -> Option<i64> {
        let ms = self.settled_ms.load(Ordering::Relaxed);
        (ms != NONE_MS).then_some(ms)
    }

    /// Record that the last startup package was ready now (SymbolManager).
    pub fn mark_last_package(&self) {
        self.last_package_ms
            .store(self.start.elapsed_ms(), Ordering::Relaxed);
    }

    /// The synchronous baseline, ms since start.
    pub fn last_package_ms(&self) -> Option<i64> {
        let ms = self.last_package_ms.load(Ordering::Relaxed);
        (ms != NONE_MS).then_some(ms)
    }

    /// Read a gauge or counter.
    pub fn get(value: &AtomicU64) -> u64 {
        value.load(Ordering::Relaxed)
    }

    /// Add to a counter.
    pub fn add(value: &AtomicU64, amount: u64) {
        value.fetch_add(amount, Ordering::Relaxed);
    }

    /// Set a gauge.
    pub fn put(value: &AtomicU64, amount: u64) {
        value.store(amount, Ordering::Relaxed);
    }

    /// Store a heartbeat.
    pub fn beat(heartbeat: &AtomicI64, now_ms: i64) {
        heartbeat.store(now_ms, Ordering::Relaxed);
    }

    /// Read a heartbeat.
    pub fn heartbeat(heartbeat: &AtomicI64) -> i64 {
        heartbeat.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_symbol_settles_startup_but_is_not_active() {
        let board = StatusBoard::new(ProcessStart::now());
        board.symbols_total.store(3, Ordering::Relaxed);
        board.set_counts(2, 0);
        assert_eq!(board.settled_ms(), None);
        board.set_counts(2, 1);
        assert!(board.settled_ms().is_some());
        assert_eq!(board.all_active_ms(), None, "one failed: not all active");
    }

    #[test]
    fn timeline_is_set_once() {
        let board = StatusBoard::new(ProcessStart::now());
        assert_eq!(board.first_active_ms(), None);
        board.symbols_total.store(2, Ordering::Relaxed);
        board.set_symbol(SymbolIndex(1), DispatchState::Active, Some(ShardId(0)));
        board.set_counts(1, 0);
        assert!(board.first_active_ms().is_some());
        assert_eq!(board.all_active_ms(), None);
        board.set_symbol(SymbolIndex(0), DispatchState::Active, Some(ShardId(1)));
        board.set_counts(2, 0);
        assert!(board.all_active_ms().is_some());
        assert!(board.settled_ms().is_some());
        let status = board.symbol(SymbolIndex(0));
        assert_eq!(status.state, DispatchState::Active);
        assert_eq!(status.shard, Some(ShardId(1)));
        board.set_symbol(SymbolIndex(0), DispatchState::Deactivated, None);
        assert_eq!(board.symbol(SymbolIndex(0)).shard, None);
        assert!(board.symbol(SymbolIndex(0)).activated_ms.is_some());
        assert_eq!(
            board.symbol(SymbolIndex(99_999)).state,
            DispatchState::Unknown
        );
    }
}
