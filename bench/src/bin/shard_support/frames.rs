//! Benchmark support (included by the `parse_frames` program, main thread): a
//! generator of realistic combined-stream aggTrade frames (500 symbols, skewed, ≈186 bytes,
//! per-symbol decimals and random-walk prices). Reports go through `klagg_bench::report`.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::sync::Arc;

use klagg_shards::kline::{Fixed, Scales};
use klagg_shards::protocol::{SymbolIndex, SymbolSpec};

/// splitmix64: deterministic and fast; quality is irrelevant here.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const REAL_BASES: [&str; 50] = [
    "BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "TRX", "LTC", "BCH",
    "ATOM", "NEAR", "APT", "ARB", "OP", "SUI", "SEI", "TIA", "INJ", "FIL", "ETC", "XLM", "UNI",
    "AAVE", "MKR", "CRV", "LDO", "1000PEPE", "1000SHIB", "1000BONK", "WIF", "ORDI", "STX", "RUNE",
    "FTM", "SAND", "MANA", "AXS", "GALA", "IMX", "APE", "DYDX", "GMX", "ENS", "SUSHI", "CTK",
    "AKRO",
];

/// One generated symbol: its spec (index = position) and the state of its trade stream.
#[derive(Debug, Clone)]
pub struct GenSymbol {
    pub spec: SymbolSpec,
    pub stream: String,
    price: i64,
    next_agg: i64,
    next_trade: i64,
}

/// `count` symbols: the real base names first, then synthetic 3–7 letter ones (sometimes with a
/// `1000` prefix); price decimals 1–7 (BTC 2), quantity decimals 0–3.
pub fn symbols(count: usize, seed: u64) -> Vec<GenSymbol> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    let mut taken = std::collections::HashSet::new();
    while out.len() < count {
        let base = match REAL_BASES.get(out.len()) {
            Some(base) => (*base).to_string(),
            None => synthetic_base(&mut rng),
        };
        let name = format!("{base}USDT");
        if !taken.insert(name.clone()) {
            continue;
        }
        let price_dp = if base == "BTC" {
            2
        } else {
            1 + rng.below(7) as u8
        };
        let qty_dp = rng.below(4) as u8;
        let price = 10i64.pow(u32::from(price_dp)) * (1 + rng.below(2000) as i64) / 7 + 1;
        out.push(GenSymbol {
            spec: SymbolSpec {
                index: SymbolIndex(out.len() as u32),
                name: Arc::from(name.as_str()),
                scales: Scales {
                    price: price_dp,
                    qty: qty_dp,
                },
            },
            stream: format!("{}@aggTrade", name.to_lowercase()),
            price,
            next_agg: 700_000_000 + rng.below(100_000_000) as i64,
            next_trade: 3_000_000_000 + rng.below(1_000_000_000) as i64,
        });
    }
    out
}

fn synthetic_base(rng: &mut Rng) -> String {
    let len = 3 + rng.below(5) as usize;
    let mut base: String = (0..len)
        .map(|_| char::from(b'A' + rng.below(26) as u8))
        .collect();
    if rng.below(10) == 0 {
        base.insert_str(0, "1000");
    }
    base
}

/// A skewed pick (`u³`): a few symbols carry most of the trades, as in real traffic.
pub fn pick(rng: &mut Rng, count: usize) -> usize {
    let u = rng.unit();
    ((u * u * u) * count as f64) as usize % count
}

/// Append the next trade of `symbol` as one combined-stream frame; time advances by `step_ms`.
pub fn next_frame(symbol: &mut GenSymbol, rng: &mut Rng, time_ms: i64, out: &mut String) {
    let scales = symbol.spec.scales;
    let tick = 1 + symbol.price / 5000;
    let moves = rng.below(3) as i64 - 1;
    symbol.price = (symbol.price + moves * tick).max(1);
    let qty = 1 + rng.below(10i64.pow(u32::from(scales.qty) + 2) as u64) as i64;
    let trades = 1 + rng.below(3) as i64;
    let (agg, first) = (symbol.next_agg, symbol.next_trade);
    symbol.next_agg += 1;
    symbol.next_trade += trades;
    let _ = write!(
        out,
        r#"{{"stream":"{}","data":{{"e":"aggTrade","E":{},"s":"{}","a":{},"p":"{}","q":"{}","f":{},"l":{},"T":{},"m":{}}}}}"#,
        symbol.stream,
        time_ms + 3,
        symbol.spec.name,
        agg,
        Fixed::new(symbol.price, scales.price),
        Fixed::new(qty, scales.qty),
        first,
        first + trades - 1,
        time_ms,
        rng.below(2) == 0,
    );
}

/// `count` frames over `symbols` (skewed), starting at `start_ms`, 2 trades per ms on average.
pub fn frames(symbols: &mut [GenSymbol], count: usize, seed: u64, start_ms: i64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let pick = pick(&mut rng, symbols.len());
        let mut frame = String::with_capacity(200);
        next_frame(
            &mut symbols[pick],
            &mut rng,
            start_ms + index as i64 / 2,
            &mut frame,
        );
        out.push(frame);
    }
    out
}
