//! JSON rendering of everything the simulator sends (pure functions, called by the generator,
//! REST and WebSocket threads). Hand-written so that key order matches Binance byte for byte and
//! decimal strings carry the symbol's decimal places.

use std::fmt::Write as _;

use rust_decimal::Decimal;

use super::refagg::RefKline;

/// One stored aggregate trade: integers at the symbol's scales (price at `price_dp`, quantity
/// at `qty_dp`), 48 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredTrade {
    /// Aggregate trade id `a`.
    pub agg_id: u64,
    /// First underlying trade id `f`.
    pub first_id: u64,
    /// Trade time `T`, ms.
    pub time_ms: i64,
    /// Price mantissa at the symbol's `price_dp`.
    pub price: i64,
    /// Quantity mantissa at the symbol's `qty_dp`.
    pub qty: i64,
    /// Underlying trades bundled (`l − f + 1`).
    pub count: u32,
    /// Event time minus trade time, ms (`E − T`).
    pub event_delay_ms: u16,
    /// Buyer is maker `m`.
    pub buyer_maker: bool,
}

impl StoredTrade {
    /// Last underlying trade id `l`.
    pub fn last_id(&self) -> u64 {
        self.first_id + u64::from(self.count) - 1
    }

    /// Event time `E`.
    pub fn event_ms(&self) -> i64 {
        self.time_ms + i64::from(self.event_delay_ms)
    }
}

/// Append `mantissa / 10^dp` with exactly `dp` decimals.
pub fn push_fixed(out: &mut String, mantissa: i128, dp: u32) {
    if mantissa < 0 {
        out.push('-');
    }
    let m = mantissa.unsigned_abs();
    let scale = 10u128.pow(dp);
    let _ = write!(out, "{}", m / scale);
    if dp > 0 {
        let _ = write!(out, ".{:0width$}", m % scale, width = dp as usize);
    }
}

/// `mantissa / 10^dp` as a string with exactly `dp` decimals.
pub fn fixed(mantissa: i128, dp: u32) -> String {
    let mut s = String::new();
    push_fixed(&mut s, mantissa, dp);
    s
}

/// The aggTrade stream event, keys in the order `e,E,s,a,p,q,f,l,T,m`.
pub fn agg_trade_event(
    out: &mut String,
    symbol: &str,
    t: &StoredTrade,
    price_dp: u32,
    qty_dp: u32,
) {
    let _ = write!(
        out,
        r#"{{"e":"aggTrade","E":{},"s":"{}","a":{},"#,
        t.event_ms(),
        symbol,
        t.agg_id
    );
    push_trade_fields(out, t, price_dp, qty_dp);
}

