//! The WebSocket control protocol (pure functions, called on each WebSocket connection's thread):
//! parsing SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS / SET_PROPERTY / GET_PROPERTY with ids
//! up to u64, stream-name validation, and Binance's exact result and error shapes.

use serde::Deserialize;
use serde_json::Value;

use super::interval::Interval;

/// A valid control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// SUBSCRIBE with canonical stream names.
    Subscribe {
        /// Request id.
        id: u64,
        /// Canonical streams.
        streams: Vec<String>,
    },
    /// UNSUBSCRIBE with canonical stream names.
    Unsubscribe {
        /// Request id.
        id: u64,
        /// Canonical streams.
        streams: Vec<String>,
    },
    /// LIST_SUBSCRIPTIONS.
    List {
        /// Request id.
        id: u64,
    },
    /// SET_PROPERTY ["combined", bool].
    SetCombined {
        /// Request id.
        id: u64,
        /// New value.
        value: bool,
    },
    /// GET_PROPERTY ["combined"].
    GetCombined {
        /// Request id.
        id: u64,
    },
}

#[derive(Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum Method {
    SUBSCRIBE,
    UNSUBSCRIBE,
    LIST_SUBSCRIPTIONS,
    SET_PROPERTY,
    GET_PROPERTY,
}

#[derive(Deserialize)]
struct Raw {
    method: Method,
    #[serde(default)]
    params: Option<Vec<Value>>,
}

/// `{"result":null,"id":N}`.
pub fn result_null(id: u64) -> String {
    format!(r#"{{"result":null,"id":{id}}}"#)
}

/// `{"error":{"code":C,"msg":M},"id":N|null}`.
pub fn error(code: i32, msg: &str, id: Option<u64>) -> String {
    let id = id.map_or("null".to_string(), |i| i.to_string());
    format!(
        r#"{{"error":{{"code":{code},"msg":{}}},"id":{id}}}"#,
        super::render::json_escape(msg)
    )
}

/// `{"result":[…],"id":N}`.
pub fn result_list(id: u64, streams: &[String]) -> String {
    let list = serde_json::to_string(streams).unwrap_or_else(|_| "[]".into());
    format!(r#"{{"result":{list},"id":{id}}}"#)
}

/// `{"result":true|false,"id":N}`.
pub fn result_bool(id: u64, value: bool) -> String {
    format!(r#"{{"result":{value},"id":{id}}}"#)
}

/// Parse one text message; `Err` carries the complete error reply.
pub fn parse(text: &str) -> Result<Request, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| error(3, &format!("Invalid JSON: {e}"), None))?;
    let Some(id) = v.get("id").and_then(Value::as_u64) else {
        return Err(error(
            2,
            "Invalid request: request ID must be an unsigned integer",
            None,
        ));
    };
    let raw: Raw = serde_json::from_str(text)
        .map_err(|e| error(2, &format!("Invalid request: {e}"), Some(id)))?;
    let params = raw.params.unwrap_or_default();
    match raw.method {
        Method::SUBSCRIBE => Ok(Request::Subscribe {
            id,
            streams: streams(&params, id)?,
        }),
        Method::UNSUBSCRIBE => Ok(Request::Unsubscribe {
            id,
            streams: streams(&params, id)?,
        }),
        Method::LIST_SUBSCRIPTIONS => Ok(Request::List { id }),
        Method::SET_PROPERTY => {
            if params.len() > 2 {
                return Err(error(2, "Invalid request: too many parameters", Some(id)));
            }
            property_name(params.first(), id)?;
            match params.get(1).and_then(Value::as_bool) {
                Some(value) => Ok(Request::SetCombined { id, value }),
                None => Err(error(1, "Invalid value type: expected Boolean", Some(id))),
            }
        }
        Method::GET_PROPERTY => {
            if params.len() > 1 {
                return Err(error(2, "Invalid request: too many parameters", Some(id)));
            }
            property_name(params.first(), id)?;
            Ok(Request::GetCombined { id })
        }
    }
}

fn property_name(v: Option<&Value>, id: u64) -> Result<(), String> {
    match v.and_then(Value::as_str) {
        Some("combined") => Ok(()),
        Some(_) => Err(error(0, "Unknown property", Some(id))),
        None => Err(error(
            2,
            "Invalid request: property name must be a string",
            Some(id),
        )),
    }
}

fn streams(params: &[Value], id: u64) -> Result<Vec<String>, String> {
    params
        .iter()
        .map(|p| p.as_str().and_then(canonical_stream))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| error(2, "Invalid request: invalid stream", Some(id)))
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
            result_list(3, &["a@aggTrade".into()]),
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
