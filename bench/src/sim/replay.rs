//! Replay of recorded aggTrades as live symbols (files are read by `Sim::start` on the caller's
//! thread; the cursors are advanced by the generator thread). Trades keep their ids, prices and
//! quantities; times are shifted so the first trade lands in the current minute (whole-minute
//! shift at speed 1, so replayed klines line up with the recorded ones) and play at real pace.

use std::collections::HashSet;
use std::path::Path;

use klagg_shards::kline::{parse_scaled, written_scale};

use super::SimError;
use super::config::ReplaySource;
use super::market::{Market, SymbolStatus, TradeSource};
use super::render::StoredTrade;
use super::universe::named_spec;
use crate::replay::ReplayError;
use crate::replay_files::{FileTrade, read_agg_trades};

const MINUTE_MS: i64 = 60_000;

/// One replayed symbol and how far it has been published.
#[derive(Debug)]
pub struct ReplayCursor {
    /// Symbol index in the market.
    pub idx: usize,
    trades: Vec<StoredTrade>,
    pos: usize,
    first_ms: i64,
    base_ms: i64,
    speed: f64,
}

impl ReplayCursor {
    /// Publish time (shifted trade time) of the recorded time `t`.
    fn shifted(&self, t: i64) -> i64 {
        self.base_ms + ((t - self.first_ms) as f64 / self.speed) as i64
    }

    /// Append to the market every trade due by `now_ms`; returns them for publication.
    pub fn due(&mut self, market: &mut Market, now_ms: i64) -> Vec<(usize, StoredTrade)> {
        let mut out = Vec::new();
        if market.books[self.idx].status != SymbolStatus::Trading {
            return out; // delisted: the replay stops
        }
        while let Some(t) = self.trades.get(self.pos) {
            let at = self.shifted(t.time_ms);
            if at > now_ms {
                break;
            }
            let shifted = StoredTrade { time_ms: at, ..*t };
            market.append(self.idx, shifted);
            out.push((self.idx, shifted));
            self.pos += 1;
        }
        out
    }
}

/// Load every replay source into the market (as TRADING symbols) and build their cursors.
pub fn load(
    sources: &[ReplaySource],
    market: &mut Market,
    now_ms: i64,
    speed: f64,
) -> Result<Vec<ReplayCursor>, SimError> {
    let mut seen = HashSet::new();
    let mut cursors = Vec::new();
    for src in sources {
        if !seen.insert(src.symbol.clone()) {
            let msg = format!("symbol {} replayed twice", src.symbol);
            return Err(SimError::Config(msg));
        }
        cursors.push(load_one(src, market, now_ms, speed)?);
    }
    Ok(cursors)
}

fn load_one(
    src: &ReplaySource,
    market: &mut Market,
    now_ms: i64,
    speed: f64,
) -> Result<ReplayCursor, SimError> {
    let bad = |what: &str| SimError::Config(format!("{}: {what}", src.path.display()));
    let rows = read_agg_trades(&src.path)?;
    let first_ms = rows.first().ok_or_else(|| bad("no trades"))?.time_ms;
    let price_dp = rows.iter().map(|r| decimals(&r.price)).max().unwrap_or(0);
    let qty_dp = rows.iter().map(|r| decimals(&r.qty)).max().unwrap_or(0);
    let trades: Vec<StoredTrade> = rows
        .iter()
        .map(|r| to_stored(r, &src.path, price_dp, qty_dp))
        .collect::<Result<_, _>>()?;
    let spec = named_spec(
        &src.symbol,
        u32::from(price_dp),
        u32::from(qty_dp),
        trades[0].price,
    );
    let idx = market.add(spec, SymbolStatus::Trading, first_ms, TradeSource::Replay);
    // A whole-minute shift keeps replayed klines aligned with the recorded ones.
    let shift = if speed == 1.0 {
        (now_ms - first_ms).div_euclid(MINUTE_MS) * MINUTE_MS
    } else {
        now_ms - first_ms
    };
    Ok(ReplayCursor {
        idx,
        trades,
        pos: 0,
        first_ms,
        base_ms: first_ms + shift,
        speed,
    })
}

/// Decimal places a string is written with (the reader checked the syntax and the scale).
fn decimals(s: &str) -> u8 {
    written_scale(s.as_bytes()).unwrap_or(0)
}

/// A file record at the symbol's scales; a value that does not fit at them, or a bundle of more
/// than `u32::MAX` trades, is an error naming file, line and field.
fn to_stored(
    r: &FileTrade,
    path: &Path,
    price_dp: u8,
    qty_dp: u8,
) -> Result<StoredTrade, ReplayError> {
    let field_error = |field, reason| ReplayError::Field {
        at: r.location(path),
        field,
        reason,
    };
    let decimal = |text: &str, dp, field| {
        parse_scaled(text.as_bytes(), dp).map_err(|e| field_error(field, format!("{text:?}: {e}")))
    };
    let count = u32::try_from(r.last_id - r.first_id + 1).map_err(|_| {
        let reason = format!("bundles more than {} trades", u32::MAX);
        field_error("last_trade_id", reason)
    })?;
    Ok(StoredTrade {
        agg_id: r.agg_id,
        first_id: r.first_id,
        time_ms: r.time_ms,
        price: decimal(&r.price, price_dp, "price")?,
        qty: decimal(&r.qty, qty_dp, "quantity")?,
        count,
        event_delay_ms: 1,
        buyer_maker: r.buyer_maker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_trade(price: &str, qty: &str) -> FileTrade {
        FileTrade {
            agg_id: 1,
            price: price.into(),
            qty: qty.into(),
            first_id: 5,
            last_id: 7,
            time_ms: 9,
            buyer_maker: true,
            line: 4,
        }
    }

    #[test]
    fn records_at_the_symbol_scales() {
        let path = Path::new("sp.csv");
        let t = to_stored(&file_trade("0.74760000", "1.5"), path, 8, 3).unwrap();
        assert_eq!((t.price, t.qty, t.count), (74_760_000, 1_500, 3));
        assert_eq!(decimals("0.001"), 3);
        assert_eq!(decimals("12"), 0);
        let err = to_stored(&file_trade("123456789012.5", "1"), path, 8, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("sp.csv:4: field `price`: \"123456789012.5\""),
            "{err}"
        );
    }

    #[test]
    fn bad_prices_fail_with_file_line_and_field() {
        let dir = std::env::temp_dir().join(format!("klagg-sim-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (text, want) in [
            (
                "1,1.5,2,3,4,5,true\n2,1x.5,2,5,5,6,true\n",
                "sp.csv:2: field `price`",
            ),
            (
                "1,-1.5,2,3,4,5,true\n",
                "sp.csv:1: field `price`: \"-1.5\" is negative",
            ),
        ] {
            let path = dir.join("sp.csv");
            std::fs::write(&path, text).unwrap();
            let src = ReplaySource {
                symbol: "SPUSDT".into(),
                path,
            };
            let mut market = Market::new(super::super::market::Retention::KEEP_ALL, 10);
            let err = load(&[src], &mut market, 0, 1.0).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
