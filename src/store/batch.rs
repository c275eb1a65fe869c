//! The store writer's batch (store writer thread only): the writes received and not yet
//! committed, and the SQL that applies them in one transaction with cached prepared statements.
//! Every kline write is an upsert guarded by the source precedence (see [`super`]).

use std::sync::Arc;

use klagg_shards::kline::{Interval, Kline, Scales, flat_run_klines};
use klagg_shards::protocol::SymbolIndex;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::Source;
use super::codec::KlineText;
use super::history::KlineRequest;
use super::reader::KLINES_LIMIT_MAX;

const UPSERT_SYMBOL_SQL: &str = "INSERT INTO symbols (name, price_scale, qty_scale, updated_ms) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET price_scale = excluded.price_scale, \
    qty_scale = excluded.qty_scale, updated_ms = excluded.updated_ms";

/// The rank of a row in SQL, the same as [`Source::rank`].
macro_rules! rank_sql {
    ($table:literal) => {
        concat!(
            "(CASE ",
            $table,
            ".source WHEN 'flat_fill' THEN 0 WHEN 'rest' THEN 2 WHEN 'repair' THEN 4 \
             ELSE 1 + 2 * ",
            $table,
            ".closed END)"
        )
    };
}

const UPSERT_KLINE_SQL: &str = concat!(
    "INSERT INTO klines (symbol, interval, open_time, close_time, open, high, low, close, \
     volume, quote_volume, trade_count, taker_buy_volume, taker_buy_quote_volume, \
     first_trade_id, last_trade_id, closed, source, updated_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
     ON CONFLICT (symbol, interval, open_time) DO UPDATE SET close_time = excluded.close_time, \
     open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close, \
     volume = excluded.volume, quote_volume = excluded.quote_volume, \
     trade_count = excluded.trade_count, taker_buy_volume = excluded.taker_buy_volume, \
     taker_buy_quote_volume = excluded.taker_buy_quote_volume, \
     first_trade_id = excluded.first_trade_id, last_trade_id = excluded.last_trade_id, \
     closed = excluded.closed, source = excluded.source, updated_ms = excluded.updated_ms \
     WHERE ",
    rank_sql!("excluded"),
    " >= ",
    rank_sql!("klines")
);

/// The stored values a repair is compared with (the REST fields and `closed`).
const SELECT_REPAIR_SQL: &str = "SELECT close_time, open, high, low, close, volume, \
    quote_volume, trade_count, taker_buy_volume, taker_buy_quote_volume, closed FROM klines \
    WHERE symbol = ?1 AND interval = ?2 AND open_time = ?3";

const INSERT_GAP_SQL: &str = "INSERT INTO venue_gaps (symbol, interval, first_open, last_open, \
    recorded_ms) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (symbol, interval, first_open) \
    DO UPDATE SET last_open = max(last_open, excluded.last_open), recorded_ms = excluded.recorded_ms";

const DELETE_FLAT_FILLS_SQL: &str = "DELETE FROM klines WHERE symbol = ?1 AND interval = ?2 \
    AND open_time BETWEEN ?3 AND ?4 AND source = 'flat_fill'";

/// A registered symbol, as the writer refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SymbolRef {
    pub name: Arc<str>,
    pub scales: Scales,
}

/// One received write.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    /// Insert or update the `symbols` row.
    Symbol(SymbolRef),
    /// One kline (closed live kline, correction).
    Kline {
        symbol: SymbolRef,
        interval: Interval,
        kline: Kline,
        closed: bool,
        source: Source,
    },
    /// Consecutive flat live klines.
    FlatRun {
        symbol: SymbolRef,
        interval: Interval,
        first_open_ms: i64,
        count: u64,
        price: i64,
    },
    /// Klines fetched from the venue (or flat fills), with the request that fetched them.
    Backfill {
        index: SymbolIndex,
        symbol: SymbolRef,
        interval: Interval,
        klines: Vec<Kline>,
        source: Source,
        request: Option<KlineRequest>,
    },
}

