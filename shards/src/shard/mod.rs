//! A shard thread (`shard-NN`, one per core): pinned first, then it builds its own state
//! (mio `Poll` + `Waker`, Worker, I/O, buffers) and runs its event loop. It owns its Worker
//! (the kline state of its symbols), its WebSocket connections and its outboxes; its inbox is
//! one bounded FIFO of [`crate::protocol::ShardCmd`] paired with the poll's waker
//! ([`crate::protocol::ShardHandle`]).
//!
//! Nothing in the loop blocks: no REST, no sleeps, no DB writes; connects and handshakes run on
//! the connector thread. Work per iteration is bounded (inbox drain, frames per connection,
//! connector results); the loop itself is the one intentionally unbounded loop.

pub mod clock;
pub mod output;
mod run;
mod run_counters;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use crate::io::IoConfig;
use crate::io::connector::{
    CONNECT_REQUEST_CAPACITY, CONNECT_RESULT_CAPACITY, ConnectRequest, run_connector,
};
use crate::io::tls::{TlsConfigError, client_config};
use crate::kline::Interval;
use crate::protocol::{SHARD_INBOX_CAPACITY, ShardCounters, ShardHandle, ShardId, ShardReport};
use crate::worker::{CLOSE_GRACE_MS_DEFAULT, RECENT_TRADES_DEFAULT, WorkerConfig};
pub use output::{KlineSink, Publisher};

/// Commands taken from the inbox per loop iteration.
pub const INBOX_DRAIN_MAX: usize = 256;
/// mio events per poll.
pub const EVENTS_CAPACITY: usize = 256;
/// Outbox depth (messages, all outputs) above which the shard stops reading and clock-closing.
pub const OUTBOX_PAUSE_DEPTH: usize = 262_144;
/// The longest the loop sleeps in `poll` without a timer due.
pub const POLL_TIMEOUT_MAX: Duration = Duration::from_millis(100);
/// Symbol slots per shard by default.
pub const SLOTS_DEFAULT: usize = 1024;

/// Everything a shard needs to start.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub id: ShardId,
    /// Core to pin to; `None` runs unpinned.
    pub core: Option<usize>,
    pub intervals: Vec<Interval>,
    pub slots_max: usize,
    pub close_grace_ms: i64,
    pub recent_trades: usize,
    pub io: IoConfig,
    /// Period of clock closes.
    pub clock_tick: Duration,
    /// Period of the heartbeat (health is on a timer, not on traffic).
    pub heartbeat_interval: Duration,
    pub inbox_drain_max: usize,
    pub outbox_pause_depth: usize,
    /// Never sleep in `poll` (lower latency, burns the whole core; for dedicated cores).
    pub busy_poll: bool,
}

impl ShardConfig {
    /// Defaults for shard `id` aggregating `intervals` from `ws_base`.
    pub fn new(id: ShardId, intervals: Vec<Interval>, ws_base: impl Into<String>) -> ShardConfig {
        ShardConfig {
            id,
            core: None,
            intervals,
            slots_max: SLOTS_DEFAULT,
            close_grace_ms: CLOSE_GRACE_MS_DEFAULT,
            recent_trades: RECENT_TRADES_DEFAULT,
            io: IoConfig::new(ws_base),
            clock_tick: Duration::from_millis(20),
            heartbeat_interval: Duration::from_secs(1),
            inbox_drain_max: INBOX_DRAIN_MAX,
            outbox_pause_depth: OUTBOX_PAUSE_DEPTH,
            busy_poll: false,
        }
    }

    fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            shard: self.id,
            intervals: self.intervals.clone(),
            slots_max: self.slots_max,
            close_grace_ms: self.close_grace_ms,
            recent_trades: self.recent_trades,
        }
    }

    /// The thread name, `shard-00` …
    pub fn thread_name(&self) -> String {
        format!("shard-{:02}", self.id.0)
    }
}

/// Where a shard sends its results.
#[derive(Debug, Clone)]
pub struct ShardOutputs {
    /// Kline outputs (store, API); each gets every final kline.
    pub klines: Vec<KlineSink>,
    /// Resync requests towards the control plane.
    pub reports: Sender<ShardReport>,
}

