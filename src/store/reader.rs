//! Store reader (any control thread: the gateway's request threads, the history backfiller):
//! one read-only SQLite connection per [`Reader`], reading beside the writer thread (WAL mode
//! gives every read a consistent snapshot without blocking the writer). A `Reader` is `Send` but
//! not `Sync`: each thread opens its own.

use std::path::{Path, PathBuf};

use klagg_shards::kline::{Interval, Kline, Scales};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use super::codec::{DecimalColumns, decode_into};
use super::schema::{BUSY_TIMEOUT, check_header, classify, probe_schema, read_header};
use super::{Source, StoreError, StoredKline};

/// `limit` of `GET /fapi/v1/klines` when none is given.
pub const KLINES_LIMIT_DEFAULT: u32 = 500;
/// The largest `limit` of `GET /fapi/v1/klines`.
pub const KLINES_LIMIT_MAX: u32 = 1500;
const STATEMENT_CACHE_CAPACITY: usize = 16;

const KLINE_COLUMNS: &str = "open_time, close_time, open, high, low, close, volume, \
    quote_volume, trade_count, taker_buy_volume, taker_buy_quote_volume, first_trade_id, \
    last_trade_id, closed, source";

/// A symbol as registered in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolInfo {
    pub name: String,
    pub scales: Scales,
}

/// What the store holds for one period (for the history planner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodState {
    pub open_time_ms: i64,
    pub closed: bool,
    pub source: Source,
}

/// A read-only connection to the store.
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

