//! The simulator's reference kline aggregation (pure functions, called by whichever thread asks:
//! REST handlers, the kline-stream publisher, tests). Deliberately simple and independent of the
//! engine's kline core: `rust_decimal` arithmetic, one straightforward loop per bucket. It is the
//! ground truth that end-to-end tests compare the engine against.

use rust_decimal::Decimal;

use super::interval::Interval;

/// One aggregate trade as the reference aggregation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefTrade {
    /// Aggregate trade id `a`.
    pub agg_id: u64,
    /// Price `p`.
    pub price: Decimal,
    /// Quantity `q`.
    pub qty: Decimal,
    /// First underlying trade id `f`.
    pub first_id: u64,
    /// Last underlying trade id `l`.
    pub last_id: u64,
    /// Trade time `T`, ms.
    pub time_ms: i64,
    /// Buyer is maker `m` (true: the taker sold).
    pub buyer_maker: bool,
}

/// One kline computed by the reference aggregation (REST's 12 fields plus the stream's f/L).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefKline {
    /// Open time, ms.
    pub open_time: i64,
    /// Close time, ms (next open − 1).
    pub close_time: i64,
    /// Open price.
    pub open: Decimal,
    /// High price.
    pub high: Decimal,
    /// Low price.
    pub low: Decimal,
    /// Close price.
    pub close: Decimal,
    /// Base volume Σq.
    pub volume: Decimal,
    /// Quote volume Σp·q.
    pub quote_volume: Decimal,
    /// Number of trades Σ(l − f + 1).
    pub trades: u64,
    /// Taker-buy base volume (Σq where `m == false`).
    pub taker_buy_volume: Decimal,
    /// Taker-buy quote volume (Σp·q where `m == false`).
    pub taker_buy_quote_volume: Decimal,
    /// First trade id (`f` of the first aggTrade), −1 when empty.
    pub first_id: i64,
    /// Last trade id (`l` of the last aggTrade), −1 when empty.
    pub last_id: i64,
}

/// Decimal places of prices and quantities of one symbol (zero volumes print with them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scales {
    /// Price decimals (tick size decimals).
    pub price_dp: u32,
    /// Quantity decimals (step size decimals).
    pub qty_dp: u32,
}

impl RefKline {
    /// A flat kline at `price` with zero volumes (an interval without trades).
    pub fn flat(open_time: i64, close_time: i64, price: Decimal, scales: Scales) -> RefKline {
        let zero_q = Decimal::new(0, scales.qty_dp);
        let zero_quote = Decimal::new(0, scales.price_dp + scales.qty_dp);
        RefKline {
            open_time,
            close_time,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: zero_q,
            quote_volume: zero_quote,
            trades: 0,
            taker_buy_volume: zero_q,
            taker_buy_quote_volume: zero_quote,
            first_id: -1,
            last_id: -1,
        }
    }

    /// Add one trade (in stream order). The first trade of a flat kline resets its OHLC.
    pub fn add_trade(&mut self, t: &RefTrade) {
        let quote = t.price * t.qty;
        if self.trades == 0 {
            self.open = t.price;
            self.high = t.price;
            self.low = t.price;
            self.first_id = t.first_id as i64;
        }
        self.high = self.high.max(t.price);
        self.low = self.low.min(t.price);
        self.close = t.price;
        self.volume += t.qty;
        self.quote_volume += quote;
        self.trades += t.last_id - t.first_id + 1;
        if !t.buyer_maker {
            self.taker_buy_volume += t.qty;
            self.taker_buy_quote_volume += quote;
        }
        self.last_id = t.last_id as i64;
    }

    /// Fold a later, adjacent kline into this one (roll-up of smaller klines).
    pub fn merge(&mut self, next: &RefKline) {
        if next.trades == 0 {
            return;
        }
        if self.trades == 0 {
            self.open = next.open;
            self.high = next.high;
            self.low = next.low;
            self.first_id = next.first_id;
        }
        self.high = self.high.max(next.high);
        self.low = self.low.min(next.low);
        self.close = next.close;
        self.volume += next.volume;
        self.quote_volume += next.quote_volume;
        self.trades += next.trades;
        self.taker_buy_volume += next.taker_buy_volume;
        self.taker_buy_quote_volume += next.taker_buy_quote_volume;
        self.last_id = next.last_id;
    }
}