/// Why a shard did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("invalid shard configuration: {0}")]
    Config(&'static str),
    #[error("TLS configuration: {0}")]
    Tls(#[from] TlsConfigError),
    #[error("could not create the poll or waker: {0}")]
    Poll(std::io::Error),
    #[error("could not spawn the thread: {0}")]
    Thread(std::io::Error),
    #[error("the shard thread ended before it was ready")]
    Vanished,
}

/// A running shard: its handle (for commands and counters) and its thread.
#[derive(Debug)]
pub struct ShardThread {
    pub handle: ShardHandle,
    pub join: JoinHandle<()>,
}

/// Spawn shard `config.id`: name the thread, start its connector thread (unpinned), pin it,
/// build its state inside it, and return its handle once the loop is ready.
///
/// # Errors
/// An invalid configuration, a bad extra CA certificate, or a failure to create the poll or the
/// thread. A failed pin is not an error: it shows in `handle.pin_failed` and the counters.
pub fn spawn_shard(config: ShardConfig, outputs: ShardOutputs) -> Result<ShardThread, SpawnError> {
    validate(&config)?;
    let (ready_tx, ready_rx) = bounded::<Result<ShardHandle, SpawnError>>(1);
    let join = std::thread::Builder::new()
        .name(config.thread_name())
        .spawn(move || match run::Prelude::new(&config) {
            Ok(prelude) => {
                let pin_failed = pin(config.core);
                let (shard, handle) = run::ShardLoop::build(config, outputs, prelude, pin_failed);
                if ready_tx.send(Ok(handle)).is_ok() {
                    shard.run();
                }
            }
            Err(error) => {
                let _ = ready_tx.send(Err(error));
            }
        })
        .map_err(SpawnError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(handle)) => Ok(ShardThread { handle, join }),
        Ok(Err(error)) => {
            let _ = join.join();
            Err(error)
        }
        Err(_) => {
            let _ = join.join();
            Err(SpawnError::Vanished)
        }
    }
}

fn validate(config: &ShardConfig) -> Result<(), SpawnError> {
    let checks = [
        (config.intervals.is_empty(), "no intervals"),
        (config.slots_max == 0, "slots_max is 0"),
        (
            config.slots_max > crate::kline::book::SLOTS_MAX,
            "slots_max too large",
        ),
        (
            config.io.streams_per_connection == 0,
            "streams_per_connection is 0",
        ),
        (
            config.io.frames_per_event_max == 0,
            "frames_per_event_max is 0",
        ),
        (config.inbox_drain_max == 0, "inbox_drain_max is 0"),
        (config.clock_tick.is_zero(), "clock_tick is 0"),
        (config.close_grace_ms < 0, "close_grace_ms is negative"),
    ];
    let mut sorted = config.intervals.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != config.intervals.len() {
        return Err(SpawnError::Config("duplicate interval"));
    }
    match checks.iter().find(|(bad, _)| *bad) {
        Some((_, reason)) => Err(SpawnError::Config(reason)),
        None => Ok(()),
    }
}

/// Pin the current thread to `core`; true when a pin was requested and failed.
/// Core ids a `cpu_set_t` can hold (glibc's `CPU_SETSIZE`); core_affinity panics past it.
const CPU_SET_CAPACITY: usize = 1024;

/// Pin the calling thread to `core`; true when that failed.
fn pin(core: Option<usize>) -> bool {
    match core {
        Some(id) if id < CPU_SET_CAPACITY => {
            !core_affinity::set_for_current(core_affinity::CoreId { id })
        }
        Some(_) => true,
        None => false,
    }
}

/// Start the connector thread of a shard (`shard-NN-conn`).
fn spawn_connector(
    config: &ShardConfig,
    waker: Arc<mio::Waker>,
    stop: Arc<AtomicBool>,
) -> Result<run::ConnectorLink, SpawnError> {
    let tls = client_config(config.io.extra_ca_pem.as_deref())?;
    let (request_tx, request_rx) = bounded::<ConnectRequest>(CONNECT_REQUEST_CAPACITY);
    let (result_tx, result_rx) = bounded(CONNECT_RESULT_CAPACITY);
    let thread_stop = Arc::clone(&stop);
    let join = std::thread::Builder::new()
        .name(format!("shard-{:02}-conn", config.id.0))
        .spawn(move || run_connector(&request_rx, &result_tx, &waker, &tls, &thread_stop))
        .map_err(SpawnError::Thread)?;
    Ok(run::ConnectorLink {
        request_tx,
        result_rx,
        stop,
        join,
    })
}

/// A fresh inbox channel and counters for a shard.
fn inbox() -> (
    Sender<crate::protocol::ShardCmd>,
    crossbeam_channel::Receiver<crate::protocol::ShardCmd>,
    Arc<ShardCounters>,
) {
    let (tx, rx) = bounded(SHARD_INBOX_CAPACITY);
    (tx, rx, Arc::new(ShardCounters::default()))
}
