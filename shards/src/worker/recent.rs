//! The shard's ring of recently applied trades (owned by the Worker, shard thread). A resync
//! re-activates an Active symbol with a fresh initial package that covers trades up to its
//! `last_agg_id`; trades after that id may already have arrived on the live stream and been
//! applied to the old state. They are replayed from this ring into the new state, so a resync is
//! exact without pausing the stream. Fixed capacity: the oldest entries are overwritten.

use crate::kline::AggTrade;
use crate::protocol::SymbolIndex;

/// A fixed-capacity ring of `(symbol, trade)` in arrival order.
#[derive(Debug)]
pub struct RecentTrades {
    entries: Vec<(SymbolIndex, AggTrade)>,
    /// Index of the next write.
    head: usize,
    /// Entries written so far, saturating at the capacity.
    len: usize,
}

impl RecentTrades {
    /// A ring of `capacity` trades (0 disables it).
    pub fn new(capacity: usize) -> RecentTrades {
        RecentTrades {
            entries: vec![(SymbolIndex(0), AggTrade::default()); capacity],
            head: 0,
            len: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, symbol: SymbolIndex, trade: &AggTrade) {
        let capacity = self.entries.len();
        if capacity == 0 {
            return;
        }
        self.entries[self.head] = (symbol, *trade);
        self.head = (self.head + 1) % capacity;
        self.len = (self.len + 1).min(capacity);
    }

    /// The trades of `symbol` with an id above `after_agg_id`, oldest first, into `out`.
    pub fn collect_after(&self, symbol: SymbolIndex, after_agg_id: i64, out: &mut Vec<AggTrade>) {
        let capacity = self.entries.len();
        let start = (self.head + capacity - self.len) % capacity.max(1);
        for offset in 0..self.len {
            let (owner, trade) = &self.entries[(start + offset) % capacity];
            if *owner == symbol && trade.agg_id > after_agg_id {
                out.push(*trade);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(agg_id: i64) -> AggTrade {
        AggTrade {
            agg_id,
            ..AggTrade::default()
        }
    }

    #[test]
    fn keeps_the_latest_in_order() {
        let mut ring = RecentTrades::new(4);
        for id in 1..=6 {
            ring.push(SymbolIndex(id as u32 % 2), &trade(id));
        }
        assert_eq!(ring.len(), 4);
        let mut out = Vec::new();
        ring.collect_after(SymbolIndex(0), 0, &mut out);
        assert_eq!(out.iter().map(|t| t.agg_id).collect::<Vec<_>>(), [4, 6]);
        out.clear();
        ring.collect_after(SymbolIndex(1), 3, &mut out);
        assert_eq!(out.iter().map(|t| t.agg_id).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn zero_capacity_is_a_no_op() {
        let mut ring = RecentTrades::new(0);
        ring.push(SymbolIndex(0), &trade(1));
        let mut out = Vec::new();
        ring.collect_after(SymbolIndex(0), 0, &mut out);
        assert!(out.is_empty() && ring.is_empty());
    }
}