/// Aggregate time-ordered `trades` into the klines of `interval` whose open time lies in
/// `[from_open, to_open]`. `prev_close` is the last price before `from_open` (None: no trade
/// yet). Buckets before the first known price produce no kline; later empty buckets produce
/// flat klines at the previous close.
pub fn aggregate(
    trades: &[RefTrade],
    interval: Interval,
    from_open: i64,
    to_open: i64,
    prev_close: Option<Decimal>,
    scales: Scales,
) -> Vec<RefKline> {
    let mut out = Vec::new();
    let mut last_price = prev_close;
    let mut idx = trades.partition_point(|t| t.time_ms < from_open);
    let mut open = interval.open_of(from_open);
    while open <= to_open {
        let close = interval.close_of(open);
        let end = idx + trades[idx..].partition_point(|t| t.time_ms <= close);
        let bucket = &trades[idx..end];
        idx = end;
        let start_price = last_price.or_else(|| bucket.first().map(|t| t.price));
        if let Some(price) = start_price {
            let mut k = RefKline::flat(open, close, price, scales);
            bucket.iter().for_each(|t| k.add_trade(t));
            last_price = Some(k.close);
            out.push(k);
        }
        open = interval.next_open(open);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(a: u64, p: &str, q: &str, ms: i64, m: bool) -> RefTrade {
        RefTrade {
            agg_id: a,
            price: p.parse().unwrap(),
            qty: q.parse().unwrap(),
            first_id: a * 10,
            last_id: a * 10 + 1,
            time_ms: ms,
            buyer_maker: m,
        }
    }

    const S: Scales = Scales {
        price_dp: 2,
        qty_dp: 3,
    };

    #[test]
    fn one_bucket_sums_and_flats() {
        let trades = [
            t(1, "10.00", "1.000", 1_000, false),
            t(2, "12.50", "2.000", 1_500, true),
        ];
        let iv = Interval::parse("1s").unwrap();
        let ks = aggregate(&trades, iv, 0, 3_000, None, S);
        assert_eq!(ks.len(), 3, "no kline before the first trade, flats after");
        let k = &ks[0];
        assert_eq!(k.open.to_string(), "10.00");
        assert_eq!(k.high.to_string(), "12.50");
        assert_eq!(k.low.to_string(), "10.00");
        assert_eq!(k.close.to_string(), "12.50");
        assert_eq!(k.volume.to_string(), "3.000");
        assert_eq!(k.quote_volume.to_string(), "35.00000");
        assert_eq!(k.trades, 4);
        assert_eq!(k.taker_buy_volume.to_string(), "1.000");
        assert_eq!(k.taker_buy_quote_volume.to_string(), "10.00000");
        assert_eq!((k.first_id, k.last_id), (10, 21));
        let flat = &ks[1];
        assert_eq!(flat.open, flat.close);
        assert_eq!(flat.close.to_string(), "12.50");
        assert_eq!(flat.volume.to_string(), "0.000");
        assert_eq!(flat.quote_volume.to_string(), "0.00000");
        assert_eq!((flat.trades, flat.first_id), (0, -1));
        assert_eq!(flat.close_time, 2_999);
    }

    #[test]
    fn merge_equals_direct_aggregation() {
        let trades: Vec<_> = (0..50)
            .map(|i| {
                t(
                    i,
                    &format!("{}.{:02}", 10 + i % 7, i % 100),
                    "0.500",
                    i as i64 * 7_000,
                    i % 3 == 0,
                )
            })
            .collect();
        let m1 = Interval::parse("1m").unwrap();
        let m5 = Interval::parse("5m").unwrap();
        let direct = aggregate(&trades, m5, 0, 300_000, None, S);
        let small = aggregate(&trades, m1, 0, 540_000, None, S);
        for big in &direct {
            let mut acc = RefKline::flat(big.open_time, big.close_time, big.open, S);
            let prev = small.iter().rfind(|k| k.open_time < big.open_time);
            if let Some(p) = prev {
                acc = RefKline::flat(big.open_time, big.close_time, p.close, S);
            }
            for k in small
                .iter()
                .filter(|k| k.open_time >= big.open_time && k.open_time <= big.close_time)
            {
                acc.merge(k);
            }
            assert_eq!(&acc, big);
        }
    }
}
