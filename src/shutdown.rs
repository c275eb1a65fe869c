//! The shutdown signal (any thread): one flag plus a condition variable, so a control thread can
//! sleep (REST back-off, rate-limit pauses, reconnect delays) and still stop within the shutdown
//! deadline. The first requester's reason decides the exit code.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Why the process stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Signal,
    /// `--run-for` elapsed.
    RunFor,
    /// A service failed in a way a supervisor should restart us for (exit non-zero).
    Fatal(String),
}

impl StopReason {
    /// True when the process should exit with a non-zero code.
    pub fn is_failure(&self) -> bool {
        matches!(self, StopReason::Fatal(_))
    }
}

#[derive(Debug, Default)]
struct Inner {
    requested: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    wake: Condvar,
}

/// A cloneable handle on the process-wide shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Ask every thread to stop. The first reason wins.
    pub fn request(&self, reason: StopReason) {
        let mut slot = self.inner.reason.lock();
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.inner.requested.store(true, Ordering::Release);
        self.inner.wake.notify_all();
    }

    /// True once a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::Acquire)
    }

    /// The reason of the first request.
    pub fn reason(&self) -> Option<StopReason> {
        self.inner.reason.lock().clone()
    }

    /// Sleep for `duration` unless a stop is requested first. Returns true when stopping.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut slot = self.inner.reason.lock();
        while slot.is_none() {
            if self.inner.wake.wait_until(&mut slot, deadline).timed_out() {
                break;
            }
        }
        slot.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins_and_sleep_returns_early() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.sleep(Duration::from_millis(1)));
        let other = shutdown.clone();
        let waiter = std::thread::spawn(move || other.sleep(Duration::from_secs(60)));
        shutdown.request(StopReason::RunFor);
        shutdown.request(StopReason::Fatal("later".into()));
        assert!(waiter.join().unwrap());
        assert_eq!(shutdown.reason(), Some(StopReason::RunFor));
        assert!(!StopReason::RunFor.is_failure());
        assert!(StopReason::Fatal(String::new()).is_failure());
    }
}