impl Write {
    /// How many `klines` rows this write touches (for batch sizing).
    pub fn rows(&self) -> u64 {
        match self {
            Write::Symbol(_) => 0,
            Write::Kline { .. } => 1,
            Write::FlatRun { count, .. } => *count,
            Write::Backfill { klines, .. } => klines.len() as u64,
        }
    }
}

/// The latest open kline of a symbol and interval, written at the snapshot interval.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub symbol: SymbolRef,
    pub interval: Interval,
    pub kline: Kline,
}

/// What one committed transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CommitStats {
    pub written: u64,
    pub kept: u64,
    pub refused: u64,
    pub snapshots: u64,
    pub open_skipped: u64,
    pub gaps: u64,
    /// Repair klines that replaced a different stored row (or filled a hole).
    pub repaired: u64,
    /// Repair klines equal to the stored closed row (left as it was).
    pub confirmed: u64,
}

/// Applies writes in one transaction (owns the text buffers reused for every row).
#[derive(Debug, Default)]
pub(crate) struct Batcher {
    text: KlineText,
    /// The klines repairs changed in the last committed transaction (symbol, interval, kline).
    pub repaired: Vec<(SymbolIndex, Interval, Kline)>,
}

impl Batcher {
    /// Apply `writes`, then `snapshots`, in one `IMMEDIATE` transaction. On error nothing is
    /// applied (the transaction rolls back) and the caller keeps everything for a retry.
    pub fn commit<'a>(
        &mut self,
        conn: &mut Connection,
        writes: &[Write],
        snapshots: impl Iterator<Item = &'a Snapshot>,
        now_ms: i64,
    ) -> Result<CommitStats, rusqlite::Error> {
        self.repaired.clear();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stats = CommitStats::default();
        for write in writes {
            self.apply(&tx, write, now_ms, &mut stats)?;
        }
        for snapshot in snapshots {
            let row = Row::live(&snapshot.symbol, snapshot.interval, false);
            self.upsert(&tx, &row, &snapshot.kline, now_ms, &mut stats)?;
            stats.snapshots += 1;
        }
        tx.commit()?;
        Ok(stats)
    }

    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        write: &Write,
        now_ms: i64,
        stats: &mut CommitStats,
    ) -> Result<(), rusqlite::Error> {
        match write {
            Write::Symbol(symbol) => {
                let mut statement = tx.prepare_cached(UPSERT_SYMBOL_SQL)?;
                statement.execute(params![
                    &*symbol.name,
                    symbol.scales.price,
                    symbol.scales.qty,
                    now_ms
                ])?;
            }
            Write::Kline {
                symbol,
                interval,
                kline,
                closed,
                source,
            } => {
                let row = Row {
                    symbol,
                    interval: *interval,
                    closed: *closed,
                    source: *source,
                };
                self.upsert(tx, &row, kline, now_ms, stats)?;
            }
            Write::FlatRun {
                symbol,
                interval,
                first_open_ms,
                count,
                price,
            } => {
                let row = Row::live(symbol, *interval, true);
                for kline in flat_run_klines(*interval, *first_open_ms, *count, *price) {
                    self.upsert(tx, &row, &kline, now_ms, stats)?;
                }
            }
            Write::Backfill { .. } => self.backfill(tx, write, now_ms, stats)?,
        }
        Ok(())
    }

    fn backfill(
        &mut self,
        tx: &Transaction<'_>,
        write: &Write,
        now_ms: i64,
        stats: &mut CommitStats,
    ) -> Result<(), rusqlite::Error> {
        let Write::Backfill {
            index,
            symbol,
            interval,
            klines,
            source,
            request,
        } = write
        else {
            return Ok(());
        };
        let (interval, source) = (*interval, *source);
        let row = Row {
            symbol,
            interval,
            closed: true,
            source,
        };
        for kline in klines {
            if kline.open_time_ms != interval.open_time(kline.open_time_ms) {
                stats.refused += 1;
            } else if kline.close_time_ms >= now_ms {
                stats.open_skipped += 1;
            } else if source != Source::Repair {
                self.upsert(tx, &row, kline, now_ms, stats)?;
            } else if self.equals_stored(tx, &row, kline)? {
                stats.confirmed += 1;
            } else {
                let written = stats.written;
                self.upsert(tx, &row, kline, now_ms, stats)?;
                if stats.written > written {
                    stats.repaired += 1;
                    self.repaired.push((*index, interval, *kline));
                }
            }
        }
        if let Some(request) = request {
            for (first, last) in venue_gaps(interval, request, klines) {
                record_gap(tx, symbol, interval, first, last, now_ms)?;
                stats.gaps += 1;
            }
        }
        Ok(())
    }

    /// True when the stored row of `kline`'s period is closed and has its REST fields.
    fn equals_stored(
        &mut self,
        tx: &Transaction<'_>,
        row: &Row<'_>,
        kline: &Kline,
    ) -> Result<bool, rusqlite::Error> {
        self.text.encode(kline, row.symbol.scales);
        let text = &self.text;
        let mut statement = tx.prepare_cached(SELECT_REPAIR_SQL)?;
        let key = params![&*row.symbol.name, row.interval.as_str(), kline.open_time_ms];
        let mut rows = statement.query(key)?;
        let Some(stored) = rows.next()? else {
            return Ok(false);
        };
        let texts = [
            (1, &text.open),
            (2, &text.high),
            (3, &text.low),
            (4, &text.close),
            (5, &text.volume),
            (6, &text.quote_volume),
            (8, &text.taker_buy_volume),
            (9, &text.taker_buy_quote_volume),
        ];
        for (index, expected) in texts {
            if stored.get_ref(index)?.as_str().ok() != Some(expected.as_str()) {
                return Ok(false);
            }
        }
        let count = i64::try_from(kline.trade_count).unwrap_or(-1);
        Ok(stored.get::<_, i64>(0)? == kline.close_time_ms
            && stored.get::<_, i64>(7)? == count
            && stored.get::<_, i64>(10)? == 1)
    }

    fn upsert(
        &mut self,
        tx: &Transaction<'_>,
        row: &Row<'_>,
        kline: &Kline,
        now_ms: i64,
        stats: &mut CommitStats,
    ) -> Result<(), rusqlite::Error> {
        let Ok(trade_count) = i64::try_from(kline.trade_count) else {
            stats.refused += 1;
            return Ok(());
        };
        self.text.encode(kline, row.symbol.scales);
        let text = &self.text;
        let mut statement = tx.prepare_cached(UPSERT_KLINE_SQL)?;
        let changed = statement.execute(params![
            &*row.symbol.name,
            row.interval.as_str(),
            kline.open_time_ms,
            kline.close_time_ms,
            text.open,
            text.high,
            text.low,
            text.close,
            text.volume,
            text.quote_volume,
            trade_count,
            text.taker_buy_volume,
            text.taker_buy_quote_volume,
            kline.first_trade_id,
            kline.last_trade_id,
            row.closed,
            row.source.as_str(),
            now_ms,
        ])?;
        if changed > 0 {
            stats.written += 1;
        } else {
            stats.kept += 1;
        }
        Ok(())
    }
}

