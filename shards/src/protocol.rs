//! The activation protocol's messages (types, and the reading of a kline message): sent by the
//! control-plane threads (ActivationDispatcher, SymbolManager) into a shard's inbox, and by
//! shard threads back out (acks, klines, resync requests). Names follow the seed design: `WorkerCmd::ActivateSymbol`,
//! `WsCmd::SubscribeOne`, `SymbolActivationState`.
//!
//! Ordering rule (seed decision 4): the dispatcher sends `WsCmd::SubscribeOne` for a symbol only
//! after it received that symbol's `WorkerAck` with `Ok`. A shard has one FIFO inbox
//! ([`ShardCmd`]), so nothing sent after an activation can overtake it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Sender, TrySendError};

use crate::kline::{BookError, Interval, Kline, Scales, flat_run_klines};

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

impl KlineMsg {
    /// The symbol the message is about.
    pub fn symbol(&self) -> SymbolIndex {
        match *self {
            KlineMsg::Update { symbol, .. }
            | KlineMsg::Closed { symbol, .. }
            | KlineMsg::FlatRun { symbol, .. }
            | KlineMsg::Corrected { symbol, .. } => symbol,
        }
    }

    /// The interval the message is about.
    pub fn interval(&self) -> Interval {
        match *self {
            KlineMsg::Update { interval, .. }
            | KlineMsg::Closed { interval, .. }
            | KlineMsg::FlatRun { interval, .. }
            | KlineMsg::Corrected { interval, .. } => interval,
        }
    }

    /// The final klines the message carries, oldest first: a closed or corrected kline, or the
    /// last `max` klines of a flat run (expanded with [`flat_run_klines`]); none for an update.
    pub fn final_klines(&self, max: u64) -> impl Iterator<Item = Kline> + use<> {
        let (single, run) = match *self {
            KlineMsg::Update { .. } => (None, None),
            KlineMsg::Closed { kline, .. } | KlineMsg::Corrected { kline, .. } => {
                (Some(kline), None)
            }
            KlineMsg::FlatRun {
                interval,
                first_open_ms,
                count,
                price,
                ..
            } => {
                let skip = count.saturating_sub(max);
                let first = skip_periods(interval, first_open_ms, skip);
                let run = flat_run_klines(interval, first, count - skip, price);
                (None, Some(run))
            }
        };
        single.into_iter().chain(run.into_iter().flatten())
    }
}

/// The open time `n` periods after `open_ms` (saturating; a run of months is walked, at most
/// 10 000 of them).
pub fn skip_periods(interval: Interval, open_ms: i64, n: u64) -> i64 {
    match interval.fixed_ms() {
        Some(ms) => open_ms.saturating_add(ms.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX))),
        // Months: walk (a run of months is short).
        None => (0..n.min(10_000)).fold(open_ms, |open, _| interval.next_open(open)),
    }
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
    /// The venue refused the symbol's stream subscription repeatedly: the symbol receives
    /// nothing. Activating it again subscribes it again.
    SubscriptionLost,
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
    /// 1 when a pin was requested and failed (also in [`ShardHandle::pin_failed`]).
    pub pin_failed: AtomicU64,
    /// Frames that were valid but not trades (other streams, LIST replies).
    pub frames_other: AtomicU64,
    /// Trade frames for a symbol this shard does not hold.
    pub unknown_symbol: AtomicU64,
    /// Trades for a symbol that is not Active (ignored).
    pub trades_not_active: AtomicU64,
    /// Live trades already contained in an initial package (skipped).
    pub initial_duplicates: AtomicU64,
    /// Trades replayed from the recent-trades ring into a re-activated symbol.
    pub trades_replayed: AtomicU64,
    /// Connections rotated before their lifetime limit (make-before-break).
    pub rotations: AtomicU64,
    /// Replacement trades held back during a rotation's overlap (until the hand-over).
    pub rotation_held: AtomicU64,
    /// Held trades dropped at the overlap's per-symbol bound.
    pub rotation_held_dropped: AtomicU64,
    pub connect_failures: AtomicU64,
    /// SUBSCRIBE/UNSUBSCRIBE messages sent.
    pub subscribe_messages: AtomicU64,
    /// `SubscribeOne` refused (symbol not Active in this shard, or no connection room).
    pub subscribe_refused: AtomicU64,
    /// Streams given up after repeated SUBSCRIBE errors.
    pub subscriptions_given_up: AtomicU64,
    /// Error replies from the server.
    pub control_errors: AtomicU64,
    pub activations_ok: AtomicU64,
    pub activations_failed: AtomicU64,
    /// Acks that could not be delivered (ack channel full or closed).
    pub acks_failed: AtomicU64,
    /// `ResyncNeeded` reports sent.
    pub resyncs_requested: AtomicU64,
    /// Reports that could not be queued (report channel closed or pending queue full).
    pub reports_dropped: AtomicU64,
    /// Closed/corrected klines sent into the output channels.
    pub klines_sent: AtomicU64,
    /// Final klines for an output whose receiver is gone (cannot be delivered).
    pub klines_undeliverable: AtomicU64,
    /// Iterations in which reading paused because the outbox was over its limit.
    pub backpressure_pauses: AtomicU64,
}

