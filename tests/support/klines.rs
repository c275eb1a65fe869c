//! The simulator's klines as the engine's (test threads): its interval names, its REST klines
//! at a symbol's scales (decimal text → exact mantissas), the final klines an engine or a shard
//! sent, and their comparison, field for field.

use std::collections::BTreeMap;

use klagg_bench::sim::{self, RefKline, SimHandle};
use klagg_shards::kline::{Interval, Kline, Scales, parse_scaled};
use klagg_shards::protocol::{KlineMsg, SymbolIndex};

/// Final klines by (symbol, interval, open time); the last word wins (corrections).
pub type Finals = BTreeMap<(SymbolIndex, Interval, i64), Kline>;

/// The simulator's name for an interval.
pub fn sim_interval(interval: Interval) -> sim::Interval {
    sim::Interval::parse(interval.as_str()).expect("the simulator knows every interval")
}

/// A simulator symbol's decimal places.
pub fn sim_scales(sim: &SimHandle, name: &str) -> Scales {
    sim.symbols()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| Scales {
            price: u8::try_from(s.price_dp).unwrap(),
            qty: u8::try_from(s.qty_dp).unwrap(),
        })
        .expect("a simulator symbol")
}

/// A REST kline at the symbol's scales (decimal text → exact mantissas).
pub fn to_kline(rest: &RefKline, scales: Scales) -> Kline {
    let big = |text: String, scale: u8| parse_i128(&text, scale);
    let p = |d: &dyn std::fmt::Display| {
        parse_scaled(d.to_string().as_bytes(), scales.price).expect("price")
    };
    Kline {
        open_time_ms: rest.open_time,
        close_time_ms: rest.close_time,
        open: p(&rest.open),
        high: p(&rest.high),
        low: p(&rest.low),
        close: p(&rest.close),
        volume: big(rest.volume.to_string(), scales.qty),
        quote_volume: big(rest.quote_volume.to_string(), scales.quote()),
        taker_buy_volume: big(rest.taker_buy_volume.to_string(), scales.qty),
        taker_buy_quote_volume: big(rest.taker_buy_quote_volume.to_string(), scales.quote()),
        trade_count: rest.trades,
        first_trade_id: rest.first_id,
        last_trade_id: rest.last_id,
    }
}

/// A non-negative decimal at `scale` places as an `i128` mantissa (sums exceed `i64`).
pub fn parse_i128(text: &str, scale: u8) -> i128 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let fraction = fraction.trim_end_matches('0');
    assert!(
        fraction.len() <= usize::from(scale),
        "{text} has more than {scale} places"
    );
    let digits = format!("{whole}{fraction:0<width$}", width = usize::from(scale));
    digits.parse().expect("decimal digits")
}

/// The simulator's klines of `name` opening in `[from_ms, to_ms]`, at `scales`.
pub fn sim_klines(
    sim: &SimHandle,
    name: &str,
    interval: Interval,
    (from_ms, to_ms): (i64, i64),
    scales: Scales,
) -> Vec<Kline> {
    sim.klines(name, sim_interval(interval), from_ms, to_ms)
        .iter()
        .map(|k| to_kline(k, scales))
        .collect()
}

/// Record the final klines of `message` (flat runs expanded).
pub fn record(finals: &mut Finals, message: &KlineMsg) {
    let (symbol, interval) = (message.symbol(), message.interval());
    for kline in message.final_klines(u64::MAX) {
        finals.insert((symbol, interval, kline.open_time_ms), kline);
    }
}

/// The recorded final klines of `symbol` and `interval` opening in `[from_ms, to_ms]`.
pub fn recorded(
    finals: &Finals,
    symbol: SymbolIndex,
    interval: Interval,
    (from_ms, to_ms): (i64, i64),
) -> Vec<Kline> {
    finals
        .range((symbol, interval, from_ms)..=(symbol, interval, to_ms))
        .map(|(_, kline)| *kline)
        .collect()
}

/// `ours` equal `truth`: as many, each field for field; `what` names them in a failure.
pub fn assert_same(ours: &[Kline], truth: &[Kline], what: &str) {
    assert_eq!(ours.len(), truth.len(), "{what}: periods");
    for (mine, theirs) in ours.iter().zip(truth) {
        assert_eq!(mine, theirs, "{what}");
    }
}
