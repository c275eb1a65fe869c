//! Binance REST aggTrades JSON reader (caller's thread): an array of aggTrade objects, unknown
//! fields ignored, each error located by the line its object starts on and the field.

use std::path::Path;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Location, ReplayError, TextTrade, to_millis};

pub(super) fn read<F>(path: &Path, text: &str, visit: &mut F) -> Result<usize, ReplayError>
where
    F: FnMut(&TextTrade<'_>, &Location) -> Result<(), ReplayError>,
{
    let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(|err| ReplayError::File {
        file: path.to_path_buf(),
        reason: format!("not a JSON array of aggTrade objects: {err}"),
    })?;
    let mut lines = LineCounter::new(text);
    for element in &elements {
        let at = Location {
            file: path.to_path_buf(),
            line: lines.line_of(element.get()),
        };
        let object: Map<String, Value> =
            serde_json::from_str(element.get()).map_err(|err| ReplayError::Record {
                at: at.clone(),
                reason: format!("not an aggTrade object: {err}"),
            })?;
        visit(&to_trade(&object, &at)?, &at)?;
    }
    Ok(elements.len())
}

fn to_trade<'a>(
    object: &'a Map<String, Value>,
    at: &Location,
) -> Result<TextTrade<'a>, ReplayError> {
    let int = |key: &'static str| -> Result<i64, ReplayError> {
        match object.get(key) {
            Some(Value::Number(number)) => {
                number.as_i64().ok_or_else(|| bad(at, key, "an integer"))
            }
            _ => Err(bad(at, key, "an integer")),
        }
    };
    let text = |key: &'static str| -> Result<&'a str, ReplayError> {
        match object.get(key) {
            Some(Value::String(text)) => Ok(text.as_str()),
            _ => Err(bad(at, key, "a decimal string")),
        }
    };
    Ok(TextTrade {
        agg_id: int("a")?,
        price: text("p")?,
        qty: text("q")?,
        first_id: int("f")?,
        last_id: int("l")?,
        time_ms: to_millis(int("T")?),
        buyer_maker: match object.get("m") {
            Some(Value::Bool(flag)) => *flag,
            _ => return Err(bad(at, "m", "true or false")),
        },
    })
}

fn bad(at: &Location, field: &'static str, expected: &str) -> ReplayError {
    ReplayError::Field {
        at: at.clone(),
        field,
        reason: format!("missing or not {expected}"),
    }
}

/// Line numbers of sub-slices of one text, counted incrementally (elements come in order).
struct LineCounter<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, slice: &str) -> usize {
        let start = slice.as_ptr() as usize - self.text.as_ptr() as usize;
        self.line += self.text.as_bytes()[self.offset..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = start;
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Result<Vec<(i64, String, usize)>, ReplayError> {
        let mut out = Vec::new();
        read(
            Path::new("t.json"),
            text,
            &mut |trade: &TextTrade<'_>, at: &Location| {
                out.push((trade.agg_id, trade.price.to_string(), at.line));
                Ok(())
            },
        )?;
        Ok(out)
    }

    #[test]
    fn reads_rest_arrays_with_extra_fields() {
        let text = "[\n  {\"a\": 1, \"p\": \"0.7476\", \"q\": \"14.8\", \"f\": 5, \"l\": 6, \"T\": 1787370000167,\n   \"m\": true, \"M\": true, \"nq\": \"14.0\"},\n  {\"a\": 2, \"p\": \"0.7475\", \"q\": \"1\", \"f\": 7, \"l\": 7, \"T\": 1787370000200, \"m\": false}\n]\n";
        assert_eq!(
            read_all(text).unwrap(),
            vec![(1, "0.7476".into(), 2), (2, "0.7475".into(), 4)]
        );
        assert!(read_all("[]").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let text = "[\n{\"a\":1,\"p\":\"1\",\"q\":\"1\",\"f\":1,\"l\":1,\"T\":5,\"m\":true},\n{\"a\":2,\"p\":1.5,\"q\":\"1\",\"f\":2,\"l\":2,\"T\":6,\"m\":true}]";
        let err = read_all(text).unwrap_err().to_string();
        assert_eq!(err, "t.json:3: field `p`: missing or not a decimal string");
        let err = read_all("[{\"a\":1}]").unwrap_err().to_string();
        assert!(err.contains("t.json:1: field `p`"), "{err}");
        let err = read_all("[{\"a\":1,").unwrap_err().to_string();
        assert!(err.starts_with("t.json: not a JSON array"), "{err}");
        let err = read_all("[1]").unwrap_err().to_string();
        assert!(err.contains("not an aggTrade object"), "{err}");
    }
}
