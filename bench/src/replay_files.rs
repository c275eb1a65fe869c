//! Recorded aggregate trades as owned values (called on whichever thread loads a replay, before
//! it starts): the simulator's replay mode keeps the trades in memory, with prices and quantities
//! as the decimal strings of the file. Reading itself is [`crate::replay::read_trades`], shared
//! with `klagg replay`.

use std::path::Path;

use crate::replay::{ReplayError, read_trades};

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

/// Read every aggTrade of a CSV or JSON file into memory.
///
/// # Errors
/// The file cannot be read or a record is malformed (named by file, line and field), or an id is
/// negative.
pub fn read_agg_trades(path: &Path) -> Result<Vec<FileTrade>, ReplayError> {
    let mut out = Vec::new();
    read_trades(path, |trade, at| {
        let id = |value: i64, field| {
            u64::try_from(value).map_err(|_| ReplayError::Field {
                at: at.clone(),
                field,
                reason: format!("{value} is negative"),
            })
        };
        out.push(FileTrade {
            agg_id: id(trade.agg_id, "agg_trade_id")?,
            price: trade.price.to_string(),
            qty: trade.qty.to_string(),
            first_id: id(trade.first_id, "first_trade_id")?,
            last_id: id(trade.last_id, "last_trade_id")?,
            time_ms: trade.time_ms,
            buyer_maker: trade.buyer_maker,
        });
        Ok(())
    })?;
    Ok(out)
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
}
