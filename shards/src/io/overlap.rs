//! The overlap of a make-before-break rotation (shard thread; no I/O): which of two
//! connections carrying the same streams is authoritative for each symbol, and the replacement's
//! trades held back until the hand-over is seamless, so that it neither loses nor
//! double-counts a trade.
//!
//! When a connection nears its lifetime limit, a replacement subscribes to the same streams
//! while the retiring connection keeps delivering. Both carry the same contiguous
//! aggregate-id sequence per symbol, but the replacement's starts somewhere in the middle and
//! either connection may lag the other. Per symbol:
//! - Until it switches, the retiring connection is authoritative: its trades are applied, and
//!   the replacement's are *held* (at most [`HELD_PER_SYMBOL_MAX`], the oldest dropped first).
//! - It switches as soon as the oldest held trade is at most the id the symbol expects next
//!   (`last applied + 1`): the held trades are applied in order (the book skips the ones it
//!   already has), and nothing between the two streams can be missing. This happens on a
//!   replacement trade when the replacement lags, and on a retiring trade when it leads.
//! - After the switch both connections' trades are applied as they come: each stream is
//!   contiguous and has proven it connects, so each trade is the next one or a duplicate the
//!   book skips. Keeping the retiring stream matters when the replacement reconnects during the
//!   overlap: what the retiring one delivered meanwhile was applied, not dropped.
//!
//! The retiring connection is closed once every symbol has switched, or [`OVERLAP_MAX`] after
//! the replacement had every stream acknowledged (a symbol that did not trade in that time);
//! the remaining symbols then switch with their held trades applied. Had a trade really been
//! missed, the book sees the jump and the symbol is re-synchronised as after any gap. If the
//! replacement reconnects during the overlap, its held trades are dropped and every symbol must
//! switch again; if the retiring connection breaks, the overlap ends as above.

use std::collections::VecDeque;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::kline::AggTrade;
use crate::parse::RawAggTrade;
use crate::protocol::SymbolIndex;
use crate::worker::{FrameTradeError, TradeOutcome, Worker};

pub use super::ROTATION_OVERLAP_MAX as OVERLAP_MAX;

/// Replacement trades held per symbol at most (beyond it the oldest are dropped and counted:
/// the symbol then switches only once the retiring connection has caught up further).
pub const HELD_PER_SYMBOL_MAX: usize = 1024;

/// Which connection of a rotation a trade came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Retiring,
    Replacement,
}

/// What the overlap did with one trade frame.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GateStats {
    /// Replacement trades held back.
    pub held: u64,
    /// Held trades dropped at [`HELD_PER_SYMBOL_MAX`].
    pub held_dropped: u64,
}

/// A rotation in progress, held by the replacement connection.
#[derive(Debug)]
pub struct Overlap {
    /// The retiring connection's slot.
    pub from: usize,
    /// When the rotation started.
    pub started: Instant,
    /// When the replacement first had every stream acknowledged.
    pub settled_at: Option<Instant>,
    /// Every symbol the retiring connection carried when the rotation started.
    symbols: Vec<SymbolIndex>,
    /// The symbols that have not switched yet, with the replacement's trades held for them.
    waiting: FxHashMap<SymbolIndex, VecDeque<AggTrade>>,
}

impl Overlap {
    pub fn new(from: usize, symbols: Vec<SymbolIndex>, now: Instant) -> Overlap {
        let mut overlap = Overlap {
            from,
            started: now,
            settled_at: None,
            symbols,
            waiting: FxHashMap::default(),
        };
        overlap.restart();
        overlap
    }

