//! The simulator's side of the WebSocket control protocol (pure functions, called on each
//! WebSocket connection's thread): the request parser of [`klagg_shards::wire::control`] with the
//! simulator's dialect, and stream-name validation.

use super::interval::Interval;

use klagg_shards::wire::control::{self, Dialect};
pub use klagg_shards::wire::control::{Request, error, result_bool, result_list, result_null};

/// The simulator's reading of control requests: stream names are checked and made canonical
/// while parsing ([`canonical_stream`]; any kind of stream, unknown symbols included), and
/// serde's messages keep their position, as the simulator has always answered.
const DIALECT: Dialect = Dialect {
    stream: canonical_stream,
    error_positions: true,
};

/// Parse one text message; `Err` carries the complete error reply.
///
/// # Errors
/// As [`control::parse`].
pub fn parse(text: &str) -> Result<Request, String> {
    control::parse(text, &DIALECT)
}

/// Validate a stream name and return its canonical form (lower-case symbol); `None` when it
/// is not a syntactically valid stream. Unknown symbols are valid (acked, never delivered).
pub fn canonical_stream(s: &str) -> Option<String> {
    let word = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
    };
    if let Some(rest) = s.strip_prefix('!') {
        return word(rest).then(|| s.to_string());
    }
    let (sym, kind) = s.split_once('@')?;
    if sym.is_empty() || !sym.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || !word(kind)
    {
        return None;
    }
    if let Some(iv) = kind.strip_prefix("kline_") {
        Interval::parse(iv)?;
    }
    Some(format!("{}@{kind}", sym.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_u64_ids() {
        let r = parse(
            r#"{"method":"SUBSCRIBE","params":["BTCUSDT@aggTrade","btcusdt@kline_1m"],"id":18446744073709551615}"#,
        );
        assert_eq!(
            r,
            Ok(Request::Subscribe {
                id: u64::MAX,
                streams: vec!["btcusdt@aggTrade".into(), "btcusdt@kline_1m".into()]
            })
        );
        assert_eq!(
            parse(r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#),
            Ok(Request::List { id: 3 })
        );
        assert_eq!(
            parse(r#"{"method":"SET_PROPERTY","params":["combined",true],"id":5}"#),
            Ok(Request::SetCombined { id: 5, value: true })
        );
        assert_eq!(
            parse(r#"{"method":"GET_PROPERTY","params":["combined"],"id":2}"#),
            Ok(Request::GetCombined { id: 2 })
        );
        assert_eq!(result_null(7), r#"{"result":null,"id":7}"#);
        assert_eq!(
            result_list(3, &[String::from("a@aggTrade")]),
            r#"{"result":["a@aggTrade"],"id":3}"#
        );
    }

    #[test]
    fn error_shapes() {
        let bad_json = parse("{nope").unwrap_err();
        assert!(
            bad_json.starts_with(r#"{"error":{"code":3,"msg":"Invalid JSON: "#),
            "{bad_json}"
        );
        assert!(bad_json.ends_with(r#""id":null}"#));
        assert_eq!(
            parse(r#"{"method":"SUBSCRIBE","params":[],"id":-1}"#).unwrap_err(),
            r#"{"error":{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"},"id":null}"#
        );
        let unknown = parse(r#"{"method":"SUBSCRIBEX","params":[],"id":1}"#).unwrap_err();
        assert!(
            unknown.contains("unknown variant `SUBSCRIBEX`, expected one of `SUBSCRIBE`"),
            "{unknown}"
        );
        assert!(unknown.contains("at line 1 column"), "{unknown}");
        assert!(
            parse(r#"{"params":[],"id":1}"#)
                .unwrap_err()
                .contains("missing field `method`")
        );
        assert_eq!(
            parse(r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":4}"#).unwrap_err(),
            r#"{"error":{"code":1,"msg":"Invalid value type: expected Boolean"},"id":4}"#
        );
        assert_eq!(
            parse(r#"{"method":"GET_PROPERTY","params":["other"],"id":4}"#).unwrap_err(),
            r#"{"error":{"code":0,"msg":"Unknown property"},"id":4}"#
        );
        assert!(
            parse(r#"{"method":"GET_PROPERTY","params":[1],"id":4}"#)
                .unwrap_err()
                .contains("property name must be a string")
        );
        assert!(
            parse(r#"{"method":"GET_PROPERTY","params":["combined",1],"id":4}"#)
                .unwrap_err()
                .contains("too many parameters")
        );
        assert!(
            parse(r#"{"method":"SUBSCRIBE","params":["nonsense"],"id":9}"#)
                .unwrap_err()
                .contains("invalid stream")
        );
    }

    #[test]
    fn stream_names() {
        assert_eq!(
            canonical_stream("!miniTicker@arr").as_deref(),
            Some("!miniTicker@arr")
        );
        assert_eq!(
            canonical_stream("nosuchusdt@aggTrade").as_deref(),
            Some("nosuchusdt@aggTrade")
        );
        assert_eq!(
            canonical_stream("btcusdt@depth@100ms").as_deref(),
            Some("btcusdt@depth@100ms")
        );
        assert_eq!(canonical_stream("btcusdt@kline_7m"), None);
        assert_eq!(canonical_stream("btcusdt"), None);
        assert_eq!(canonical_stream("@aggTrade"), None);
        assert_eq!(canonical_stream("b tc@aggTrade"), None);
    }
}
