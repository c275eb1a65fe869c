//! Readers for recorded aggregate trades (called on whichever thread loads a replay, before it
//! starts): data.binance.vision aggTrades CSV (USD-M futures: 7 columns with or without a header,
//! ms timestamps; spot: 8 columns, no header, `True`/`False`, µs timestamps from 2025) and
//! Binance REST JSON arrays of aggTrade objects. Prices and quantities stay decimal strings.
//! Independent of the engine's kline core so that it can be shared by the bench and the engine.

use std::path::Path;

use thiserror::Error;

/// Timestamps above this are microseconds (data.binance.vision spot files from 2025 on).
const MICROS_THRESHOLD: i64 = 10_000_000_000_000;

/// One aggregate trade read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTrade {
    /// Aggregate trade id `a`.
    pub agg_id: u64,
    /// Price as written in the file (decimal string).
    pub price: String,
    /// Quantity as written in the file (decimal string).
    pub qty: String,
    /// First underlying trade id.
    pub first_id: u64,
    /// Last underlying trade id.
    pub last_id: u64,
    /// Trade time in ms (µs inputs are truncated to ms).
    pub time_ms: i64,
    /// Buyer is maker.
    pub buyer_maker: bool,
}

/// Why a file could not be read.
#[derive(Debug, Error)]
pub enum ReplayFileError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A row or object is malformed.
    #[error("{path}: record {record}: {msg}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line (CSV) or array index + 1 (JSON).
        record: usize,
        /// What is wrong.
        msg: String,
    },
}

/// Read every aggTrade of a CSV or JSON file; the format is detected from the first byte.
pub fn read_agg_trades(path: &Path) -> Result<Vec<FileTrade>, ReplayFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ReplayFileError::Io {
        path: name.clone(),
        source,
    })?;
    parse_agg_trades(&text).map_err(|(record, msg)| ReplayFileError::Parse {
        path: name,
        record,
        msg,
    })
}

/// Parse CSV or JSON text (detected by its first non-blank byte: `[` means JSON).
pub fn parse_agg_trades(text: &str) -> Result<Vec<FileTrade>, (usize, String)> {
    if text.trim_start().starts_with('[') {
        parse_json(text)
    } else {
        parse_csv(text)
    }
}

/// The symbol a file is about, from names like `BTCUSDT-aggTrades-2026-01-01.csv` or
/// `binance-spot-virtualusdt-aggtrades.json` (the first dash/underscore-separated token that
/// ends in USDT), upper-cased.
pub fn symbol_from_path(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    stem.split(['-', '_', '.'])
        .find(|tok| tok.len() > 4 && tok.to_ascii_uppercase().ends_with("USDT"))
        .map(|tok| tok.to_ascii_uppercase())
}

fn parse_csv(text: &str) -> Result<Vec<FileTrade>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || !line.starts_with(|c: char| c.is_ascii_digit()) {
            if i == 0 || line.is_empty() {
                continue; // header row or blank line
            }
            return Err((i + 1, format!("not a trade row: {line:.60}")));
        }
        out.push(parse_csv_row(line).map_err(|m| (i + 1, m))?);
    }
    Ok(out)
}

fn parse_csv_row(line: &str) -> Result<FileTrade, String> {
    let cols: Vec<&str> = line.split(',').map(str::trim).collect();
    if cols.len() != 7 && cols.len() != 8 {
        return Err(format!("expected 7 or 8 columns, got {}", cols.len()));
    }
    Ok(FileTrade {
        agg_id: num(cols[0], "agg_trade_id")?,
        price: decimal(cols[1], "price")?,
        qty: decimal(cols[2], "quantity")?,
        first_id: num(cols[3], "first_trade_id")?,
        last_id: num(cols[4], "last_trade_id")?,
        time_ms: to_ms(num(cols[5], "transact_time")?),
        buyer_maker: boolean(cols[6])?,
    })
}

fn parse_json(text: &str) -> Result<Vec<FileTrade>, (usize, String)> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| (0, format!("bad JSON: {e}")))?;
    rows.iter()
        .enumerate()
        .map(|(i, v)| json_row(v).map_err(|m| (i + 1, m)))
        .collect()
}

fn json_row(v: &serde_json::Value) -> Result<FileTrade, String> {
    let int = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_u64)
            .ok_or(format!("field {k}"))
    };
    let text = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .ok_or(format!("field {k}"))
    };
    let time = v
        .get("T")
        .and_then(serde_json::Value::as_i64)
        .ok_or("field T")?;
    Ok(FileTrade {
        agg_id: int("a")?,
        price: decimal(text("p")?, "p")?,
        qty: decimal(text("q")?, "q")?,
        first_id: int("f")?,
        last_id: int("l")?,
        time_ms: to_ms(time),
        buyer_maker: v
            .get("m")
            .and_then(serde_json::Value::as_bool)
            .ok_or("field m")?,
    })
}

fn to_ms(t: i64) -> i64 {
    if t > MICROS_THRESHOLD { t / 1000 } else { t }
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what}: not an integer: {s:.30}"))
}

fn decimal(s: &str, what: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.chars().filter(|&c| c == '.').count() <= 1;
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{what}: not a decimal: {s:.30}"))
    }
}

fn boolean(s: &str) -> Result<bool, String> {
    match s {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(format!("is_buyer_maker: not a boolean: {s:.10}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futures_csv_with_and_without_header() {
        let with = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n\
                    26129,0.01633102,4.70443515,27781,27781,1498793709153,true\n";
        let without = "26129,0.01633102,4.70443515,27781,27781,1498793709153,true\n";
        let a = parse_agg_trades(with).unwrap();
        assert_eq!(a, parse_agg_trades(without).unwrap());
        assert_eq!(a[0].price, "0.01633102");
        assert_eq!(a[0].time_ms, 1_498_793_709_153);
        assert!(a[0].buyer_maker);
    }

    #[test]
    fn spot_csv_microseconds() {
        let row =
            "3800397495,87648.21000000,0.08185000,5723703861,5723703861,1767225600039409,True,True";
        let a = parse_agg_trades(row).unwrap();
        assert_eq!(a[0].time_ms, 1_767_225_600_039);
        assert_eq!(a[0].qty, "0.08185000");
    }

    #[test]
    fn json_array() {
        let j = r#"[{"a":1,"p":"1.5","q":"2","f":3,"l":4,"T":5,"m":false,"M":true}]"#;
        let a = parse_agg_trades(j).unwrap();
        assert_eq!(
            (a[0].agg_id, a[0].first_id, a[0].last_id, a[0].time_ms),
            (1, 3, 4, 5)
        );
        assert!(!a[0].buyer_maker);
    }

    #[test]
    fn bad_rows_are_errors_not_panics() {
        assert!(parse_agg_trades("1,2,3\n").is_err());
        assert!(parse_agg_trades("h\n1,x,1,1,1,1,true\n").is_err());
        assert!(parse_agg_trades("[{\"a\":1}]").is_err());
        assert!(parse_agg_trades("[1,").is_err());
    }

    #[test]
    fn symbol_names_from_paths() {
        let p = Path::new("/x/BTCUSDT-aggTrades-2026-01-01.csv");
        assert_eq!(symbol_from_path(p).as_deref(), Some("BTCUSDT"));
        let p = Path::new("binance-spot-virtualusdt-aggtrades.json");
        assert_eq!(symbol_from_path(p).as_deref(), Some("VIRTUALUSDT"));
        assert_eq!(symbol_from_path(Path::new("trades.csv")), None);
    }
}
