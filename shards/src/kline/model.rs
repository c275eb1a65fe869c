//! The kline core's value types (pure, any thread): an aggregate trade at a symbol's scale, a
//! kline with all of Binance's fields as fixed-point integers, and their official text forms.

use std::fmt::Write as _;

use super::decimal::Fixed;
use super::interval::Interval;

/// A symbol's decimal places: prices at `price` places (tick size), quantities at `qty`
/// places (step size). Quote volumes (Σ p·q) are exact at `price + qty` places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scales {
    pub price: u8,
    pub qty: u8,
}

impl Scales {
    /// Decimal places of quote volumes (price × quantity).
    pub const fn quote(self) -> u8 {
        self.price + self.qty
    }
}

/// One aggregate trade (`<symbol>@aggTrade` / `GET /fapi/v1/aggTrades`), with price and
/// quantity as mantissas at the symbol's [`Scales`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AggTrade {
    /// `a`: aggregate trade id, consecutive per symbol.
    pub agg_id: i64,
    /// `p` at the symbol's price scale.
    pub price: i64,
    /// `q` at the symbol's quantity scale.
    pub qty: i64,
    /// `f`: first underlying trade id.
    pub first_id: i64,
    /// `l`: last underlying trade id.
    pub last_id: i64,
    /// `T`: trade time, epoch ms. Klines bucket by this.
    pub time_ms: i64,
    /// `m`: the buyer is the maker (the taker sold).
    pub buyer_maker: bool,
}

impl AggTrade {
    /// The number of underlying trades (`l − f + 1`).
    pub const fn trade_count(&self) -> u64 {
        (self.last_id - self.first_id + 1) as u64
    }
}

/// A kline with every Binance field. Prices are mantissas at the symbol's price scale, volumes at
/// the quantity scale, quote volumes at `price + qty` places.
///
/// Bounds: one trade's `p·q` is below `2^126` (both factors fit in `i64`), and the sums are
/// `i128` with checked addition, so a kline holds at least `1.7·10^38` units at its scale: at
/// BTCUSDT's scales (0.1 / 0.001) that is `1.7·10^34` USDT of quote volume in one kline. A trade
/// that would overflow a sum is refused with an error by the book, never wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kline {
    pub open_time_ms: i64,
    pub close_time_ms: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: i128,
    pub quote_volume: i128,
    pub taker_buy_volume: i128,
    pub taker_buy_quote_volume: i128,
    pub trade_count: u64,
    /// First underlying trade id, `-1` for a kline without trades (as on Binance's stream).
    pub first_trade_id: i64,
    /// Last underlying trade id, `-1` for a kline without trades.
    pub last_trade_id: i64,
}

/// The official header of Binance's klines CSV files.
pub const KLINE_CSV_HEADER: &str = "open_time,open,high,low,close,volume,close_time,\
quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore";

impl Kline {
    /// A kline without trades: every price at `price` (the previous close), zero volumes.
    pub fn flat(interval: Interval, open_time_ms: i64, price: i64) -> Kline {
        Kline {
            open_time_ms,
            close_time_ms: interval.close_time(open_time_ms),
            open: price,
            high: price,
            low: price,
            close: price,
            first_trade_id: -1,
            last_trade_id: -1,
            ..Kline::default()
        }
    }

    /// A kline whose only trade is `trade`.
    pub fn from_trade(interval: Interval, open_time_ms: i64, trade: &AggTrade) -> Kline {
        let mut kline = Kline::flat(interval, open_time_ms, trade.price);
        kline.apply(trade, i128::from(trade.price) * i128::from(trade.qty));
        kline
    }

    /// True when no trade contributed (a flat kline).
    pub const fn is_flat(&self) -> bool {
        self.trade_count == 0
    }

