//! The trade store and market state (owned by `Shared::market`, a mutex: the generator thread
//! appends, REST and WebSocket threads read). Per symbol: an append-only deque of published
//! trades (the ground truth), integer 1-minute summaries, lifecycle status, and the queries
//! REST and the kline stream answer from (through the reference aggregation).
//!
//! Retention ([`Retention`]): a symbol keeps its trades of the last `window_ms` (counted back
//! from its newest trade, and never fewer than its newest [`MIN_KEPT_TRADES`]), at most
//! `max_trades` of them (plus the rest of the oldest kept minute); older whole minutes are
//! evicted and live on only as 1m summaries, of which `archive_minutes` minutes-with-trades are
//! kept. Klines of minute-multiple intervals stay exact over the whole archive. `1s` klines are
//! only served from kept trades — none at all for evicted time, never flat stand-ins — and an
//! aggTrades query that reaches into evicted trades is refused ([`Evicted`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rust_decimal::Decimal;

use super::interval::Interval;
use super::refagg::{RefKline, RefTrade, Scales};
use super::render::{Stats24, StoredTrade};
use super::universe::SymbolSpec;

/// `deliveryDate` of a perpetual that is not scheduled for delisting (2100-12-25).
pub const PERPETUAL_DELIVERY_MS: i64 = 4_133_404_800_000;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// The time window never evicts a symbol's newest trades below this count (one full
/// `/fapi/v1/aggTrades` page), so a quiet symbol's recent trades stay complete.
pub const MIN_KEPT_TRADES: usize = 1000;

/// How long and how many trades a symbol keeps (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep the trades of this many ms before the symbol's newest trade.
    pub window_ms: i64,
    /// Memory guard: never more than this many trades per symbol (plus the rest of a minute).
    pub max_trades: usize,
}

#[cfg(test)]
impl Retention {
    /// Keep every trade (unit tests).
    pub const KEEP_ALL: Retention = Retention {
        window_ms: i64::MAX,
        max_trades: usize::MAX,
    };
}

/// An aggTrades query whose answer would include evicted trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// The parameter that reaches too far back (`fromId`, `startTime`, `endTime` or `limit`).
    pub param: &'static str,
    /// Id of the oldest kept aggTrade (every older one was evicted).
    pub oldest_id: u64,
    /// Trade time of the oldest kept aggTrade, ms.
    pub oldest_ms: i64,
}

/// Contract status as in exchangeInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolStatus {
    /// Listed, not trading yet.
    PendingTrading,
    /// Trading.
    Trading,
    /// Delisting: no more trades.
    Settling,
    /// Delisted.
    Close,
}

impl SymbolStatus {
    /// The exchangeInfo spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolStatus::PendingTrading => "PENDING_TRADING",
            SymbolStatus::Trading => "TRADING",
            SymbolStatus::Settling => "SETTLING",
            SymbolStatus::Close => "CLOSE",
        }
    }
}

/// Where a symbol's trades come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeSource {
    /// The seeded generator.
    Synthetic,
    /// A replayed file.
    Replay,
}

/// Integer summary of one minute with trades (at the symbol's scales).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteStats {
    open_ms: i64,
    open: i64,
    high: i64,
    low: i64,
    close: i64,
    volume: i128,
    quote: i128,
    taker_volume: i128,
    taker_quote: i128,
    trades: u64,
    first_id: u64,
    last_id: u64,
}

impl MinuteStats {
    fn new(open_ms: i64, t: &StoredTrade) -> Self {
        MinuteStats {
            open_ms,
            open: t.price,
            high: t.price,
            low: t.price,
            close: t.price,
            volume: 0,
            quote: 0,
            taker_volume: 0,
            taker_quote: 0,
            trades: 0,
            first_id: t.first_id,
            last_id: t.first_id,
        }
    }

    fn add(&mut self, t: &StoredTrade) {
        let quote = i128::from(t.price) * i128::from(t.qty);
        self.high = self.high.max(t.price);
        self.low = self.low.min(t.price);
        self.close = t.price;
        self.volume += i128::from(t.qty);
        self.quote += quote;
        if !t.buyer_maker {
            self.taker_volume += i128::from(t.qty);
            self.taker_quote += quote;
        }
        self.trades += u64::from(t.count);
        self.last_id = t.last_id();
    }

