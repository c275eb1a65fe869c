//! Stopping `klagg run` (main thread): waiting for SIGINT/SIGTERM, `--run-for` or a fatal health
//! state; the shutdown within `SHUTDOWN_DEADLINE_MS` (shards and control threads first, then the
//! store writer's final commit); and the exit code saying how it went ([`ExitStatus`]). A stop
//! that lost data — store rows lost, threads still running at the deadline — is not a clean
//! exit: a supervisor or script must be able to tell.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use klagg_shards::protocol::ShardCmd;
use slog::{error, info, warn};

use crate::app::RunningApp;
use crate::app_store;
use crate::constants::SHUTDOWN_DEADLINE_MS;
use crate::shutdown::StopReason;

/// The exit codes of `klagg run` (documented in `klagg run --help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: stopped by SIGINT/SIGTERM or `--run-for`, everything flushed and joined.
    Clean,
    /// 1: a fatal error (unusable database, venue unreachable at startup, fatal health state,
    /// a panicked thread).
    Fatal,
    /// 2: bad flags or config file; nothing was started.
    BadFlags,
    /// 3: stopped, but the stop lost data: the store lost rows or did not close, or a shard (its
    /// outbox may hold closed klines) was still running at the shutdown deadline.
    Unclean,
}

impl ExitStatus {
    pub const fn as_u8(self) -> u8 {
        match self {
            ExitStatus::Clean => 0,
            ExitStatus::Fatal => 1,
            ExitStatus::BadFlags => 2,
            ExitStatus::Unclean => 3,
        }
    }

    pub fn code(self) -> ExitCode {
        ExitCode::from(self.as_u8())
    }
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub reason: StopReason,
    /// Threads still running at the shutdown deadline (left detached). Only shards hold data
    /// then; the others are typically inside a blocking REST call or handshake.
    pub late_threads: Vec<String>,
    /// Threads that ended by a panic.
    pub panicked: Vec<String>,
    /// What the store lost or why it did not close (`None`: closed cleanly, or no store).
    pub store_problem: Option<String>,
}

impl Stopped {
    /// Late threads that may hold data (shards, with their outboxes).
    fn late_with_data(&self) -> Vec<&str> {
        self.late_threads
            .iter()
            .map(String::as_str)
            .filter(|name| name.starts_with("shard-"))
            .collect()
    }

    /// True when nothing was lost: the store closed with every row, and every shard ended.
    pub fn is_clean(&self) -> bool {
        self.late_with_data().is_empty() && self.store_problem.is_none()
    }

    /// Fatal (a panic included) wins over unclean; unclean over clean.
    pub fn exit_status(&self) -> ExitStatus {
        if self.reason.is_failure() || !self.panicked.is_empty() {
            ExitStatus::Fatal
        } else if !self.is_clean() {
            ExitStatus::Unclean
        } else {
            ExitStatus::Clean
        }
    }

    /// The one error line for stderr (`None` after a clean stop).
    pub fn error_line(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let StopReason::Fatal(message) = &self.reason {
            parts.push(message.clone());
        }
        if !self.panicked.is_empty() {
            parts.push(format!("threads panicked: {}", self.panicked.join(",")));
        }
        let late = self.late_with_data();
        if !late.is_empty() {
            parts.push(format!(
                "shards still running at the shutdown deadline: {}",
                late.join(",")
            ));
        }
        parts.extend(self.store_problem.clone());
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

impl RunningApp {
    /// Block until SIGINT/SIGTERM, `run_for` or a fatal health state.
    pub fn wait(&self, run_for: Option<Duration>) -> StopReason {
        let signal = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // A second signal while stopping ends the process at once.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 1, signal.clone());
            let _ = signal_hook::flag::register(sig, signal.clone());
        }
        let deadline = run_for.map(|d| Instant::now() + d);
        // Bounded by the signal, the deadline or a fatal state; polls every 50 ms.
        loop {
            if signal.load(Ordering::Relaxed) {
                self.shutdown.request(StopReason::Signal);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.shutdown.request(StopReason::RunFor);
            }
            if let Some(reason) = self.shutdown.reason() {
                return reason;
            }
            self.shutdown.sleep(Duration::from_millis(50));
        }
    }

    /// Stop everything within `SHUTDOWN_DEADLINE_MS`; says how it went.
    pub fn stop(self, reason: StopReason) -> Stopped {
        self.shutdown.request(reason);
        let reason = self.shutdown.reason().unwrap_or(StopReason::Signal);
        info!(self.log, "stopping"; "reason" => format!("{reason:?}"));
        let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_DEADLINE_MS);
        // The store writer stops last, with time kept for its final commit.
        let threads_deadline = match self.store_runtime {
            Some(_) => deadline - app_store::STORE_SHUTDOWN_RESERVE,
            None => deadline,
        };
        for shard in &self.shard_threads {
            let _ = shard.handle.try_send(ShardCmd::Shutdown);
        }
        let (mut late_threads, mut panicked) = (Vec::new(), Vec::new());
        let shard_joins = self
            .shard_threads
            .into_iter()
            .map(|s| (format!("shard-{:02}", s.handle.id.0), s.join));
        for (name, handle) in self.threads.into_iter().chain(shard_joins) {
            match join_until(handle, threads_deadline) {
                Joined::Cleanly => {}
                // The panic hook already asked for this (fatal) stop and logged the panic.
                Joined::Panicked => panicked.push(name),
                Joined::Late => late_threads.push(name),
            }
        }
        if !panicked.is_empty() {
            error!(self.log, "threads ended by a panic"; "threads" => panicked.join(","));
        }
        let store_problem = self.store_runtime.and_then(|store| {
            store.stop(
                deadline.saturating_duration_since(Instant::now()),
                &self.log,
            )
        });
        if let Some(sim) = self.sim {
            sim.shutdown();
        }
        if late_threads.is_empty() {
            info!(self.log, "stopped"; "ms_since_start" => self.status.start.elapsed_ms());
        } else {
            warn!(self.log, "threads still running at the shutdown deadline"; "threads" => late_threads.join(","));
        }
        Stopped {
            reason,
            late_threads,
            panicked,
            store_problem,
        }
    }
}

