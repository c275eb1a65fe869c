//! The process panic hook (installed by `klagg run` on the main thread at startup; it then runs
//! on whichever thread panics). After the default report on stderr it asks the process to stop
//! with a fatal reason, so that a thread that died (a shard, the store writer, the watchdog …)
//! does not leave a half-dead process behind: the main thread stops everything and exits 1, and
//! a supervisor restarts it. A panic before [`attach`] (while the process starts) is kept and
//! stops the process as soon as its shutdown signal is attached.

use std::panic::PanicHookInfo;
use std::sync::Once;

use parking_lot::Mutex;

use crate::shutdown::{Shutdown, StopReason};

#[derive(Debug)]
struct Target {
    shutdown: Option<Shutdown>,
    /// The first panic seen before a shutdown signal was attached.
    early: Option<String>,
}

static TARGET: Mutex<Target> = Mutex::new(Target {
    shutdown: None,
    early: None,
});
static INSTALL: Once = Once::new();

/// Install the hook (once per process; later calls do nothing). The previous hook (the default
/// report on stderr) still runs first.
pub fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            on_panic(describe(info));
        }));
    });
}

/// Stop `shutdown` on the next panic (or now, for a panic seen since [`install`]).
pub fn attach(shutdown: &Shutdown) {
    let early = {
        let mut target = TARGET.lock();
        target.shutdown = Some(shutdown.clone());
        target.early.take()
    };
    if let Some(message) = early {
        shutdown.request(StopReason::Fatal(message));
    }
}

fn on_panic(message: String) {
    let shutdown = {
        let mut target = TARGET.lock();
        if target.shutdown.is_none() && target.early.is_none() {
            target.early = Some(message.clone());
        }
        target.shutdown.clone()
    };
    if let Some(shutdown) = shutdown {
        shutdown.request(StopReason::Fatal(message));
    }
}

/// `thread 'NAME' panicked at FILE:LINE: MESSAGE`.
fn describe(info: &PanicHookInfo<'_>) -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("unnamed");
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    match info.location() {
        Some(at) => format!("thread '{name}' panicked at {at}: {message}"),
        None => format!("thread '{name}' panicked: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_thread_requests_a_fatal_stop() {
        install();
        let shutdown = Shutdown::new();
        attach(&shutdown);
        let thread = std::thread::Builder::new()
            .name("doomed".into())
            .spawn(|| panic!("on purpose"))
            .unwrap();
        assert!(thread.join().is_err());
        let reason = shutdown.reason().expect("a stop was requested");
        assert!(reason.is_failure());
        // Other tests of this binary may panic too; this one's panic is the likely first.
        let StopReason::Fatal(message) = reason else {
            unreachable!()
        };
        assert!(message.contains("panicked"), "{message}");
    }
}
