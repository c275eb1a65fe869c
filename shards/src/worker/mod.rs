//! The Worker (owned and run by exactly one shard thread; no I/O, no clock reads): the shard's
//! symbols, their activation states and their kline state ([`KlineBook`]).
//!
//! It starts empty. `WorkerCmd::ActivateSymbol` gives a symbol a slot (stable until the symbol
//! is deactivated; slots are never compacted), moves it `Pending → Activating`, applies the
//! initial package and answers the ack: `Active` with `Ok`, or `Failed` with the reason. The same
//! command for an Active symbol is a resync and replaces its state in one step. Trades and clock
//! ticks touch Active symbols only (invariant: a slot is live in the book iff it is Active).
//! Frames are routed by the symbol name bytes through an `FxHashMap` (no allocation per frame).

mod recent;

pub use recent::RecentTrades;

use rustc_hash::FxHashMap;

use crate::kline::{AggTrade, ApplyOutcome, BookError, BookEvent, Interval, KlineBook};
use crate::parse::{ParseError, RawAggTrade};
use crate::protocol::{
    ActivationError, ActivationId, InitialSymbolData, ShardId, SymbolActivationState, SymbolIndex,
    SymbolSpec, WorkerAck, WorkerCmd,
};

/// Default grace between a period's end (by the exchange-time estimate) and its clock close.
pub const CLOSE_GRACE_MS_DEFAULT: i64 = 150;
/// Default size of the ring of recent trades replayed on a resync.
pub const RECENT_TRADES_DEFAULT: usize = 16_384;
/// Longest symbol name accepted (Binance names are ≤ 20 bytes).
const SYMBOL_NAME_MAX: usize = 32;

/// How a Worker is built.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub shard: ShardId,
    /// Intervals aggregated (any order; kept shortest first).
    pub intervals: Vec<Interval>,
    /// Symbol slots (the most symbols this shard can hold at once).
    pub slots_max: usize,
    /// Clock closes happen at `exchange_now − close_grace_ms`.
    pub close_grace_ms: i64,
    /// Trades kept for replay on a resync (0 disables the replay).
    pub recent_trades: usize,
}

impl WorkerConfig {
    pub fn new(shard: ShardId, intervals: Vec<Interval>, slots_max: usize) -> WorkerConfig {
        WorkerConfig {
            shard,
            intervals,
            slots_max,
            close_grace_ms: CLOSE_GRACE_MS_DEFAULT,
            recent_trades: RECENT_TRADES_DEFAULT,
        }
    }
}

/// What happened to one trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeOutcome {
    /// The book took it (or recognised it as a duplicate).
    Book(ApplyOutcome),
    /// The symbol is not Active: ignored.
    NotActive,
    /// The book refused it (malformed or overflowing); nothing changed.
    Refused(BookError),
}

/// Why a frame's trade did not reach the book.
#[derive(Debug, thiserror::Error)]
pub enum FrameTradeError {
    /// The frame's symbol is not one of this shard's (the caller has the frame to name it;
    /// nothing is allocated on this path).
    #[error("the frame's symbol is not one of this shard's")]
    UnknownSymbol,
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Counters the Worker keeps itself (the book keeps the kline ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub trades_not_active: u64,
    pub unknown_symbol: u64,
    /// Live trades already contained in an initial package (id ≤ its `last_agg_id`).
    pub initial_duplicates: u64,
    /// Jumps between an initial package's `last_agg_id` and the first live trade.
    pub initial_gaps: u64,
    pub replayed: u64,
    pub acks_failed: u64,
    pub activations_ok: u64,
    pub activations_failed: u64,
}

/// A book event with its symbol resolved when it was produced.
pub type WorkerEvent = (SymbolIndex, BookEvent);

/// The activating Worker of one shard.
#[derive(Debug)]
pub struct Worker {
    shard: ShardId,
    book: KlineBook,
    /// Per slot (seed checklist item 4).
    activation_states: Vec<SymbolActivationState>,
    specs: Vec<Option<SymbolSpec>>,
    activations: Vec<ActivationId>,
    /// Per slot: the initial package's `last_agg_id` until the first live trade (−1: none).
    first_expected: Vec<i64>,
    /// Per slot: a resync was requested since the last activation (report once).
    resync_requested: Vec<bool>,
    slot_by_symbol: FxHashMap<SymbolIndex, u32>,
    slot_by_name: FxHashMap<Box<[u8]>, u32>,
    /// Free slots, lowest on top.
    free_slots: Vec<u32>,
    recent: RecentTrades,
    replay: Vec<AggTrade>,
    book_events: Vec<BookEvent>,
    events: Vec<WorkerEvent>,
    close_grace_ms: i64,
    stats: WorkerStats,
}

impl Worker {
    /// An empty Worker: every slot free and `Pending`, no kline state.
    ///
    /// # Panics
    /// On an invalid configuration (no intervals, duplicates, too many slots).
    pub fn new(config: &WorkerConfig) -> Worker {
        let slots = config.slots_max;
        let book = KlineBook::new(&config.intervals, slots);
        Worker {
            shard: config.shard,
            book,
            activation_states: vec![SymbolActivationState::Pending; slots],
            specs: vec![None; slots],
            activations: vec![ActivationId(0); slots],
            first_expected: vec![-1; slots],
            resync_requested: vec![false; slots],
            slot_by_symbol: FxHashMap::default(),
            slot_by_name: FxHashMap::default(),
            free_slots: (0..slots as u32).rev().collect(),
            recent: RecentTrades::new(config.recent_trades),
            replay: Vec::new(),
            book_events: Vec::with_capacity(slots * 4),
            events: Vec::with_capacity(slots * 4),
            close_grace_ms: config.close_grace_ms,
            stats: WorkerStats::default(),
        }
    }

