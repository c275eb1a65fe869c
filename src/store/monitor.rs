//! What other threads read about the store (any thread: the watchdog, the API threads, tests):
//! a shareable [`StoreMonitor`] of the writer (counters, health, path) that outlives
//! `WriterHandle::shutdown(self)`, the history thread's [`HistoryProgress`] counters, the
//! [`StoreView`] that bundles them (added to the gateway's state, found with
//! `ctx.state::<StoreView>()`), the store's `HealthReporter` and its `/metrics` families.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::registry::Registry;

use super::reader::Reader;
use super::stats::{StoreCounters, StoreHealth, WriterShared};
use super::{StoreError, wall_clock_ms};
use crate::gateway::metrics::{MetricRow, counter, gauge, register};
use crate::health::{HealthReport, HealthReporter, HealthStatus, heartbeat_report};

/// A cheap, cloneable view of a running (or stopped) writer.
#[derive(Debug, Clone)]
pub struct StoreMonitor {
    shared: Arc<WriterShared>,
    path: PathBuf,
}

impl StoreMonitor {
    pub(crate) fn new(shared: Arc<WriterShared>, path: PathBuf) -> StoreMonitor {
        StoreMonitor { shared, path }
    }

    /// The writer's counters.
    pub fn counters(&self) -> &StoreCounters {
        &self.shared.counters
    }