impl Reader {
    /// Open a read-only connection and check it is a klagg store of this schema version.
    ///
    /// # Errors
    /// The same clear errors as [`super::Store::open`] (missing file, corrupt, foreign, schema
    /// version).
    pub fn open(path: impl AsRef<Path>) -> Result<Reader, StoreError> {
        let path = path.as_ref().to_path_buf();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| StoreError::Open {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| classify(&path, e))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        let header = read_header(&conn).map_err(|e| classify(&path, e))?;
        check_header(&path, &header)?;
        probe_schema(&conn, &path)?;
        Ok(Reader { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The registered symbols, by name.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn symbols(&self) -> Result<Vec<SymbolInfo>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT name, price_scale, qty_scale FROM symbols ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok(SymbolInfo {
                name: row.get(0)?,
                scales: scales_of(row, 1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A symbol's current decimal places, `None` when it was never registered.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn scales(&self, symbol: &str) -> Result<Option<Scales>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT price_scale, qty_scale FROM symbols WHERE name = ?1")?;
        Ok(statement
            .query_row([symbol], |row| scales_of(row, 0))
            .optional()?)
    }

    /// Klines with the semantics of `GET /fapi/v1/klines`: ascending by open time; `start_ms`
    /// and `end_ms` bound the open time inclusively; with only `end_ms` (or neither) the latest
    /// `limit` up to it; `limit` defaults to [`KLINES_LIMIT_DEFAULT`] and is clamped to
    /// `1..=`[`KLINES_LIMIT_MAX`] (the API layer reports out-of-range values itself). A stored
    /// open kline is included. `start_ms > end_ms` gives no klines.
    ///
    /// # Errors
    /// [`StoreError::UnknownSymbol`], a stored row that does not parse, SQLite errors.
    pub fn klines(
        &self,
        symbol: &str,
        interval: Interval,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<Kline>, StoreError> {
        let rows = self.stored_klines(symbol, interval, start_ms, end_ms, limit)?;
        Ok(rows.into_iter().map(|row| row.kline).collect())
    }

    /// [`Reader::klines`] with each row's `closed` flag and [`Source`].
    ///
    /// # Errors
    /// As [`Reader::klines`].
    pub fn stored_klines(
        &self,
        symbol: &str,
        interval: Interval,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<StoredKline>, StoreError> {
        let scales = self.require_scales(symbol)?;
        let limit = limit
            .unwrap_or(KLINES_LIMIT_DEFAULT)
            .clamp(1, KLINES_LIMIT_MAX);
        let (low, high) = (start_ms.unwrap_or(i64::MIN), end_ms.unwrap_or(i64::MAX));
        // With a start, the first `limit` from it; otherwise the latest `limit` up to the end.
        let order = if start_ms.is_some() { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {KLINE_COLUMNS} FROM klines WHERE symbol = ?1 AND interval = ?2 \
             AND open_time BETWEEN ?3 AND ?4 ORDER BY open_time {order} LIMIT ?5"
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params![
            symbol,
            interval.as_str(),
            low,
            high,
            i64::from(limit)
        ])?;
        let mut out = Vec::with_capacity(limit as usize);
        while let Some(row) = rows.next()? {
            out.push(decode_row(row, symbol, interval, scales)?);
        }
        if start_ms.is_none() {
            out.reverse();
        }
        Ok(out)
    }

    /// The stored kline with the latest open time (open or closed).
    ///
    /// # Errors
    /// [`StoreError::UnknownSymbol`], a row that does not parse, SQLite errors.
    pub fn last_stored(
        &self,
        symbol: &str,
        interval: Interval,
    ) -> Result<Option<StoredKline>, StoreError> {
        self.last_where(symbol, interval, "")
    }

    /// The closed kline with the latest open time.
    ///
    /// # Errors
    /// As [`Reader::last_stored`].
    pub fn last_closed(
        &self,
        symbol: &str,
        interval: Interval,
    ) -> Result<Option<StoredKline>, StoreError> {
        self.last_where(symbol, interval, "AND closed = 1")
    }

    fn last_where(
        &self,
        symbol: &str,
        interval: Interval,
        condition: &str,
    ) -> Result<Option<StoredKline>, StoreError> {
        let scales = self.require_scales(symbol)?;
        let sql = format!(
            "SELECT {KLINE_COLUMNS} FROM klines WHERE symbol = ?1 AND interval = ?2 {condition} \
             ORDER BY open_time DESC LIMIT 1"
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params![symbol, interval.as_str()])?;
        match rows.next()? {
            Some(row) => Ok(Some(decode_row(row, symbol, interval, scales)?)),
            None => Ok(None),
        }
    }

    /// The number of stored klines of a symbol and interval (0 for an unknown symbol).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn count(&self, symbol: &str, interval: Interval) -> Result<u64, StoreError> {
        self.count_between(symbol, interval, i64::MIN, i64::MAX)
    }

    /// The number of stored klines with `first_open_ms ≤ open time ≤ last_open_ms`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn count_between(
        &self,
        symbol: &str,
        interval: Interval,
        first_open_ms: i64,
        last_open_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT count(*) FROM klines WHERE symbol = ?1 AND interval = ?2 \
             AND open_time BETWEEN ?3 AND ?4",
        )?;
        let count: i64 = statement.query_row(
            rusqlite::params![symbol, interval.as_str(), first_open_ms, last_open_ms],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Per stored period in `[first_open_ms, last_open_ms]`, ascending: closed or not and its
    /// source (no decimals parsed; the history planner's input).
    ///
    /// # Errors
    /// SQLite errors, an unknown `source` value.
    pub fn period_states(
        &self,
        symbol: &str,
        interval: Interval,
        first_open_ms: i64,
        last_open_ms: i64,
    ) -> Result<Vec<PeriodState>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT open_time, closed, source FROM klines WHERE symbol = ?1 AND interval = ?2 \
             AND open_time BETWEEN ?3 AND ?4 ORDER BY open_time ASC",
        )?;
        let mut rows = statement.query(rusqlite::params![
            symbol,
            interval.as_str(),
            first_open_ms,
            last_open_ms
        ])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let open_time_ms: i64 = row.get(0)?;
            out.push(PeriodState {
                open_time_ms,
                closed: row.get::<_, i64>(1)? != 0,
                source: source_of(row, 2, symbol, interval, open_time_ms)?,
            });
        }
        Ok(out)
    }

    /// The ranges `(first_open_ms, last_open_ms)` the venue was asked for and had no klines in,
    /// overlapping `[first_open_ms, last_open_ms]`, ascending.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn venue_gaps(
        &self,
        symbol: &str,
        interval: Interval,
        first_open_ms: i64,
        last_open_ms: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT first_open, last_open FROM venue_gaps WHERE symbol = ?1 AND interval = ?2 \
             AND first_open <= ?4 AND last_open >= ?3 ORDER BY first_open ASC",
        )?;
        let rows = statement.query_map(
            rusqlite::params![symbol, interval.as_str(), first_open_ms, last_open_ms],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn require_scales(&self, symbol: &str) -> Result<Scales, StoreError> {
        self.scales(symbol)?
            .ok_or_else(|| StoreError::UnknownSymbol(symbol.to_string()))
    }
}

fn scales_of(row: &Row<'_>, first: usize) -> Result<Scales, rusqlite::Error> {
    let scale = |index: usize| -> Result<u8, rusqlite::Error> {
        let value: i64 = row.get(index)?;
        u8::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
    };
    Ok(Scales {
        price: scale(first)?,
        qty: scale(first + 1)?,
    })
}

fn source_of(
    row: &Row<'_>,
    index: usize,
    symbol: &str,
    interval: Interval,
    open_time_ms: i64,
) -> Result<Source, StoreError> {
    let text: String = row.get(index)?;
    Source::from_column(&text).ok_or_else(|| StoreError::BadRow {
        symbol: symbol.to_string(),
        interval,
        open_time_ms,
        column: "source",
        detail: format!("unknown source {text:?}"),
    })
}

/// Decode one row selected with [`KLINE_COLUMNS`].
fn decode_row(
    row: &Row<'_>,
    symbol: &str,
    interval: Interval,
    scales: Scales,
) -> Result<StoredKline, StoreError> {
    let open_time_ms: i64 = row.get(0)?;
    let bad = |column: &'static str, detail: String| StoreError::BadRow {
        symbol: symbol.to_string(),
        interval,
        open_time_ms,
        column,
        detail,
    };
    let trade_count: i64 = row.get(8)?;
    let mut kline = Kline {
        open_time_ms,
        close_time_ms: row.get(1)?,
        trade_count: u64::try_from(trade_count)
            .map_err(|_| bad("trade_count", format!("negative: {trade_count}")))?,
        first_trade_id: row.get(11)?,
        last_trade_id: row.get(12)?,
        ..Kline::default()
    };
    let columns = DecimalColumns {
        open: text_ref(row, 2)?,
        high: text_ref(row, 3)?,
        low: text_ref(row, 4)?,
        close: text_ref(row, 5)?,
        volume: text_ref(row, 6)?,
        quote_volume: text_ref(row, 7)?,
        taker_buy_volume: text_ref(row, 9)?,
        taker_buy_quote_volume: text_ref(row, 10)?,
    };
    decode_into(&columns, scales, &mut kline)
        .map_err(|(column, error)| bad(column, format!("{error} (scales {scales:?})")))?;
    Ok(StoredKline {
        kline,
        closed: row.get::<_, i64>(13)? != 0,
        source: source_of(row, 14, symbol, interval, open_time_ms)?,
    })
}

fn text_ref<'row>(row: &'row Row<'_>, index: usize) -> Result<&'row str, rusqlite::Error> {
    row.get_ref(index)?.as_str().map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::Store;
    use klagg_bench::testdata::TempDir;

    #[test]
    fn a_fresh_store_reads_empty() {
        let dir = TempDir::new("reader-fresh");
        let store = Store::open(dir.db()).unwrap();
        let reader = store.reader().unwrap();
        assert_eq!(reader.path(), dir.db());
        assert!(reader.symbols().unwrap().is_empty());
        assert_eq!(reader.scales("BTCUSDT").unwrap(), None);
        assert_eq!(reader.count("BTCUSDT", Interval::M1).unwrap(), 0);
        assert!(
            reader
                .period_states("BTCUSDT", Interval::M1, 0, i64::MAX)
                .unwrap()
                .is_empty()
        );
        assert!(
            reader
                .venue_gaps("BTCUSDT", Interval::M1, 0, i64::MAX)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            reader.last_stored("BTCUSDT", Interval::M1),
            Err(StoreError::UnknownSymbol(name)) if name == "BTCUSDT"
        ));
    }

    #[test]
    fn a_row_that_does_not_parse_is_a_clear_error() {
        let dir = TempDir::new("reader-bad-row");
        let store = Store::open(dir.db()).unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO symbols VALUES ('BTCUSDT', 2, 3, 0);
                 INSERT INTO klines VALUES ('BTCUSDT', '1m', 0, 59999, '1.00', '1.005', '1.00',
                   '1.00', '0', '0', 0, '0', '0', -1, -1, 1, 'live', 0);",
            )
            .unwrap();
        let reader = store.reader().unwrap();
        let err = reader
            .klines("BTCUSDT", Interval::M1, None, None, None)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::BadRow { column: "high", .. }),
            "{text}"
        );
        assert!(text.contains("BTCUSDT 1m at open time 0"), "{text}");
    }
}
