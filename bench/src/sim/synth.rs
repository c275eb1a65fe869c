//! The synthetic trade model (runs on the generator thread, under the market lock): seeded
//! random walks on each symbol's tick grid, heavy-tailed symbol activity with moods and global
//! bursts, quantities on the step grid, bundled underlying trades, and Binance's 100 ms
//! same-price-same-side aggregation rule.

use super::market::{Market, SymbolStatus, TradeSource};
use super::render::StoredTrade;
use super::rng::SimRng;

/// Virtual time step of the generator, ms.
pub const TICK_MS: i64 = 10;
const MOOD_PERIOD_MS: i64 = 1_000;
/// Typical notional of one aggTrade, USDT (shapes quantities only).
const TYPICAL_NOTIONAL: f64 = 300.0;
const MAX_LOTS: f64 = 1e12;

/// Generator state that survives between ticks.
#[derive(Debug)]
pub struct Synth {
    rng: SimRng,
    trade_rate: u64,
    moods: Vec<f64>,
    cdf: Vec<(f64, usize)>,
    next_mood_ms: i64,
    burst_until_ms: i64,
}

impl Synth {
    /// A model producing `trade_rate` aggTrades/s on average, fixed by `seed`.
    pub fn new(seed: u64, trade_rate: u64) -> Self {
        Synth {
            rng: SimRng::new(seed),
            trade_rate,
            moods: Vec::new(),
            cdf: Vec::new(),
            next_mood_ms: i64::MIN,
            burst_until_ms: i64::MIN,
        }
    }

    /// Change the average rate (0 stops the synthetic market).
    pub fn set_rate(&mut self, trade_rate: u64) {
        self.trade_rate = trade_rate;
    }

    /// Produce the trades of the tick `[t0, t0 + TICK_MS)`, append them to the market and
    /// return `(symbol index, trade)` in publication order.
    pub fn tick(&mut self, market: &mut Market, t0: i64) -> Vec<(usize, StoredTrade)> {
        if t0 >= self.next_mood_ms {
            self.reroll_moods(market, t0);
        }
        if self.cdf.is_empty() || self.trade_rate == 0 {
            return Vec::new();
        }
        let burst = if t0 < self.burst_until_ms { 3.0 } else { 1.0 };
        let lambda = self.trade_rate as f64 * burst * TICK_MS as f64 / 1000.0;
        let n = self.rng.poisson(lambda);
        let mut picks: Vec<(i64, usize)> = (0..n)
            .map(|_| (t0 + self.rng.below(TICK_MS as u64) as i64, self.pick()))
            .collect();
        picks.sort_unstable();
        let mut out = Vec::with_capacity(picks.len());
        for (t, idx) in picks {
            if market.books[idx].status != SymbolStatus::Trading {
                continue;
            }
            let trade = self.make_trade(market, idx, t);
            market.append(idx, trade);
            out.push((idx, trade));
        }
        out
    }

    fn pick(&mut self) -> usize {
        let total = self.cdf.last().map_or(0.0, |c| c.0);
        let x = self.rng.unit() * total;
        let i = self
            .cdf
            .partition_point(|c| c.0 <= x)
            .min(self.cdf.len() - 1);
        self.cdf[i].1
    }

    fn reroll_moods(&mut self, market: &Market, t0: i64) {
        // Relative to the tick, not the wall clock, so a seed fixes the whole sequence.
        self.next_mood_ms = t0 + MOOD_PERIOD_MS;
        if self.rng.chance(0.05) {
            self.burst_until_ms = t0 + 2_000;
        }
        self.moods.resize(market.books.len(), 1.0);
        let mut acc = 0.0;
        self.cdf.clear();
        for (i, b) in market.books.iter().enumerate() {
            if self.rng.chance(1.0 / 30.0) {
                let r = self.rng.unit();
                self.moods[i] = if r < 0.25 {
                    0.02
                } else if r < 0.9 {
                    1.0
                } else {
                    5.0
                };
            }
            if b.status == SymbolStatus::Trading && b.source == TradeSource::Synthetic {
                acc += b.spec.weight * self.moods[i];
                self.cdf.push((acc, i));
            }
        }
    }

