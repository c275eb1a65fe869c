//! `/fapi/v1/exchangeInfo` rendering (called on REST connection threads under the market lock):
//! rate limits, assets and every symbol with status, contract type, precisions, filters,
//! onboardDate and deliveryDate, in Binance's layout.

use std::fmt::Write as _;

use super::market::{Book, Market};
use super::render::fixed;

/// The whole exchangeInfo body.
pub fn render(market: &Market, weight_limit: u32, now_ms: i64) -> String {
    let mut out = String::with_capacity(1024 + market.books.len() * 1400);
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
        now_ms, weight_limit
    );
    for (i, b) in market.books.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        symbol(&mut out, b);
    }
    out.push_str("]}");
    out
}

fn symbol(out: &mut String, b: &Book) {
    let s = &b.spec;
    let (pdp, qdp) = (s.price_dp, s.qty_dp);
    let tick = fixed(i128::from(s.tick), pdp);
    let step = fixed(i128::from(s.step), qdp);
    let max_price = fixed(i128::from(s.start_price) * 1000, pdp);
    let max_qty = fixed(i128::from(s.step) * 10i128.pow(qdp + 7), qdp);
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
        dd = b.delivery_ms,
        od = b.onboard_ms,
        st = b.status.as_str(),
        base = s.base,
        pdp = pdp,
        qdp = qdp,
        tick = tick,
        maxp = max_price,
        step = step,
        maxq = max_qty,
    );
}

#[cfg(test)]
mod tests {
    use super::super::market::{SymbolStatus, TradeSource};
    use super::super::universe;
    use super::*;

    #[test]
    fn valid_json_with_filters() {
        let mut m = Market::new(10, 10);
        for s in universe::build(3, 1) {
            m.add(s, SymbolStatus::Trading, 1, TradeSource::Synthetic);
        }
        let v: serde_json::Value = serde_json::from_str(&render(&m, 2400, 5)).unwrap();
        assert_eq!(v["rateLimits"][0]["limit"], 2400);
        let btc = &v["symbols"][0];
        assert_eq!(btc["symbol"], "BTCUSDT");
        assert_eq!(btc["filters"][0]["tickSize"], "0.10");
        assert_eq!(btc["filters"][1]["stepSize"], "0.001");
        assert_eq!(btc["pricePrecision"], 2);
    }
}
