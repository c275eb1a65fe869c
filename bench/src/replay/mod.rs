//! Replay readers (run by the thread that calls them: `klagg replay`'s main thread, the
//! simulator's replay feeder): aggregate-trade files as Binance publishes them, read record by
//! record with the decimal fields left as text, and every error located by file, line and field.
//!
//! Formats, detected from the content:
//! - data.binance.vision aggTrades CSV: USD-M futures (7 columns `agg_trade_id, price, quantity,
//!   first_trade_id, last_trade_id, transact_time, is_buyer_maker`, header row since 2022) and spot
//!   (8 columns, a trailing `is_best_match`, no header); booleans `true/false` or `True/False`;
//!   `transact_time` in ms or µs (spot since 2025; values ≥ 10^14 are µs).
//! - Binance REST JSON: an array of aggTrade objects `{"a","p","q","f","l","T","m",…}`, unknown
//!   fields ignored.

mod aggregate;
mod csv;
mod json;

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

pub use aggregate::{ReplayOutput, ReplaySettings, aggregate_files, scales_from_files};

/// One aggregate trade as written in a file, decimals still text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTrade<'a> {
    pub agg_id: i64,
    pub price: &'a str,
    pub qty: &'a str,
    pub first_id: i64,
    pub last_id: i64,
    /// Trade time in epoch milliseconds (µs inputs are converted).
    pub time_ms: i64,
    pub buyer_maker: bool,
}

/// Where a record is: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Why a replay input was refused. Every variant names the file; record errors name the line
/// and the field.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{at}: field `{field}`: {reason}")]
    Field {
        at: Location,
        field: &'static str,
        reason: String,
    },
    #[error("{at}: {reason}")]
    Record { at: Location, reason: String },
    #[error("{}: {reason}", file.display())]
    File { file: PathBuf, reason: String },
}

/// Timestamps at or above this are microseconds (10^14 ms is the year 5138; 10^14 µs is 1973).
const MICROSECONDS_FROM: i64 = 100_000_000_000_000;

/// Convert a `transact_time` in ms or µs to ms.
pub fn to_millis(time: i64) -> i64 {
    if time >= MICROSECONDS_FROM {
        time.div_euclid(1000)
    } else {
        time
    }
}

/// Read every trade of `path` in file order, calling `visit` with each and its location.
/// Stops at the first error (from the file or from `visit`).
///
/// # Errors
/// The file cannot be read, is in neither format, or a record is malformed.
pub fn read_trades<F>(path: &Path, mut visit: F) -> Result<usize, ReplayError>
where
    F: FnMut(&TextTrade<'_>, &Location) -> Result<(), ReplayError>,
{
    let io = |source| ReplayError::Io {
        file: path.to_path_buf(),
        source,
    };
    let mut visit = |trade: &TextTrade<'_>, at: &Location| {
        if trade.last_id < trade.first_id {
            return Err(ReplayError::Field {
                at: at.clone(),
                field: "last_trade_id",
                reason: format!(
                    "{} is below first_trade_id {}",
                    trade.last_id, trade.first_id
                ),
            });
        }
        visit(trade, at)
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let first = reader
        .fill_buf()
        .map_err(io)?
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    match first {
        Some(b'[') => {
            let mut text = String::new();
            reader.read_to_string(&mut text).map_err(io)?;
            json::read(path, &text, &mut visit)
        }
        Some(_) => csv::read(path, reader, &mut visit),
        None => Err(ReplayError::File {
            file: path.to_path_buf(),
            reason: "the file is empty".into(),
        }),
    }
}

/// The symbol a file is about: `BTCUSDT-aggTrades-2026-01-01.csv` (data.binance.vision), or
/// else the first dash/underscore/dot-separated token ending in USDT
/// (`binance-spot-virtualusdt-aggtrades.json`), upper-cased.
pub fn symbol_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if let Some((symbol, _)) = name.split_once("-aggTrades")
        && !symbol.is_empty()
        && symbol.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Some(symbol.to_ascii_uppercase());
    }
    let stem = path.file_stem()?.to_str()?;
    stem.split(['-', '_', '.'])
        .find(|token| token.len() > 4 && token.to_ascii_uppercase().ends_with("USDT"))
        .map(str::to_ascii_uppercase)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_are_recognised() {
        assert_eq!(to_millis(1_767_225_600_039_409), 1_767_225_600_039);
        assert_eq!(to_millis(1_787_370_000_167), 1_787_370_000_167);
    }

    #[test]
    fn symbols_come_from_official_file_names() {
        let name = |s: &str| symbol_from_file_name(Path::new(s));
        assert_eq!(
            name("/x/BTCUSDT-aggTrades-2026-01-01.csv").as_deref(),
            Some("BTCUSDT")
        );
        assert_eq!(
            name("1000PEPEUSDT-aggTrades-2024-03.csv").as_deref(),
            Some("1000PEPEUSDT")
        );
        assert_eq!(
            name("binance-spot-virtualusdt-aggtrades.json").as_deref(),
            Some("VIRTUALUSDT")
        );
        assert_eq!(name("trades.json"), None);
        assert_eq!(name("-aggTrades-2026.csv"), None);
    }

    #[test]
    fn booleans_in_both_spellings() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("1"), None);
    }
}
