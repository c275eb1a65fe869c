//! The watchdog thread (`watchdog`): at its start and then every `HEALTH_POLL_MS` it asks every
//! [`HealthReporter`] for its report, publishes the consolidated [`WatchdogReport`] on the
//! [`HealthBoard`] (served by `GET /health`, which answers 503 once the report is older than
//! [`HEALTH_REPORT_MAX_AGE_MS`], i.e. when this thread stopped or hangs), logs one consolidated
//! line every `WATCHDOG_LOG_MS`, logs shards' connect failures and given-up streams (at most
//! one line per shard every `SHARD_FAULT_LOG_MS`), logs the activation progress line every
//! `PROGRESS_LOG_MS` while symbols are still activating, and stops the process (non-zero exit)
//! when a report is fatal (see `health.rs` for which are).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use klagg_shards::protocol::ShardCounters;
use parking_lot::Mutex;
use serde::Serialize;
use slog::{Logger, error, info, warn};

use crate::clock::{Clock, epoch_ms};
use crate::constants::{HEALTH_POLL_MS, HEARTBEAT_FATAL_MS, PROGRESS_LOG_MS, WATCHDOG_LOG_MS};
use crate::health::{HealthReport, HealthReporter, HealthStatus};
use crate::shard_health::ShardFaultLog;
pub use crate::shard_health::ShardHealthReporter;
use crate::shutdown::{Shutdown, StopReason};
use crate::status::StatusBoard;

/// `GET /health` answers 503 when the watchdog's latest report is older than this: the
/// watchdog thread stopped or hangs (it reports every `HEALTH_POLL_MS`).
pub const HEALTH_REPORT_MAX_AGE_MS: i64 = 3_000;
/// Before the watchdog's first report (the process is starting) the board's placeholder may be
/// this old before `/health` answers 503.
pub const HEALTH_STARTUP_MAX_AGE_MS: i64 = HEARTBEAT_FATAL_MS;

const _: () = assert!(2 * HEALTH_POLL_MS < HEALTH_REPORT_MAX_AGE_MS);
const _: () = assert!(HEALTH_REPORT_MAX_AGE_MS < HEALTH_STARTUP_MAX_AGE_MS);

/// One service's line in the consolidated report.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub name: String,
    #[serde(flatten)]
    pub report: HealthReport,
}

/// The consolidated report: the worst status wins.
#[derive(Debug, Clone, Serialize)]
pub struct WatchdogReport {
    pub status: HealthStatus,
    pub at_ms: i64,
    pub services: Vec<ServiceReport>,
}

/// The latest report, shared with the gateway.
#[derive(Debug)]
pub struct HealthBoard {
    latest: Mutex<Arc<WatchdogReport>>,
    /// The watchdog published at least once.
    published: AtomicBool,
}

impl Default for HealthBoard {
    fn default() -> Self {
        HealthBoard::new()
    }
}

impl HealthBoard {
    /// Before the first round: Ok, no services yet (the process is starting).
    pub fn new() -> HealthBoard {
        HealthBoard {
            latest: Mutex::new(Arc::new(WatchdogReport {
                status: HealthStatus::Ok,
                at_ms: epoch_ms(),
                services: Vec::new(),
            })),
            published: AtomicBool::new(false),
        }
    }

    pub fn latest(&self) -> Arc<WatchdogReport> {
        self.latest.lock().clone()
    }

    pub fn publish(&self, report: WatchdogReport) {
        *self.latest.lock() = Arc::new(report);
        self.published.store(true, Ordering::Release);
    }

    /// The latest report at `now_ms`, and why it cannot be trusted when it is too old
    /// (`HEALTH_REPORT_MAX_AGE_MS`; `HEALTH_STARTUP_MAX_AGE_MS` before the first report).
    pub fn current(&self, now_ms: i64) -> (Arc<WatchdogReport>, Option<String>) {
        let report = self.latest();
        let max = if self.published.load(Ordering::Acquire) {
            HEALTH_REPORT_MAX_AGE_MS
        } else {
            HEALTH_STARTUP_MAX_AGE_MS
        };
        let age = now_ms - report.at_ms;
        let stale = (age > max).then(|| {
            format!("the watchdog's report is {age} ms old (limit {max} ms): the watchdog stopped")
        });
        (report, stale)
    }
}

