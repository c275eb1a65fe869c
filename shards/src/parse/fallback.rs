//! The serde_json fallback parser (pure; shard thread): any valid JSON frame into the same
//! borrowed [`Frame`] the scanner gives, and the typed error for malformed ones. Slower than the
//! scanner (it parses the envelope first and the trade object second), so it only runs for
//! frames the scanner gave up on.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::{Frame, ParseError, RawAggTrade};

/// A JSON string, borrowed from the frame when it has no escapes (serde's own `Cow<str>` does
/// not borrow inside an `Option`).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> serde::de::Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }
}

/// Every top-level key a frame of interest can have; everything else is ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    stream: Option<Text<'a>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    error: Option<ErrorBody<'a>>,
    #[serde(borrow, default)]
    e: Option<Text<'a>>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(borrow, default)]
    msg: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    code: i64,
    #[serde(borrow)]
    msg: Text<'a>,
}

/// Only the event type of a data object (other streams' payloads are not read further).
#[derive(Deserialize)]
struct EventProbe<'a> {
    #[serde(borrow, default)]
    e: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct TradeWire<'a> {
    #[serde(borrow)]
    s: Option<Text<'a>>,
    E: Option<i64>,
    a: Option<i64>,
    #[serde(borrow)]
    p: Option<Text<'a>>,
    #[serde(borrow)]
    q: Option<Text<'a>>,
    f: Option<i64>,
    l: Option<i64>,
    T: Option<i64>,
    m: Option<bool>,
}

/// Parse a frame with serde_json.
///
/// # Errors
/// Invalid JSON, a field of the wrong type, an aggTrade without a required field or with an
/// escaped string, or a JSON value that is none of the known frame kinds.
pub fn parse_frame_serde(frame: &[u8]) -> Result<Frame<'_>, ParseError> {
    let trimmed = frame.trim_ascii_start();
    if trimmed.first() == Some(&b'[') {
        // `!miniTicker@arr` and friends on a raw connection.
        serde_json::from_slice::<IgnoredAny>(frame)?;
        return Ok(Frame::Other);
    }
    let envelope: Envelope<'_> = serde_json::from_slice(frame)?;
    if let Some(data) = envelope.data {
        let is_trade = envelope
            .stream
            .as_ref()
            .is_none_or(|stream| stream.0.ends_with("@aggTrade"));
        return if is_trade {
            event_frame(data.get())
        } else {
            Ok(Frame::Other)
        };
    }
    if let Some(event) = envelope.e.as_ref().map(|e| &*e.0) {
        return if event == "aggTrade" {
            trade_from(data_str(frame)?)
        } else {
            Ok(Frame::Other)
        };
    }
    reply_frame(envelope)
}

fn data_str(frame: &[u8]) -> Result<&str, ParseError> {
    // Already parsed as JSON above, so it is UTF-8; the check cannot fail here.
    std::str::from_utf8(frame).map_err(|_| ParseError::Unrecognised {
        shape: "frame is not UTF-8",
    })
}

fn event_frame(data: &str) -> Result<Frame<'_>, ParseError> {
    let probe: EventProbe<'_> = serde_json::from_str(data)?;
    match probe.e.as_ref().map(|e| &*e.0) {
        Some("aggTrade") => trade_from(data),
        Some(_) => Ok(Frame::Other),
        None => Err(ParseError::MissingField { field: "e" }),
    }
}

fn reply_frame(envelope: Envelope<'_>) -> Result<Frame<'_>, ParseError> {
    if let Some(error) = envelope.error {
        return Ok(Frame::Error {
            id: envelope.id,
            code: error.code,
            msg: error.msg.0,
        });
    }
    if let (Some(code), Some(msg)) = (envelope.code, envelope.msg) {
        return Ok(Frame::Error {
            id: envelope.id,
            code,
            msg: msg.0,
        });
    }
    match (envelope.result, envelope.id) {
        (Some(result), Some(id)) if result.get() == "null" => Ok(Frame::Ack { id }),
        (Some(_), Some(id)) => Ok(Frame::Reply { id }),
        (None, Some(id)) => Ok(Frame::Ack { id }),
        (_, None) => Err(ParseError::Unrecognised {
            shape: "an object without event, id or error",
        }),
    }
}

fn trade_from(data: &str) -> Result<Frame<'_>, ParseError> {
    let wire: TradeWire<'_> = serde_json::from_str(data)?;
    Ok(Frame::Trade(RawAggTrade {
        symbol: borrowed(wire.s, "s")?,
        event_time_ms: required(wire.E, "E")?,
        agg_id: required(wire.a, "a")?,
        price: borrowed(wire.p, "p")?,
        qty: borrowed(wire.q, "q")?,
        first_id: required(wire.f, "f")?,
        last_id: required(wire.l, "l")?,
        trade_time_ms: required(wire.T, "T")?,
        buyer_maker: required(wire.m, "m")?,
    }))
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ParseError> {
    value.ok_or(ParseError::MissingField { field })
}

fn borrowed<'a>(value: Option<Text<'a>>, field: &'static str) -> Result<&'a [u8], ParseError> {
    match required(value, field)?.0 {
        Cow::Borrowed(text) => Ok(text.as_bytes()),
        Cow::Owned(_) => Err(ParseError::Escaped { field }),
    }
}