    /// Apply one command. `ActivateSymbol` answers its ack (never blocking: a full or closed
    /// ack channel is counted in `acks_failed`) and returns the ack; `DeactivateSymbol`
    /// returns `None`.
    pub fn process_command(&mut self, cmd: WorkerCmd) -> Option<WorkerAck> {
        self.drain_book();
        match cmd {
            WorkerCmd::ActivateSymbol {
                symbol,
                initial_data,
                activation,
                ack,
            } => {
                let index = symbol.index;
                let result = self.activate(symbol, &initial_data, activation);
                let reply = WorkerAck {
                    shard: self.shard,
                    symbol: index,
                    activation,
                    result,
                };
                if ack.try_send(reply.clone()).is_err() {
                    self.stats.acks_failed += 1;
                }
                Some(reply)
            }
            WorkerCmd::DeactivateSymbol { symbol } => {
                self.deactivate(symbol);
                None
            }
        }
    }

    fn activate(
        &mut self,
        spec: SymbolSpec,
        initial: &InitialSymbolData,
        activation: ActivationId,
    ) -> Result<(), ActivationError> {
        if let Err(error) = check_spec(&spec) {
            self.stats.activations_failed += 1;
            return Err(error);
        }
        if let Some(&other) = self.slot_by_name.get(spec.name.as_bytes())
            && self.specs[other as usize].as_ref().map(|s| s.index) != Some(spec.index)
        {
            self.stats.activations_failed += 1;
            return Err(ActivationError::InvalidSpec {
                reason: "another symbol of this shard has the same name",
            });
        }
        let slot = self.slot_for(spec.index)?;
        self.activation_states[slot as usize] = SymbolActivationState::Activating;
        self.activations[slot as usize] = activation;
        self.resync_requested[slot as usize] = false;
        self.first_expected[slot as usize] = -1;
        let name: Box<[u8]> = spec.name.as_bytes().into();
        self.slot_by_name.retain(|_, &mut owner| owner != slot);
        self.slot_by_name.insert(name, slot);
        let symbol = spec.index;
        self.specs[slot as usize] = Some(spec);
        if let Err(error) = self.book.init_slot(slot, &initial.klines) {
            self.activation_states[slot as usize] = SymbolActivationState::Failed;
            self.stats.activations_failed += 1;
            return Err(ActivationError::InitialData(error));
        }
        self.activation_states[slot as usize] = SymbolActivationState::Active;
        self.stats.activations_ok += 1;
        if let Some(last) = initial.last_agg_id {
            self.first_expected[slot as usize] = last;
            self.replay_recent(slot, symbol, last);
        }
        Ok(())
    }

    /// The symbol's slot, or a free one (lowest first).
    fn slot_for(&mut self, symbol: SymbolIndex) -> Result<u32, ActivationError> {
        if let Some(&slot) = self.slot_by_symbol.get(&symbol) {
            return Ok(slot);
        }
        let Some(slot) = self.free_slots.pop() else {
            self.stats.activations_failed += 1;
            return Err(ActivationError::NoFreeSlot {
                capacity: self.specs.len(),
            });
        };
        self.slot_by_symbol.insert(symbol, slot);
        Ok(slot)
    }