    /// Every symbol has switched to the replacement.
    pub fn switched_all(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Symbols still served by the retiring connection.
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// The replacement (re)connected: nothing is held or proven on it any more.
    pub fn restart(&mut self) {
        self.waiting = self.symbols.iter().map(|&s| (s, VecDeque::new())).collect();
        self.settled_at = None;
    }

    /// `symbol` is no longer carried: do not wait for it.
    pub fn forget(&mut self, symbol: SymbolIndex) {
        self.waiting.remove(&symbol);
        self.symbols.retain(|&s| s != symbol);
    }

    /// `symbol` was activated again (a resync replaced its state): trades held before belong
    /// to the old state; it waits afresh.
    pub fn reset(&mut self, symbol: SymbolIndex) {
        if let Some(held) = self.waiting.get_mut(&symbol) {
            held.clear();
        }
    }

    /// True while the retiring connection is authoritative for `symbol`.
    pub fn is_waiting(&self, symbol: SymbolIndex) -> bool {
        self.waiting.contains_key(&symbol)
    }

    /// Hold a replacement trade of a waiting symbol; true when the oldest had to be dropped.
    pub fn hold(&mut self, symbol: SymbolIndex, trade: AggTrade) -> bool {
        let Some(held) = self.waiting.get_mut(&symbol) else {
            return false;
        };
        let full = held.len() >= HELD_PER_SYMBOL_MAX;
        if full {
            held.pop_front();
        }
        held.push_back(trade);
        full
    }

    /// Switch `symbol` when its held trades connect to what was applied (`next`: the id it
    /// expects next, `None` when nothing is known): returns the held trades to apply.
    pub fn switch_if_connected(
        &mut self,
        symbol: SymbolIndex,
        next: Option<i64>,
    ) -> Option<VecDeque<AggTrade>> {
        let oldest = self.waiting.get(&symbol)?.front()?.agg_id;
        if next.is_some_and(|next| oldest > next) {
            return None;
        }
        self.waiting.remove(&symbol)
    }

    /// End the overlap: every symbol switches; the held trades to apply, per symbol in order.
    pub fn finish(self) -> impl Iterator<Item = (SymbolIndex, VecDeque<AggTrade>)> {
        self.waiting.into_iter()
    }
}

/// The overlap as seen by one connection's read.
#[derive(Debug)]
pub struct Gate<'a> {
    pub side: Side,
    pub overlap: &'a mut Overlap,
    pub stats: GateStats,
}

impl Gate<'_> {
    /// Route one trade frame: `None` when it was held or dropped, else the worker's result.
    /// Trades of a symbol that is not Active here go to the worker (which ignores them).
    #[inline]
    pub fn process(
        &mut self,
        worker: &mut Worker,
        raw: &RawAggTrade<'_>,
    ) -> Option<Result<TradeOutcome, FrameTradeError>> {
        let Some((symbol, _)) = worker.expected_agg_id(raw.symbol) else {
            return Some(worker.process_raw_trade(raw));
        };
        let waiting = self.overlap.is_waiting(symbol);
        match self.side {
            Side::Retiring if !waiting => Some(worker.process_raw_trade(raw)),
            Side::Retiring => {
                let outcome = worker.process_raw_trade(raw);
                self.switch_if_connected(worker, symbol);
                Some(outcome)
            }
            Side::Replacement if !waiting => Some(worker.process_raw_trade(raw)),
            Side::Replacement => {
                let trade = match worker.convert_trade(symbol, raw) {
                    Ok(trade) => trade,
                    Err(error) => return Some(Err(error)),
                };
                self.stats.held += 1;
                self.stats.held_dropped += u64::from(self.overlap.hold(symbol, trade));
                self.switch_if_connected(worker, symbol);
                None
            }
        }
    }

    fn switch_if_connected(&mut self, worker: &mut Worker, symbol: SymbolIndex) {
        let Some(next) = worker.next_agg_id(symbol) else {
            return;
        };
        if let Some(held) = self.overlap.switch_if_connected(symbol, next) {
            apply_held(worker, symbol, held);
        }
    }
}

