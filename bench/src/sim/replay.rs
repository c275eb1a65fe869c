//! Replay of recorded aggTrades as live symbols (files are read by `Sim::start` on the caller's
//! thread; the cursors are advanced by the generator thread). Trades keep their ids, prices and
//! quantities; times are shifted so the first trade lands in the current minute (whole-minute
//! shift at speed 1, so replayed klines line up with the recorded ones) and play at real pace.

use std::collections::HashSet;

use super::SimError;
use super::config::ReplaySource;
use super::market::{Market, SymbolStatus, TradeSource};
use super::render::StoredTrade;
use super::universe::named_spec;
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
        .map(|r| to_stored(r, price_dp, qty_dp))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("number out of range"))?;
    let spec = named_spec(&src.symbol, price_dp, qty_dp, trades[0].price);
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

fn decimals(s: &str) -> u32 {
    s.split_once('.').map_or(0, |(_, f)| f.len() as u32)
}

/// Decimal string → mantissa at `dp` decimals.
fn mantissa(s: &str, dp: u32) -> Option<i64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let padded = format!("{int}{frac:0<width$}", width = dp as usize);
    padded.parse().ok()
}

fn to_stored(r: &FileTrade, price_dp: u32, qty_dp: u32) -> Option<StoredTrade> {
    Some(StoredTrade {
        agg_id: r.agg_id,
        first_id: r.first_id,
        time_ms: r.time_ms,
        price: mantissa(&r.price, price_dp)?,
        qty: mantissa(&r.qty, qty_dp)?,
        count: u32::try_from(r.last_id.checked_sub(r.first_id)? + 1).ok()?,
        event_delay_ms: 1,
        buyer_maker: r.buyer_maker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mantissas() {
        assert_eq!(mantissa("0.74760000", 8), Some(74_760_000));
        assert_eq!(mantissa("1.5", 3), Some(1_500));
        assert_eq!(mantissa("12", 2), Some(1_200));
        assert_eq!(decimals("0.001"), 3);
    }
}