/// A plain copy of a shard's counters at one moment (for `/metrics` and health reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardCountersSnapshot {
    pub trades_applied: u64,
    pub frames: u64,
    pub bytes: u64,
    pub parse_errors: u64,
    pub gaps: u64,
    pub duplicates: u64,
    pub late_trades: u64,
    pub late_dropped: u64,
    pub reconnects: u64,
    pub subscriptions_pending: u64,
    pub subscriptions_active: u64,
    pub connections_open: u64,
    pub outbox_depth: u64,
    pub outbox_max: u64,
    pub updates_dropped: u64,
    pub symbols_active: u64,
    pub loop_iterations: u64,
    pub busiest_iteration_ns: u64,
    pub heartbeat_ms: u64,
    pub pin_failed: u64,
    pub frames_other: u64,
    pub unknown_symbol: u64,
    pub trades_not_active: u64,
    pub initial_duplicates: u64,
    pub trades_replayed: u64,
    pub rotations: u64,
    pub rotation_held: u64,
    pub rotation_held_dropped: u64,
    pub connect_failures: u64,
    pub subscribe_messages: u64,
    pub subscribe_refused: u64,
    pub subscriptions_given_up: u64,
    pub control_errors: u64,
    pub activations_ok: u64,
    pub activations_failed: u64,
    pub acks_failed: u64,
    pub resyncs_requested: u64,
    pub reports_dropped: u64,
    pub klines_sent: u64,
    pub klines_undeliverable: u64,
    pub backpressure_pauses: u64,
}

/// What a `HealthReporter` needs from a shard: who it is, whether it is pinned, its last
/// heartbeat and its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHealth {
    pub shard: ShardId,
    pub core: Option<usize>,
    pub pin_failed: bool,
    /// Epoch ms of the last heartbeat (0: none yet).
    pub heartbeat_ms: u64,
    pub counters: ShardCountersSnapshot,
}

impl ShardHealth {
    /// True when the shard heartbeated within `max_age_ms` of `now_ms`.
    pub fn is_alive(&self, now_ms: u64, max_age_ms: u64) -> bool {
        self.heartbeat_ms != 0 && now_ms.saturating_sub(self.heartbeat_ms) <= max_age_ms
    }
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

    /// Raise a maximum gauge.
    pub fn raise(counter: &AtomicU64, value: u64) {
        if value > counter.load(Ordering::Relaxed) {
            counter.store(value, Ordering::Relaxed);
        }
    }

