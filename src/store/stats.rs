//! The store writer's counters and health (written by the writer thread only; read by any
//! thread: /metrics, the watchdog's HealthReporter, tests).

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// A heartbeat older than this makes the writer unhealthy (it beats at least every second).
pub const HEARTBEAT_STALE_MS: i64 = 5_000;

/// The writer's counters (monotonic unless marked as a gauge). Single writer, `Relaxed`.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Rows inserted or replaced in `klines` (closed, snapshots, backfill).
    pub rows_written: AtomicU64,
    /// Rows not applied because the stored row has a higher precedence (see [`super::Source`]).
    pub rows_kept: AtomicU64,
    /// Kline messages refused: unregistered symbol, or a value the schema cannot hold.
    pub rows_refused: AtomicU64,
    /// Rows lost because the database failed through every retry at shutdown.
    pub rows_lost: AtomicU64,
    /// Open-kline snapshots written (a subset of `rows_written` attempts).
    pub snapshots_written: AtomicU64,
    /// Backfilled klines skipped because they were not closed yet.
    pub backfill_open_skipped: AtomicU64,
    /// Repair klines that replaced a different stored row or filled a hole (klines a gap or an
    /// activation had made wrong or left out).
    pub rows_repaired: AtomicU64,
    /// Repair klines equal to the stored closed row (the live kline was right).
    pub rows_confirmed: AtomicU64,
    /// Repaired klines sent to the corrections listeners, and those a full listener missed.
    pub corrections_sent: AtomicU64,
    pub corrections_dropped: AtomicU64,
    /// Venue-gap ranges recorded (periods the venue has no klines for).
    pub venue_gaps_recorded: AtomicU64,
    /// Committed transactions.
    pub batches: AtomicU64,
    /// Failed transactions (retried).
    pub batch_errors: AtomicU64,
    /// Gauge: duration of the last committed transaction, µs.
    pub last_batch_us: AtomicU64,
    /// Gauge: the longest committed transaction so far, µs.
    pub max_batch_us: AtomicU64,
    /// Gauge: rows received and not yet committed.
    pub pending_rows: AtomicU64,
    /// Gauge: messages waiting in the writer's inbound channels.
    pub queue_depth: AtomicU64,
    /// Gauge: epoch ms of the last successful commit (0 = none yet).
    pub last_write_ms: AtomicU64,
    /// Gauge: epoch ms of the writer loop's last heartbeat.
    pub heartbeat_ms: AtomicU64,
}

impl StoreCounters {
    /// Read a counter or gauge.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn set(counter: &AtomicU64, value: u64) {
        counter.store(value, Ordering::Relaxed);
    }
}

/// State shared between the writer thread and its handle.
#[derive(Debug, Default)]
pub(crate) struct WriterShared {
    pub counters: StoreCounters,
    /// The last failed commit's error, cleared by the next successful commit.
    pub write_error: Mutex<Option<String>>,
    /// Why the last kline message was refused (not cleared: a refusal is a wiring bug).
    pub last_refused: Mutex<Option<String>>,
    /// Set when the writer loop has exited.
    pub stopped: std::sync::atomic::AtomicBool,
}

/// A health snapshot of the writer, for the watchdog's HealthReporter and `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// No failed commit outstanding, the loop is beating, the thread is running.
    pub healthy: bool,
    /// One line for logs and `/health`.
    pub detail: String,
    /// Epoch ms of the last successful commit.
    pub last_write_ms: Option<i64>,
    /// Epoch ms of the last heartbeat.
    pub heartbeat_ms: i64,
    pub write_error: Option<String>,
    pub last_refused: Option<String>,
    pub pending_rows: u64,
    pub queue_depth: u64,
}

impl WriterShared {
    pub(crate) fn health(&self, now_ms: i64) -> StoreHealth {
        let counters = &self.counters;
        let last_write = StoreCounters::get(&counters.last_write_ms);
        let heartbeat_ms = i64::try_from(StoreCounters::get(&counters.heartbeat_ms)).unwrap_or(0);
        let write_error = self.write_error.lock().clone();
        let stopped = self.stopped.load(Ordering::Acquire);
        let stale = now_ms.saturating_sub(heartbeat_ms) > HEARTBEAT_STALE_MS;
        let detail = match (&write_error, stopped, stale) {
            (_, true, _) => "store writer stopped".to_string(),
            (Some(error), _, _) => format!("store writes failing: {error}"),
            (None, _, true) => format!("store writer silent since {heartbeat_ms}"),
            (None, false, false) => "ok".to_string(),
        };
        StoreHealth {
            healthy: write_error.is_none() && !stopped && !stale,
            detail,
            last_write_ms: (last_write > 0).then(|| i64::try_from(last_write).unwrap_or(0)),
            heartbeat_ms,
            write_error,
            last_refused: self.last_refused.lock().clone(),
            pending_rows: StoreCounters::get(&counters.pending_rows),
            queue_depth: StoreCounters::get(&counters.queue_depth),
        }
    }
}

/// What the writer thread reports when it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterReport {
    pub rows_written: u64,
    pub batches: u64,
    /// Rows that could not be written before exit (0 unless the database kept failing).
    pub rows_lost: u64,
    /// The last write error, if the final flush failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names_the_problem() {
        let shared = WriterShared::default();
        StoreCounters::set(&shared.counters.heartbeat_ms, 10_000);
        let ok = shared.health(11_000);
        assert!(ok.healthy);
        assert_eq!((ok.detail.as_str(), ok.last_write_ms), ("ok", None));
        let stale = shared.health(10_000 + HEARTBEAT_STALE_MS + 1);
        assert!(!stale.healthy && stale.detail.contains("silent"));
        *shared.write_error.lock() = Some("disk I/O error".to_string());
        let failing = shared.health(11_000);
        assert!(!failing.healthy && failing.detail.contains("disk I/O error"));
        shared.stopped.store(true, Ordering::Release);
        assert_eq!(shared.health(11_000).detail, "store writer stopped");
        StoreCounters::set(&shared.counters.last_write_ms, 10_500);
        assert_eq!(shared.health(11_000).last_write_ms, Some(10_500));
    }
}