    /// Add one trade whose `p·q` is `quote`. The first trade of a flat kline resets its prices.
    /// The caller has checked that the sums cannot overflow ([`Kline::can_absorb`]).
    #[inline(always)]
    pub fn apply(&mut self, trade: &AggTrade, quote: i128) {
        if self.trade_count == 0 {
            self.open = trade.price;
            self.high = trade.price;
            self.low = trade.price;
            self.first_trade_id = trade.first_id;
        }
        self.high = self.high.max(trade.price);
        self.low = self.low.min(trade.price);
        self.close = trade.price;
        self.last_trade_id = trade.last_id;
        self.trade_count += trade.trade_count();
        let qty = i128::from(trade.qty);
        self.volume += qty;
        self.quote_volume += quote;
        // Branch-free: `m` is a coin flip per trade, a branch on it mispredicts half the time.
        let taker_mask = -i128::from(!trade.buyer_maker);
        self.taker_buy_volume += qty & taker_mask;
        self.taker_buy_quote_volume += quote & taker_mask;
    }

    /// True when adding `qty` and `quote` keeps every sum in range. The taker-buy sums never
    /// exceed the totals, so checking the totals is enough.
    pub fn can_absorb(&self, qty: i128, quote: i128) -> bool {
        self.volume.checked_add(qty).is_some() && self.quote_volume.checked_add(quote).is_some()
    }

    /// Merge the next, adjacent kline into this one (roll-up of a lower interval into a higher
    /// one): prices by first/max/min/last over the klines with trades, sums and counts added.
    /// Flat klines only carry the close forward. Returns false (and changes nothing) on
    /// overflow.
    pub fn absorb(&mut self, later: &Kline) -> bool {
        let sums = (
            self.volume.checked_add(later.volume),
            self.quote_volume.checked_add(later.quote_volume),
            self.taker_buy_volume.checked_add(later.taker_buy_volume),
            self.taker_buy_quote_volume
                .checked_add(later.taker_buy_quote_volume),
        );
        let (Some(v), Some(q), Some(tv), Some(tq)) = sums else {
            return false;
        };
        if !later.is_flat() {
            if self.is_flat() {
                self.open = later.open;
                self.high = later.high;
                self.low = later.low;
                self.first_trade_id = later.first_trade_id;
            }
            self.high = self.high.max(later.high);
            self.low = self.low.min(later.low);
            self.last_trade_id = later.last_trade_id;
        }
        self.close = later.close;
        (
            self.volume,
            self.quote_volume,
            self.taker_buy_volume,
            self.taker_buy_quote_volume,
        ) = (v, q, tv, tq);
        self.trade_count += later.trade_count;
        true
    }

    /// Append the official klines CSV row (12 columns, no newline).
    pub fn write_csv(&self, out: &mut String, scales: Scales) {
        self.write_fields(out, scales, "");
        out.push_str(",0");
    }

    /// Append the `GET /fapi/v1/klines` row: `[t,"o","h","l","c","v",T,"q",n,"V","Q","0"]`.
    pub fn write_rest_json(&self, out: &mut String, scales: Scales) {
        out.push('[');
        self.write_fields(out, scales, "\"");
        out.push_str(",\"0\"]");
    }

