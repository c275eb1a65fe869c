//! `/fapi/v1/exchangeInfo` in Binance's layout (pure; called on the API's and the simulator's
//! HTTP connection threads): rate limits, assets, and every symbol with its status, contract
//! type, precisions, filters, onboardDate and deliveryDate. Each server says what its symbols
//! are; the layout is written once.

use std::fmt::Write as _;

/// One symbol of the answer, its decimals already as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSymbol<'a> {
    /// `BTCUSDT` (also the `pair`).
    pub name: &'a str,
    /// `BTC`.
    pub base: &'a str,
    /// `TRADING`, `PENDING_TRADING`, `CLOSE`, …
    pub status: &'a str,
    pub onboard_ms: i64,
    pub delivery_ms: i64,
    /// `pricePrecision` (decimal places of prices).
    pub price_dp: u32,
    /// `quantityPrecision` (decimal places of quantities).
    pub qty_dp: u32,
    /// `PRICE_FILTER.tickSize` and `minPrice`.
    pub tick: String,
    /// `PRICE_FILTER.maxPrice`.
    pub max_price: String,
    /// `LOT_SIZE` / `MARKET_LOT_SIZE` `stepSize` and `minQty`.
    pub step: String,
    /// `LOT_SIZE` / `MARKET_LOT_SIZE` `maxQty`.
    pub max_qty: String,
}

/// The whole body: `serverTime`, the request-weight limit per minute and the symbols in order.
pub fn render<'a>(
    server_time_ms: i64,
    weight_limit: u32,
    symbols: impl IntoIterator<Item = ExchangeSymbol<'a>>,
) -> String {
    let symbols = symbols.into_iter();
    let mut out = String::with_capacity(1024 + symbols.size_hint().0 * 1400);
    let _ = write!(
        out,
        concat!(
            r#"{{"timezone":"UTC","serverTime":{},"futuresType":"U_MARGINED","rateLimits":["#,
            r#"{{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":{}}},"#,
            r#"{{"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200}},"#,
            r#"{{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300}}],"#,
            r#""exchangeFilters":[],"assets":[{{"asset":"USDT","marginAvailable":true,"autoAssetExchange":"-10000"}}],"#,
            r#""symbols":["#
        ),
        server_time_ms, weight_limit
    );
    for (i, symbol) in symbols.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_symbol(&mut out, &symbol);
    }
    out.push_str("]}");
    out
}

fn write_symbol(out: &mut String, s: &ExchangeSymbol<'_>) {
    let _ = write!(
        out,
        concat!(
            r#"{{"symbol":"{name}","pair":"{name}","contractType":"PERPETUAL","deliveryDate":{dd},"onboardDate":{od},"#,
            r#""status":"{st}","maintMarginPercent":"2.5000","requiredMarginPercent":"5.0000","baseAsset":"{base}","#,
            r#""quoteAsset":"USDT","marginAsset":"USDT","pricePrecision":{pdp},"quantityPrecision":{qdp},"#,
            r#""baseAssetPrecision":8,"quotePrecision":8,"underlyingType":"COIN","underlyingSubType":[],"#,
            r#""settlePlan":0,"triggerProtect":"0.0500","liquidationFee":"0.012500","marketTakeBound":"0.05","#,
            r#""maxMoveOrderLimit":10000,"filters":["#,
            r#"{{"minPrice":"{tick}","maxPrice":"{maxp}","filterType":"PRICE_FILTER","tickSize":"{tick}"}},"#,
            r#"{{"stepSize":"{step}","filterType":"LOT_SIZE","maxQty":"{maxq}","minQty":"{step}"}},"#,
            r#"{{"stepSize":"{step}","filterType":"MARKET_LOT_SIZE","maxQty":"{maxq}","minQty":"{step}"}},"#,
            r#"{{"limit":200,"filterType":"MAX_NUM_ORDERS"}},"#,
            r#"{{"notional":"5","filterType":"MIN_NOTIONAL"}},"#,
            r#"{{"multiplierDown":"0.9500","multiplierUp":"1.0500","multiplierDecimal":"4","filterType":"PERCENT_PRICE"}}],"#,
            r#""orderTypes":["LIMIT","MARKET","STOP","STOP_MARKET","TAKE_PROFIT","TAKE_PROFIT_MARKET","TRAILING_STOP_MARKET"],"#,
            r#""timeInForce":["GTC","IOC","FOK","GTX","GTD"]}}"#
        ),
        name = s.name,
        dd = s.delivery_ms,
        od = s.onboard_ms,
        st = s.status,
        base = s.base,
        pdp = s.price_dp,
        qdp = s.qty_dp,
        tick = s.tick,
        maxp = s.max_price,
        step = s.step,
        maxq = s.max_qty,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_json_in_binances_layout() {
        let symbol = |name| ExchangeSymbol {
            name,
            base: "BTC",
            status: "TRADING",
            onboard_ms: 7,
            delivery_ms: 4_133_404_800_000,
            price_dp: 2,
            qty_dp: 3,
            tick: "0.01".into(),
            max_price: "1000000".into(),
            step: "0.001".into(),
            max_qty: "1000".into(),
        };
        let body = render(5, 2400, [symbol("BTCUSDT"), symbol("X")]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (
                v["serverTime"].as_i64(),
                v["rateLimits"][0]["limit"].as_i64()
            ),
            (Some(5), Some(2400))
        );
        let btc = &v["symbols"][0];
        assert_eq!(
            (btc["symbol"].as_str(), btc["pair"].as_str()),
            (Some("BTCUSDT"), Some("BTCUSDT"))
        );
        assert_eq!(btc["filters"][0]["tickSize"], "0.01");
        assert_eq!(btc["filters"][1]["stepSize"], "0.001");
        assert_eq!(
            (btc["pricePrecision"].as_u64(), btc["onboardDate"].as_i64()),
            (Some(2), Some(7))
        );
        assert_eq!(v["symbols"][1]["symbol"], "X");
        assert!(body.ends_with(r#""timeInForce":["GTC","IOC","FOK","GTX","GTD"]}]}"#));
    }
}
