//! The API's side of the WebSocket control protocol (pure; used by the `api-ws` thread and the
//! handshake on the connection threads): the request parser of [`klagg_shards::wire::control`]
//! with the API's dialect, and kline stream names validated against the served intervals.

use klagg_shards::kline::Interval;

use klagg_shards::wire::control::{self, Dialect};
pub use klagg_shards::wire::control::{Request, error, result_bool, result_list, result_null};

/// The API's reading of control requests: any string parameter is a stream name here (the push
/// thread validates it with [`kline_stream`] and answers with the exact reason); serde's
/// messages carry no position.
const DIALECT: Dialect = Dialect {
    stream: |name| Some(name.to_string()),
    error_positions: false,
};

/// Parse one text message; `Err` is the complete error reply.
///
/// # Errors
/// As [`control::parse`].
pub fn parse(text: &str) -> Result<Request, String> {
    control::parse(text, &DIALECT)
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
    fn parses_with_the_apis_dialect() {
        assert_eq!(
            parse(r#"{"method":"SUBSCRIBE","params":["nonsense"],"id":9}"#),
            Ok(Request::Subscribe {
                id: 9,
                streams: vec!["nonsense".into()]
            })
        );
        let unknown = parse(r#"{"method":"FOO","id":4}"#).unwrap_err();
        assert!(unknown.contains("unknown variant"), "{unknown}");
        assert!(!unknown.contains("at line"), "{unknown}");
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
