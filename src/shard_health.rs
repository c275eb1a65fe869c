//! Shard health (run by the watchdog thread on its timer): [`ShardHealthReporter`] judges one
//! shard from the counters its thread publishes — heartbeat, pinning, venue connectivity, the
//! closed-kline outbox, streams given up — and [`ShardFaultLog`] turns rising connect-failure
//! and given-up counts into log lines, at most one per shard every [`SHARD_FAULT_LOG_MS`]. The
//! reporter keeps the little state it needs (since when a connection is missing, when streams
//! were last given up) in atomics of its own; the shard is never asked anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use klagg_shards::protocol::{ShardCounters, ShardCountersSnapshot, ShardHandle};
use klagg_shards::shard::OUTBOX_PAUSE_DEPTH;

use crate::clock::epoch_ms;
use crate::constants::{HEALTH_POLL_MS, HEARTBEAT_FATAL_MS};
use crate::health::{HealthReport, HealthReporter, HealthStatus, heartbeat_report};

/// A shard that wants a venue connection (active symbols or wanted streams) and has none for
/// this long is a Warning…
pub const SHARD_DISCONNECTED_WARN_MS: i64 = 10_000;
/// …and after this long an Error (not fatal: a restart does not bring the venue back, and the
/// API keeps serving what is stored; `/health` answers 503 meanwhile).
pub const SHARD_DISCONNECTED_ERROR_MS: i64 = 60_000;
/// A shard with a connection but streams unacknowledged this long (another of its connections
/// cannot connect, or the venue does not answer) is a Warning.
pub const STREAMS_PENDING_WARN_MS: i64 = 30_000;
/// A shard that gave up streams (repeated SUBSCRIBE errors) is a Warning for this long after
/// the last one.
pub const SUBSCRIPTIONS_GIVEN_UP_WARN_MS: i64 = 300_000;
/// The most often a shard's connect failures (or given-up streams) are logged.
pub const SHARD_FAULT_LOG_MS: i64 = 10_000;

const NEVER: i64 = -1;

const _: () = assert!(HEALTH_POLL_MS < SHARD_DISCONNECTED_WARN_MS);
const _: () = assert!(SHARD_DISCONNECTED_WARN_MS < SHARD_DISCONNECTED_ERROR_MS);
const _: () = assert!(SHARD_DISCONNECTED_ERROR_MS > HEARTBEAT_FATAL_MS);

/// Health of a shard from its counters (heartbeat written on the shard's timer).
#[derive(Debug)]
pub struct ShardHealthReporter {
    pub handle: ShardHandle,
    pub name: String,
    /// The shard's outbox pause depth (its limit); over half of it is a Warning.
    pub outbox_limit: u64,
    /// Epoch ms since when the shard wants a connection and has none (`NEVER`: it has one or
    /// wants none).
    disconnected_since_ms: AtomicI64,
    /// Epoch ms since when some wanted streams have been unacknowledged (`NEVER`: none).
    pending_since_ms: AtomicI64,
    /// Streams given up, as last seen, and when that count last rose.
    given_up_seen: AtomicU64,
    given_up_rose_ms: AtomicI64,
}

impl ShardHealthReporter {
    pub fn new(handle: ShardHandle) -> ShardHealthReporter {
        ShardHealthReporter {
            name: format!("shard-{:02}", handle.id.0),
            handle,
            outbox_limit: OUTBOX_PAUSE_DEPTH as u64,
            disconnected_since_ms: AtomicI64::new(NEVER),
            pending_since_ms: AtomicI64::new(NEVER),
            given_up_seen: AtomicU64::new(0),
            given_up_rose_ms: AtomicI64::new(NEVER),
        }
    }

