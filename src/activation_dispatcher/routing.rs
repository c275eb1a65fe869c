//! The routing table (owned by the ActivationDispatcher thread): which shard owns which symbol,
//! balanced by expected trade rate (24 h trade count), not by listing order. A symbol keeps its
//! shard while it is activating or active, so a resync goes to the shard that holds its state.

use klagg_shards::protocol::ShardId;

/// Expected load per shard (sum of the owned symbols' 24 h trade counts) and symbol counts.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    loads: Vec<u64>,
    counts: Vec<u32>,
}

impl RoutingTable {
    /// A table for `shard_count` shards, all empty.
    ///
    /// # Panics
    /// If `shard_count` is 0 or over `u16::MAX` (the configuration was validated).
    pub fn new(shard_count: usize) -> RoutingTable {
        assert!(shard_count > 0, "at least one shard");
        assert!(shard_count <= usize::from(u16::MAX), "shard ids are u16");
        RoutingTable {
            loads: vec![0; shard_count],
            counts: vec![0; shard_count],
        }
    }

    pub fn shard_count(&self) -> usize {
        self.loads.len()
    }

    /// The weight a symbol adds to its shard: its 24 h trade count, at least 1 so that symbols
    /// without statistics (new listings) still spread.
    pub fn weight(expected_trades_24h: u64) -> u64 {
        expected_trades_24h.max(1)
    }

    /// Pick the least loaded shard (ties: fewer symbols, then the lower id) and charge it.
    pub fn assign(&mut self, expected_trades_24h: u64) -> ShardId {
        let best = (0..self.loads.len())
            .min_by_key(|&i| (self.loads[i], self.counts[i], i))
            .unwrap_or(0);
        self.loads[best] = self.loads[best].saturating_add(Self::weight(expected_trades_24h));
        self.counts[best] += 1;
        ShardId(u16::try_from(best).unwrap_or(u16::MAX))
    }

    /// Take a symbol's weight off its shard (deactivation, final failure).
    pub fn release(&mut self, shard: ShardId, expected_trades_24h: u64) {
        let index = usize::from(shard.0);
        assert!(index < self.loads.len(), "unknown shard {shard:?}");
        assert!(
            self.counts[index] > 0,
            "release without assign on {shard:?}"
        );
        self.loads[index] = self.loads[index].saturating_sub(Self::weight(expected_trades_24h));
        self.counts[index] -= 1;
    }

    /// Expected trades per 24 h of a shard.
    pub fn load(&self, shard: ShardId) -> u64 {
        self.loads[usize::from(shard.0)]
    }

    /// Symbols routed to a shard.
    pub fn count(&self, shard: ShardId) -> u32 {
        self.counts[usize::from(shard.0)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_first_spreads_by_load_not_by_order() {
        let mut table = RoutingTable::new(2);
        // One very busy symbol and many quiet ones: the quiet ones all go to the other shard
        // until it carries as much.
        assert_eq!(table.assign(1_000), ShardId(0));
        for _ in 0..9 {
            assert_eq!(table.assign(100), ShardId(1));
        }
        assert_eq!(table.assign(100), ShardId(1));
        assert_eq!(table.assign(100), ShardId(0));
        assert_eq!(
            (table.load(ShardId(0)), table.load(ShardId(1))),
            (1_100, 1_000)
        );
        assert_eq!((table.count(ShardId(0)), table.count(ShardId(1))), (2, 10));
    }

    #[test]
    fn release_returns_the_weight_and_new_listings_still_spread() {
        let mut table = RoutingTable::new(3);
        let shards: Vec<ShardId> = (0..3).map(|_| table.assign(0)).collect();
        assert_eq!(shards, vec![ShardId(0), ShardId(1), ShardId(2)]);
        table.release(ShardId(1), 0);
        assert_eq!(table.assign(0), ShardId(1));
        assert_eq!(table.shard_count(), 3);
    }
}
