//! The synthetic symbol universe (built once on the caller's thread by `Sim::start`, and by the
//! generator thread for new listings): realistic USDT-perpetual names, tick and step sizes with
//! their decimal places, start prices, and heavy-tailed activity weights. Deterministic per seed.

use std::collections::HashSet;

use super::rng::SimRng;

/// Static description of one symbol: name, grid and activity.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSpec {
    /// Upper-case name, e.g. `BTCUSDT`.
    pub name: String,
    /// Base asset, e.g. `BTC`.
    pub base: String,
    /// Decimal places of prices (tick size string, pricePrecision).
    pub price_dp: u32,
    /// Tick size as an integer at `price_dp` (e.g. 10 for "0.10" at 2 dp).
    pub tick: i64,
    /// Decimal places of quantities (step size string, quantityPrecision).
    pub qty_dp: u32,
    /// Step size as an integer at `qty_dp`.
    pub step: i64,
    /// Start price as an integer at `price_dp` (a multiple of `tick`).
    pub start_price: i64,
    /// Relative activity (share of the total trade rate before moods and bursts).
    pub weight: f64,
}

/// (base, price, price_dp, tick at dp, qty_dp, step at dp), modelled on real USD-M contracts.
const KNOWN: [(&str, f64, u32, i64, u32, i64); 32] = [
    ("BTC", 64_000.0, 2, 10, 3, 1),
    ("ETH", 3_100.0, 2, 1, 3, 1),
    ("SOL", 145.0, 4, 10, 0, 1),
    ("BNB", 580.0, 3, 10, 2, 1),
    ("XRP", 0.52, 4, 1, 1, 1),
    ("DOGE", 0.12, 6, 10, 0, 1),
    ("ADA", 0.45, 5, 10, 0, 1),
    ("AVAX", 28.0, 4, 10, 0, 1),
    ("LINK", 14.0, 3, 1, 2, 1),
    ("DOT", 6.1, 3, 1, 1, 1),
    ("LTC", 72.0, 2, 1, 3, 1),
    ("BCH", 380.0, 2, 1, 3, 1),
    ("TRX", 0.12, 5, 1, 0, 1),
    ("NEAR", 5.2, 4, 10, 0, 1),
    ("ATOM", 7.9, 3, 1, 2, 1),
    ("UNI", 7.5, 4, 10, 0, 1),
    ("ETC", 24.0, 3, 1, 2, 1),
    ("FIL", 4.6, 3, 1, 1, 1),
    ("APT", 8.3, 5, 100, 1, 1),
    ("ARB", 0.78, 4, 1, 1, 1),
    ("OP", 1.9, 7, 1000, 1, 1),
    ("SUI", 1.05, 6, 100, 1, 1),
    ("INJ", 22.0, 6, 1000, 1, 1),
    ("AAVE", 95.0, 2, 1, 1, 1),
    ("1000PEPE", 0.0095, 7, 1, 0, 1),
    ("1000SHIB", 0.0175, 6, 1, 0, 1),
    ("WIF", 2.1, 4, 1, 1, 1),
    ("TIA", 6.4, 7, 1000, 0, 1),
    ("SEI", 0.41, 5, 1, 0, 1),
    ("CTK", 1.011, 5, 100, 0, 1),
    ("XLM", 0.105, 5, 1, 0, 1),
    ("MKR", 2_400.0, 2, 10, 3, 1),
];

/// Synthetic tiers for generated names: (price, price_dp, tick, qty_dp, step).
const TIERS: [(f64, u32, i64, u32, i64); 7] = [
    (120.0, 3, 10, 2, 1),
    (18.0, 3, 1, 1, 1),
    (2.5, 4, 1, 1, 1),
    (0.35, 4, 1, 0, 1),
    (0.045, 5, 1, 0, 1),
    (0.0062, 6, 1, 0, 1),
    (0.000_48, 7, 1, 0, 1),
];

const CONSONANTS: &[u8] = b"BCDFGHJKLMNPRSTVXZ";
const VOWELS: &[u8] = b"AEIOUY";

/// Activity exponent: weight ∝ 1/(rank+1)^ZIPF_EXPONENT (a few symbols carry most trades).
const ZIPF_EXPONENT: f64 = 1.4;

