//! Recorded aggregate trades as owned values (called on whichever thread loads a replay, before
//! it starts): the simulator's replay mode keeps the trades in memory, with prices and quantities
//! as the decimal strings of the file. Reading itself is [`crate::replay::read_trades`], shared
//! with `klagg replay`.

use std::path::Path;

use klagg_shards::kline::written_scale;

use crate::replay::{Location, ReplayError, read_trades};

/// One aggregate trade read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTrade {
    /// Aggregate trade id `a`.
    pub agg_id: u64,
    /// Price as written in the file (a valid non-negative decimal string, checked on reading).
    pub price: String,
    /// Quantity as written in the file (a valid non-negative decimal string, checked on reading).
    pub qty: String,
    /// First underlying trade id.
    pub first_id: u64,
    /// Last underlying trade id.
    pub last_id: u64,
    /// Trade time in ms (µs inputs are truncated to ms).
    pub time_ms: i64,
    /// Buyer is maker.
    pub buyer_maker: bool,
    /// 1-based line of the record in its file (for error messages).
    pub line: usize,
}

/// Read every aggTrade of a CSV or JSON file into memory.
///
/// # Errors
/// The file cannot be read or a record is malformed (named by file, line and field): an id is
/// negative, `last_trade_id` is below `first_trade_id`, or a price or quantity is not a
/// non-negative decimal ([`klagg_shards::kline::parse_scaled`]'s rules: `1x.5`, `-1.5` refused).
pub fn read_agg_trades(path: &Path) -> Result<Vec<FileTrade>, ReplayError> {
    let mut out = Vec::new();
    read_trades(path, |trade, at| {
        let field_error = |field, reason| ReplayError::Field {
            at: at.clone(),
            field,
            reason,
        };
        let id = |value: i64, field| {
            u64::try_from(value).map_err(|_| field_error(field, format!("{value} is negative")))
        };
        let decimal = |text: &str, field| {
            if text.starts_with('-') {
                return Err(field_error(field, format!("{text:?} is negative")));
            }
            written_scale(text.as_bytes())
                .map(|_| text.to_string())
                .map_err(|err| field_error(field, format!("{text:?}: {err}")))
        };
        let (first_id, last_id) = (
            id(trade.first_id, "first_trade_id")?,
            id(trade.last_id, "last_trade_id")?,
        );
        if last_id < first_id {
            let reason = format!("{last_id} is below first_trade_id {first_id}");
            return Err(field_error("last_trade_id", reason));
        }
        out.push(FileTrade {
            agg_id: id(trade.agg_id, "agg_trade_id")?,
            price: decimal(trade.price, "price")?,
            qty: decimal(trade.qty, "quantity")?,
            first_id,
            last_id,
            time_ms: trade.time_ms,
            buyer_maker: trade.buyer_maker,
            line: at.line,
        });
        Ok(())
    })?;
    Ok(out)
}

impl FileTrade {
    /// Where this record is in `file`.
    pub fn location(&self, file: &Path) -> Location {
        Location {
            file: file.to_path_buf(),
            line: self.line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(name: &str, text: &str) -> Result<Vec<FileTrade>, ReplayError> {
        let dir = std::env::temp_dir().join(format!("klagg-replay-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        read_agg_trades(&path)
    }

    #[test]
    fn csv_and_json_become_owned_trades() {
        let csv = read_text(
            "a.csv",
            "26129,0.01633102,4.70443515,27781,27781,1498793709153,true\n",
        )
        .unwrap();
        assert_eq!(csv[0].price, "0.01633102");
        assert_eq!(csv[0].time_ms, 1_498_793_709_153);
        let json = read_text(
            "a.json",
            r#"[{"a":1,"p":"1.5","q":"2","f":3,"l":4,"T":5,"m":false}]"#,
        )
        .unwrap();
        assert_eq!(
            (json[0].agg_id, json[0].first_id, json[0].last_id),
            (1, 3, 4)
        );
        let err = read_text("b.csv", "1,1.5,2,3,4,5,true\n2,1.5,2,-3,4,5,true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.csv:2: field `first_trade_id`"), "{err}");
    }

    #[test]
    fn bad_decimals_and_id_ranges_are_located() {
        for (text, want) in [
            (
                "1,1.5,2,3,4,5,true\n2,1x.5,2,5,5,6,true\n",
                "c.csv:2: field `price`: \"1x.5\"",
            ),
            ("1,-1.5,2,3,4,5,true\n", "c.csv:1: field `price`: \"-1.5\""),
            (
                "1,1.5,-2,3,4,5,true\n",
                "c.csv:1: field `quantity`: \"-2\" is negative",
            ),
            (
                "1,1.5,2,3,4,5,true\n2,1.5,2,9,8,6,true\n",
                "c.csv:2: field `last_trade_id`",
            ),
        ] {
            let err = read_text("c.csv", text).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
