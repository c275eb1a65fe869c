//! The SQLite kline store (types shared by its threads): the writer thread ([`writer`]) owns the
//! one read-write connection; readers ([`reader`], one connection each) serve the klines API and
//! the history planner ([`history`]) beside it, which WAL mode allows.
//!
//! # Schema (version [`SCHEMA_VERSION`], `PRAGMA user_version`; `PRAGMA application_id` is
//! [`APPLICATION_ID`])
//!
//! * `klines`, keyed by `(symbol, interval, open_time)`, one row per kline with all 12 Binance
//!   fields. Prices and volumes are `TEXT` holding the exact decimal as Binance prints it, at the
//!   symbol's decimal places when the row was written (`"57212.69"`, `"28425514.78940"`); times,
//!   trade count and trade ids are `INTEGER`. Text is exact for any `i128` mantissa, round-trips
//!   through [`codec`], and stays readable with the `sqlite3` shell. Plus `closed` (0/1),
//!   `source` (`'live'`, `'rest'`, `'flat_fill'`, `'repair'`, see [`Source`]) and `updated_ms`.
//!   Version 2 added `'repair'` to the `source` check; a version-1 file is migrated in place
//!   when the writer opens it.
//! * `symbols`: `name` → `price_scale`, `qty_scale` (the current decimal places), so a reader
//!   formats without the engine. A reader parses stored text at the current scales: a finer scale
//!   reads old rows exactly; a coarser one refuses a row with non-zero digits beyond it.
//! * `venue_gaps`: open-time ranges the venue was asked for and had no klines for (before a
//!   listing, maintenance), so restarts do not ask again.
//!
//! # Source precedence (which row wins for one period)
//!
//! Every write is an upsert that replaces the stored row only when its rank is at least the
//! stored one's: `flat_fill` (0) < open `live` snapshot (1) < `rest` (2) < closed `live` (3) <
//! `repair` (4). So a REST kline replaces flat fills and stale open snapshots (the symbol was not
//! live when that period closed, so the venue is authoritative) but never a closed live kline
//! (built from every trade of the period while the symbol was Active); a closed live kline (also
//! a late correction) replaces anything below it; flat fills only fill holes. A `repair` kline is
//! the venue's kline of a period whose live kline may be incomplete: the periods around a gap
//! (a shard reported missed trades, e.g. after a dropped connection, and the symbol was
//! re-synchronised) and the periods of an activation (trades between the initial package and the
//! stream subscription are not in the live kline). It replaces anything, including a closed live
//! kline; a repair that equals the stored row (every REST field, and closed) leaves the row as it
//! is (counted as confirmed), so a correct live row keeps its trade ids. The outcome does not
//! depend on the order in which writes arrive.
//!
//! # Place in `klagg run`
//!
//! `klagg run` opens the store (`--db`) before anything else starts; the writer thread takes
//! every shard's kline output (closed klines and open-kline updates) through one
//! [`klagg_shards::shard::KlineSink`], symbols are registered by the SymbolManager before their
//! first activation, the history thread (`crate::symbol_manager::history`) fills
//! `--history-bars` closed klines per interval and repairs gaps, and at shutdown the shards stop
//! first, then the writer commits everything and exits. [`StoreView`] is what other threads
//! read: counters, health, history progress, a reader (`StoreView::reader`), and `/metrics`.

pub mod codec;
pub mod handle;
pub mod history;
pub mod monitor;
pub mod reader;
pub mod schema;
pub mod stats;
pub mod writer;

mod batch;

use std::fmt;
use std::path::PathBuf;

use klagg_shards::kline::{Interval, Kline};

pub use handle::{WriterHandle, spawn_writer, spawn_writer_with};
pub use history::{
    HISTORY_BARS_DEFAULT, HISTORY_BARS_MAX, HistoryPlan, HistoryWindow, KlineRequest, MissingRange,
    klines_request_weight,
};
pub use monitor::{HistoryProgress, StoreMonitor, StoreReporter, StoreView};
pub use reader::{KLINES_LIMIT_DEFAULT, KLINES_LIMIT_MAX, PeriodState, Reader, SymbolInfo};
pub use schema::{APPLICATION_ID, OpenOptions, SCHEMA_VERSION, Store};
pub use stats::{StoreCounters, StoreHealth, WriterReport};
pub use writer::{STORE_CMD_CAPACITY, StoreCmd, WriterConfig};