    /// Every counter at once (each read individually; not an atomic snapshot).
    pub fn snapshot(&self) -> ShardCountersSnapshot {
        let get = Self::get;
        ShardCountersSnapshot {
            trades_applied: get(&self.trades_applied),
            frames: get(&self.frames),
            bytes: get(&self.bytes),
            parse_errors: get(&self.parse_errors),
            gaps: get(&self.gaps),
            duplicates: get(&self.duplicates),
            late_trades: get(&self.late_trades),
            late_dropped: get(&self.late_dropped),
            reconnects: get(&self.reconnects),
            subscriptions_pending: get(&self.subscriptions_pending),
            subscriptions_active: get(&self.subscriptions_active),
            connections_open: get(&self.connections_open),
            outbox_depth: get(&self.outbox_depth),
            outbox_max: get(&self.outbox_max),
            updates_dropped: get(&self.updates_dropped),
            symbols_active: get(&self.symbols_active),
            loop_iterations: get(&self.loop_iterations),
            busiest_iteration_ns: get(&self.busiest_iteration_ns),
            heartbeat_ms: get(&self.heartbeat_ms),
            pin_failed: get(&self.pin_failed),
            frames_other: get(&self.frames_other),
            unknown_symbol: get(&self.unknown_symbol),
            trades_not_active: get(&self.trades_not_active),
            initial_duplicates: get(&self.initial_duplicates),
            trades_replayed: get(&self.trades_replayed),
            rotations: get(&self.rotations),
            rotation_held: get(&self.rotation_held),
            rotation_held_dropped: get(&self.rotation_held_dropped),
            connect_failures: get(&self.connect_failures),
            subscribe_messages: get(&self.subscribe_messages),
            subscribe_refused: get(&self.subscribe_refused),
            subscriptions_given_up: get(&self.subscriptions_given_up),
            control_errors: get(&self.control_errors),
            activations_ok: get(&self.activations_ok),
            activations_failed: get(&self.activations_failed),
            acks_failed: get(&self.acks_failed),
            resyncs_requested: get(&self.resyncs_requested),
            reports_dropped: get(&self.reports_dropped),
            klines_sent: get(&self.klines_sent),
            klines_undeliverable: get(&self.klines_undeliverable),
            backpressure_pauses: get(&self.backpressure_pauses),
        }
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

    /// The shard's health for a `HealthReporter`: identity, pinning, last heartbeat, counters.
    pub fn health(&self) -> ShardHealth {
        ShardHealth {
            shard: self.id,
            core: self.core,
            pin_failed: self.pin_failed,
            heartbeat_ms: ShardCounters::get(&self.counters.heartbeat_ms),
            counters: self.counters.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn skips_periods_of_fixed_and_calendar_intervals() {
        assert_eq!(skip_periods(Interval::M1, 0, 3), 3 * MIN);
        let feb = Interval::Mo1.next_open(0);
        assert_eq!(skip_periods(Interval::Mo1, 0, 1), feb);
    }

    #[test]
    fn final_klines_of_each_message() {
        let (symbol, interval) = (SymbolIndex(3), Interval::M1);
        let kline = Kline::flat(interval, MIN, 5);
        let update = KlineMsg::Update {
            symbol,
            interval,
            kline,
        };
        assert_eq!((update.symbol(), update.interval()), (symbol, interval));
        assert_eq!(update.final_klines(u64::MAX).count(), 0);
        let corrected = KlineMsg::Corrected {
            symbol,
            interval,
            kline,
        };
        assert_eq!(corrected.final_klines(0).collect::<Vec<_>>(), [kline]);
        let run = KlineMsg::FlatRun {
            symbol,
            interval,
            first_open_ms: 0,
            count: 5,
            price: 7,
        };
        let opens = |max| {
            let klines = run.final_klines(max);
            klines.map(|k| k.open_time_ms).collect::<Vec<_>>()
        };
        assert_eq!(opens(u64::MAX), [0, MIN, 2 * MIN, 3 * MIN, 4 * MIN]);
        assert_eq!(opens(2), [3 * MIN, 4 * MIN]);
        assert!(
            run.final_klines(2)
                .all(|k| k.close == 7 && k.trade_count == 0)
        );
    }
}