    /// A health snapshot at wall-clock time `now_ms`.
    pub fn health(&self, now_ms: i64) -> StoreHealth {
        self.shared.health(now_ms)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Counters of the history backfill and the repairs (written by the `history` thread and the
/// SymbolManager threads that feed it; any thread reads). Monotonic unless marked as a gauge.
#[derive(Debug, Default)]
pub struct HistoryProgress {
    /// Gauge: epoch ms of the history thread's last loop.
    pub heartbeat_ms: AtomicU64,
    /// Symbols queued for history (each once per process).
    pub symbols_total: AtomicU64,
    /// Symbols whose history is complete (every planned request answered).
    pub symbols_done: AtomicU64,
    /// Symbols given up (not Active any more, or requests kept failing).
    pub symbols_skipped: AtomicU64,
    /// Periods the planner found missing (absent, flat fills, stale open snapshots).
    pub periods_missing: AtomicU64,
    pub requests: AtomicU64,
    /// REST weight of the history requests.
    pub weight: AtomicU64,
    /// Klines received from the venue and sent to the writer.
    pub klines: AtomicU64,
    /// Failed history or repair requests (after the REST client's own retries).
    pub errors: AtomicU64,
    /// Times a history or repair request waited because activation packages were waiting.
    pub yields: AtomicU64,
    /// Repairs asked for: one per activation and per gap.
    pub repairs: AtomicU64,
    /// Repairs that follow a reported gap (missed trades).
    pub repair_gaps: AtomicU64,
    /// Gauge: repair jobs (symbol × interval) waiting.
    pub repair_jobs_pending: AtomicU64,
    /// Periods the repairs cover.
    pub repair_periods: AtomicU64,
    /// Repairs cut to `--repair-max-periods` (their oldest periods were left as they are).
    pub repair_capped: AtomicU64,
    /// Repair jobs refused because the pending list was full.
    pub repair_refused: AtomicU64,
    /// Repair jobs dropped because their symbol left (delisted, failed activation).
    pub repair_dropped: AtomicU64,
    pub repair_requests: AtomicU64,
    pub repair_weight: AtomicU64,
    pub repair_klines: AtomicU64,
    /// Symbols registered with the writer before their first activation.
    pub registrations: AtomicU64,
    /// Store commands that could not be delivered (the writer was gone or stayed full).
    pub store_send_failures: AtomicU64,
}

impl HistoryProgress {
    /// Read a counter or gauge.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Add to a counter.
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Set a gauge.
    pub fn set(counter: &AtomicU64, value: u64) {
        counter.store(value, Ordering::Relaxed);
    }

    /// True when every queued symbol's history is done or given up (and at least one was).
    pub fn history_complete(&self) -> bool {
        let total = Self::get(&self.symbols_total);
        let finished = Self::get(&self.symbols_done) + Self::get(&self.symbols_skipped);
        total > 0 && finished >= total
    }
}

/// Everything about the store that other threads read.
#[derive(Debug)]
pub struct StoreView {
    pub monitor: StoreMonitor,
    pub progress: Arc<HistoryProgress>,
    /// `--history-bars`.
    pub history_bars: u32,
}

impl StoreView {
    /// The database file.
    pub fn path(&self) -> &Path {
        self.monitor.path()
    }

    /// A new read-only connection (one per reading thread; `Reader` is not `Sync`).
    ///
    /// # Errors
    /// As [`Reader::open`].
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Reader::open(self.monitor.path())
    }

    /// Add the store's metrics to a `/metrics` registry (prefix `klagg` is the caller's).
    pub fn register_metrics(&self, registry: &mut Registry) {
        for row in self.metric_values() {
            register(registry, row);
        }
    }

    /// Every store metric (gauges for levels, counters for monotonic counts).
    pub fn metric_values(&self) -> Vec<MetricRow> {
        let mut rows = writer_metrics(self.monitor.counters());
        rows.extend(history_metrics(&self.progress));
        rows
    }
}

fn writer_metrics(c: &StoreCounters) -> Vec<MetricRow> {
    let get = StoreCounters::get;
    vec![
        gauge(
            "store_queue_depth",
            "Messages waiting for the store writer",
            get(&c.queue_depth),
        ),
        gauge(
            "store_pending_rows",
            "Rows received and not yet committed",
            get(&c.pending_rows),
        ),
        counter(
            "store_rows_written",
            "Kline rows inserted or replaced",
            get(&c.rows_written),
        ),
        counter(
            "store_rows_kept",
            "Writes not applied: the stored row ranks higher",
            get(&c.rows_kept),
        ),
        counter(
            "store_rows_refused",
            "Kline messages refused (wiring bugs)",
            get(&c.rows_refused),
        ),
        counter(
            "store_rows_lost",
            "Rows lost because the database kept failing",
            get(&c.rows_lost),
        ),
        counter(
            "store_rows_repaired",
            "Klines corrected by a repair",
            get(&c.rows_repaired),
        ),
        counter(
            "store_rows_confirmed",
            "Repairs equal to the stored kline",
            get(&c.rows_confirmed),
        ),
        counter(
            "store_snapshots_written",
            "Open-kline snapshots written",
            get(&c.snapshots_written),
        ),
        counter("store_batches", "Committed transactions", get(&c.batches)),
        counter(
            "store_batch_errors",
            "Failed transactions (retried)",
            get(&c.batch_errors),
        ),
        gauge(
            "store_last_batch_us",
            "Duration of the last transaction, µs",
            get(&c.last_batch_us),
        ),
        gauge(
            "store_max_batch_us",
            "Longest transaction, µs",
            get(&c.max_batch_us),
        ),
        counter(
            "store_venue_gaps",
            "Venue-gap ranges recorded",
            get(&c.venue_gaps_recorded),
        ),
        counter(
            "store_corrections_dropped",
            "Repair corrections a full consumer channel missed",
            get(&c.corrections_dropped),
        ),
    ]
}

fn history_metrics(p: &HistoryProgress) -> Vec<MetricRow> {
    let get = HistoryProgress::get;
    vec![
        counter(
            "history_symbols_queued",
            "Symbols queued for history",
            get(&p.symbols_total),
        ),
        counter(
            "history_symbols_done",
            "Symbols whose history is complete",
            get(&p.symbols_done),
        ),
        counter(
            "history_symbols_skipped",
            "Symbols whose history was given up",
            get(&p.symbols_skipped),
        ),
        counter(
            "history_periods_missing",
            "Periods found missing",
            get(&p.periods_missing),
        ),
        counter(
            "history_requests",
            "History klines requests",
            get(&p.requests),
        ),
        counter(
            "history_weight",
            "REST weight spent on history",
            get(&p.weight),
        ),
        counter("history_klines", "History klines fetched", get(&p.klines)),
        counter(
            "history_errors",
            "Failed history and repair requests",
            get(&p.errors),
        ),
        counter(
            "history_yields",
            "Waits for activation packages",
            get(&p.yields),
        ),
        counter(
            "repairs",
            "Repairs asked for (activations and gaps)",
            get(&p.repairs),
        ),
        counter(
            "repair_gaps",
            "Repairs after a reported gap",
            get(&p.repair_gaps),
        ),
        gauge(
            "repair_jobs_pending",
            "Repair jobs waiting",
            get(&p.repair_jobs_pending),
        ),
        counter(
            "repair_periods",
            "Periods covered by repairs",
            get(&p.repair_periods),
        ),
        counter(
            "repair_capped",
            "Repairs cut to --repair-max-periods",
            get(&p.repair_capped),
        ),
        counter(
            "repair_refused",
            "Repair jobs refused (list full)",
            get(&p.repair_refused),
        ),
        counter(
            "repair_dropped",
            "Repair jobs of symbols that left",
            get(&p.repair_dropped),
        ),
        counter(
            "repair_requests",
            "Repair klines requests",
            get(&p.repair_requests),
        ),
        counter(
            "repair_weight",
            "REST weight spent on repairs",
            get(&p.repair_weight),
        ),
        counter(
            "repair_klines",
            "Repair klines fetched",
            get(&p.repair_klines),
        ),
        counter(
            "store_registrations",
            "Symbols registered with the store",
            get(&p.registrations),
        ),
        counter(
            "store_send_failures",
            "Store commands not delivered",
            get(&p.store_send_failures),
        ),
    ]
}

/// The store's `HealthReporter` (name `store`): fatal when the writer thread is gone or silent
/// for `HEARTBEAT_FATAL_MS`; an Error while commits fail (rows wait, bounded); a Warning for
/// refused klines (a wiring bug) and a silent history thread.
#[derive(Debug)]
pub struct StoreReporter {
    pub view: Arc<StoreView>,
    /// Whether the history thread runs (its heartbeat is then watched).
    pub history: bool,
}

impl HealthReporter for StoreReporter {
    fn name(&self) -> &str {
        "store"
    }

    fn report(&self) -> HealthReport {
        let now = wall_clock_ms();
        let health = self.view.monitor.health(now);
        let mut report = heartbeat_report(now, health.heartbeat_ms, true);
        if self.view.monitor.shared.stopped.load(Ordering::Acquire) {
            report.raise(HealthStatus::Error, "store writer stopped");
            report.fatal = true;
        } else if let Some(error) = &health.write_error {
            report.raise(
                HealthStatus::Error,
                format!("store writes failing: {error}"),
            );
        }
        if let Some(refused) = &health.last_refused {
            report.raise(HealthStatus::Warning, refused.clone());
        }
        let progress = &self.view.progress;
        if self.history {
            let beat = i64::try_from(HistoryProgress::get(&progress.heartbeat_ms)).unwrap_or(0);
            let history = heartbeat_report(now, beat, false);
            if history.status != HealthStatus::Ok {
                report.raise(
                    HealthStatus::Warning,
                    format!("history: {}", history.message),
                );
            }
        }
        let c = self.view.monitor.counters();
        report
            .detail("db", self.view.path().display().to_string())
            .detail("queue_depth", StoreCounters::get(&c.queue_depth))
            .detail("rows_written", StoreCounters::get(&c.rows_written))
            .detail("rows_refused", StoreCounters::get(&c.rows_refused))
            .detail("rows_repaired", StoreCounters::get(&c.rows_repaired))
            .detail("last_batch_us", StoreCounters::get(&c.last_batch_us))
            .detail(
                "history_symbols_done",
                HistoryProgress::get(&progress.symbols_done),
            )
            .detail(
                "history_symbols_total",
                HistoryProgress::get(&progress.symbols_total),
            )
            .detail("history_weight", HistoryProgress::get(&progress.weight))
            .detail(
                "repair_weight",
                HistoryProgress::get(&progress.repair_weight),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> StoreView {
        StoreView {
            monitor: StoreMonitor::new(Arc::new(WriterShared::default()), "x.db".into()),
            progress: Arc::new(HistoryProgress::default()),
            history_bars: 10,
        }
    }

    #[test]
    fn metrics_are_registered_under_the_callers_prefix() {
        let view = view();
        StoreCounters::set(&view.monitor.counters().queue_depth, 7);
        HistoryProgress::add(&view.progress.weight, 35);
        let mut registry = Registry::with_prefix("klagg");
        view.register_metrics(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("klagg_store_queue_depth 7"), "{text}");
        assert!(
            text.contains("# TYPE klagg_history_weight counter"),
            "{text}"
        );
        assert!(text.contains("klagg_history_weight_total 35"), "{text}");
        assert!(text.contains("klagg_store_rows_written_total 0"), "{text}");
    }

    #[test]
    fn a_stopped_writer_is_fatal_and_refusals_warn() {
        let view = Arc::new(view());
        let now = u64::try_from(wall_clock_ms()).unwrap();
        StoreCounters::set(&view.monitor.counters().heartbeat_ms, now);
        HistoryProgress::set(&view.progress.heartbeat_ms, now);
        let reporter = StoreReporter {
            view: view.clone(),
            history: true,
        };
        assert_eq!(reporter.report().status, HealthStatus::Ok);
        *view.monitor.shared.last_refused.lock() = Some("kline refused".into());
        assert_eq!(reporter.report().status, HealthStatus::Warning);
        view.monitor.shared.stopped.store(true, Ordering::Release);
        let report = reporter.report();
        assert!(report.fatal && report.status == HealthStatus::Error);
        assert!(!view.progress.history_complete());
        HistoryProgress::add(&view.progress.symbols_total, 2);
        HistoryProgress::add(&view.progress.symbols_done, 1);
        HistoryProgress::add(&view.progress.symbols_skipped, 1);
        assert!(view.progress.history_complete());
    }
}
