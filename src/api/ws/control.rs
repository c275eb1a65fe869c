//! The WebSocket control protocol (pure; used by the `api-ws` thread and the handshake on the
//! connection threads): `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY` /
//! `GET_PROPERTY combined`, with Binance's result and error shapes (`{"result":null,"id":1}`,
//! `{"error":{"code":2,"msg":"…"},"id":1}`), and kline stream names.

use klagg_shards::kline::Interval;
use serde::Deserialize;
use serde_json::Value;

/// A valid control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Subscribe { id: u64, streams: Vec<String> },
    Unsubscribe { id: u64, streams: Vec<String> },
    List { id: u64 },
    SetCombined { id: u64, value: bool },
    GetCombined { id: u64 },
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

/// `{"result":[…],"id":N}`.
pub fn result_list(id: u64, streams: &[&str]) -> String {
    let list = serde_json::to_string(streams).unwrap_or_else(|_| "[]".into());
    format!(r#"{{"result":{list},"id":{id}}}"#)
}

/// `{"result":true|false,"id":N}`.
pub fn result_bool(id: u64, value: bool) -> String {
    format!(r#"{{"result":{value},"id":{id}}}"#)
}

/// `{"error":{"code":C,"msg":M},"id":N|null}`.
pub fn error(code: i32, msg: &str, id: Option<u64>) -> String {
    let id = id.map_or_else(|| "null".to_string(), |i| i.to_string());
    let msg = serde_json::to_string(msg).unwrap_or_else(|_| "\"\"".into());
    format!(r#"{{"error":{{"code":{code},"msg":{msg}}},"id":{id}}}"#)
}

/// Parse one text message; `Err` is the complete error reply.
pub fn parse(text: &str) -> Result<Request, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| error(3, &format!("Invalid JSON: {e}"), None))?;
    let Some(id) = value.get("id").and_then(Value::as_u64) else {
        let msg = "Invalid request: request ID must be an unsigned integer";
        return Err(error(2, msg, None));
    };
    let raw: Raw = serde_json::from_value(value)
        .map_err(|e| error(2, &format!("Invalid request: {e}"), Some(id)))?;
    let params = raw.params.unwrap_or_default();
    let names = |params: &[Value]| -> Result<Vec<String>, String> {
        params
            .iter()
            .map(|p| p.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| error(2, "Invalid request: invalid stream", Some(id)))
    };
    match raw.method {
        Method::SUBSCRIBE => Ok(Request::Subscribe {
            id,
            streams: names(&params)?,
        }),
        Method::UNSUBSCRIBE => Ok(Request::Unsubscribe {
            id,
            streams: names(&params)?,
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

fn property_name(value: Option<&Value>, id: u64) -> Result<(), String> {
    match value.and_then(Value::as_str) {
        Some("combined") => Ok(()),
        Some(_) => Err(error(0, "Unknown property", Some(id))),
        None => Err(error(
            2,
            "Invalid request: property name must be a string",
            Some(id),
        )),
    }
}

/// A kline stream name, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlineStream {
    /// `btcusdt@kline_1m` (symbol lower-cased).
    pub name: String,
    /// `BTCUSDT`.
    pub symbol: String,
    pub interval: Interval,
}

/// Why a stream name was refused; `Display` is the message of the code-2 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("Invalid request: invalid stream")]
    Invalid,
    #[error(
        "Invalid request: unsupported stream {0}; this server serves <symbol>@kline_<interval> streams only"
    )]
    Unsupported(String),
    #[error("Invalid request: interval {interval} is not served here (served: {served})")]
    Interval { interval: String, served: String },
}

/// Validate `name` as a kline stream of one of `intervals`.
///
/// # Errors
/// Not a valid stream name, not a kline stream, or an interval this process does not build.
pub fn kline_stream(name: &str, intervals: &[Interval]) -> Result<KlineStream, StreamError> {
    let (symbol, kind) = name.split_once('@').ok_or(StreamError::Invalid)?;
    let word = |w: &str| !w.is_empty() && w.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if !word(symbol) || kind.is_empty() || !kind.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(StreamError::Invalid);
    }
    let Some(interval) = kind.strip_prefix("kline_") else {
        return Err(StreamError::Unsupported(name.to_string()));
    };
    let Ok(parsed) = interval.parse::<Interval>() else {
        return Err(StreamError::Invalid);
    };
    if !intervals.contains(&parsed) {
        let served: Vec<&str> = intervals.iter().map(|i| i.as_str()).collect();
        return Err(StreamError::Interval {
            interval: interval.to_string(),
            served: served.join(","),
        });
    }
    let lower = symbol.to_ascii_lowercase();
    Ok(KlineStream {
        name: format!("{lower}@kline_{}", parsed.as_str()),
        symbol: symbol.to_ascii_uppercase(),
        interval: parsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_with_u64_ids() {
        let r = parse(
            r#"{"method":"SUBSCRIBE","params":["btcusdt@kline_1m"],"id":18446744073709551615}"#,
        );
        assert_eq!(
            r,
            Ok(Request::Subscribe {
                id: u64::MAX,
                streams: vec!["btcusdt@kline_1m".into()]
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
        assert_eq!(
            parse(r#"{"method":"UNSUBSCRIBE","params":[],"id":0}"#),
            Ok(Request::Unsubscribe {
                id: 0,
                streams: vec![]
            })
        );
    }

    #[test]
    fn errors_have_binance_shapes() {
        let err = |text: &str| serde_json::from_str::<Value>(&parse(text).unwrap_err()).unwrap();
        let bad_json = err("{nope");
        assert_eq!(bad_json["error"]["code"], 3);
        assert!(bad_json["id"].is_null());
        let no_id = err(r#"{"method":"SUBSCRIBE","params":[]}"#);
        assert_eq!(
            no_id["error"]["msg"],
            "Invalid request: request ID must be an unsigned integer"
        );
        assert_eq!(
            err(r#"{"method":"SUBSCRIBE","params":[],"id":-1}"#)["error"]["code"],
            2
        );
        let method = err(r#"{"method":"FOO","id":4}"#);
        assert_eq!(
            (method["error"]["code"].as_i64(), method["id"].as_u64()),
            (Some(2), Some(4))
        );
        assert!(
            method["error"]["msg"]
                .as_str()
                .unwrap()
                .contains("unknown variant")
        );
        assert_eq!(
            err(r#"{"method":"SUBSCRIBE","params":[1],"id":1}"#)["error"]["msg"],
            "Invalid request: invalid stream"
        );
        assert_eq!(
            err(r#"{"method":"SET_PROPERTY","params":["x",true],"id":1}"#)["error"]["code"],
            0
        );
        assert_eq!(
            err(r#"{"method":"SET_PROPERTY","params":["combined",1],"id":1}"#)["error"]["code"],
            1
        );
        assert_eq!(
            err(r#"{"method":"GET_PROPERTY","params":[5],"id":1}"#)["error"]["code"],
            2
        );
        assert_eq!(
            err(r#"{"method":"GET_PROPERTY","params":["combined",1],"id":1}"#)["error"]["msg"],
            "Invalid request: too many parameters"
        );
        assert_eq!(result_null(7), r#"{"result":null,"id":7}"#);
        assert_eq!(
            result_list(3, &["a@kline_1m"]),
            r#"{"result":["a@kline_1m"],"id":3}"#
        );
        assert_eq!(result_bool(2, true), r#"{"result":true,"id":2}"#);
    }

    #[test]
    fn validates_kline_streams() {
        let served = [Interval::M1, Interval::Mo1];
        let s = kline_stream("BTCUSDT@kline_1m", &served).unwrap();
        assert_eq!(
            (s.name.as_str(), s.symbol.as_str(), s.interval),
            ("btcusdt@kline_1m", "BTCUSDT", Interval::M1)
        );
        assert_eq!(
            kline_stream("btcusdt@kline_1M", &served).unwrap().interval,
            Interval::Mo1
        );
        assert_eq!(kline_stream("btcusdt", &served), Err(StreamError::Invalid));
        assert_eq!(
            kline_stream("@kline_1m", &served),
            Err(StreamError::Invalid)
        );
        assert_eq!(
            kline_stream("btc usdt@kline_1m", &served),
            Err(StreamError::Invalid)
        );
        assert_eq!(
            kline_stream("btcusdt@kline_7m", &served),
            Err(StreamError::Invalid)
        );
        assert!(matches!(
            kline_stream("btcusdt@aggTrade", &served),
            Err(StreamError::Unsupported(_))
        ));
        let err = kline_stream("btcusdt@kline_5m", &served).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid request: interval 5m is not served here (served: 1m,1M)"
        );
    }
}