/// Apply held trades of `symbol` in order (the book skips duplicates and reports a jump).
pub fn apply_held(worker: &mut Worker, symbol: SymbolIndex, held: VecDeque<AggTrade>) {
    for trade in &held {
        worker.process_symbol_trade(symbol, trade);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SymbolIndex = SymbolIndex(0);
    const B: SymbolIndex = SymbolIndex(1);

    fn trade(agg_id: i64) -> AggTrade {
        AggTrade {
            agg_id,
            ..AggTrade::default()
        }
    }

    /// A book of one symbol: applies like the real one (duplicates skipped) and fails on a gap.
    struct Book {
        last: i64,
        applied: Vec<i64>,
    }

    impl Book {
        fn apply(&mut self, id: i64) {
            if id > self.last {
                assert_eq!(id, self.last + 1, "a gap after {:?}", self.applied.last());
                self.last = id;
                self.applied.push(id);
            }
        }

        /// What [`Gate::process`] does, on the pure overlap.
        fn deliver(&mut self, overlap: &mut Overlap, side: Side, id: i64) {
            let waiting = overlap.is_waiting(A);
            match side {
                Side::Retiring | Side::Replacement if !waiting => return self.apply(id),
                Side::Retiring => self.apply(id),
                Side::Replacement => {
                    overlap.hold(A, trade(id));
                }
            }
            if let Some(held) = overlap.switch_if_connected(A, Some(self.last + 1)) {
                held.iter().for_each(|t| self.apply(t.agg_id));
            }
        }
    }

    /// Trade `id` is published at time `id`; the retiring connection delivers `100..400` at
    /// `id + lag_old`, the replacement `start..400` at `id + lag_new` (ties: retiring first).
    fn hand_over(start: i64, lag_old: i64, lag_new: i64) -> Vec<i64> {
        let mut events: Vec<(i64, u8, i64)> = (100..400).map(|id| (id + lag_old, 0, id)).collect();
        events.extend((start..400).map(|id| (id + lag_new, 1, id)));
        events.sort_unstable();
        let mut overlap = Overlap::new(0, vec![A], Instant::now());
        let mut book = Book {
            last: 99,
            applied: Vec::new(),
        };
        for (_, side, id) in events {
            let side = [Side::Retiring, Side::Replacement][side as usize];
            book.deliver(&mut overlap, side, id);
        }
        assert!(
            overlap.switched_all(),
            "switched ({start}, {lag_old}, {lag_new})"
        );
        book.applied
    }

    #[test]
    fn every_trade_exactly_once_whichever_connection_leads() {
        let all: Vec<i64> = (100..400).collect();
        for (start, lag_old, lag_new) in [
            (130, 0, 0),
            (130, 50, 0),
            (130, 0, 50),
            (100, 7, 3),
            (90, 20, 0),
            (250, 5, 100),
            (101, 900, 0),
        ] {
            let what = format!("start {start}, lags {lag_old}/{lag_new}");
            assert_eq!(hand_over(start, lag_old, lag_new), all, "{what}");
        }
    }

    #[test]
    fn holding_is_bounded_and_keeps_the_newest() {
        let mut overlap = Overlap::new(0, vec![A], Instant::now());
        let max = HELD_PER_SYMBOL_MAX as i64;
        let dropped = (0..max + 10)
            .filter(|&i| overlap.hold(A, trade(1000 + i)))
            .count();
        assert_eq!(dropped, 10);
        assert!(overlap.switch_if_connected(A, Some(1009)).is_none());
        let held = overlap
            .switch_if_connected(A, Some(1010))
            .expect("connected");
        assert_eq!(held.len(), HELD_PER_SYMBOL_MAX);
        assert_eq!(held.front().map(|t| t.agg_id), Some(1010));
        assert!(overlap.switched_all());
    }

    #[test]
    fn unknown_history_restart_forget_and_finish() {
        let mut overlap = Overlap::new(3, vec![A, B], Instant::now());
        assert!(
            overlap.switch_if_connected(A, None).is_none(),
            "nothing held"
        );
        overlap.hold(A, trade(500));
        assert_eq!(
            overlap.switch_if_connected(A, None).map(|h| h.len()),
            Some(1)
        );
        assert!(!overlap.is_waiting(A) && overlap.is_waiting(B));
        overlap.restart();
        assert_eq!(
            overlap.waiting_count(),
            2,
            "a reconnect needs a new hand-over"
        );
        overlap.hold(B, trade(9));
        overlap.forget(A);
        let rest: Vec<_> = overlap.finish().collect();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].0, rest[0].1.len()), (B, 1));
        let mut overlap = Overlap::new(3, vec![A], Instant::now());
        overlap.forget(A);
        overlap.restart();
        assert!(overlap.switched_all(), "forgotten symbols stay forgotten");
        assert!(
            !overlap.hold(SymbolIndex(9), trade(1)),
            "not waiting: not held"
        );
    }

    #[test]
    fn a_replacement_reconnecting_after_the_switch_loses_nothing() {
        let mut overlap = Overlap::new(0, vec![A], Instant::now());
        let mut book = Book {
            last: 99,
            applied: Vec::new(),
        };
        (100..=105).for_each(|id| book.deliver(&mut overlap, Side::Retiring, id));
        book.deliver(&mut overlap, Side::Replacement, 104);
        assert!(!overlap.is_waiting(A), "switched");
        // The retiring connection runs ahead; then the replacement breaks before delivering
        // 106 and 107 and must hand over again.
        (106..=107).for_each(|id| book.deliver(&mut overlap, Side::Retiring, id));
        overlap.restart();
        book.deliver(&mut overlap, Side::Retiring, 108);
        (107..=110).for_each(|id| book.deliver(&mut overlap, Side::Replacement, id));
        assert_eq!(book.applied, (100..=110).collect::<Vec<_>>());
        assert!(overlap.switched_all());
    }

    #[test]
    fn a_reactivated_symbol_drops_what_was_held_for_it() {
        let mut overlap = Overlap::new(0, vec![A], Instant::now());
        overlap.hold(A, trade(500));
        overlap.reset(A);
        assert!(overlap.is_waiting(A), "still waiting for a hand-over");
        assert!(
            overlap.switch_if_connected(A, None).is_none(),
            "nothing held"
        );
        overlap.hold(A, trade(600));
        let held = overlap.switch_if_connected(A, None).expect("switches");
        assert_eq!(held.iter().map(|t| t.agg_id).collect::<Vec<_>>(), vec![600]);
    }
}