    fn to_ref(&self, s: Scales) -> RefKline {
        let p = |m: i64| Decimal::new(m, s.price_dp);
        let q = |m: i128| Decimal::from_i128_with_scale(m, s.qty_dp);
        let pq = |m: i128| Decimal::from_i128_with_scale(m, s.price_dp + s.qty_dp);
        RefKline {
            open_time: self.open_ms,
            close_time: self.open_ms + MINUTE_MS - 1,
            open: p(self.open),
            high: p(self.high),
            low: p(self.low),
            close: p(self.close),
            volume: q(self.volume),
            quote_volume: pq(self.quote),
            trades: self.trades,
            taker_buy_volume: q(self.taker_volume),
            taker_buy_quote_volume: pq(self.taker_quote),
            first_id: self.first_id as i64,
            last_id: self.last_id as i64,
        }
    }
}

/// One symbol: its spec, lifecycle and stored trades.
#[derive(Debug)]
pub struct Book {
    /// Name, grid and activity.
    pub spec: SymbolSpec,
    /// `<lower>@aggTrade`.
    pub agg_stream: Arc<str>,
    /// Lifecycle status.
    pub status: SymbolStatus,
    /// Listing time.
    pub onboard_ms: i64,
    /// Delivery (delisting) time; the perpetual sentinel until delisted.
    pub delivery_ms: i64,
    /// When the next automatic status change happens (PENDING→TRADING, SETTLING→CLOSE).
    pub status_change_ms: Option<i64>,
    /// Synthetic or replayed.
    pub source: TradeSource,
    /// Kept trades, time-ordered.
    pub trades: VecDeque<StoredTrade>,
    minutes: VecDeque<MinuteStats>,
    /// Trades before this time were evicted (only their minute summaries remain); `i64::MIN`
    /// while none was.
    archived_until_ms: i64,
    /// Id and time of the newest evicted trade (None while none was).
    last_evicted: Option<(u64, i64)>,
    /// Earliest time whose data is still complete.
    horizon_ms: i64,
    /// Next aggregate id to assign.
    pub next_agg_id: u64,
    /// Next underlying trade id to assign.
    pub next_trade_id: u64,
    /// Current price mantissa (random walk state).
    pub price: i64,
    /// Time of the first trade ever.
    pub first_trade_ms: Option<i64>,
    /// Traded since the last `!miniTicker@arr` push.
    pub ticker_changed: bool,
    /// Stream faults: trades still to withhold from / duplicate on the aggTrade stream.
    pub skip_pending: u64,
    /// See `skip_pending`.
    pub dup_pending: u64,
}

impl Book {
    /// Price and quantity decimals.
    pub fn scales(&self) -> Scales {
        Scales {
            price_dp: self.spec.price_dp,
            qty_dp: self.spec.qty_dp,
        }
    }

    /// A stored trade as the reference aggregation sees it.
    pub fn to_ref(&self, t: &StoredTrade) -> RefTrade {
        RefTrade {
            agg_id: t.agg_id,
            price: Decimal::new(t.price, self.spec.price_dp),
            qty: Decimal::new(t.qty, self.spec.qty_dp),
            first_id: t.first_id,
            last_id: t.last_id(),
            time_ms: t.time_ms,
            buyer_maker: t.buyer_maker,
        }
    }

    fn trades_in(&self, from_ms: i64, to_ms: i64) -> impl Iterator<Item = &StoredTrade> {
        let lo = self.trades.partition_point(|t| t.time_ms < from_ms);
        let hi = self.trades.partition_point(|t| t.time_ms <= to_ms);
        self.trades.range(lo..hi.max(lo))
    }

    /// The time from which trades are complete when some were evicted (None: none evicted).
    pub fn kept_from_ms(&self) -> Option<i64> {
        (self.archived_until_ms != i64::MIN).then_some(self.archived_until_ms)
    }

    /// The earliest open time `iv` may serve: 1s klines only where every trade is kept.
    fn floor_for(&self, iv: Interval) -> i64 {
        if iv.is_minute_multiple() {
            self.horizon_ms
        } else {
            self.horizon_ms.max(self.archived_until_ms)
        }
    }

