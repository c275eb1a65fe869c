//! The kline event in Binance's stream format (pure; called on the `api-hub` thread, once per
//! event for every client): `{"e":"kline","E":…,"s":"BTCUSDT","k":{…}}`, decimals at the
//! symbol's scales, and its combined form `{"stream":"btcusdt@kline_1m","data":…}`.

use std::fmt::Write as _;
use std::sync::Arc;

use klagg_shards::kline::{Fixed, Interval, Kline, Scales};

/// A symbol's names and scales as the streams print them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolNames {
    /// `BTCUSDT` (payload `s`).
    pub upper: Arc<str>,
    /// `btcusdt` (stream names).
    pub lower: Arc<str>,
    pub scales: Scales,
}

impl SymbolNames {
    pub fn new(upper: &str, scales: Scales) -> SymbolNames {
        SymbolNames {
            upper: Arc::from(upper),
            lower: Arc::from(upper.to_ascii_lowercase().as_str()),
            scales,
        }
    }
}

/// `btcusdt@kline_1m`.
pub fn stream_name(lower_symbol: &str, interval: Interval) -> String {
    format!("{lower_symbol}@kline_{}", interval.as_str())
}

/// Append the raw kline event.
pub fn kline_event(
    out: &mut String,
    names: &SymbolNames,
    interval: Interval,
    kline: &Kline,
    closed: bool,
    event_ms: i64,
) {
    let (price, qty, quote) = (names.scales.price, names.scales.qty, names.scales.quote());
    let _ = write!(
        out,
        concat!(
            r#"{{"e":"kline","E":{},"s":"{}","k":{{"t":{},"T":{},"s":"{}","i":"{}","f":{},"L":{},"#,
            r#""o":"{}","c":"{}","h":"{}","l":"{}","v":"{}","n":{},"x":{},"q":"{}","V":"{}","Q":"{}","B":"0"}}}}"#
        ),
        event_ms,
        names.upper,
        kline.open_time_ms,
        kline.close_time_ms,
        names.upper,
        interval.as_str(),
        kline.first_trade_id,
        kline.last_trade_id,
        Fixed::new(kline.open, price),
        Fixed::new(kline.close, price),
        Fixed::new(kline.high, price),
        Fixed::new(kline.low, price),
        Fixed::new(kline.volume, qty),
        kline.trade_count,
        closed,
        Fixed::new(kline.quote_volume, quote),
        Fixed::new(kline.taker_buy_volume, qty),
        Fixed::new(kline.taker_buy_quote_volume, quote),
    );
}

/// The combined form of a raw payload.
pub fn combined(stream: &str, raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + stream.len() + 24);
    out.push_str(r#"{"stream":""#);
    out.push_str(stream);
    out.push_str(r#"","data":"#);
    out.push_str(raw);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn prints_binance_kline_events() {
        let names = SymbolNames::new("BTCUSDT", Scales { price: 2, qty: 3 });
        let kline = Kline {
            open_time_ms: 60_000,
            close_time_ms: 119_999,
            open: 100,
            high: 250,
            low: 50,
            close: 200,
            volume: 1_500,
            quote_volume: 123_456,
            taker_buy_volume: 500,
            taker_buy_quote_volume: 5,
            trade_count: 101,
            first_trade_id: 100,
            last_trade_id: 200,
        };
        let mut raw = String::new();
        kline_event(&mut raw, &names, Interval::M1, &kline, true, 120_001);
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["e"], "kline");
        assert_eq!(v["E"], 120_001);
        assert_eq!(v["s"], "BTCUSDT");
        let k = &v["k"];
        assert_eq!(
            (k["t"].as_i64(), k["T"].as_i64()),
            (Some(60_000), Some(119_999))
        );
        assert_eq!(
            (k["s"].as_str(), k["i"].as_str()),
            (Some("BTCUSDT"), Some("1m"))
        );
        assert_eq!(
            (k["f"].as_i64(), k["L"].as_i64(), k["n"].as_u64()),
            (Some(100), Some(200), Some(101))
        );
        assert_eq!(k["o"], "1.00");
        assert_eq!(k["c"], "2.00");
        assert_eq!(k["h"], "2.50");
        assert_eq!(k["l"], "0.50");
        assert_eq!(k["v"], "1.500");
        assert_eq!(k["q"], "1.23456");
        assert_eq!(k["V"], "0.500");
        assert_eq!(k["Q"], "0.00005");
        assert_eq!(k["x"], true);
        assert_eq!(k["B"], "0");
        let stream = stream_name(&names.lower, Interval::M1);
        assert_eq!(stream, "btcusdt@kline_1m");
        let wrapped: Value = serde_json::from_str(&combined(&stream, &raw)).unwrap();
        assert_eq!(wrapped["stream"], "btcusdt@kline_1m");
        assert_eq!(wrapped["data"], v);
    }
}