    /// The first 11 fields in Binance's order, decimals wrapped in `quote` (`""` or `"\""`).
    fn write_fields(&self, out: &mut String, scales: Scales, q: &str) {
        let (price, qty, quote) = (scales.price, scales.qty, scales.quote());
        let _ = write!(
            out,
            "{},{q}{}{q},{q}{}{q},{q}{}{q},{q}{}{q},{q}{}{q},{},{q}{}{q},{},{q}{}{q},{q}{}{q}",
            self.open_time_ms,
            Fixed::new(self.open, price),
            Fixed::new(self.high, price),
            Fixed::new(self.low, price),
            Fixed::new(self.close, price),
            Fixed::new(self.volume, qty),
            self.close_time_ms,
            Fixed::new(self.quote_volume, quote),
            self.trade_count,
            Fixed::new(self.taker_buy_volume, qty),
            Fixed::new(self.taker_buy_quote_volume, quote),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(agg_id: i64, price: i64, qty: i64, time_ms: i64, buyer_maker: bool) -> AggTrade {
        AggTrade {
            agg_id,
            price,
            qty,
            first_id: agg_id * 10,
            last_id: agg_id * 10 + 1,
            time_ms,
            buyer_maker,
        }
    }

    #[test]
    fn applies_trades_with_binance_semantics() {
        let first = trade(1, 7476, 148, 167, true);
        let mut kline = Kline::from_trade(Interval::S1, 0, &first);
        kline.apply(&trade(2, 7480, 10, 500, false), 7480 * 10);
        kline.apply(&trade(3, 7470, 5, 900, true), 7470 * 5);
        assert_eq!(
            (kline.open, kline.high, kline.low, kline.close),
            (7476, 7480, 7470, 7470)
        );
        assert_eq!(kline.volume, 163);
        assert_eq!(kline.quote_volume, 7476 * 148 + 7480 * 10 + 7470 * 5);
        assert_eq!(kline.taker_buy_volume, 10);
        assert_eq!(kline.taker_buy_quote_volume, 74_800);
        assert_eq!(kline.trade_count, 6);
        assert_eq!((kline.first_trade_id, kline.last_trade_id), (10, 31));
        assert_eq!(kline.close_time_ms, 999);
    }

    #[test]
    fn first_trade_resets_a_flat_kline() {
        let mut kline = Kline::flat(Interval::M1, 60_000, 100);
        assert!(kline.is_flat());
        assert_eq!((kline.first_trade_id, kline.last_trade_id), (-1, -1));
        kline.apply(&trade(5, 90, 1, 60_001, true), 90);
        assert_eq!(
            (kline.open, kline.high, kline.low, kline.close),
            (90, 90, 90, 90)
        );
    }

    #[test]
    fn absorb_skips_flat_klines_for_prices() {
        let mut rolled = Kline::flat(Interval::M1, 0, 100);
        let mut with_trades =
            Kline::from_trade(Interval::M1, 60_000, &trade(1, 120, 2, 61_000, false));
        with_trades.apply(&trade(2, 110, 1, 62_000, true), 110);
        assert!(rolled.absorb(&with_trades));
        assert!(rolled.absorb(&Kline::flat(Interval::M1, 120_000, 110)));
        assert_eq!(
            (rolled.open, rolled.high, rolled.low, rolled.close),
            (120, 120, 110, 110)
        );
        assert_eq!((rolled.volume, rolled.trade_count), (3, 4));
        assert_eq!((rolled.first_trade_id, rolled.last_trade_id), (10, 21));
    }

    #[test]
    fn absorb_refuses_overflow_without_change() {
        let mut big = Kline {
            volume: i128::MAX,
            ..Kline::default()
        };
        let before = big;
        assert!(!big.absorb(&Kline {
            volume: 1,
            trade_count: 1,
            ..Kline::default()
        }));
        assert_eq!(big, before);
        assert!(!big.can_absorb(1, 0));
        assert!(Kline::default().can_absorb(i128::from(i64::MAX), i128::from(i64::MAX).pow(2)));
    }

    #[test]
    fn prints_official_rows() {
        let scales = Scales { price: 2, qty: 3 };
        let kline = Kline {
            open_time_ms: 1_616_338_800_000,
            close_time_ms: 1_616_339_099_999,
            open: 5_721_269,
            high: 5_731_500,
            low: 5_719_619,
            close: 5_730_000,
            volume: 496_263,
            quote_volume: 2_842_551_478_940,
            taker_buy_volume: 273_108,
            taker_buy_quote_volume: 1_564_262_369_718,
            trade_count: 7160,
            first_trade_id: 1,
            last_trade_id: 7160,
        };
        let mut row = String::new();
        kline.write_rest_json(&mut row, scales);
        assert_eq!(
            row,
            r#"[1616338800000,"57212.69","57315.00","57196.19","57300.00","496.263",1616339099999,"28425514.78940",7160,"273.108","15642623.69718","0"]"#
        );
        row.clear();
        kline.write_csv(&mut row, scales);
        assert_eq!(
            row,
            "1616338800000,57212.69,57315.00,57196.19,57300.00,496.263,1616339099999,\
             28425514.78940,7160,273.108,15642623.69718,0"
        );
        assert_eq!(KLINE_CSV_HEADER.split(',').count(), 12);
    }
}