    fn price_before(&self, t_ms: i64) -> Option<Decimal> {
        let idx = self.trades.partition_point(|t| t.time_ms < t_ms);
        if idx > 0 {
            return Some(Decimal::new(self.trades[idx - 1].price, self.spec.price_dp));
        }
        let m = self.minutes.partition_point(|m| m.open_ms < t_ms);
        (m > 0).then(|| Decimal::new(self.minutes[m - 1].close, self.spec.price_dp))
    }
}

/// All symbols and the store limits.
#[derive(Debug)]
pub struct Market {
    /// Every symbol ever known, in listing order (index = symbol id).
    pub books: Vec<Book>,
    index: HashMap<String, usize>,
    retention: Retention,
    archive_minutes: usize,
}

impl Market {
    /// An empty market with the given store limits.
    pub fn new(retention: Retention, archive_minutes: usize) -> Self {
        Market {
            books: Vec::new(),
            index: HashMap::new(),
            retention,
            archive_minutes,
        }
    }

    /// Add a symbol; returns its index (the existing one if the name is taken).
    pub fn add(
        &mut self,
        spec: SymbolSpec,
        status: SymbolStatus,
        onboard_ms: i64,
        source: TradeSource,
    ) -> usize {
        if let Some(&i) = self.index.get(&spec.name) {
            return i;
        }
        let lower = spec.name.to_ascii_lowercase();
        let book = Book {
            agg_stream: Arc::from(format!("{lower}@aggTrade")),
            status,
            onboard_ms,
            delivery_ms: PERPETUAL_DELIVERY_MS,
            status_change_ms: None,
            source,
            trades: VecDeque::new(),
            minutes: VecDeque::new(),
            archived_until_ms: i64::MIN,
            last_evicted: None,
            horizon_ms: i64::MIN,
            next_agg_id: 1 + (spec.start_price as u64 % 1000) * 1000,
            next_trade_id: 1 + (spec.start_price as u64 % 1000) * 3000,
            price: spec.start_price,
            first_trade_ms: None,
            ticker_changed: false,
            skip_pending: 0,
            dup_pending: 0,
            spec,
        };
        self.index.insert(book.spec.name.clone(), self.books.len());
        self.books.push(book);
        self.books.len() - 1
    }

    /// Index of `name` (upper case).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Append a published trade (time-ordered per symbol) and apply retention.
    pub fn append(&mut self, idx: usize, t: StoredTrade) {
        let (retention, archive_minutes) = (self.retention, self.archive_minutes);
        let b = &mut self.books[idx];
        let minute = t.time_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        match b.minutes.back_mut() {
            Some(m) if m.open_ms == minute => m.add(&t),
            _ => {
                let mut m = MinuteStats::new(minute, &t);
                m.add(&t);
                b.minutes.push_back(m);
            }
        }
        b.first_trade_ms.get_or_insert(t.time_ms);
        b.price = t.price;
        b.ticker_changed = true;
        b.next_agg_id = b.next_agg_id.max(t.agg_id + 1);
        b.next_trade_id = b.next_trade_id.max(t.last_id() + 1);
        b.trades.push_back(t);
        evict(b, retention, archive_minutes);
    }

    /// Klines as `/fapi/v1/klines` answers them: open times in `[start, end]` (aligned up /
    /// down), the first `limit` from `start` when it is given, else the last `limit` up to
    /// `end` or now; from the symbol's first trade to now (or its delisting).
    pub fn klines(
        &self,
        idx: usize,
        iv: Interval,
        start: Option<i64>,
        end: Option<i64>,
        limit: usize,
        now_ms: i64,
    ) -> Vec<RefKline> {
        let b = &self.books[idx];
        let Some(first) = b.first_trade_ms else {
            return Vec::new();
        };
        let live = matches!(
            b.status,
            SymbolStatus::Trading | SymbolStatus::PendingTrading
        );
        let end_of_life = if live {
            now_ms
        } else {
            now_ms.min(b.delivery_ms)
        };
        let mut lo = iv.open_of(first.max(b.floor_for(iv)));
        let mut hi = iv.open_of(end_of_life);
        if let Some(s) = start {
            if s > end_of_life {
                return Vec::new();
            }
            let s = s.max(0);
            let open = iv.open_of(s);
            lo = lo.max(if open == s { s } else { iv.next_open(open) });
        }
        if let Some(e) = end {
            if e < 0 {
                return Vec::new();
            }
            hi = hi.min(iv.open_of(e.min(end_of_life)));
        }
        if lo > hi || limit == 0 {
            return Vec::new();
        }
        if start.is_some() {
            hi = hi.min(step_open(iv, lo, limit as i64 - 1));
        } else {
            lo = lo.max(step_open(iv, hi, 1 - limit as i64));
        }
        self.compute(idx, iv, lo, hi)
    }

