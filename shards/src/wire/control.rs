//! The WebSocket control protocol of Binance's market streams (pure; called on the API's `api-ws`
//! thread, on the simulator's connection threads and, for the requests, on shard threads):
//! rendering and parsing `SUBSCRIBE`, `UNSUBSCRIBE`,
//! `LIST_SUBSCRIPTIONS`, `SET_PROPERTY` / `GET_PROPERTY combined` with ids up to u64, and
//! Binance's result and error shapes (`{"result":null,"id":1}`,
//! `{"error":{"code":2,"msg":"…"},"id":1}`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A valid control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// SUBSCRIBE with the streams in the [`Dialect`]'s accepted form.
    Subscribe { id: u64, streams: Vec<String> },
    /// UNSUBSCRIBE with the streams in the [`Dialect`]'s accepted form.
    Unsubscribe { id: u64, streams: Vec<String> },
    /// LIST_SUBSCRIPTIONS.
    List { id: u64 },
    /// SET_PROPERTY ["combined", bool].
    SetCombined { id: u64, value: bool },
    /// GET_PROPERTY ["combined"].
    GetCombined { id: u64 },
}

/// How one server reads control requests: the details in which the API and the simulator
/// answer differently, each as it always has.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The accepted form of one SUBSCRIBE / UNSUBSCRIBE parameter (already known to be a
    /// string); `None` refuses the request with code 2 "Invalid request: invalid stream".
    pub stream: fn(&str) -> Option<String>,
    /// serde's position ("at line 1 column 20") ends the message of a request whose method is
    /// unknown or missing (the request is deserialised from its text rather than from the
    /// parsed JSON value).
    pub error_positions: bool,
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

/// A client's `{"method":"SUBSCRIBE","params":["btcusdt@aggTrade",…],"id":N}` (or
/// `UNSUBSCRIBE`, …) with `streams` in order.
pub fn request<S: AsRef<str>>(method: &str, streams: &[S], id: u64) -> String {
    let mut text = format!(r#"{{"method":"{method}","params":["#);
    for (i, stream) in streams.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&super::json_string(stream.as_ref()));
    }
    let _ = write!(text, r#"],"id":{id}}}"#);
    text
}

/// `{"result":null,"id":N}`.
pub fn result_null(id: u64) -> String {
    format!(r#"{{"result":null,"id":{id}}}"#)
}

/// `{"result":[…],"id":N}`.
pub fn result_list<S: Serialize>(id: u64, streams: &[S]) -> String {
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
    let body = super::rest::error_body(code, msg);
    format!(r#"{{"error":{body},"id":{id}}}"#)
}

/// Parse one text message; `Err` is the complete error reply.
///
/// # Errors
/// Invalid JSON (code 3), no unsigned id, an unknown method, a stream the dialect refuses, or
/// bad property parameters (code 2, 1 or 0 as Binance answers them).
pub fn parse(text: &str, dialect: &Dialect) -> Result<Request, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| error(3, &format!("Invalid JSON: {e}"), None))?;
    let Some(id) = value.get("id").and_then(Value::as_u64) else {
        let msg = "Invalid request: request ID must be an unsigned integer";
        return Err(error(2, msg, None));
    };
    let raw: Result<Raw, _> = if dialect.error_positions {
        serde_json::from_str(text)
    } else {
        serde_json::from_value(value)
    };
    let raw = raw.map_err(|e| error(2, &format!("Invalid request: {e}"), Some(id)))?;
    let params = raw.params.unwrap_or_default();
    let streams = |params: &[Value]| -> Result<Vec<String>, String> {
        params
            .iter()
            .map(|p| p.as_str().and_then(dialect.stream))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| error(2, "Invalid request: invalid stream", Some(id)))
    };
    match raw.method {
        Method::SUBSCRIBE => Ok(Request::Subscribe {
            id,
            streams: streams(&params)?,
        }),
        Method::UNSUBSCRIBE => Ok(Request::Unsubscribe {
            id,
            streams: streams(&params)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: Dialect = Dialect {
        stream: |s| Some(s.to_string()),
        error_positions: false,
    };

    fn parse(text: &str) -> Result<Request, String> {
        super::parse(text, &ANY)
    }

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
    fn requests_round_trip() {
        let text = request("SUBSCRIBE", &["a@aggTrade", "b@aggTrade"], 1);
        assert_eq!(
            text,
            r#"{"method":"SUBSCRIBE","params":["a@aggTrade","b@aggTrade"],"id":1}"#
        );
        assert_eq!(
            parse(&request("UNSUBSCRIBE", &[String::from("b@aggTrade")], 3)),
            Ok(Request::Unsubscribe {
                id: 3,
                streams: vec!["b@aggTrade".into()]
            })
        );
        assert_eq!(
            request::<&str>("SUBSCRIBE", &[], 9),
            r#"{"method":"SUBSCRIBE","params":[],"id":9}"#
        );
    }

    #[test]
    fn error_positions_follow_the_dialect() {
        let text = r#"{"method":"FOO","id":4}"#;
        let without = parse(text).unwrap_err();
        assert!(!without.contains("at line 1 column"), "{without}");
        let positions = Dialect {
            error_positions: true,
            ..ANY
        };
        let with = super::parse(text, &positions).unwrap_err();
        assert!(with.contains("at line 1 column"), "{with}");
    }
}
