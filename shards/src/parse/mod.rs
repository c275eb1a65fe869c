//! WebSocket frame parsing (pure; runs on a shard thread, owns nothing): one text frame of a
//! Binance `/market` connection → a borrowed [`Frame`], without f64 and without a heap
//! allocation per trade.
//!
//! Two paths give the same result:
//! - [`scan`]: a hand-written scanner for the shapes Binance sends (combined
//!   `{"stream":…,"data":{…}}` or raw `{"e":"aggTrade",…}`; any key order inside `data`, unknown
//!   scalar fields such as `"nq"` skipped). It gives up (never errors) on anything unusual:
//!   whitespace, escapes, nested unknown values, duplicate keys, odd numbers.
//! - [`fallback`]: `serde_json` into borrowed structs, which accepts any valid JSON and gives the
//!   typed error for malformed frames.
//!
//! Decimal strings (`p`, `q`) stay byte slices until the symbol's [`Scales`] are known:
//! [`RawAggTrade::to_agg_trade`] converts them with [`parse_scaled`].

pub mod fallback;
pub mod scan;

use std::borrow::Cow;

use crate::kline::{AggTrade, DecimalError, Scales, parse_scaled};

/// One aggregate trade as it appears on the wire (`<symbol>@aggTrade`), borrowed from the frame:
/// `{"e":"aggTrade","E":1626992741017,"s":"SUSHIUSDT","a":101,"p":"7.6110","q":"2","f":1,
/// "l":3,"T":1626992741012,"m":true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAggTrade<'a> {
    /// `s`: the symbol, upper case (`BTCUSDT`).
    pub symbol: &'a [u8],
    /// `E`: event time, epoch ms (when the exchange sent it).
    pub event_time_ms: i64,
    /// `a`: aggregate trade id.
    pub agg_id: i64,
    /// `p`: price, decimal text.
    pub price: &'a [u8],
    /// `q`: quantity, decimal text.
    pub qty: &'a [u8],
    /// `f`: first underlying trade id.
    pub first_id: i64,
    /// `l`: last underlying trade id.
    pub last_id: i64,
    /// `T`: trade time, epoch ms.
    pub trade_time_ms: i64,
    /// `m`: the buyer is the maker.
    pub buyer_maker: bool,
}

impl RawAggTrade<'_> {
    /// Convert to the kline core's trade at the symbol's scales (exact, no rounding).
    ///
    /// # Errors
    /// `p` or `q` is not a plain non-negative decimal, or has non-zero digits beyond the scale.
    #[inline]
    pub fn to_agg_trade(&self, scales: Scales) -> Result<AggTrade, ParseError> {
        let price = parse_scaled(self.price, scales.price)
            .map_err(|source| ParseError::Decimal { field: "p", source })?;
        let qty = parse_scaled(self.qty, scales.qty)
            .map_err(|source| ParseError::Decimal { field: "q", source })?;
        Ok(AggTrade {
            agg_id: self.agg_id,
            price,
            qty,
            first_id: self.first_id,
            last_id: self.last_id,
            time_ms: self.trade_time_ms,
            buyer_maker: self.buyer_maker,
        })
    }
}

/// What one text frame was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An aggregate trade (combined or raw framing).
    Trade(RawAggTrade<'a>),
    /// A successful reply without a value: `{"result":null,"id":N}` (SUBSCRIBE, UNSUBSCRIBE,
    /// SET_PROPERTY).
    Ack { id: u64 },
    /// A reply with a value: `{"result":[…],"id":N}` (LIST_SUBSCRIPTIONS, GET_PROPERTY).
    Reply { id: u64 },
    /// An error reply: `{"error":{"code":2,"msg":"…"},"id":N}` (or the flat `{"code":…,"msg":…}`
    /// form); `id` is `None` when the server could not read the request's id.
    Error {
        id: Option<u64>,
        code: i64,
        msg: Cow<'a, str>,
    },
    /// A valid frame of another kind (kline, depth, bookTicker, `!miniTicker@arr`, …).
    Other,
}

/// Why a frame could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("frame is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("aggTrade field `{field}` is missing")]
    MissingField { field: &'static str },
    #[error("aggTrade field `{field}` uses JSON escapes (refused: no allocation per trade)")]
    Escaped { field: &'static str },
    #[error("aggTrade field `{field}` is not a valid decimal: {source}")]
    Decimal {
        field: &'static str,
        source: DecimalError,
    },
    #[error("frame has neither a known event, a reply nor an error: {shape}")]
    Unrecognised { shape: &'static str },
}

impl ParseError {
    /// The aggTrade field the error is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ParseError::MissingField { field }
            | ParseError::Escaped { field }
            | ParseError::Decimal { field, .. } => Some(field),
            ParseError::Json(_) | ParseError::Unrecognised { .. } => None,
        }
    }
}

/// Parse one text frame: the scanner first, the serde fallback for anything it gives up on.
///
/// # Errors
/// The frame is not valid JSON, or an aggTrade lacks a field, has a wrong type or escapes.
#[inline]
pub fn parse_frame(frame: &[u8]) -> Result<Frame<'_>, ParseError> {
    match scan::scan_frame(frame) {
        Some(parsed) => Ok(parsed),
        None => fallback::parse_frame_serde(frame),
    }
}

#[cfg(test)]
mod tests;
