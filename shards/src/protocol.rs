//! The activation protocol's messages (types only): sent by the control-plane threads
//! (ActivationDispatcher, SymbolManager) into a shard's inbox, and by shard threads back out
//! (acks, klines, resync requests). Names follow the seed design: `WorkerCmd::ActivateSymbol`,
//! `WsCmd::SubscribeOne`, `SymbolActivationState`.
//!
//! Ordering rule (seed decision 4): the dispatcher sends `WsCmd::SubscribeOne` for a symbol only
//! after it received that symbol's `WorkerAck` with `Ok`. A shard has one FIFO inbox
//! ([`ShardCmd`]), so nothing sent after an activation can overtake it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Sender, TrySendError};

use crate::kline::{BookError, Interval, Kline, Scales};

/// Capacity of a shard's inbox (dispatcher → shard). A full inbox is backpressure: the sender
/// counts it and retries later; it never blocks.
pub const SHARD_INBOX_CAPACITY: usize = 1024;
/// Capacity of each kline output channel (shard → store, shard → API). Closed klines that do not
/// fit wait in the shard's outbox; open-kline updates that do not fit are dropped and counted.
pub const KLINE_OUT_CAPACITY: usize = 65_536;
/// Capacity of the shard → SymbolManager report channel (resync requests).
pub const SHARD_REPORT_CAPACITY: usize = 4096;

/// Dense, stable index of a symbol, assigned once by the SymbolManager. The hot path uses it
/// instead of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolIndex(pub u32);

/// Number of a shard (thread `shard-00`, `shard-01`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// Identifies one activation attempt, so a late ack of an earlier attempt is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActivationId(pub u64);

/// A symbol's activation state in its Worker (seed checklist item 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolActivationState {
    /// Known to the shard's slot table but never activated (or deactivated).
    Pending,
    /// An `ActivateSymbol` is being applied.
    Activating,
    /// Trades and clock ticks are applied.
    Active,
    /// The last activation attempt failed.
    Failed,
}

/// What a shard needs to know about a symbol. The name is used only at I/O (stream names,
/// frame routing) and in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSpec {
    pub index: SymbolIndex,
    /// Upper case, as in exchangeInfo (`BTCUSDT`).
    pub name: Arc<str>,
    pub scales: Scales,
}

/// The "initial package" of a symbol: per configured interval (shortest first, the order of
/// `KlineBook::intervals`) its latest kline, possibly still open, or `None` where the venue has
/// no REST klines for that interval (it then starts at the first live trade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialSymbolData {
    pub klines: Vec<Option<Kline>>,
    /// Exchange time (epoch ms) at which the package was taken.
    pub taken_at_ms: i64,
    /// The last aggregate-trade id included, when known (enables gap detection from the first
    /// live trade).
    pub last_agg_id: Option<i64>,
}

/// Commands for a shard's Worker (the kline state).
#[derive(Debug)]
pub enum WorkerCmd {
    /// Install (or replace, for a resync) a symbol's state and answer on `ack`.
    ActivateSymbol {
        symbol: SymbolSpec,
        initial_data: InitialSymbolData,
        activation: ActivationId,
        ack: Sender<WorkerAck>,
    },
    /// Stop aggregating a symbol (delisting) and forget its state.
    DeactivateSymbol { symbol: SymbolIndex },
}

/// Commands for a shard's WebSocket I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsCmd {
    /// Subscribe the symbol's `<symbol>@aggTrade` stream (only after an Ok ack).
    SubscribeOne(SymbolIndex),
    /// Unsubscribe it (delisting).
    UnsubscribeOne(SymbolIndex),
}

/// A shard's inbox.
#[derive(Debug)]
pub enum ShardCmd {
    Worker(WorkerCmd),
    Ws(WsCmd),
    /// Flush the outbox, close connections, exit the loop.
    Shutdown,
}

/// Why an activation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    #[error("shard has no free slot (capacity {capacity})")]
    NoFreeSlot { capacity: usize },
    #[error("initial data refused: {0}")]
    InitialData(#[from] BookError),
    #[error("symbol {0:?} is owned by another activation in progress")]
    Busy(SymbolIndex),
    #[error("symbol spec refused: {reason}")]
    InvalidSpec { reason: &'static str },
}

/// A Worker's answer to `ActivateSymbol`, echoing the symbol and the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerAck {
    pub shard: ShardId,
    pub symbol: SymbolIndex,
    pub activation: ActivationId,
    pub result: Result<(), ActivationError>,
}