/// Build `count` symbols for `seed`: the well-known names first, then generated ones.
pub fn build(count: usize, seed: u64) -> Vec<SymbolSpec> {
    let mut rng = SimRng::new(seed ^ 0x5EED_0000_0000_0001);
    let mut used = HashSet::new();
    let mut out = Vec::with_capacity(count);
    for rank in 0..count {
        let spec = if rank < KNOWN.len() {
            known_spec(rank)
        } else {
            generated_spec(&mut rng, &used)
        };
        used.insert(spec.base.clone());
        out.push(SymbolSpec {
            weight: rank_weight(rank),
            ..spec
        });
    }
    out
}

/// A fresh symbol for a listing during a run (name unused so far).
pub fn new_listing(rng: &mut SimRng, taken: &HashSet<String>) -> SymbolSpec {
    let bases: HashSet<String> = taken
        .iter()
        .map(|n| n.trim_end_matches("USDT").to_string())
        .collect();
    SymbolSpec {
        weight: rank_weight(5),
        ..generated_spec(rng, &bases)
    }
}

/// A spec for a named symbol (listing by name or replay), on a tier chosen from the name.
pub fn named_spec(name: &str, price_dp: u32, qty_dp: u32, start_price: i64) -> SymbolSpec {
    SymbolSpec {
        name: name.to_string(),
        base: name.trim_end_matches("USDT").to_string(),
        price_dp,
        tick: 1,
        qty_dp,
        step: 1,
        start_price: start_price.max(1),
        weight: rank_weight(5),
    }
}

/// A spec for listing `name` with a tier picked by its hash (deterministic).
pub fn listing_spec(name: &str) -> SymbolSpec {
    let h = name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let (price, price_dp, tick, qty_dp, step) = TIERS[(h % TIERS.len() as u64) as usize];
    let base = name.trim_end_matches("USDT").to_string();
    SymbolSpec {
        start_price: to_grid(price, price_dp, tick),
        ..tier_spec(base, price_dp, tick, qty_dp, step, rank_weight(5))
    }
}

fn rank_weight(rank: usize) -> f64 {
    1.0 / ((rank + 1) as f64).powf(ZIPF_EXPONENT)
}

fn known_spec(rank: usize) -> SymbolSpec {
    let (base, price, price_dp, tick, qty_dp, step) = KNOWN[rank];
    SymbolSpec {
        start_price: to_grid(price, price_dp, tick),
        ..tier_spec(base.to_string(), price_dp, tick, qty_dp, step, 0.0)
    }
}

fn generated_spec(rng: &mut SimRng, used: &HashSet<String>) -> SymbolSpec {
    let base = loop {
        let candidate = random_base(rng);
        if !used.contains(&candidate) {
            break candidate;
        }
    };
    let (price, price_dp, tick, qty_dp, step) = TIERS[rng.below(TIERS.len() as u64) as usize];
    let jitter = 0.5 + rng.unit() * 1.5;
    SymbolSpec {
        start_price: to_grid(price * jitter, price_dp, tick),
        ..tier_spec(base, price_dp, tick, qty_dp, step, 0.0)
    }
}

fn tier_spec(base: String, price_dp: u32, tick: i64, qty_dp: u32, step: i64, w: f64) -> SymbolSpec {
    SymbolSpec {
        name: format!("{base}USDT"),
        base,
        price_dp,
        tick,
        qty_dp,
        step,
        start_price: tick,
        weight: w,
    }
}

fn random_base(rng: &mut SimRng) -> String {
    let syllables = 2 + rng.below(2) as usize;
    let mut s = String::new();
    for _ in 0..syllables {
        s.push(CONSONANTS[rng.below(CONSONANTS.len() as u64) as usize] as char);
        s.push(VOWELS[rng.below(VOWELS.len() as u64) as usize] as char);
    }
    if rng.chance(0.3) {
        s.push(CONSONANTS[rng.below(CONSONANTS.len() as u64) as usize] as char);
    }
    s
}

/// `price` rounded to the tick grid at `dp` decimals, at least one tick.
fn to_grid(price: f64, dp: u32, tick: i64) -> i64 {
    let units = (price * 10f64.powi(dp as i32) / tick as f64).round() as i64;
    units.max(1) * tick
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_unique_and_on_grid() {
        let a = build(500, 9);
        assert_eq!(a, build(500, 9));
        let names: HashSet<_> = a.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names.len(), 500);
        for s in &a {
            assert_eq!(s.start_price % s.tick, 0, "{}", s.name);
            assert!(s.name.ends_with("USDT") && s.start_price > 0);
        }
        assert_eq!(a[0].name, "BTCUSDT");
        assert!(a[0].weight > 10.0 * a[100].weight, "heavy tail");
    }
}
