//! `/fapi/v1/exchangeInfo` of the simulated market (called on REST connection threads under the
//! market lock): every book's status, dates, precisions and filters, in the layout of
//! [`klagg_shards::wire::exinfo`].

use klagg_shards::wire::exinfo::{self, ExchangeSymbol};

use super::market::{Book, Market};
use super::render::fixed;

/// The whole exchangeInfo body.
pub fn render(market: &Market, weight_limit: u32, now_ms: i64) -> String {
    exinfo::render(now_ms, weight_limit, market.books.iter().map(symbol))
}

/// A book as exchangeInfo shows it: its filters follow from the tick, the step and the start
/// price.
fn symbol(b: &Book) -> ExchangeSymbol<'_> {
    let s = &b.spec;
    let (pdp, qdp) = (s.price_dp, s.qty_dp);
    ExchangeSymbol {
        name: &s.name,
        base: &s.base,
        status: b.status.as_str(),
        onboard_ms: b.onboard_ms,
        delivery_ms: b.delivery_ms,
        price_dp: pdp,
        qty_dp: qdp,
        tick: fixed(i128::from(s.tick), pdp),
        max_price: fixed(i128::from(s.start_price) * 1000, pdp),
        step: fixed(i128::from(s.step), qdp),
        max_qty: fixed(i128::from(s.step) * 10i128.pow(qdp + 7), qdp),
    }
}

#[cfg(test)]
mod tests {
    use super::super::market::{Retention, SymbolStatus, TradeSource};
    use super::super::universe;
    use super::*;

    #[test]
    fn valid_json_with_filters() {
        let mut m = Market::new(Retention::KEEP_ALL, 10);
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
