//! Workloads for benchmarks (benchmark thread): a seeded, heavy-tailed aggregate-trade stream
//! over many symbols, as the kline core and the parser see it, and the simulator's symbols as
//! the engine names them.

use std::sync::Arc;

use klagg_shards::kline::{AggTrade, Scales};
use klagg_shards::protocol::{SymbolIndex, SymbolSpec};

use crate::sim::SimHandle;

/// A small, fast, seeded PRNG (xorshift64*), so workloads are identical across runs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)` with 53 bits (benchmark scheduling only, never prices).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// The first `count` symbols of `sim` as the engine names them (index = position).
pub fn sim_specs(sim: &SimHandle, count: usize) -> Vec<SymbolSpec> {
    sim.symbols()
        .into_iter()
        .take(count)
        .enumerate()
        .map(|(index, info)| SymbolSpec {
            index: SymbolIndex(index as u32),
            name: Arc::from(info.name.as_str()),
            scales: Scales {
                price: info.price_dp as u8,
                qty: info.qty_dp as u8,
            },
        })
        .collect()
}

/// One trade of the workload and the slot (symbol) it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct SlotTrade {
    pub slot: u32,
    pub trade: AggTrade,
}

/// Shape of a generated stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamShape {
    pub symbols: u32,
    pub trades: usize,
    /// Mean exchange-time step between consecutive trades over all symbols.
    pub mean_step_us: u64,
    pub start_ms: i64,
    pub seed: u64,
}

/// Generate a heavy-tailed stream: symbol `⌊symbols·u³⌋` (a few symbols carry most trades),
/// per-symbol random-walk prices and consecutive ids, times increasing.
pub fn generate(shape: StreamShape) -> Vec<SlotTrade> {
    let symbols = shape.symbols as usize;
    let mut rng = Rng::new(shape.seed);
    let mut prices: Vec<i64> = (0..symbols)
        .map(|_| 10_000 + rng.below(1_000_000) as i64)
        .collect();
    let mut next_agg: Vec<i64> = (0..symbols).map(|i| 1_000_000 * i as i64).collect();
    let mut next_trade: Vec<i64> = next_agg.iter().map(|id| id * 3).collect();
    let mut time_us = shape.start_ms * 1000;
    let mut out = Vec::with_capacity(shape.trades);
    for _ in 0..shape.trades {
        let unit = rng.unit();
        let slot = ((unit * unit * unit) * symbols as f64) as usize;
        time_us += rng.below(2 * shape.mean_step_us + 1) as i64;
        prices[slot] = (prices[slot] + rng.below(21) as i64 - 10).max(1);
        let bundle = 1 + rng.below(4) as i64;
        let trade = AggTrade {
            agg_id: next_agg[slot],
            price: prices[slot],
            qty: 1 + rng.below(100_000) as i64,
            first_id: next_trade[slot],
            last_id: next_trade[slot] + bundle - 1,
            time_ms: time_us / 1000,
            buyer_maker: rng.below(2) == 0,
        };
        next_agg[slot] += 1;
        next_trade[slot] += bundle;
        out.push(SlotTrade {
            slot: slot as u32,
            trade,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_skewed_and_consecutive() {
        let shape = StreamShape {
            symbols: 100,
            trades: 20_000,
            mean_step_us: 500,
            start_ms: 0,
            seed: 7,
        };
        let (a, b) = (generate(shape), generate(shape));
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.trade == y.trade && x.slot == y.slot)
        );
        let busiest = a.iter().filter(|t| t.slot < 10).count();
        assert!(
            busiest > a.len() / 3,
            "the first 10% of symbols carry well over 10% of trades"
        );
        let mut last = vec![-1i64; 100];
        for t in &a {
            let slot = t.slot as usize;
            assert!(last[slot] < 0 || t.trade.agg_id == last[slot] + 1);
            last[slot] = t.trade.agg_id;
        }
        assert!(
            a.windows(2)
                .all(|w| w[0].trade.time_ms <= w[1].trade.time_ms)
        );
    }
}