    /// Replay the trades after `last_agg_id` that the live stream already delivered.
    fn replay_recent(&mut self, slot: u32, symbol: SymbolIndex, last_agg_id: i64) {
        let mut replay = std::mem::take(&mut self.replay);
        replay.clear();
        self.recent.collect_after(symbol, last_agg_id, &mut replay);
        for trade in &replay {
            self.stats.replayed += 1;
            self.process_trade(slot, trade);
        }
        self.replay = replay;
    }

    fn deactivate(&mut self, symbol: SymbolIndex) {
        let Some(slot) = self.slot_by_symbol.remove(&symbol) else {
            return;
        };
        self.book.clear_slot(slot);
        self.slot_by_name.retain(|_, &mut owner| owner != slot);
        let index = slot as usize;
        self.activation_states[index] = SymbolActivationState::Pending;
        self.specs[index] = None;
        self.first_expected[index] = -1;
        self.resync_requested[index] = false;
        self.free_slots.push(slot);
        // Keep the lowest free slot on top so slot use stays dense.
        self.free_slots.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Apply one trade of the symbol in `slot`. Only Active symbols are touched.
    #[inline]
    pub fn process_trade(&mut self, slot: u32, trade: &AggTrade) -> TradeOutcome {
        let index = slot as usize;
        if self.activation_states.get(index) != Some(&SymbolActivationState::Active) {
            self.stats.trades_not_active += 1;
            return TradeOutcome::NotActive;
        }
        let expected = self.first_expected[index];
        if expected >= 0 {
            if trade.agg_id <= expected {
                self.stats.initial_duplicates += 1;
                return TradeOutcome::Book(ApplyOutcome::Duplicate);
            }
            self.first_expected[index] = -1;
            if trade.agg_id != expected + 1 {
                self.stats.initial_gaps += 1;
                self.push_event(BookEvent::Gap {
                    slot,
                    expected_agg_id: expected + 1,
                    received_agg_id: trade.agg_id,
                });
            }
        }
        match self.book.apply(slot, trade) {
            Ok(outcome) => {
                if outcome != ApplyOutcome::Duplicate
                    && let Some(spec) = &self.specs[index]
                {
                    self.recent.push(spec.index, trade);
                }
                TradeOutcome::Book(outcome)
            }
            Err(error) => TradeOutcome::Refused(error),
        }
    }

    /// Route a parsed frame's trade by its symbol name and apply it.
    ///
    /// # Errors
    /// The name is not one of this shard's symbols, or a decimal does not fit the symbol's scale.
    #[inline]
    pub fn process_raw_trade(
        &mut self,
        raw: &RawAggTrade<'_>,
    ) -> Result<TradeOutcome, FrameTradeError> {
        let Some(&slot) = self.slot_by_name.get(raw.symbol) else {
            self.stats.unknown_symbol += 1;
            return Err(FrameTradeError::UnknownSymbol);
        };
        let Some(spec) = &self.specs[slot as usize] else {
            self.stats.unknown_symbol += 1;
            return Err(FrameTradeError::UnknownSymbol);
        };
        let trade = raw.to_agg_trade(spec.scales)?;
        Ok(self.process_trade(slot, &trade))
    }

    /// For a rotation's overlap: the Active symbol named `name` and the aggregate id it
    /// expects next (`None`: neither a trade nor a package id is known yet). `None` when no
    /// Active symbol of this shard has that name.
    pub fn expected_agg_id(&self, name: &[u8]) -> Option<(SymbolIndex, Option<i64>)> {
        let slot = self.slot_of_name(name)?;
        let symbol = self.symbol_at(slot)?.index;
        Some((symbol, self.next_agg_id(symbol)?))
    }

    /// The aggregate id an Active `symbol` expects next: `Some(None)` when nothing is known
    /// yet, `None` when the symbol is not Active here.
    pub fn next_agg_id(&self, symbol: SymbolIndex) -> Option<Option<i64>> {
        let slot = self.slot_of(symbol)?;
        if self.activation_states[slot as usize] != SymbolActivationState::Active {
            return None;
        }
        let first = self.first_expected[slot as usize];
        Some(if first >= 0 {
            Some(first + 1)
        } else {
            self.book.last_agg_id(slot).map(|last| last + 1)
        })
    }

    /// Convert a frame's trade of `symbol` at its scales without applying it (to hold it).
    ///
    /// # Errors
    /// The symbol is unknown, or a decimal does not fit its scale.
    pub fn convert_trade(
        &self,
        symbol: SymbolIndex,
        raw: &RawAggTrade<'_>,
    ) -> Result<AggTrade, FrameTradeError> {
        let spec = self.spec(symbol).ok_or(FrameTradeError::UnknownSymbol)?;
        Ok(raw.to_agg_trade(spec.scales)?)
    }

    /// Apply a trade held back earlier (see [`Worker::process_trade`]).
    pub fn process_symbol_trade(&mut self, symbol: SymbolIndex, trade: &AggTrade) -> TradeOutcome {
        match self.slot_of(symbol) {
            Some(slot) => self.process_trade(slot, trade),
            None => {
                self.stats.trades_not_active += 1;
                TradeOutcome::NotActive
            }
        }
    }

    /// Close every Active symbol's klines whose period ended before
    /// `exchange_now_ms − close_grace_ms` (the shard's estimate of exchange time).
    pub fn process_clock_tick(&mut self, exchange_now_ms: i64) {
        self.book.close_due(exchange_now_ms - self.close_grace_ms);
    }

    /// Move every event produced so far into `out`, each with its symbol (resolved when the
    /// event was produced, so a later deactivation cannot misattribute it).
    pub fn take_events(&mut self, out: &mut Vec<WorkerEvent>) {
        self.drain_book();
        out.append(&mut self.events);
    }

    /// True when events are waiting.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || self.book.has_events()
    }

