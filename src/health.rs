//! Health reporting (trait implemented by every long-running service; called by the watchdog
//! thread on its timer). A reporter reads heartbeats and counters that its service writes on its
//! own timer, never on traffic, so an idle service is healthy.
//!
//! Which states are fatal (the watchdog stops the process with a non-zero exit code so that a
//! supervisor restarts it), which are Errors that only alert (`/health` answers 503 while they
//! last, but a restart would not help), and which are Warnings (200, named in the report):
//!
//! | service | Warning | Error, not fatal | Error, fatal |
//! |---|---|---|---|
//! | shard-NN | heartbeat older than 5 s; failed pin; closed-kline outbox over half full; streams given up after repeated SUBSCRIBE errors (for 5 min); active symbols or wanted streams and no venue connection for 10 s | no venue connection for 60 s | heartbeat older than 30 s (thread stuck or gone) |
//! | activation-dispatcher | failed symbols; heartbeat older than 5 s | — | heartbeat older than 30 s |
//! | symbol-manager | REST paused by 429/418; detector disconnected or its heartbeat older than 5 s; backfill errors | — | manager heartbeat older than 30 s; venue unreachable at startup |
//! | store | (its own reporter decides; see the store module) | commits failing | writer thread gone |
//! | api, api-streams | — | — | listener, hub or push thread gone |
//!
//! The NewSymbolDetector's heartbeat only alerts: klines stay exact without it, only new
//! listings wait for the next exchangeInfo refresh. A shard without its venue connection is not
//! fatal: a restart does not bring the venue back, and what is stored is still served; its
//! connect failures are logged (rate-limited) and counted on `/metrics`. Beyond the reporters:
//! `/health` answers 503 when the watchdog's report is older than 3 s (the watchdog itself
//! stopped), and a panicking thread stops the process (exit 1) through the panic hook
//! (`panic_hook.rs`).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::constants::{HEARTBEAT_FATAL_MS, HEARTBEAT_WARN_MS};

/// Overall state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Warning,
    Error,
}

impl HealthStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Warning => "warning",
            HealthStatus::Error => "error",
        }
    }
}

/// One service's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub message: String,
    /// True when the process should exit non-zero (see the module table).
    pub fatal: bool,
    pub details: Map<String, Value>,
}

impl HealthReport {
    pub fn new(status: HealthStatus, message: impl Into<String>) -> HealthReport {
        HealthReport {
            status,
            message: message.into(),
            fatal: false,
            details: Map::new(),
        }
    }

    pub fn ok() -> HealthReport {
        HealthReport::new(HealthStatus::Ok, "ok")
    }

    /// Add a detail (builder style).
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> HealthReport {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Raise to at least `status` with `message` (a worse status already set is kept).
    pub fn raise(&mut self, status: HealthStatus, message: impl Into<String>) {
        if status > self.status {
            self.status = status;
            self.message = message.into();
        }
    }
}

/// A long-running service that can say how it is. Implementations must be cheap and must not
/// block: they read atomics the service writes on its own timer.
pub trait HealthReporter: Send + Sync {
    /// Stable service name (`symbol-manager`, `shard-03`, `store`, `api`).
    fn name(&self) -> &str;
    /// The service's current health.
    fn report(&self) -> HealthReport;
}

/// Judge a heartbeat: Ok when fresh, Warning after `HEARTBEAT_WARN_MS`, Error after
/// `HEARTBEAT_FATAL_MS` (fatal when the service is `critical`).
pub fn heartbeat_report(now_ms: i64, heartbeat_ms: i64, critical: bool) -> HealthReport {
    let age = now_ms - heartbeat_ms;
    let mut report = HealthReport::ok();
    if age > HEARTBEAT_FATAL_MS {
        report.raise(HealthStatus::Error, format!("no heartbeat for {age} ms"));
        report.fatal = critical;
    } else if age > HEARTBEAT_WARN_MS {
        report.raise(HealthStatus::Warning, format!("heartbeat {age} ms old"));
    }
    report.detail("heartbeat_age_ms", age)
}

/// A reporter for services without their own logic: always Ok with a fixed message (e.g. the
/// store or the API before they grow real checks).
#[derive(Debug)]
pub struct StaticHealth {
    pub name: String,
}

impl HealthReporter for StaticHealth {
    fn name(&self) -> &str {
        &self.name
    }

    fn report(&self) -> HealthReport {
        HealthReport::ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_ages_map_to_statuses() {
        assert_eq!(
            heartbeat_report(1_000, 1_000, true).status,
            HealthStatus::Ok
        );
        let warn = heartbeat_report(HEARTBEAT_WARN_MS + 1, 0, true);
        assert_eq!((warn.status, warn.fatal), (HealthStatus::Warning, false));
        let dead = heartbeat_report(HEARTBEAT_FATAL_MS + 1, 0, true);
        assert_eq!((dead.status, dead.fatal), (HealthStatus::Error, true));
        let optional = heartbeat_report(HEARTBEAT_FATAL_MS + 1, 0, false);
        assert_eq!(
            (optional.status, optional.fatal),
            (HealthStatus::Error, false)
        );
    }

    #[test]
    fn raise_keeps_the_worst() {
        let mut report = HealthReport::ok();
        report.raise(HealthStatus::Error, "bad");
        report.raise(HealthStatus::Warning, "meh");
        assert_eq!(
            (report.status, report.message.as_str()),
            (HealthStatus::Error, "bad")
        );
        let report = report.detail("n", 3);
        assert_eq!(report.details["n"], 3);
        assert_eq!(
            StaticHealth { name: "api".into() }.report().status,
            HealthStatus::Ok
        );
    }
}