    /// The report at `now_ms` (epoch ms; [`HealthReporter::report`] passes the wall clock).
    pub fn report_at(&self, now_ms: i64) -> HealthReport {
        let c = self.handle.counters.snapshot();
        let beat = i64::try_from(c.heartbeat_ms).unwrap_or(0);
        // Before its first heartbeat a shard counts as fresh (it is starting).
        let mut report = heartbeat_report(now_ms, if beat == 0 { now_ms } else { beat }, true);
        if self.handle.pin_failed {
            report.raise(HealthStatus::Warning, "pinning to its core failed");
        }
        if c.outbox_depth > self.outbox_limit / 2 {
            let message = format!(
                "closed-kline outbox over half full ({} of {})",
                c.outbox_depth, self.outbox_limit
            );
            report.raise(HealthStatus::Warning, message);
        }
        self.judge_given_up(now_ms, &c, &mut report);
        let disconnected_ms = self.judge_connection(now_ms, &c, &mut report);
        if disconnected_ms.is_none() {
            self.judge_pending(now_ms, &c, &mut report);
        }
        report
            .detail("core", self.handle.core)
            .detail("symbols_active", c.symbols_active)
            .detail("trades_applied", c.trades_applied)
            .detail("gaps", c.gaps)
            .detail("reconnects", c.reconnects)
            .detail("connections_open", c.connections_open)
            .detail("connect_failures", c.connect_failures)
            .detail("disconnected_ms", disconnected_ms)
            .detail("subscriptions_pending", c.subscriptions_pending)
            .detail("subscriptions_given_up", c.subscriptions_given_up)
            .detail("outbox_depth", c.outbox_depth)
            .detail("outbox_max", c.outbox_max)
            .detail("inbox_depth", self.handle.inbox_len())
    }

    /// Raise the report when the shard wants a connection and has had none for long; the time
    /// without one (ms), when it wants one.
    fn judge_connection(
        &self,
        now_ms: i64,
        c: &ShardCountersSnapshot,
        report: &mut HealthReport,
    ) -> Option<i64> {
        let wants = c.symbols_active > 0 || c.subscriptions_pending > 0;
        if !wants || c.connections_open > 0 {
            self.disconnected_since_ms.store(NEVER, Ordering::Relaxed);
            return None;
        }
        let since = match self.disconnected_since_ms.load(Ordering::Relaxed) {
            NEVER => {
                self.disconnected_since_ms.store(now_ms, Ordering::Relaxed);
                now_ms
            }
            since => since,
        };
        let for_ms = now_ms - since;
        let message = || {
            format!(
                "no venue connection for {} s ({} connect failures)",
                for_ms / 1000,
                c.connect_failures
            )
        };
        if for_ms >= SHARD_DISCONNECTED_ERROR_MS {
            report.raise(HealthStatus::Error, message());
        } else if for_ms >= SHARD_DISCONNECTED_WARN_MS {
            report.raise(HealthStatus::Warning, message());
        }
        Some(for_ms)
    }

    /// Raise the report when wanted streams stay unacknowledged although the shard has a
    /// connection (one of several connections down: its symbols receive nothing).
    fn judge_pending(&self, now_ms: i64, c: &ShardCountersSnapshot, report: &mut HealthReport) {
        if c.subscriptions_pending == 0 {
            self.pending_since_ms.store(NEVER, Ordering::Relaxed);
            return;
        }
        let since = match self.pending_since_ms.load(Ordering::Relaxed) {
            NEVER => {
                self.pending_since_ms.store(now_ms, Ordering::Relaxed);
                now_ms
            }
            since => since,
        };
        if now_ms - since >= STREAMS_PENDING_WARN_MS {
            let message = format!(
                "{} streams unacknowledged for {} s ({} of the shard's connections open)",
                c.subscriptions_pending,
                (now_ms - since) / 1000,
                c.connections_open
            );
            report.raise(HealthStatus::Warning, message);
        }
    }

    fn judge_given_up(&self, now_ms: i64, c: &ShardCountersSnapshot, report: &mut HealthReport) {
        let seen = self
            .given_up_seen
            .swap(c.subscriptions_given_up, Ordering::Relaxed);
        if c.subscriptions_given_up > seen {
            self.given_up_rose_ms.store(now_ms, Ordering::Relaxed);
        }
        let rose = self.given_up_rose_ms.load(Ordering::Relaxed);
        if rose != NEVER && now_ms - rose < SUBSCRIPTIONS_GIVEN_UP_WARN_MS {
            let message = format!(
                "{} streams given up after repeated SUBSCRIBE errors",
                c.subscriptions_given_up
            );
            report.raise(HealthStatus::Warning, message);
        }
    }
}