    fn drain_book(&mut self) {
        if !self.book.has_events() {
            return;
        }
        let mut drained = std::mem::take(&mut self.book_events);
        self.book.take_events(&mut drained);
        for event in drained.drain(..) {
            self.push_event(event);
        }
        self.book_events = drained;
    }

    fn push_event(&mut self, event: BookEvent) {
        let slot = match event {
            BookEvent::Updated { slot }
            | BookEvent::Closed { slot, .. }
            | BookEvent::FlatRun { slot, .. }
            | BookEvent::Corrected { slot, .. }
            | BookEvent::Gap { slot, .. } => slot,
        };
        if let Some(spec) = self.specs.get(slot as usize).and_then(Option::as_ref) {
            self.events.push((spec.index, event));
        }
    }

    /// Record that a resync of the symbol in `slot` was requested; true the first time since
    /// its last activation (report a gap once, not for every later trade).
    pub fn note_resync_requested(&mut self, slot: u32) -> bool {
        match self.resync_requested.get_mut(slot as usize) {
            Some(flag) if !*flag => {
                *flag = true;
                true
            }
            _ => false,
        }
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn book(&self) -> &KlineBook {
        &self.book
    }

    pub fn stats(&self) -> WorkerStats {
        self.stats
    }

    /// Activation state per slot.
    pub fn activation_states(&self) -> &[SymbolActivationState] {
        &self.activation_states
    }

    /// The state of `symbol` (`Pending` when this shard does not know it).
    pub fn activation_state(&self, symbol: SymbolIndex) -> SymbolActivationState {
        self.slot_of(symbol)
            .map_or(SymbolActivationState::Pending, |slot| {
                self.activation_states[slot as usize]
            })
    }

    pub fn slot_of(&self, symbol: SymbolIndex) -> Option<u32> {
        self.slot_by_symbol.get(&symbol).copied()
    }

    pub fn slot_of_name(&self, name: &[u8]) -> Option<u32> {
        self.slot_by_name.get(name).copied()
    }

    /// The symbol that holds `slot`.
    pub fn symbol_at(&self, slot: u32) -> Option<&SymbolSpec> {
        self.specs.get(slot as usize).and_then(Option::as_ref)
    }

    /// The spec of `symbol`, when this shard holds it.
    pub fn spec(&self, symbol: SymbolIndex) -> Option<&SymbolSpec> {
        self.slot_of(symbol).and_then(|slot| self.symbol_at(slot))
    }

    /// The Active symbols, in slot order.
    pub fn active_symbols(&self) -> impl Iterator<Item = &SymbolSpec> {
        self.specs
            .iter()
            .zip(&self.activation_states)
            .filter(|(_, state)| **state == SymbolActivationState::Active)
            .filter_map(|(spec, _)| spec.as_ref())
    }

    pub fn active_count(&self) -> usize {
        self.active_symbols().count()
    }
}

fn check_spec(spec: &SymbolSpec) -> Result<(), ActivationError> {
    let name = spec.name.as_bytes();
    if name.is_empty() || name.len() > SYMBOL_NAME_MAX {
        return Err(ActivationError::InvalidSpec {
            reason: "symbol name is empty or too long",
        });
    }
    if !name
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Err(ActivationError::InvalidSpec {
            reason: "symbol name is not upper-case ASCII letters, digits and `_`",
        });
    }
    if spec.scales.price > crate::kline::decimal::SCALE_MAX
        || spec.scales.qty > crate::kline::decimal::SCALE_MAX
    {
        return Err(ActivationError::InvalidSpec {
            reason: "price or quantity scale above 18",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