    /// Reference klines of every interval opening in `[lo_open, hi_open]` (flat when empty,
    /// none before the first known price; no 1s klines where trades were evicted).
    pub fn compute(&self, idx: usize, iv: Interval, lo_open: i64, hi_open: i64) -> Vec<RefKline> {
        let b = &self.books[idx];
        let lo_open = if iv.is_minute_multiple() {
            lo_open
        } else {
            lo_open.max(b.archived_until_ms)
        };
        let scales = b.scales();
        let mut prev = b.price_before(lo_open);
        let mut out = Vec::new();
        let mut open = iv.open_of(lo_open);
        while open <= hi_open {
            let close = iv.close_of(open);
            let mut k = prev.map(|p| RefKline::flat(open, close, p, scales));
            if iv.is_minute_multiple() && open < b.archived_until_ms {
                let lo = b.minutes.partition_point(|m| m.open_ms < open);
                let hi = b
                    .minutes
                    .partition_point(|m| m.open_ms <= close.min(b.archived_until_ms - 1));
                for m in b.minutes.range(lo..hi.max(lo)) {
                    let mk = m.to_ref(scales);
                    k.get_or_insert_with(|| RefKline::flat(open, close, mk.open, scales))
                        .merge(&mk);
                }
            }
            for t in b.trades_in(open, close) {
                let rt = b.to_ref(t);
                k.get_or_insert_with(|| RefKline::flat(open, close, rt.price, scales))
                    .add_trade(&rt);
            }
            if let Some(k) = k {
                prev = Some(k.close);
                out.push(k);
            }
            open = iv.next_open(open);
        }
        out
    }