/// Kline output of a shard, towards the store and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KlineMsg {
    /// The open kline changed (coalesced: at most one per symbol and interval per loop
    /// iteration). May be dropped under backpressure (counted).
    Update {
        symbol: SymbolIndex,
        interval: Interval,
        kline: Kline,
    },
    /// A kline closed. Never dropped.
    Closed {
        symbol: SymbolIndex,
        interval: Interval,
        kline: Kline,
    },
    /// `count` consecutive flat klines closed (no trades), the first opening at
    /// `first_open_ms`, all at `price`. Never dropped. Expand with `kline::flat_run_klines`.
    FlatRun {
        symbol: SymbolIndex,
        interval: Interval,
        first_open_ms: i64,
        count: u64,
        price: i64,
    },
    /// A late trade amended a closed kline; this is its new value. Never dropped.
    Corrected {
        symbol: SymbolIndex,
        interval: Interval,
        kline: Kline,
    },
}

/// Why a shard asks for a symbol to be re-synchronised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The aggregate-trade id jumped (trades were missed).
    Gap {
        expected_agg_id: i64,
        received_agg_id: i64,
    },
    /// Frames for the symbol could not be parsed (its stream may have lost data).
    ParseErrors,
}

/// Reports from a shard to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardReport {
    /// Rebuild this symbol's initial package and activate it again (same path as startup).
    ResyncNeeded {
        shard: ShardId,
        symbol: SymbolIndex,
        reason: ResyncReason,
    },
}

/// A shard's counters. Single writer (its shard thread, `Relaxed` stores); any thread reads.
#[derive(Debug, Default)]
pub struct ShardCounters {
    pub trades_applied: AtomicU64,
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub parse_errors: AtomicU64,
    pub gaps: AtomicU64,
    pub duplicates: AtomicU64,
    pub late_trades: AtomicU64,
    pub late_dropped: AtomicU64,
    pub reconnects: AtomicU64,
    pub subscriptions_pending: AtomicU64,
    pub subscriptions_active: AtomicU64,
    pub connections_open: AtomicU64,
    pub outbox_depth: AtomicU64,
    pub outbox_max: AtomicU64,
    pub updates_dropped: AtomicU64,
    pub symbols_active: AtomicU64,
    pub loop_iterations: AtomicU64,
    pub busiest_iteration_ns: AtomicU64,
    /// Epoch ms of the last heartbeat (written on a timer, not on traffic).
    pub heartbeat_ms: AtomicU64,
}

impl ShardCounters {
    /// Add to a counter (single writer: a load and a store, no read-modify-write needed).
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.store(counter.load(Ordering::Relaxed) + amount, Ordering::Relaxed);
    }

    /// Set a gauge.
    pub fn set(counter: &AtomicU64, value: u64) {
        counter.store(value, Ordering::Relaxed);
    }

    /// Read a counter or gauge.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// How other threads talk to a running shard: its inbox plus the mio waker of its poll loop.
#[derive(Debug, Clone)]
pub struct ShardHandle {
    pub id: ShardId,
    /// The core the shard is pinned to, `None` when unpinned or pinning failed.
    pub core: Option<usize>,
    /// True when a pin was requested and failed (reported, visible in status).
    pub pin_failed: bool,
    pub counters: Arc<ShardCounters>,
    inbox_tx: Sender<ShardCmd>,
    waker: Arc<mio::Waker>,
}

impl ShardHandle {
    /// Build a handle (called by the shard spawner once the shard's poll and waker exist).
    pub fn new(
        id: ShardId,
        core: Option<usize>,
        pin_failed: bool,
        counters: Arc<ShardCounters>,
        inbox_tx: Sender<ShardCmd>,
        waker: Arc<mio::Waker>,
    ) -> ShardHandle {
        ShardHandle {
            id,
            core,
            pin_failed,
            counters,
            inbox_tx,
            waker,
        }
    }

    /// Queue a command without blocking and wake the shard.
    ///
    /// # Errors
    /// The inbox is full (backpressure: keep the command and retry later) or the shard exited.
    pub fn try_send(&self, cmd: ShardCmd) -> Result<(), TrySendError<ShardCmd>> {
        self.inbox_tx.try_send(cmd)?;
        // A failed wake means the poll is gone, i.e. the shard is exiting; the command is then
        // moot, and the sender learns of the exit from its next send.
        let _ = self.waker.wake();
        Ok(())
    }

    /// Commands waiting in the inbox.
    pub fn inbox_len(&self) -> usize {
        self.inbox_tx.len()
    }
}
