//! data.binance.vision aggTrades CSV reader (caller's thread): futures 7 columns with or without
//! header, spot 8 columns; one reusable line buffer, no allocation per record.

use std::io::BufRead;
use std::path::Path;

use super::{Location, ReplayError, TextTrade, parse_bool, to_millis};

const COLUMNS: [&str; 8] = [
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
    "is_best_match",
];

pub(super) fn read<R, F>(path: &Path, mut reader: R, visit: &mut F) -> Result<usize, ReplayError>
where
    R: BufRead,
    F: FnMut(&TextTrade<'_>, &Location) -> Result<(), ReplayError>,
{
    let mut line = String::new();
    let mut at = Location {
        file: path.to_path_buf(),
        line: 0,
    };
    let mut count = 0;
    loop {
        line.clear();
        let read = reader.read_line(&mut line);
        at.line += 1;
        match read {
            Ok(0) => return Ok(count),
            Ok(_) => {}
            Err(source) => {
                return Err(ReplayError::Io {
                    file: path.to_path_buf(),
                    source,
                });
            }
        }
        let record = line.trim_end_matches(['\n', '\r']);
        if record.is_empty() {
            continue;
        }
        if at.line == 1 && !record.starts_with(|c: char| c.is_ascii_digit()) {
            check_header(record, &at)?;
            continue;
        }
        visit(&parse_record(record, &at)?, &at)?;
        count += 1;
    }
}

fn check_header(record: &str, at: &Location) -> Result<(), ReplayError> {
    let names: Vec<&str> = record.split(',').map(str::trim).collect();
    let known =
        names.len() >= 7 && names.len() <= 8 && names.iter().zip(COLUMNS).all(|(n, c)| *n == c);
    if known {
        return Ok(());
    }
    Err(ReplayError::Record {
        at: at.clone(),
        reason: format!(
            "unrecognised header {record:?}; expected {}",
            COLUMNS[..7].join(",")
        ),
    })
}

fn parse_record<'a>(record: &'a str, at: &Location) -> Result<TextTrade<'a>, ReplayError> {
    let mut fields = [""; 8];
    let mut count = 0;
    for field in record.split(',') {
        if count == fields.len() {
            count += 1;
            break;
        }
        fields[count] = field;
        count += 1;
    }
    if !(7..=8).contains(&count) {
        return Err(ReplayError::Record {
            at: at.clone(),
            reason: format!("{count} columns; aggTrades files have 7 (futures) or 8 (spot)"),
        });
    }
    let int = |index: usize| parse_int(fields[index], COLUMNS[index], at);
    let flag = |index: usize| {
        parse_bool(fields[index])
            .ok_or_else(|| field_error(at, COLUMNS[index], fields[index], "true or false"))
    };
    if count == 8 {
        flag(7)?;
    }
    Ok(TextTrade {
        agg_id: int(0)?,
        price: fields[1],
        qty: fields[2],
        first_id: int(3)?,
        last_id: int(4)?,
        time_ms: to_millis(int(5)?),
        buyer_maker: flag(6)?,
    })
}

fn parse_int(text: &str, field: &'static str, at: &Location) -> Result<i64, ReplayError> {
    text.parse::<i64>()
        .map_err(|_| field_error(at, field, text, "an integer"))
}

fn field_error(at: &Location, field: &'static str, text: &str, expected: &str) -> ReplayError {
    ReplayError::Field {
        at: at.clone(),
        field,
        reason: format!("{text:?} is not {expected}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Result<Vec<(TextTrade<'static>, usize)>, ReplayError> {
        let mut out = Vec::new();
        read(
            Path::new("t.csv"),
            text.as_bytes(),
            &mut |trade: &TextTrade<'_>, at: &Location| {
                let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
                out.push((
                    TextTrade {
                        price: leak(trade.price),
                        qty: leak(trade.qty),
                        ..*trade
                    },
                    at.line,
                ));
                Ok(())
            },
        )?;
        Ok(out)
    }

    #[test]
    fn futures_with_header_and_spot_without() {
        let futures = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n\
                       26129,0.01633102,4.70443515,27781,27781,1498793709153,true\r\n";
        let rows = read_all(futures).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, 2);
        assert_eq!(rows[0].0.price, "0.01633102");
        assert!(rows[0].0.buyer_maker);
        let spot = "3800397495,87648.21000000,0.08185000,5723703861,5723703861,1767225600039409,True,True\n";
        let rows = read_all(spot).unwrap();
        assert_eq!(rows[0].0.time_ms, 1_767_225_600_039);
        assert_eq!(rows[0].0.agg_id, 3_800_397_495);
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let text = "1,1.0,2.0,3,3,1000,false\n2,1.0,2.0,x4,4,1001,false\n";
        let err = read_all(text).unwrap_err().to_string();
        assert_eq!(
            err,
            "t.csv:2: field `first_trade_id`: \"x4\" is not an integer"
        );
        let err = read_all("1,1.0,2.0,3,3,1000,maybe\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.csv:1: field `is_buyer_maker`"), "{err}");
        let err = read_all("1,1.0,2.0,3,3,1000\n").unwrap_err().to_string();
        assert!(err.contains("6 columns"), "{err}");
        let err = read_all("1,1.0,2.0,3,3,1000,true,true,9\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("9 columns"), "{err}");
        let err = read_all("id,price\n").unwrap_err().to_string();
        assert!(err.contains("unrecognised header"), "{err}");
    }
}