    /// aggTrades as `/fapi/v1/aggTrades` answers them (filters inclusive; without `fromId`
    /// and `startTime` the most recent `limit`).
    ///
    /// # Errors
    /// [`Evicted`] when the answer would reach before the oldest kept trade: `fromId` older
    /// than it, `startTime` before the kept time, or fewer than `limit` kept trades up to
    /// `endTime` (or now) after some were evicted.
    pub fn agg_trades(
        &self,
        idx: usize,
        from_id: Option<u64>,
        start: Option<i64>,
        end: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredTrade>, Evicted> {
        let b = &self.books[idx];
        let lo_id = from_id.map_or(0, |f| b.trades.partition_point(|t| t.agg_id < f));
        let lo_t = start.map_or(0, |s| b.trades.partition_point(|t| t.time_ms < s));
        let hi_t = end.map_or(b.trades.len(), |e| {
            b.trades.partition_point(|t| t.time_ms <= e)
        });
        check_kept(b, from_id, start, end, hi_t < limit)?;
        let lo = lo_id.max(lo_t);
        if lo >= hi_t {
            return Ok(Vec::new());
        }
        let (lo, hi) = if from_id.is_some() || start.is_some() {
            (lo, hi_t.min(lo + limit))
        } else {
            (lo.max(hi_t.saturating_sub(limit)), hi_t)
        };
        Ok(b.trades.range(lo..hi).copied().collect())
    }

    /// Rolling 24-hour statistics at one-minute granularity (None before the first trade).
    pub fn stats24(&self, idx: usize, now_ms: i64) -> Option<Stats24> {
        let b = &self.books[idx];
        let from = (now_ms - DAY_MS).div_euclid(MINUTE_MS) * MINUTE_MS;
        let lo = b.minutes.partition_point(|m| m.open_ms < from);
        let window = b.minutes.range(lo..);
        let last = b.minutes.back()?;
        let mut s = Stats24 {
            open: last.close,
            high: last.close,
            low: last.close,
            close: last.close,
            last_qty: b.trades.back().map_or(0, |t| t.qty),
            volume: 0,
            quote_volume: 0,
            count: 0,
            first_id: 0,
            last_id: 0,
            open_time: now_ms - DAY_MS,
            close_time: now_ms,
        };
        for (i, m) in window.enumerate() {
            if i == 0 {
                (s.open, s.high, s.low, s.first_id) = (m.open, m.high, m.low, m.first_id);
            }
            s.high = s.high.max(m.high);
            s.low = s.low.min(m.low);
            s.volume += m.volume;
            s.quote_volume += m.quote;
            s.count += m.trades;
            s.last_id = m.last_id;
        }
        Some(s)
    }

    /// Every kept trade of a symbol in the reference form.
    pub fn ref_trades(&self, idx: usize) -> Vec<RefTrade> {
        let b = &self.books[idx];
        b.trades.iter().map(|t| b.to_ref(t)).collect()
    }
}

/// Open time `n` intervals after (n > 0) or before (n < 0) `open`.
fn step_open(iv: Interval, open: i64, n: i64) -> i64 {
    match iv {
        Interval::Fixed(len) => open + n * len,
        _ => {
            let mut o = open;
            for _ in 0..n.unsigned_abs() {
                o = if n > 0 {
                    iv.next_open(o)
                } else {
                    iv.open_of(o - 1)
                };
            }
            o
        }
    }
}

/// Refuse an aggTrades query whose answer would include evicted trades.
fn check_kept(
    b: &Book,
    from_id: Option<u64>,
    start: Option<i64>,
    end: Option<i64>,
    short_page: bool,
) -> Result<(), Evicted> {
    let (Some((gone_id, gone_ms)), Some(oldest)) = (b.last_evicted, b.trades.front()) else {
        return Ok(());
    };
    let param = match (from_id, start) {
        (Some(f), _) if f <= gone_id => "fromId",
        (None, Some(s)) if s <= gone_ms => "startTime",
        (None, None) if short_page => match end {
            Some(_) => "endTime",
            None => "limit",
        },
        _ => return Ok(()),
    };
    Err(Evicted {
        param,
        oldest_id: oldest.agg_id,
        oldest_ms: oldest.time_ms,
    })
}

fn evict(b: &mut Book, retention: Retention, archive_minutes: usize) {
    if let Some(cutoff) = trade_cutoff(&b.trades, retention)
        && b.trades.front().is_some_and(|t| t.time_ms < cutoff)
    {
        while let Some(t) = b.trades.pop_front_if(|t| t.time_ms < cutoff) {
            b.last_evicted = Some((t.agg_id, t.time_ms));
        }
        b.archived_until_ms = cutoff;
    }
    while b.minutes.len() > archive_minutes {
        if let Some(m) = b.minutes.pop_front()
            && m.open_ms < b.archived_until_ms
        {
            b.horizon_ms = b.horizon_ms.max(m.open_ms + MINUTE_MS);
        }
    }
}

/// The minute before which trades may go: older than the window (but never one of the newest
/// `MIN_KEPT_TRADES`), or beyond the count guard. None: keep everything.
fn trade_cutoff(trades: &VecDeque<StoredTrade>, retention: Retention) -> Option<i64> {
    let len = trades.len();
    let newest = trades.back()?.time_ms;
    let by_time = (len > MIN_KEPT_TRADES).then(|| {
        newest
            .saturating_sub(retention.window_ms)
            .min(trades[len - MIN_KEPT_TRADES].time_ms)
    });
    let by_count = (len > retention.max_trades).then(|| trades[len - retention.max_trades].time_ms);
    let cut = match (by_time, by_count) {
        (Some(t), Some(c)) => t.max(c),
        (t, c) => t.or(c)?,
    };
    Some(cut.div_euclid(MINUTE_MS) * MINUTE_MS)
}

#[cfg(test)]
mod tests {
    use super::super::refagg::aggregate;
    use super::super::universe::named_spec;
    use super::*;

    fn trade(a: u64, t: i64, price: i64, qty: i64, m: bool) -> StoredTrade {
        StoredTrade {
            agg_id: a,
            first_id: a * 2,
            time_ms: t,
            price,
            qty,
            count: 2,
            event_delay_ms: 1,
            buyer_maker: m,
        }
    }

    fn by_count(max_trades: usize) -> Retention {
        Retention {
            window_ms: i64::MAX,
            max_trades,
        }
    }

    fn market(retention: Retention) -> (Market, usize) {
        let mut mk = Market::new(retention, 1440);
        let i = mk.add(
            named_spec("TESTUSDT", 2, 3, 100),
            SymbolStatus::Trading,
            0,
            TradeSource::Synthetic,
        );
        (mk, i)
    }

