//! The SymbolManager's health reporter (called on the watchdog thread; reads atomics, the job
//! queue and the registry that the SymbolManager's threads write on their own timers): the
//! manager's heartbeat (fatal when stale), the NewSymbolDetector's heartbeat and connection, REST
//! pauses and resyncs that keep failing (alerts only).
//!
//! A REST pause (429 `Retry-After`, a 418 ban) is an alert, never a hung thread: the REST client
//! beats the manager's heartbeat while the manager waits it out (see `rest::WaitBeat`).

use std::sync::Arc;

use super::backfiller::JobQueue;
use super::registry::{Lifecycle, RegistryView};
use super::rest::RestClient;
use crate::clock::{Clock, SystemClock};
use crate::health::{HealthReport, HealthReporter, HealthStatus, heartbeat_report};
use crate::status::StatusBoard;

/// Symbols named in the failing-resync warning (the count covers the rest).
const FAILING_NAMES_MAX: usize = 5;

/// Health of the SymbolManager: its heartbeat (fatal when stale), the NewSymbolDetector's
/// heartbeat and connection (alert only), REST pauses and failing resyncs (alert only).
#[derive(Debug)]
pub struct SymbolManagerHealth {
    pub status: Arc<StatusBoard>,
    pub rest: RestClient,
    pub queue: Arc<JobQueue>,
    /// Names the symbols whose resync keeps failing.
    pub registry: RegistryView,
    pub detector: bool,
}

/// Whole seconds from `now_ms` to `then_ms`, rounded up (0 when past).
fn seconds_until(now_ms: i64, then_ms: i64) -> u64 {
    u64::try_from(then_ms - now_ms).unwrap_or(0).div_ceil(1_000)
}

impl SymbolManagerHealth {
    fn detector_checks(&self, now: i64, report: &mut HealthReport) {
        let detector = heartbeat_report(
            now,
            StatusBoard::heartbeat(&self.status.detector_heartbeat_ms),
            false,
        );
        if detector.status != HealthStatus::Ok {
            report.raise(
                HealthStatus::Warning,
                format!("new-symbol detector: {}", detector.message),
            );
        }
        if self
            .status
            .detector_connected
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            report.raise(HealthStatus::Warning, "new-symbol detector disconnected");
        }
    }

    /// Resyncs deferred after a failed round whose symbol is still served; warns with their
    /// names and the next retry. Returns their count.
    fn failing_resyncs(&self, now: i64, report: &mut HealthReport) -> usize {
        let failing: Vec<(String, i64)> = self
            .queue
            .deferred()
            .into_iter()
            .filter(|(symbol, _)| self.registry.lifecycle(*symbol) == Some(Lifecycle::Sent))
            .map(|(symbol, due)| {
                let name = self.registry.name(symbol);
                (name.as_deref().unwrap_or("?").to_string(), due)
            })
            .collect();
        if let Some(next) = failing.iter().map(|(_, due)| *due).min() {
            let names: Vec<&str> = failing
                .iter()
                .take(FAILING_NAMES_MAX)
                .map(|(n, _)| n.as_str())
                .collect();
            report.raise(
                HealthStatus::Warning,
                format!(
                    "{} resync(s) failing, live klines unverified, next retry in {} s: {}",
                    failing.len(),
                    seconds_until(now, next),
                    names.join(",")
                ),
            );
        }
        failing.len()
    }
}

impl HealthReporter for SymbolManagerHealth {
    fn name(&self) -> &str {
        "symbol-manager"
    }

    fn report(&self) -> HealthReport {
        let now = SystemClock.now_ms();
        let mut report = heartbeat_report(
            now,
            StatusBoard::heartbeat(&self.status.manager_heartbeat_ms),
            true,
        );
        // Among warnings the first raised names the report: causes before symptoms (a REST
        // pause also keeps the detector waiting).
        let paused_until = self.rest.budget.snapshot().paused_until_ms();
        if paused_until > now {
            report.raise(
                HealthStatus::Warning,
                format!(
                    "REST paused by the venue (429/418) for another {} s",
                    seconds_until(now, paused_until)
                ),
            );
        }
        let failing = self.failing_resyncs(now, &mut report);
        if self.detector {
            self.detector_checks(now, &mut report);
        }
        let built = StatusBoard::get(&self.status.packages_built);
        let weight = StatusBoard::get(&self.status.package_weight);
        let counters = &self.rest.budget.counters;
        report
            .detail(
                "detector_heartbeat_age_ms",
                now - StatusBoard::heartbeat(&self.status.detector_heartbeat_ms),
            )
            .detail("backfill_queue", self.queue.len())
            .detail("resyncs_failing", failing)
            .detail("packages_built", built)
            .detail(
                "weight_per_package",
                if built == 0 {
                    0.0
                } else {
                    weight as f64 / built as f64
                },
            )
            .detail("rest_weight_used", StatusBoard::get(&counters.weight_total))
            .detail("rest_paused_until_ms", paused_until.max(0))
            .detail("rest_429", StatusBoard::get(&counters.rate_limited_429))
            .detail("rest_418", StatusBoard::get(&counters.banned_418))
    }
}
