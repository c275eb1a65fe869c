//! The watchdog thread (`watchdog`): every `HEALTH_POLL_MS` it asks every [`HealthReporter`]
//! for its report, publishes the consolidated [`WatchdogReport`] on the [`HealthBoard`] (served
//! by `GET /health`), logs one consolidated line every `WATCHDOG_LOG_MS`, logs the activation
//! progress line every `PROGRESS_LOG_MS` while symbols are still activating, and stops the
//! process (non-zero exit) when a report is fatal (see `health.rs` for which are).

use std::sync::Arc;

use klagg_shards::protocol::{ShardCounters, ShardHandle};
use parking_lot::Mutex;
use serde::Serialize;
use slog::{Logger, error, info, warn};

use crate::clock::{Clock, epoch_ms};
use crate::constants::{HEALTH_POLL_MS, PROGRESS_LOG_MS, WATCHDOG_LOG_MS};
use crate::health::{HealthReport, HealthReporter, HealthStatus, heartbeat_report};
use crate::shutdown::{Shutdown, StopReason};
use crate::status::StatusBoard;

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
        }
    }

    pub fn latest(&self) -> Arc<WatchdogReport> {
        self.latest.lock().clone()
    }

    pub fn publish(&self, report: WatchdogReport) {
        *self.latest.lock() = Arc::new(report);
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
    /// The thread body: runs until shutdown.
    pub fn run(self) {
        let start = self.clock.now_ms();
        let (mut next_log, mut next_progress) = (start + WATCHDOG_LOG_MS, start + PROGRESS_LOG_MS);
        let mut last_trades = (start, self.trades());
        let mut all_announced = false;
        // The thread's event loop: intentionally unbounded; one round per HEALTH_POLL_MS.
        while !self
            .shutdown
            .sleep(std::time::Duration::from_millis(HEALTH_POLL_MS as u64))
        {
            let now = self.clock.now_ms();
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

    fn trades(&self) -> u64 {
        self.shards
            .iter()
            .map(|c| ShardCounters::get(&c.trades_applied))
            .sum()
    }

    /// Log the startup timeline once, when every symbol first is Active.
    fn announce_all_active(&self, announced: &mut bool) {
        if *announced {
            return;
        }
        if let Some(all_ms) = self.status.all_active_ms() {
            *announced = true;
            info!(self.log, "all symbols active"; "symbols" => StatusBoard::get(&self.status.symbols_active),
                "first_active_ms" => self.status.first_active_ms(), "all_active_ms" => all_ms,
                "synchronous_baseline_ms" => self.status.last_package_ms());
        }
    }

    /// Log "active/total, trades/s" while activating; returns the new trade sample.
    fn progress(&self, now_ms: i64, (then_ms, then_trades): (i64, u64)) -> (i64, u64) {
        let trades = self.trades();
        let active = StatusBoard::get(&self.status.symbols_active);
        let total = StatusBoard::get(&self.status.symbols_total);
        if active < total || self.status.all_active_ms().is_none() {
            let elapsed_ms = (now_ms - then_ms).max(1) as u64;
            info!(self.log, "activating"; "active" => active, "total" => total,
                "failed" => StatusBoard::get(&self.status.symbols_failed),
                "trades_per_s" => (trades - then_trades.min(trades)) * 1000 / elapsed_ms,
                "since_start_ms" => self.status.start.elapsed_ms());
        }
        (now_ms, trades)
    }
}

/// Health of a shard from its counters (heartbeat written on the shard's timer).
#[derive(Debug)]
pub struct ShardHealthReporter {
    pub handle: ShardHandle,
    pub name: String,
}

impl ShardHealthReporter {
    pub fn new(handle: ShardHandle) -> ShardHealthReporter {
        ShardHealthReporter {
            name: format!("shard-{:02}", handle.id.0),
            handle,
        }
    }
}

impl HealthReporter for ShardHealthReporter {
    fn name(&self) -> &str {
        &self.name
    }

    fn report(&self) -> HealthReport {
        let c = self.handle.counters.snapshot();
        let beat = i64::try_from(c.heartbeat_ms).unwrap_or(0);
        // Before its first heartbeat a shard is judged from the process start.
        let now = epoch_ms();
        let mut report = heartbeat_report(now, if beat == 0 { now } else { beat }, true);
        if self.handle.pin_failed {
            report.raise(HealthStatus::Warning, "pinning to its core failed");
        }
        report
            .detail("core", self.handle.core)
            .detail("symbols_active", c.symbols_active)
            .detail("trades_applied", c.trades_applied)
            .detail("gaps", c.gaps)
            .detail("reconnects", c.reconnects)
            .detail("connections_open", c.connections_open)
            .detail("outbox_depth", c.outbox_depth)
            .detail("inbox_depth", self.handle.inbox_len())
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
}