    /// `n` trades `step_ms` apart from 3_600_000 + step_ms; returns the last trade time.
    fn fill_every(mk: &mut Market, i: usize, n: u64, step_ms: i64) -> i64 {
        for a in 1..=n {
            let t = 3_600_000 + a as i64 * step_ms;
            let price = 10_000 + (a as i64 * 37 % 200);
            mk.append(i, trade(a, t, price, 1 + a as i64 % 5, a % 3 == 0));
        }
        3_600_000 + n as i64 * step_ms
    }

    fn fill(mk: &mut Market, i: usize, n: u64) {
        fill_every(mk, i, n, 1_700);
    }

    fn ids(trades: &[StoredTrade]) -> Vec<u64> {
        trades.iter().map(|t| t.agg_id).collect()
    }

    #[test]
    fn store_klines_equal_reference_aggregate() {
        let (mut mk, i) = market(Retention::KEEP_ALL);
        fill(&mut mk, i, 2_000);
        let refs = mk.ref_trades(i);
        let m1 = Interval::parse("1m").unwrap();
        let direct = aggregate(&refs, m1, 0, 10_000_000, None, mk.books[i].scales());
        let served = mk.compute(i, m1, 0, 10_000_000);
        assert_eq!(served, direct);
    }

    #[test]
    fn eviction_keeps_minute_klines_exact() {
        let (mut full, i) = market(Retention::KEEP_ALL);
        let (mut small, j) = market(by_count(100));
        fill(&mut full, i, 2_000);
        fill(&mut small, j, 2_000);
        assert!(small.books[j].trades.len() < 200);
        for name in ["1m", "5m", "1h"] {
            let iv = Interval::parse(name).unwrap();
            assert_eq!(
                full.compute(i, iv, 0, 10_000_000),
                small.compute(j, iv, 0, 10_000_000),
                "{name}"
            );
        }
    }

    #[test]
    fn rest_window_rules() {
        let (mut mk, i) = market(Retention::KEEP_ALL);
        fill(&mut mk, i, 2_000); // trades 3_601_700 .. 7_000_000
        let m1 = Interval::parse("1m").unwrap();
        let now = 7_000_000;
        let latest = mk.klines(i, m1, None, None, 5, now);
        assert_eq!(latest.len(), 5);
        assert_eq!(
            latest[4].open_time,
            m1.open_of(now),
            "current open kline included"
        );
        let from = mk.klines(i, m1, Some(3_600_001), None, 3, now);
        assert_eq!(from[0].open_time, 3_660_000, "aligned up");
        let upto = mk.klines(i, m1, None, Some(3_720_000), 500, now);
        assert_eq!(
            upto.first().unwrap().open_time,
            3_600_000,
            "nothing before the first trade"
        );
        assert_eq!(upto.last().unwrap().open_time, 3_720_000);
        let trades = mk.agg_trades(i, Some(10), None, None, 3).unwrap();
        assert_eq!(ids(&trades), vec![10, 11, 12]);
        let recent = mk.agg_trades(i, None, None, None, 2).unwrap();
        assert_eq!(ids(&recent), vec![1999, 2000]);
        let s = mk.stats24(i, now).unwrap();
        assert_eq!(s.count, 4_000);
    }