/// Where a stored kline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Built by the engine from the live trade stream while the symbol was Active: updates,
    /// closes, corrections, and flat klines of periods without trades (`KlineMsg::FlatRun`).
    Live,
    /// Fetched from the venue's `GET /fapi/v1/klines` by the history backfill.
    Rest,
    /// A flat kline recorded while the symbol was not live (a placeholder at the previous close);
    /// the history planner asks the venue for these periods again.
    FlatFill,
    /// Fetched from the venue to correct the periods around a gap or an activation, whose live
    /// klines may be missing trades. Always closed; ranks above closed live klines.
    Repair,
}

impl Source {
    /// The value stored in the `source` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Live => "live",
            Source::Rest => "rest",
            Source::FlatFill => "flat_fill",
            Source::Repair => "repair",
        }
    }

    /// Parse a `source` column value.
    pub fn from_column(text: &str) -> Option<Source> {
        match text {
            "live" => Some(Source::Live),
            "rest" => Some(Source::Rest),
            "flat_fill" => Some(Source::FlatFill),
            "repair" => Some(Source::Repair),
            _ => None,
        }
    }

    /// The precedence rank of a row (see the module documentation): a write replaces a stored
    /// row when its rank is at least the stored one's.
    pub const fn rank(self, closed: bool) -> u8 {
        match (self, closed) {
            (Source::FlatFill, _) => 0,
            (Source::Live, false) => 1,
            (Source::Rest, _) => 2,
            (Source::Live, true) => 3,
            (Source::Repair, _) => 4,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kline as stored: the value plus whether it is closed and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredKline {
    pub kline: Kline,
    pub closed: bool,
    pub source: Source,
}

/// Errors of the store (opening, reading, talking to the writer thread).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create or open the database file {path}: {detail} \
         (does the directory exist and is it writable?)"
    )]
    Open { path: PathBuf, detail: String },
    #[error("the database {path} is not writable: {detail}")]
    NotWritable { path: PathBuf, detail: String },
    #[error(
        "the database {path} is corrupt or not an SQLite database: {detail} \
         (move it away or pass another --db)"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} is an SQLite database but not a klagg kline store: {detail}")]
    Foreign { path: PathBuf, detail: String },
    #[error(
        "the database {path} has schema version {found}; this klagg reads version {supported} \
         only (use a matching klagg or another --db)"
    )]
    SchemaVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the database {path} is locked by another process: {detail}")]
    Locked { path: PathBuf, detail: String },
    #[error("the database {path} cannot use WAL journal mode (got {mode:?})")]
    NoWal { path: PathBuf, mode: String },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "stored {column} of {symbol} {interval} at open time {open_time_ms} is unreadable: {detail}"
    )]
    BadRow {
        symbol: String,
        interval: Interval,
        open_time_ms: i64,
        column: &'static str,
        detail: String,
    },
    #[error("unknown symbol {0:?} (not registered in the store)")]
    UnknownSymbol(String),
    #[error("the store writer thread has stopped")]
    WriterGone,
    #[error("timed out after {waited_ms} ms waiting for the store writer to {what}")]
    Timeout { what: &'static str, waited_ms: u64 },
    #[error("cannot start the store writer thread: {0}")]
    Spawn(std::io::Error),
}

/// Milliseconds since the Unix epoch by the wall clock (`updated_ms`, health timestamps).
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_round_trip_and_ranks_order() {
        for source in [Source::Live, Source::Rest, Source::FlatFill, Source::Repair] {
            assert_eq!(Source::from_column(source.as_str()), Some(source));
        }
        assert_eq!(Source::from_column("LIVE"), None);
        assert!(Source::FlatFill.rank(true) < Source::Live.rank(false));
        assert!(Source::Live.rank(false) < Source::Rest.rank(true));
        assert!(Source::Rest.rank(true) < Source::Live.rank(true));
        assert!(Source::Live.rank(true) < Source::Repair.rank(true));
    }
}
