//! Logging (main thread builds it; every thread logs through a child): the slog root for
//! `--log-format term|json` and `--log-level`, behind an asynchronous drain so that no thread
//! waits on stderr. Nothing is logged per trade; hot-path events are counters.

use slog::{Drain, Logger, o};

use crate::config::LogFormat;

/// Capacity of the asynchronous log channel; records beyond it are dropped and counted by slog.
const LOG_CHANNEL_CAPACITY: usize = 4096;

/// The root logger and the guard that flushes it when dropped (keep it until exit).
pub struct LogHandle {
    pub root: Logger,
    _guard: Option<slog_async::AsyncGuard>,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHandle").finish_non_exhaustive()
    }
}

/// Build the root logger writing to stderr.
pub fn build(format: LogFormat, level: slog::Level) -> LogHandle {
    let (drain, guard) = match format {
        LogFormat::Term => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            let drain = slog_term::FullFormat::new(decorator).build().fuse();
            async_drain(drain)
        }
        LogFormat::Json => {
            let drain = slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build()
                .fuse();
            async_drain(drain)
        }
    };
    let drain = slog::LevelFilter::new(drain, level).fuse();
    LogHandle {
        root: Logger::root(drain, o!("app" => "klagg")),
        _guard: Some(guard),
    }
}

fn async_drain<D>(drain: D) -> (slog::Fuse<slog_async::Async>, slog_async::AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(LOG_CHANNEL_CAPACITY)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("log".to_string())
        .build_with_guard();
    (drain.fuse(), guard)
}

/// A logger that discards everything (tests).
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}