/// How a thread ended at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joined {
    Cleanly,
    Panicked,
    /// Still running at the deadline (left detached).
    Late,
}

/// Join `handle` unless `deadline` passes first.
fn join_until(handle: JoinHandle<()>, deadline: Instant) -> Joined {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return Joined::Late;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
    match handle.join() {
        Ok(()) => Joined::Cleanly,
        Err(_) => Joined::Panicked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(reason: StopReason, late: &[&str], store: Option<&str>) -> Stopped {
        Stopped {
            reason,
            late_threads: late.iter().map(|s| s.to_string()).collect(),
            panicked: Vec::new(),
            store_problem: store.map(str::to_string),
        }
    }

    #[test]
    fn a_stop_that_lost_data_is_not_a_clean_exit() {
        let clean = stopped(StopReason::Signal, &[], None);
        assert_eq!(
            (clean.exit_status(), clean.error_line()),
            (ExitStatus::Clean, None)
        );
        let lost = stopped(
            StopReason::RunFor,
            &[],
            Some("the store lost 7 rows at shutdown"),
        );
        assert_eq!(lost.exit_status(), ExitStatus::Unclean);
        assert_eq!(lost.exit_status().as_u8(), 3);
        let late = stopped(StopReason::Signal, &["symbol-manager-0", "shard-01"], None);
        assert_eq!(late.exit_status(), ExitStatus::Unclean);
        assert_eq!(
            late.error_line().unwrap(),
            "shards still running at the shutdown deadline: shard-01"
        );
        // A thread inside a blocking REST call at the deadline holds no data: a clean exit
        // (its lateness is logged as a warning).
        let waiting = stopped(StopReason::Signal, &["backfill-1", "history"], None);
        assert_eq!(
            (waiting.exit_status(), waiting.error_line()),
            (ExitStatus::Clean, None)
        );
        // A panic during the stop is fatal even after a signal.
        let mut panicked = stopped(StopReason::Signal, &[], None);
        panicked.panicked.push("shard-00".into());
        assert_eq!(panicked.exit_status(), ExitStatus::Fatal);
        assert_eq!(panicked.error_line().unwrap(), "threads panicked: shard-00");
        // A fatal stop stays exit 1, with everything on its one line.
        let fatal = stopped(
            StopReason::Fatal("venue gone".into()),
            &["api-0"],
            Some("x"),
        );
        assert_eq!(fatal.exit_status(), ExitStatus::Fatal);
        assert_eq!(fatal.error_line().unwrap(), "venue gone; x");
    }

    #[test]
    fn a_panicked_thread_is_not_reported_as_late() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let clean = std::thread::spawn(|| {});
        assert_eq!(join_until(clean, deadline), Joined::Cleanly);
        let panicked = std::thread::spawn(|| panic!("test panic"));
        assert_eq!(join_until(panicked, deadline), Joined::Panicked);
        let late = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(300)));
        assert_eq!(join_until(late, Instant::now()), Joined::Late);
    }
}