    fn make_trade(&mut self, market: &Market, idx: usize, t: i64) -> StoredTrade {
        let b = &market.books[idx];
        let spec = &b.spec;
        let price = self.walk(b.price, spec.start_price, spec.tick);
        let price_f = price as f64 / 10f64.powi(spec.price_dp as i32);
        let step_f = spec.step as f64 / 10f64.powi(spec.qty_dp as i32);
        let base_lots = (TYPICAL_NOTIONAL / (price_f * step_f)).max(1.0);
        let lots = (base_lots * (self.rng.normal() * 1.1).exp())
            .round()
            .clamp(1.0, MAX_LOTS) as i64;
        let count = if self.rng.chance(0.7) {
            1
        } else {
            2 + self.rng.below(6) as u32
        };
        let mut buyer_maker = self.rng.chance(0.5);
        if let Some(prev) = b.trades.back()
            && prev.price == price
            && prev.buyer_maker == buyer_maker
            && t - prev.time_ms < 100
        {
            // Binance would have aggregated these into one aggTrade: flip the side instead.
            buyer_maker = !buyer_maker;
        }
        StoredTrade {
            agg_id: b.next_agg_id,
            first_id: b.next_trade_id,
            time_ms: t,
            price,
            qty: lots * spec.step,
            count,
            event_delay_ms: 1 + self.rng.below(5) as u16,
            buyer_maker,
        }
    }

    /// One random-walk step on the tick grid, pulled back towards `start` when far away.
    fn walk(&mut self, price: i64, start: i64, tick: i64) -> i64 {
        let r = self.rng.unit();
        let ticks = if r < 0.55 {
            0
        } else if r < 0.85 {
            1
        } else if r < 0.97 {
            2
        } else {
            6
        };
        let ratio = price as f64 / start as f64;
        let up = if ratio > 1.5 {
            0.35
        } else if ratio < 0.67 {
            0.65
        } else {
            0.5
        };
        let dir = if self.rng.chance(up) { 1 } else { -1 };
        (price + dir * ticks * tick).max(tick)
    }
}

#[cfg(test)]
mod tests {
    use super::super::market::Retention;
    use super::super::universe;
    use super::*;

    fn market(n: usize) -> Market {
        let mut m = Market::new(Retention::KEEP_ALL, 1440);
        for s in universe::build(n, 3) {
            m.add(s, SymbolStatus::Trading, 0, TradeSource::Synthetic);
        }
        m
    }

    fn run(seed: u64) -> (Market, Vec<(usize, StoredTrade)>) {
        let mut m = market(50);
        let mut s = Synth::new(seed, 2_000);
        let mut all = Vec::new();
        for k in 0..1_000 {
            all.extend(s.tick(&mut m, 1_000_000 + k * TICK_MS));
        }
        (m, all)
    }

    #[test]
    fn deterministic_contiguous_on_grid() {
        let (m, a) = run(5);
        let (_, b) = run(5);
        assert_eq!(a, b, "same seed, same trades");
        assert!((15_000..25_000).contains(&a.len()), "rate: {}", a.len());
        for book in &m.books {
            let ts: Vec<_> = book.trades.iter().collect();
            for w in ts.windows(2) {
                assert_eq!(w[1].agg_id, w[0].agg_id + 1, "{}", book.spec.name);
                assert_eq!(w[1].first_id, w[0].last_id() + 1);
                assert!(w[1].time_ms >= w[0].time_ms);
                let same = w[1].price == w[0].price && w[1].buyer_maker == w[0].buyer_maker;
                assert!(!(same && w[1].time_ms - w[0].time_ms < 100), "100 ms rule");
            }
            for t in &book.trades {
                assert_eq!(t.price % book.spec.tick, 0);
                assert_eq!(t.qty % book.spec.step, 0);
                assert!(t.qty > 0 && t.event_ms() > t.time_ms);
            }
        }
        let top = m.books[0].trades.len();
        let tail = m.books[40].trades.len();
        assert!(top > 10 * tail.max(1), "heavy tail: {top} vs {tail}");
    }
}
