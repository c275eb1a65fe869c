//! The ActivationDispatcher's messages and reports (types only; sent to the
//! `activation-dispatcher` thread, or read from its core by the shell and the simulation): its
//! inbox command, the link to the shards, a symbol's dispatch state, the events and counters of
//! [`DispatcherCore`](super::DispatcherCore).

use crossbeam_channel::TrySendError;
use klagg_shards::protocol::{InitialSymbolData, ShardCmd, ShardId, SymbolIndex, SymbolSpec};

/// The dispatcher's inbox (`activation_tx`, filled by the SymbolManager's KlineBackfiller and
/// NewSymbolDetector). A command is immutable once sent.
#[derive(Debug)]
pub enum DispatcherCmd {
    /// Activate a symbol with its initial package (startup, new listing or resync).
    ActivateSymbol {
        symbol: SymbolSpec,
        initial_data: InitialSymbolData,
        /// 24 h trade count, the routing weight (0 when unknown).
        expected_trades_24h: u64,
    },
    /// Unsubscribe and forget a symbol (delisting).
    DeactivateSymbol { symbol: SymbolIndex },
}

/// How the dispatcher reaches the shards: a non-blocking send into a shard's FIFO inbox.
pub trait ShardLink {
    /// Queue `cmd` for `shard` without blocking.
    ///
    /// # Errors
    /// `Full` (backpressure: the dispatcher keeps the command and tries again later) or
    /// `Disconnected` (the shard exited).
    fn try_send(&mut self, shard: ShardId, cmd: ShardCmd) -> Result<(), TrySendError<ShardCmd>>;
}

/// A symbol's activation state as the dispatcher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DispatchState {
    /// Never asked for.
    Unknown,
    /// Waiting to be sent (queue, in-flight cap or full inbox).
    Queued,
    /// Sent; waiting for the ack until a deadline.
    Activating,
    /// The last attempt failed; the next one is due later.
    Backoff,
    /// Acked Ok; its stream subscription was queued.
    Active,
    /// Every attempt failed (ERROR logged); the SymbolManager is not told.
    Failed,
    /// Delisted.
    Deactivated,
}

impl DispatchState {
    pub const fn as_str(self) -> &'static str {
        match self {
            DispatchState::Unknown => "unknown",
            DispatchState::Queued => "queued",
            DispatchState::Activating => "activating",
            DispatchState::Backoff => "backoff",
            DispatchState::Active => "active",
            DispatchState::Failed => "failed",
            DispatchState::Deactivated => "deactivated",
        }
    }
}

/// What happened, for the shell to log, count and publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchEvent {
    /// A symbol changed state (`shard` is its owner, if any).
    State {
        symbol: SymbolIndex,
        state: DispatchState,
        shard: Option<ShardId>,
    },
    /// An attempt failed and will be retried.
    Retry {
        symbol: SymbolIndex,
        attempt: u32,
        reason: String,
    },
    /// Every attempt failed.
    Failed {
        symbol: SymbolIndex,
        attempts: u32,
        reason: String,
    },
}

/// Counters of the dispatcher (never reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchCounters {
    pub requests: u64,
    pub sends: u64,
    pub acks_ok: u64,
    pub acks_err: u64,
    pub timeouts: u64,
    pub stale_acks: u64,
    pub inbox_full: u64,
    pub shard_gone: u64,
    pub refused: u64,
    pub failed: u64,
    pub subscribes: u64,
    pub deactivations: u64,
}
