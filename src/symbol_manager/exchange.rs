//! Binance USD-M REST payloads the SymbolManager reads (pure decoding; called on control
//! threads): exchangeInfo, ticker/24hr and klines. Unknown fields are ignored; numbers that
//! Binance sends as strings are decoded exactly (fixed point), never through f64.

use klagg_shards::kline::{DecimalError, Interval, Kline, Scales, parse_scaled, written_scale};
use serde::Deserialize;

/// `deliveryDate` of a perpetual that is not scheduled for delisting (2100-12-25).
pub const PERPETUAL_DELIVERY_MS: i64 = 4_133_404_800_000;

/// Why a payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("field {field} of {symbol}: {source}")]
    Decimal {
        symbol: String,
        field: &'static str,
        source: DecimalError,
    },
    #[error("{symbol}: no usable tickSize/stepSize or precisions")]
    NoScales { symbol: String },
}

/// `GET /fapi/v1/exchangeInfo`, the parts we use.
///
/// Raw sample (trimmed):
/// `{"timezone":"UTC","serverTime":1,"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT",
/// "interval":"MINUTE","intervalNum":1,"limit":2400}],"symbols":[{"symbol":"BTCUSDT",
/// "contractType":"PERPETUAL","deliveryDate":4133404800000,"status":"TRADING",
/// "quoteAsset":"USDT","pricePrecision":2,"quantityPrecision":3,"filters":[{"filterType":
/// "PRICE_FILTER","tickSize":"0.10"},{"filterType":"LOT_SIZE","stepSize":"0.001"}]}]}`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeInfo {
    #[serde(default)]
    pub server_time: i64,
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    pub symbols: Vec<SymbolInfo>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub rate_limit_type: String,
    pub interval: String,
    #[serde(default = "one")]
    pub interval_num: u64,
    pub limit: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymbolInfo {
    pub symbol: String,
    #[serde(default)]
    pub contract_type: String,
    #[serde(default)]
    pub delivery_date: i64,
    pub status: String,
    #[serde(default)]
    pub quote_asset: String,
    #[serde(default)]
    pub price_precision: Option<u8>,
    #[serde(default)]
    pub quantity_precision: Option<u8>,
    #[serde(default)]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub filter_type: String,
    #[serde(default)]
    pub tick_size: Option<String>,
    #[serde(default)]
    pub step_size: Option<String>,
}

/// Where a symbol stands in its listing lifecycle, for our purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// A USDT perpetual that trades: serve it.
    Trading,
    /// A USDT perpetual announced but not trading yet (`PENDING_TRADING`): wait.
    Pending,
    /// A USDT perpetual that stopped trading or reached its delivery date: deactivate.
    Delisted,
    /// Not a USDT perpetual: never served.
    Excluded,
}

impl ExchangeInfo {
    /// The REQUEST_WEIGHT limit per minute, if announced.
    pub fn weight_limit_per_minute(&self) -> Option<u64> {
        self.rate_limits
            .iter()
            .find(|l| {
                l.rate_limit_type == "REQUEST_WEIGHT"
                    && l.interval == "MINUTE"
                    && l.interval_num == 1
            })
            .map(|l| l.limit)
    }

    pub fn find(&self, name: &str) -> Option<&SymbolInfo> {
        self.symbols.iter().find(|s| s.symbol == name)
    }
}

impl SymbolInfo {
    /// Classify at `now_ms`: status must be TRADING and the delivery date not reached.
    pub fn listing(&self, now_ms: i64) -> Listing {
        if self.contract_type != "PERPETUAL" || self.quote_asset != "USDT" {
            return Listing::Excluded;
        }
        let delivered = self.delivery_date != 0
            && self.delivery_date != PERPETUAL_DELIVERY_MS
            && self.delivery_date <= now_ms;
        match self.status.as_str() {
            "TRADING" if !delivered => Listing::Trading,
            "PENDING_TRADING" => Listing::Pending,
            _ => Listing::Delisted,
        }
    }

    /// Decimal places of prices and quantities: the places `tickSize` / `stepSize` are written
    /// with (how Binance prints klines), else `pricePrecision` / `quantityPrecision`.
    ///
    /// # Errors
    /// Neither a filter nor a precision is usable.
    pub fn scales(&self) -> Result<Scales, DecodeError> {
        let filter_scale = |pick: fn(&Filter) -> Option<&String>| {
            self.filters
                .iter()
                .filter_map(pick)
                .find_map(|text| written_scale(text.as_bytes()).ok())
        };
        let price = filter_scale(|f| f.tick_size.as_ref()).or(self.price_precision);
        let qty = filter_scale(|f| f.step_size.as_ref()).or(self.quantity_precision);
        match (price, qty) {
            (Some(price), Some(qty)) if price <= 18 && qty <= 18 => Ok(Scales { price, qty }),
            _ => Err(DecodeError::NoScales {
                symbol: self.symbol.clone(),
            }),
        }
    }
}