/// One REST aggTrades row `{"a","p","q","f","l","T","m"}`.
pub fn agg_trade_row(out: &mut String, t: &StoredTrade, price_dp: u32, qty_dp: u32) {
    let _ = write!(out, r#"{{"a":{},"#, t.agg_id);
    push_trade_fields(out, t, price_dp, qty_dp);
}

/// The fields both aggTrade shapes end with: `"p","q","f","l","T","m"` and the closing brace.
fn push_trade_fields(out: &mut String, t: &StoredTrade, price_dp: u32, qty_dp: u32) {
    out.push_str(r#""p":""#);
    push_fixed(out, i128::from(t.price), price_dp);
    out.push_str(r#"","q":""#);
    push_fixed(out, i128::from(t.qty), qty_dp);
    let _ = write!(
        out,
        r#"","f":{},"l":{},"T":{},"m":{}}}"#,
        t.first_id,
        t.last_id(),
        t.time_ms,
        t.buyer_maker
    );
}

/// One REST kline row (12 fields).
pub fn kline_row(out: &mut String, k: &RefKline) {
    let _ = write!(
        out,
        r#"[{},"{}","{}","{}","{}","{}",{},"{}",{},"{}","{}","0"]"#,
        k.open_time,
        k.open,
        k.high,
        k.low,
        k.close,
        k.volume,
        k.close_time,
        k.quote_volume,
        k.trades,
        k.taker_buy_volume,
        k.taker_buy_quote_volume
    );
}

/// The kline stream event.
pub fn kline_event(
    symbol: &str,
    interval: &str,
    k: &RefKline,
    closed: bool,
    event_ms: i64,
) -> String {
    format!(
        concat!(
            r#"{{"e":"kline","E":{},"s":"{}","k":{{"t":{},"T":{},"s":"{}","i":"{}","f":{},"L":{},"#,
            r#""o":"{}","c":"{}","h":"{}","l":"{}","v":"{}","n":{},"x":{},"q":"{}","V":"{}","Q":"{}","B":"0"}}}}"#
        ),
        event_ms,
        symbol,
        k.open_time,
        k.close_time,
        symbol,
        interval,
        k.first_id,
        k.last_id,
        k.open,
        k.close,
        k.high,
        k.low,
        k.volume,
        k.trades,
        closed,
        k.quote_volume,
        k.taker_buy_volume,
        k.taker_buy_quote_volume
    )
}

/// 24-hour rolling statistics of one symbol (integers at the symbol's scales).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats24 {
    /// First price in the window.
    pub open: i64,
    /// Highest price.
    pub high: i64,
    /// Lowest price.
    pub low: i64,
    /// Last price.
    pub close: i64,
    /// Quantity of the last trade.
    pub last_qty: i64,
    /// Base volume at `qty_dp`.
    pub volume: i128,
    /// Quote volume at `price_dp + qty_dp`.
    pub quote_volume: i128,
    /// Underlying trades.
    pub count: u64,
    /// First underlying trade id in the window.
    pub first_id: u64,
    /// Last underlying trade id in the window.
    pub last_id: u64,
    /// Window start (ms).
    pub open_time: i64,
    /// Window end (ms).
    pub close_time: i64,
}

/// One `24hrMiniTicker` object.
pub fn mini_ticker(out: &mut String, symbol: &str, s: &Stats24, pdp: u32, qdp: u32, event_ms: i64) {
    let _ = write!(
        out,
        r#"{{"e":"24hrMiniTicker","E":{event_ms},"s":"{symbol}","c":""#
    );
    push_fixed(out, i128::from(s.close), pdp);
    out.push_str(r#"","o":""#);
    push_fixed(out, i128::from(s.open), pdp);
    out.push_str(r#"","h":""#);
    push_fixed(out, i128::from(s.high), pdp);
    out.push_str(r#"","l":""#);
    push_fixed(out, i128::from(s.low), pdp);
    out.push_str(r#"","v":""#);
    push_fixed(out, s.volume, qdp);
    out.push_str(r#"","q":""#);
    push_fixed(out, s.quote_volume, pdp + qdp);
    out.push_str("\"}");
}

/// One `/fapi/v1/ticker/24hr` object.
pub fn ticker_24h(out: &mut String, symbol: &str, s: &Stats24, pdp: u32, qdp: u32) {
    let change = i128::from(s.close - s.open);
    let pct = if s.open == 0 {
        Decimal::ZERO
    } else {
        (Decimal::from_i128_with_scale(change * 100, 0) / Decimal::from(s.open)).round_dp(3)
    };
    let wavg = if s.volume == 0 {
        0
    } else {
        s.quote_volume / s.volume
    };
    let _ = write!(out, r#"{{"symbol":"{symbol}","priceChange":""#);
    push_fixed(out, change, pdp);
    let _ = write!(
        out,
        r#"","priceChangePercent":"{:.3}","weightedAvgPrice":""#,
        pct
    );
    push_fixed(out, wavg, pdp);
    for (key, value, dp) in [
        ("lastPrice", i128::from(s.close), pdp),
        ("lastQty", i128::from(s.last_qty), qdp),
        ("openPrice", i128::from(s.open), pdp),
        ("highPrice", i128::from(s.high), pdp),
        ("lowPrice", i128::from(s.low), pdp),
        ("volume", s.volume, qdp),
        ("quoteVolume", s.quote_volume, pdp + qdp),
    ] {
        let _ = write!(out, r#"","{key}":""#);
        push_fixed(out, value, dp);
    }
    let _ = write!(
        out,
        r#"","openTime":{},"closeTime":{},"firstId":{},"lastId":{},"count":{}}}"#,
        s.open_time, s.close_time, s.first_id as i64, s.last_id as i64, s.count
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_formatting() {
        assert_eq!(fixed(12_345, 2), "123.45");
        assert_eq!(fixed(5, 3), "0.005");
        assert_eq!(fixed(7, 0), "7");
        assert_eq!(fixed(-105, 2), "-1.05");
        assert_eq!(fixed(0, 4), "0.0000");
    }

    #[test]
    fn agg_trade_key_order() {
        let t = StoredTrade {
            agg_id: 5,
            first_id: 100,
            time_ms: 1_000,
            price: 101_100,
            qty: 10,
            count: 6,
            event_delay_ms: 2,
            buyer_maker: true,
        };
        let mut s = String::new();
        agg_trade_event(&mut s, "CTKUSDT", &t, 5, 0);
        assert_eq!(
            s,
            r#"{"e":"aggTrade","E":1002,"s":"CTKUSDT","a":5,"p":"1.01100","q":"10","f":100,"l":105,"T":1000,"m":true}"#
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["l"], 105);
    }
}