    /// 30k trades 100 ms apart (50 min) under a 10-minute window: everything before the window
    /// is gone, so 1s klines there are absent (not flat) and aggTrades refuse to reach there.
    #[test]
    fn evicted_time_serves_no_1s_klines_and_refuses_agg_trades() {
        let window = Retention {
            window_ms: 600_000,
            max_trades: usize::MAX,
        };
        let (mut mk, i) = market(window);
        let (mut full, j) = market(Retention::KEEP_ALL);
        let now = fill_every(&mut mk, i, 30_000, 100);
        fill_every(&mut full, j, 30_000, 100);
        let kept_from = mk.books[i].kept_from_ms().expect("trades were evicted");
        assert_eq!(kept_from, (now - 600_000).div_euclid(MINUTE_MS) * MINUTE_MS);
        let s1 = Interval::parse("1s").unwrap();
        let t0 = 3_600_000;
        assert_eq!(
            mk.klines(i, s1, Some(t0), Some(kept_from - 1), 1000, now),
            Vec::new(),
            "no 1s klines, flat or otherwise, for evicted time"
        );
        assert_eq!(mk.compute(i, s1, t0, kept_from - 1), Vec::new());
        let served = mk.klines(i, s1, Some(t0), None, 1000, now);
        assert_eq!(
            served[0].open_time, kept_from,
            "1s klines start where trades are kept"
        );
        assert_eq!(served, full.klines(j, s1, Some(kept_from), None, 1000, now));
        let latest = mk.klines(i, s1, None, None, 1500, now);
        assert_eq!(latest, full.klines(j, s1, Some(kept_from), None, 1500, now));
        let m1 = Interval::parse("1m").unwrap();
        assert_eq!(mk.compute(i, m1, 0, now), full.compute(j, m1, 0, now));

        let oldest = mk.books[i].trades[0];
        assert_eq!(oldest.time_ms, kept_from);
        let refused = |param| {
            Err(Evicted {
                param,
                oldest_id: oldest.agg_id,
                oldest_ms: oldest.time_ms,
            })
        };
        assert_eq!(mk.agg_trades(i, Some(1), None, None, 10), refused("fromId"));
        let last_gone = Some(oldest.agg_id - 1);
        assert_eq!(
            mk.agg_trades(i, last_gone, None, None, 10),
            refused("fromId")
        );
        assert_eq!(
            mk.agg_trades(i, None, Some(t0), None, 10),
            refused("startTime")
        );
        let before = Some(kept_from - 1);
        assert_eq!(mk.agg_trades(i, None, None, before, 10), refused("endTime"));
        let few = Some(kept_from + 5_000); // 50 kept trades up to there
        assert_eq!(mk.agg_trades(i, None, None, few, 100), refused("endTime"));
        assert_eq!(
            ids(&mk.agg_trades(i, None, None, few, 50).unwrap()).len(),
            50
        );
        let from = mk
            .agg_trades(i, Some(oldest.agg_id), None, None, 3)
            .unwrap();
        assert_eq!(ids(&from)[0], oldest.agg_id);
        let since = mk.agg_trades(i, None, Some(kept_from), None, 3).unwrap();
        assert_eq!(ids(&since)[0], oldest.agg_id);
        assert_eq!(
            mk.agg_trades(i, None, None, None, 1000).unwrap().len(),
            1000
        );
    }

    /// The window never takes a quiet symbol's newest 1000 trades; the count guard does.
    #[test]
    fn retention_keeps_a_full_page_and_obeys_the_count_guard() {
        let window = Retention {
            window_ms: 600_000,
            max_trades: usize::MAX,
        };
        let (mut quiet, i) = market(window);
        fill_every(&mut quiet, i, 3_000, 10_000); // one trade per 10 s for 8 h 20 min
        let kept = quiet.books[i].trades.len();
        assert!(
            (MIN_KEPT_TRADES..MIN_KEPT_TRADES + 7).contains(&kept),
            "{kept}"
        );
        assert_eq!(
            quiet.agg_trades(i, None, None, None, 1000).unwrap().len(),
            1000
        );
        let (mut guarded, j) = market(Retention {
            window_ms: i64::MAX,
            max_trades: 5_000,
        });
        fill_every(&mut guarded, j, 30_000, 100);
        let kept = guarded.books[j].trades.len();
        assert!((5_000..5_000 + 600).contains(&kept), "{kept}");
    }

    /// With the simulator's default retention, a busy symbol (250 aggTrades/s) keeps every
    /// trade of the default 10 minutes of `klagg sim` history plus a 1000-bar 1s backfill: the
    /// 1s klines of all of it add up to every trade (20 000 kept trades did not).
    #[test]
    fn default_retention_covers_history_and_a_1s_backfill() {
        let cfg = super::super::SimConfig::default();
        let (mut mk, i) = market(Retention {
            window_ms: cfg.trade_retention.as_millis() as i64,
            max_trades: cfg.trade_retention_max,
        });
        let n = 250 * (600 + 1000);
        let now = fill_every(&mut mk, i, n, 4);
        assert_eq!(mk.books[i].kept_from_ms(), None, "nothing evicted");
        let s1 = Interval::parse("1s").unwrap();
        let klines = mk.compute(i, s1, 3_600_000, now);
        assert_eq!(klines.len(), 1_601);
        assert_eq!(klines.iter().map(|k| k.trades).sum::<u64>(), 2 * n);
        assert!(klines.iter().all(|k| k.trades > 0), "no flat 1s klines");
    }
}