/// Decode exchangeInfo.
///
/// # Errors
/// Malformed JSON or missing mandatory fields.
pub fn parse_exchange_info(body: &[u8]) -> Result<ExchangeInfo, DecodeError> {
    Ok(serde_json::from_slice(body)?)
}

/// One row of `GET /fapi/v1/ticker/24hr` (no symbol: all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ticker24h {
    /// Whole units of quote volume (the fraction is dropped: only the order matters).
    pub quote_volume: u128,
    /// Trades in the last 24 h.
    pub count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TickerRow<'a> {
    symbol: &'a str,
    #[serde(default)]
    quote_volume: &'a str,
    #[serde(default)]
    count: u64,
}

/// Decode ticker/24hr into (symbol, statistics); unparsable volumes count as 0.
///
/// # Errors
/// Malformed JSON.
pub fn parse_ticker_24h(body: &[u8]) -> Result<Vec<(String, Ticker24h)>, DecodeError> {
    let rows: Vec<TickerRow<'_>> = serde_json::from_slice(body)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let whole = row.quote_volume.split('.').next().unwrap_or("");
            let ticker = Ticker24h {
                quote_volume: whole.parse().unwrap_or(0),
                count: row.count,
            };
            (row.symbol.to_string(), ticker)
        })
        .collect())
}

/// A REST kline row: `[openTime, "o", "h", "l", "c", "v", closeTime, "q", n, "V", "Q", "0"]`.
type KlineRow<'a> = (
    i64,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    i64,
    &'a str,
    u64,
    &'a str,
    &'a str,
    serde::de::IgnoredAny,
);

/// Decode `GET /fapi/v1/klines` at the symbol's scales. REST rows carry no trade ids, so
/// `first_trade_id`/`last_trade_id` are -1.
///
/// # Errors
/// Malformed JSON or a decimal that does not fit the scales.
pub fn parse_klines(
    body: &[u8],
    interval: Interval,
    scales: Scales,
    symbol: &str,
) -> Result<Vec<Kline>, DecodeError> {
    let rows: Vec<KlineRow<'_>> = serde_json::from_slice(body)?;
    let decimal = |field: &'static str, text: &str, scale: u8| {
        parse_scaled(text.as_bytes(), scale).map_err(|source| DecodeError::Decimal {
            symbol: symbol.to_string(),
            field,
            source,
        })
    };
    let quote = scales.quote();
    rows.into_iter()
        .map(|row| {
            Ok(Kline {
                open_time_ms: row.0,
                close_time_ms: interval.close_time(row.0),
                open: decimal("open", row.1, scales.price)?,
                high: decimal("high", row.2, scales.price)?,
                low: decimal("low", row.3, scales.price)?,
                close: decimal("close", row.4, scales.price)?,
                volume: i128::from(decimal("volume", row.5, scales.qty)?),
                quote_volume: i128::from(decimal("quote volume", row.7, quote)?),
                trade_count: row.8,
                taker_buy_volume: i128::from(decimal("taker buy volume", row.9, scales.qty)?),
                taker_buy_quote_volume: i128::from(decimal(
                    "taker buy quote volume",
                    row.10,
                    quote,
                )?),
                first_trade_id: -1,
                last_trade_id: -1,
            })
        })
        .collect()
}