/// Collect every reporter once.
pub fn collect(reporters: &[Arc<dyn HealthReporter>], now_ms: i64) -> WatchdogReport {
    let services: Vec<ServiceReport> = reporters
        .iter()
        .map(|r| ServiceReport {
            name: r.name().to_string(),
            report: r.report(),
        })
        .collect();
    let status = services
        .iter()
        .map(|s| s.report.status)
        .max()
        .unwrap_or(HealthStatus::Ok);
    WatchdogReport {
        status,
        at_ms: now_ms,
        services,
    }
}

/// The one-line summary: `symbol-manager=ok shard-00=warning(heartbeat 6000 ms old) …`.
pub fn summary(report: &WatchdogReport) -> String {
    report
        .services
        .iter()
        .map(|s| match s.report.status {
            HealthStatus::Ok => format!("{}=ok", s.name),
            other => format!("{}={}({})", s.name, other.as_str(), s.report.message),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The watchdog's state.
pub struct Watchdog<C: Clock> {
    pub reporters: Vec<Arc<dyn HealthReporter>>,
    pub board: Arc<HealthBoard>,
    pub status: Arc<StatusBoard>,
    pub shards: Vec<Arc<ShardCounters>>,
    pub clock: C,
    pub log: Logger,
    pub shutdown: Shutdown,
}

impl<C: Clock> std::fmt::Debug for Watchdog<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("reporters", &self.reporters.len())
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Watchdog<C> {
    /// The thread body: a first round at once, then one per `HEALTH_POLL_MS` until shutdown.
    pub fn run(self) {
        let start = self.clock.now_ms();
        let (mut next_log, mut next_progress) = (start + WATCHDOG_LOG_MS, start + PROGRESS_LOG_MS);
        let mut last_trades = (start, self.trades());
        let mut all_announced = false;
        let mut faults = ShardFaultLog::default();
        self.board.publish(collect(&self.reporters, start));
        // The thread's event loop: intentionally unbounded; one round per HEALTH_POLL_MS.
        while !self
            .shutdown
            .sleep(std::time::Duration::from_millis(HEALTH_POLL_MS as u64))
        {
            let now = self.clock.now_ms();
            self.log_shard_faults(now, &mut faults);
            let report = collect(&self.reporters, now);
            if let Some(fatal) = report.services.iter().find(|s| s.report.fatal) {
                let message = format!("{}: {}", fatal.name, fatal.report.message);
                error!(self.log, "fatal health state, stopping"; "service" => &fatal.name, "message" => &fatal.report.message);
                self.shutdown.request(StopReason::Fatal(message));
            }
            if now >= next_log {
                next_log = now + WATCHDOG_LOG_MS;
                let line = summary(&report);
                match report.status {
                    HealthStatus::Ok => {
                        info!(self.log, "health"; "status" => "ok", "services" => line)
                    }
                    status => {
                        warn!(self.log, "health"; "status" => status.as_str(), "services" => line)
                    }
                }
            }
            self.board.publish(report);
            if now >= next_progress {
                next_progress = now + PROGRESS_LOG_MS;
                last_trades = self.progress(now, last_trades);
            }
            self.announce_all_active(&mut all_announced);
        }
    }

    /// Log connect failures and given-up streams of the shards (rate-limited per shard).
    fn log_shard_faults(&self, now_ms: i64, faults: &mut ShardFaultLog) {
        for f in faults.due(now_ms, &self.shards) {
            if f.connect_failures > 0 {
                warn!(self.log, "shard cannot connect to the venue"; "shard" => f.shard,
                    "connect_failures" => f.connect_failures,
                    "connect_failures_total" => f.connect_failures_total,
                    "connections_open" => f.connections_open);
            }
            if f.given_up > 0 {
                warn!(self.log, "shard gave up streams after repeated SUBSCRIBE errors";
                    "shard" => f.shard, "given_up" => f.given_up, "given_up_total" => f.given_up_total);
            }
        }
    }

    fn trades(&self) -> u64 {
        self.shards
            .iter()
            .map(|c| ShardCounters::get(&c.trades_applied))
            .sum()
    }

    /// Log the startup timeline once, when every symbol first is Active, or else when the last
    /// ones failed (nothing left to try until a refresh queues them again).
    fn announce_all_active(&self, announced: &mut bool) {
        if *announced {
            return;
        }
        let active = StatusBoard::get(&self.status.symbols_active);
        if let Some(all_ms) = self.status.all_active_ms() {
            *announced = true;
            info!(self.log, "all symbols active"; "symbols" => active,
                "first_active_ms" => self.status.first_active_ms(), "all_active_ms" => all_ms,
                "synchronous_baseline_ms" => self.status.last_package_ms());
        } else if let Some(settled_ms) = self.status.settled_ms() {
            *announced = true;
            warn!(self.log, "startup settled with failed symbols"; "active" => active,
                "failed" => StatusBoard::get(&self.status.symbols_failed),
                "first_active_ms" => self.status.first_active_ms(), "settled_ms" => settled_ms);
        }
    }

    /// Log "active/total, trades/s" while activating; returns the new trade sample.
    fn progress(&self, now_ms: i64, (then_ms, then_trades): (i64, u64)) -> (i64, u64) {
        let trades = self.trades();
        let active = StatusBoard::get(&self.status.symbols_active);
        let total = StatusBoard::get(&self.status.symbols_total);
        if self.status.settled_ms().is_none() {
            let elapsed_ms = (now_ms - then_ms).max(1) as u64;
            info!(self.log, "activating"; "active" => active, "total" => total,
                "failed" => StatusBoard::get(&self.status.symbols_failed),
                "trades_per_s" => (trades - then_trades.min(trades)) * 1000 / elapsed_ms,
                "since_start_ms" => self.status.start.elapsed_ms());
        }
        (now_ms, trades)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::StaticHealth;

    struct Bad;

    impl HealthReporter for Bad {
        fn name(&self) -> &str {
            "bad"
        }

        fn report(&self) -> HealthReport {
            HealthReport::new(HealthStatus::Warning, "slow")
        }
    }

    #[test]
    fn worst_status_wins_and_summary_names_problems() {
        let reporters: Vec<Arc<dyn HealthReporter>> =
            vec![Arc::new(StaticHealth { name: "api".into() }), Arc::new(Bad)];
        let report = collect(&reporters, 5);
        assert_eq!(report.status, HealthStatus::Warning);
        assert_eq!(summary(&report), "api=ok bad=warning(slow)");
        let board = HealthBoard::new();
        assert!(board.latest().services.is_empty());
        board.publish(report);
        assert_eq!(board.latest().services.len(), 2);
        let json = serde_json::to_value(&*board.latest()).unwrap();
        assert_eq!(json["services"][1]["name"], "bad");
        assert_eq!(json["services"][1]["status"], "warning");
    }

    #[test]
    fn an_old_report_is_stale() {
        let board = HealthBoard::new();
        let at = board.latest().at_ms;
        // Before the first report, the placeholder gets the startup allowance.
        assert!(board.current(at + HEALTH_REPORT_MAX_AGE_MS + 1).1.is_none());
        assert!(
            board
                .current(at + HEALTH_STARTUP_MAX_AGE_MS + 1)
                .1
                .is_some()
        );
        board.publish(collect(&[], at));
        assert!(board.current(at + HEALTH_REPORT_MAX_AGE_MS).1.is_none());
        let (report, stale) = board.current(at + HEALTH_REPORT_MAX_AGE_MS + 1);
        assert_eq!(report.at_ms, at);
        assert!(stale.unwrap().contains("watchdog stopped"));
    }
}