impl HealthReporter for ShardHealthReporter {
    fn name(&self) -> &str {
        &self.name
    }

    fn report(&self) -> HealthReport {
        self.report_at(epoch_ms())
    }
}

/// A log line about a shard's faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardFault {
    pub shard: usize,
    /// Connect failures since the last line, and in all.
    pub connect_failures: u64,
    pub connect_failures_total: u64,
    /// Streams given up since the last line, and in all.
    pub given_up: u64,
    pub given_up_total: u64,
    pub connections_open: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Logged {
    connect_failures: u64,
    given_up: u64,
    next_ms: i64,
}

/// Rate-limited fault lines of every shard (the watchdog's; one entry per shard).
#[derive(Debug, Default)]
pub struct ShardFaultLog {
    logged: Vec<Logged>,
}

impl ShardFaultLog {
    /// The lines due at `now_ms` for `shards` (index = shard id): a shard whose counts rose
    /// since its last line, at most once per [`SHARD_FAULT_LOG_MS`].
    pub fn due(&mut self, now_ms: i64, shards: &[Arc<ShardCounters>]) -> Vec<ShardFault> {
        self.logged.resize(shards.len(), Logged::default());
        let mut lines = Vec::new();
        for (shard, (counters, logged)) in shards.iter().zip(&mut self.logged).enumerate() {
            let get = ShardCounters::get;
            let failures = get(&counters.connect_failures);
            let given_up = get(&counters.subscriptions_given_up);
            let rose = failures > logged.connect_failures || given_up > logged.given_up;
            if !rose || now_ms < logged.next_ms {
                continue;
            }
            lines.push(ShardFault {
                shard,
                connect_failures: failures - logged.connect_failures.min(failures),
                connect_failures_total: failures,
                given_up: given_up - logged.given_up.min(given_up),
                given_up_total: given_up,
                connections_open: get(&counters.connections_open),
            });
            *logged = Logged {
                connect_failures: failures,
                given_up,
                next_ms: now_ms + SHARD_FAULT_LOG_MS,
            };
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use klagg_shards::protocol::ShardId;

    fn reporter() -> ShardHealthReporter {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let counters = Arc::new(ShardCounters::default());
        let handle = ShardHandle::new(ShardId(3), Some(1), false, counters, tx, waker);
        ShardHealthReporter::new(handle)
    }

    fn set(r: &ShardHealthReporter, pick: fn(&ShardCounters) -> &AtomicU64, value: u64) {
        ShardCounters::set(pick(&r.handle.counters), value);
    }

    #[test]
    fn a_shard_without_its_venue_connection_warns_then_errs() {
        let r = reporter();
        let t0 = 1_000_000;
        set(&r, |c| &c.heartbeat_ms, t0 as u64);
        assert_eq!(r.report_at(t0).status, HealthStatus::Ok, "an empty shard");
        set(&r, |c| &c.symbols_active, 20);
        set(&r, |c| &c.connect_failures, 7);
        let beat = |now: i64| {
            set(&r, |c| &c.heartbeat_ms, now as u64);
            r.report_at(now)
        };
        assert_eq!(beat(t0).status, HealthStatus::Ok);
        assert_eq!(
            beat(t0 + SHARD_DISCONNECTED_WARN_MS - 1).status,
            HealthStatus::Ok
        );
        let warn = beat(t0 + SHARD_DISCONNECTED_WARN_MS);
        assert_eq!(warn.status, HealthStatus::Warning);
        assert!(
            warn.message.contains("no venue connection for 10 s"),
            "{warn:?}"
        );
        assert!(warn.message.contains("7 connect failures"), "{warn:?}");
        assert_eq!(warn.details["connect_failures"], 7);
        let error = beat(t0 + SHARD_DISCONNECTED_ERROR_MS);
        assert_eq!((error.status, error.fatal), (HealthStatus::Error, false));
        // Connected again: Ok, and the clock starts over.
        set(&r, |c| &c.connections_open, 1);
        assert_eq!(beat(t0 + 70_000).status, HealthStatus::Ok);
        set(&r, |c| &c.connections_open, 0);
        assert_eq!(beat(t0 + 71_000).status, HealthStatus::Ok);
        assert_eq!(
            beat(t0 + 71_000 + SHARD_DISCONNECTED_WARN_MS).status,
            HealthStatus::Warning
        );
    }

    #[test]
    fn streams_pending_long_on_a_connected_shard_warn() {
        let r = reporter();
        let t0 = 2_000_000;
        let beat = |now: i64| {
            set(&r, |c| &c.heartbeat_ms, now as u64);
            r.report_at(now)
        };
        set(&r, |c| &c.symbols_active, 300);
        set(&r, |c| &c.connections_open, 1);
        set(&r, |c| &c.subscriptions_pending, 100);
        assert_eq!(
            beat(t0).status,
            HealthStatus::Ok,
            "a subscription in flight"
        );
        assert_eq!(
            beat(t0 + STREAMS_PENDING_WARN_MS - 1).status,
            HealthStatus::Ok
        );
        let warn = beat(t0 + STREAMS_PENDING_WARN_MS);
        assert_eq!(warn.status, HealthStatus::Warning);
        assert!(
            warn.message.contains("100 streams unacknowledged for 30 s"),
            "{warn:?}"
        );
        set(&r, |c| &c.subscriptions_pending, 0);
        assert_eq!(
            beat(t0 + STREAMS_PENDING_WARN_MS + 1).status,
            HealthStatus::Ok
        );
        set(&r, |c| &c.subscriptions_pending, 5);
        let again = beat(t0 + STREAMS_PENDING_WARN_MS + 2);
        assert_eq!(again.status, HealthStatus::Ok, "the clock starts anew");
    }

    #[test]
    fn a_full_outbox_and_given_up_streams_warn() {
        let r = reporter();
        let now = 5_000_000;
        set(&r, |c| &c.heartbeat_ms, now as u64);
        set(&r, |c| &c.outbox_depth, r.outbox_limit / 2);
        assert_eq!(r.report_at(now).status, HealthStatus::Ok);
        set(&r, |c| &c.outbox_depth, r.outbox_limit / 2 + 1);
        let full = r.report_at(now);
        assert_eq!(full.status, HealthStatus::Warning);
        assert!(full.message.contains("outbox over half full"), "{full:?}");
        set(&r, |c| &c.outbox_depth, 0);
        set(&r, |c| &c.subscriptions_given_up, 2);
        let given_up = r.report_at(now);
        assert!(
            given_up.message.contains("2 streams given up"),
            "{given_up:?}"
        );
        let later = now + SUBSCRIPTIONS_GIVEN_UP_WARN_MS;
        set(&r, |c| &c.heartbeat_ms, later as u64);
        assert_eq!(r.report_at(later).status, HealthStatus::Ok);
    }

    #[test]
    fn fault_lines_are_rate_limited_per_shard() {
        let shards: Vec<Arc<ShardCounters>> = (0..2).map(|_| Arc::default()).collect();
        let mut log = ShardFaultLog::default();
        assert!(log.due(0, &shards).is_empty());
        ShardCounters::set(&shards[1].connect_failures, 3);
        let lines = log.due(0, &shards);
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].shard, lines[0].connect_failures), (1, 3));
        ShardCounters::set(&shards[1].connect_failures, 5);
        assert!(log.due(SHARD_FAULT_LOG_MS - 1, &shards).is_empty());
        let lines = log.due(SHARD_FAULT_LOG_MS, &shards);
        assert_eq!(
            (lines[0].connect_failures, lines[0].connect_failures_total),
            (2, 5)
        );
        ShardCounters::set(&shards[0].subscriptions_given_up, 1);
        let lines = log.due(SHARD_FAULT_LOG_MS, &shards);
        assert_eq!((lines.len(), lines[0].shard, lines[0].given_up), (1, 0, 1));
    }
}