/// The names of `only` (`--symbols`) that `info` does not list as a USDT perpetual that trades
/// or is about to (`PENDING_TRADING`), each with why: `FOOUSDT (unknown)`,
/// `BTCUSD_PERP (not a USDT perpetual)`, `OLDUSDT (not trading)`.
pub fn unserved_names(only: &[String], info: &ExchangeInfo, now_ms: i64) -> Vec<String> {
    only.iter()
        .filter_map(|name| {
            let why = match info.find(name).map(|s| s.listing(now_ms)) {
                None => "unknown",
                Some(Listing::Excluded) => "not a USDT perpetual",
                Some(Listing::Delisted) => "not trading",
                Some(Listing::Trading | Listing::Pending) => return None,
            };
            Some(format!("{name} ({why})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = r#"{"timezone":"UTC","serverTime":5,"rateLimits":[
        {"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400},
        {"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200}],
      "symbols":[
        {"symbol":"BTCUSDT","contractType":"PERPETUAL","deliveryDate":4133404800000,"status":"TRADING",
         "quoteAsset":"USDT","pricePrecision":2,"quantityPrecision":3,"extra":[1,2],
         "filters":[{"filterType":"PRICE_FILTER","tickSize":"0.10","minPrice":"1"},
                    {"filterType":"LOT_SIZE","stepSize":"0.001"}]},
        {"symbol":"NEWUSDT","contractType":"PERPETUAL","deliveryDate":4133404800000,"status":"PENDING_TRADING",
         "quoteAsset":"USDT","pricePrecision":4,"quantityPrecision":0,"filters":[]},
        {"symbol":"OLDUSDT","contractType":"PERPETUAL","deliveryDate":1000,"status":"TRADING",
         "quoteAsset":"USDT","pricePrecision":4,"quantityPrecision":0,"filters":[]},
        {"symbol":"BTCUSDT_260327","contractType":"CURRENT_QUARTER","deliveryDate":1774598400000,
         "status":"TRADING","quoteAsset":"USDT","filters":[]},
        {"symbol":"ETHUSDC","contractType":"PERPETUAL","deliveryDate":4133404800000,"status":"TRADING",
         "quoteAsset":"USDC","filters":[]}]}"#;

    #[test]
    fn names_outside_the_trading_universe_are_listed_with_why() {
        let info = parse_exchange_info(INFO.as_bytes()).unwrap();
        let only: Vec<String> = ["BTCUSDT", "FOOUSDT", "NEWUSDT", "OLDUSDT", "ETHUSDC"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            unserved_names(&only, &info, 2_000),
            vec![
                "FOOUSDT (unknown)",
                "OLDUSDT (not trading)",
                "ETHUSDC (not a USDT perpetual)"
            ]
        );
    }

    #[test]
    fn exchange_info_classifies_the_lifecycle() {
        let info = parse_exchange_info(INFO.as_bytes()).unwrap();
        assert_eq!(info.weight_limit_per_minute(), Some(2400));
        let listing = |name| info.find(name).unwrap().listing(2_000);
        assert_eq!(listing("BTCUSDT"), Listing::Trading);
        assert_eq!(listing("NEWUSDT"), Listing::Pending);
        assert_eq!(listing("OLDUSDT"), Listing::Delisted);
        assert_eq!(listing("BTCUSDT_260327"), Listing::Excluded);
        assert_eq!(listing("ETHUSDC"), Listing::Excluded);
        assert_eq!(
            info.find("BTCUSDT").unwrap().scales().unwrap(),
            Scales { price: 2, qty: 3 }
        );
        assert_eq!(
            info.find("NEWUSDT").unwrap().scales().unwrap(),
            Scales { price: 4, qty: 0 }
        );
        assert!(info.find("BTCUSDT_260327").unwrap().scales().is_err());
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        assert!(matches!(
            parse_exchange_info(b"{"),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            parse_exchange_info(b"{\"symbols\":3}"),
            Err(DecodeError::Json(_))
        ));
        assert!(parse_ticker_24h(b"[{\"symbol\":1}]").is_err());
        let scales = Scales { price: 2, qty: 3 };
        let too_precise = r#"[[0,"1.234","1","1","1","1",59999,"1",1,"1","1","0"]]"#;
        assert!(matches!(
            parse_klines(too_precise.as_bytes(), Interval::M1, scales, "X"),
            Err(DecodeError::Decimal { field: "open", .. })
        ));
        assert!(parse_klines(b"[[0,\"1\"]]", Interval::M1, scales, "X").is_err());
    }

    #[test]
    fn ticker_and_klines_decode_exactly() {
        let body =
            br#"[{"symbol":"BTCUSDT","quoteVolume":"123456789.12","count":77,"lastPrice":"1"},
                        {"symbol":"X","quoteVolume":"bad"}]"#;
        let rows = parse_ticker_24h(body).unwrap();
        assert_eq!(
            rows[0].1,
            Ticker24h {
                quote_volume: 123_456_789,
                count: 77
            }
        );
        assert_eq!(rows[1].1, Ticker24h::default());
        let row = r#"[[1616338800000,"57212.69","57315.00","57196.19","57300.00","496.263",1616339099999,"28425514.78940",7160,"273.108","15642623.69718","0"]]"#;
        let klines = parse_klines(
            row.as_bytes(),
            Interval::M5,
            Scales { price: 2, qty: 3 },
            "BTCUSDT",
        )
        .unwrap();
        let k = klines[0];
        assert_eq!(
            (k.open, k.high, k.low, k.close),
            (5_721_269, 5_731_500, 5_719_619, 5_730_000)
        );
        assert_eq!(
            (k.volume, k.quote_volume, k.trade_count),
            (496_263, 2_842_551_478_940, 7160)
        );
        assert_eq!(k.close_time_ms, 1_616_339_099_999);
    }
}