/// The key and provenance of the rows of one write.
#[derive(Debug, Clone, Copy)]
struct Row<'a> {
    symbol: &'a SymbolRef,
    interval: Interval,
    closed: bool,
    source: Source,
}

impl<'a> Row<'a> {
    fn live(symbol: &'a SymbolRef, interval: Interval, closed: bool) -> Row<'a> {
        Row {
            symbol,
            interval,
            closed,
            source: Source::Live,
        }
    }
}

fn record_gap(
    tx: &Transaction<'_>,
    symbol: &SymbolRef,
    interval: Interval,
    first_open_ms: i64,
    last_open_ms: i64,
    now_ms: i64,
) -> Result<(), rusqlite::Error> {
    let key = (&*symbol.name, interval.as_str());
    tx.prepare_cached(INSERT_GAP_SQL)?.execute(params![
        key.0,
        key.1,
        first_open_ms,
        last_open_ms,
        now_ms
    ])?;
    tx.prepare_cached(DELETE_FLAT_FILLS_SQL)?.execute(params![
        key.0,
        key.1,
        first_open_ms,
        last_open_ms
    ])?;
    Ok(())
}

/// The open-time ranges `(first, last)` that `request` covered and the venue returned no kline
/// for. The request covered `[start, end]` unless it came back full (`limit` klines): then only up
/// to the last kline returned. A malformed request (unaligned start, `start > end`, a limit
/// outside `1..=1500`) records nothing.
pub(crate) fn venue_gaps(
    interval: Interval,
    request: &KlineRequest,
    klines: &[Kline],
) -> Vec<(i64, i64)> {
    let start = request.start_ms;
    let valid = start == interval.open_time(start)
        && start <= request.end_ms
        && (1..=KLINES_LIMIT_MAX).contains(&request.limit);
    if !valid {
        return Vec::new();
    }
    let mut opens: Vec<i64> = klines
        .iter()
        .map(|k| k.open_time_ms)
        .filter(|&open| open >= start && open <= request.end_ms)
        .collect();
    opens.sort_unstable();
    opens.dedup();
    let covered_last = if klines.len() >= request.limit as usize {
        match opens.last() {
            Some(&last) => last,
            None => return Vec::new(),
        }
    } else {
        interval.open_time(request.end_ms)
    };
    let mut gaps = Vec::new();
    let mut cursor = start;
    for open in opens {
        if open > cursor {
            gaps.push((cursor, interval.open_time(open - 1)));
        }
        cursor = interval.next_open(open);
    }
    if cursor <= covered_last {
        gaps.push((cursor, covered_last));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn request(start_ms: i64, end_ms: i64, limit: u32) -> KlineRequest {
        KlineRequest {
            start_ms,
            end_ms,
            limit,
        }
    }

    fn opens(list: &[i64]) -> Vec<Kline> {
        list.iter()
            .map(|&open| Kline::flat(Interval::M1, open * MIN, 1))
            .collect()
    }

    #[test]
    fn venue_gaps_before_a_listing_and_in_between() {
        let gaps = venue_gaps(Interval::M1, &request(0, 9 * MIN, 10), &opens(&[4, 5, 8]));
        assert_eq!(
            gaps,
            vec![(0, 3 * MIN), (6 * MIN, 7 * MIN), (9 * MIN, 9 * MIN)]
        );
        let none = venue_gaps(Interval::M1, &request(0, 9 * MIN, 10), &[]);
        assert_eq!(none, vec![(0, 9 * MIN)]);
    }

    #[test]
    fn a_full_response_covers_only_up_to_its_last_kline() {
        let gaps = venue_gaps(Interval::M1, &request(0, 99 * MIN, 3), &opens(&[2, 3, 4]));
        assert_eq!(gaps, vec![(0, MIN)]);
    }

    #[test]
    fn malformed_requests_record_nothing() {
        let klines = opens(&[5]);
        assert!(venue_gaps(Interval::M1, &request(1, 9 * MIN, 10), &klines).is_empty());
        assert!(venue_gaps(Interval::M1, &request(9 * MIN, 0, 10), &klines).is_empty());
        assert!(venue_gaps(Interval::M1, &request(0, 9 * MIN, 0), &klines).is_empty());
        assert!(venue_gaps(Interval::M1, &request(0, 9 * MIN, 1501), &klines).is_empty());
    }
}
