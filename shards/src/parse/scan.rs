//! The fast frame scanner (pure; shard thread): recognises the frame shapes Binance sends with
//! one forward pass and no allocation. It returns `None` — "ask the serde fallback" — for
//! anything it does not handle itself: whitespace, escapes, non-ASCII text, nested unknown values,
//! duplicate keys, numbers that are not plain integers. It never panics on any input.

use super::{Frame, RawAggTrade};

const COMBINED_PREFIX: &[u8] = b"{\"stream\":\"";
const DATA_KEY: &[u8] = b",\"data\":";
const AGG_TRADE_SUFFIX: &[u8] = b"@aggTrade";
const RAW_EVENT_PREFIX: &[u8] = b"{\"e\":\"";
const RAW_TRADE_PREFIX: &[u8] = b"{\"e\":\"aggTrade\"";
const ACK_PREFIX: &[u8] = b"{\"result\":null,\"id\":";

const SEEN_E: u16 = 1 << 0;
const SEEN_EVENT_TIME: u16 = 1 << 1;
const SEEN_SYMBOL: u16 = 1 << 2;
const SEEN_AGG_ID: u16 = 1 << 3;
const SEEN_PRICE: u16 = 1 << 4;
const SEEN_QTY: u16 = 1 << 5;
const SEEN_FIRST: u16 = 1 << 6;
const SEEN_LAST: u16 = 1 << 7;
const SEEN_TRADE_TIME: u16 = 1 << 8;
const SEEN_MAKER: u16 = 1 << 9;
const SEEN_ALL: u16 = (1 << 10) - 1;
/// Integers of up to 18 digits cannot overflow an `i64`; longer ones go to the fallback.
const INT_DIGITS_MAX: usize = 18;

/// Scan one frame; `None` when the shape is not one the scanner handles (not necessarily an
/// error: the caller runs the serde fallback).
#[inline]
pub fn scan_frame(frame: &[u8]) -> Option<Frame<'_>> {
    if frame.starts_with(COMBINED_PREFIX) {
        scan_combined(frame)
    } else if frame.starts_with(RAW_TRADE_PREFIX) {
        let mut cursor = Cursor::new(frame, 0);
        let trade = cursor.trade_object()?;
        cursor.at_end().then_some(Frame::Trade(trade))
    } else if frame.starts_with(RAW_EVENT_PREFIX) {
        // A raw event of another stream (`{"e":"kline",…}`).
        Some(Frame::Other)
    } else if frame.starts_with(ACK_PREFIX) {
        let mut cursor = Cursor::new(frame, ACK_PREFIX.len());
        let id = cursor.unsigned()?;
        cursor.byte(b'}')?;
        cursor.at_end().then_some(Frame::Ack { id })
    } else {
        None
    }
}

fn scan_combined(frame: &[u8]) -> Option<Frame<'_>> {
    let mut cursor = Cursor::new(frame, COMBINED_PREFIX.len());
    let stream = cursor.string_body()?;
    cursor.literal(DATA_KEY)?;
    if !stream.ends_with(AGG_TRADE_SUFFIX) {
        return Some(Frame::Other);
    }
    let trade = cursor.trade_object()?;
    cursor.byte(b'}')?;
    cursor.at_end().then_some(Frame::Trade(trade))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], pos: usize) -> Self {
        Cursor { bytes, pos }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    #[inline(always)]
    fn byte(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        let rest = self.bytes.get(self.pos..)?;
        if rest.starts_with(expected) {
            self.pos += expected.len();
            Some(())
        } else {
            None
        }
    }

    fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// The body of a string whose opening quote was consumed; consumes the closing quote.
    /// Only printable ASCII without escapes is accepted.
    #[inline(always)]
    fn string_body(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        loop {
            let byte = self.next()?;
            if byte == b'"' {
                return self.bytes.get(start..self.pos - 1);
            }
            if !(0x20..0x80).contains(&byte) || byte == b'\\' {
                return None;
            }
        }
    }

    #[inline(always)]
    fn string(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        self.string_body()
    }

    /// A plain non-negative JSON integer of at most 18 digits.
    #[inline(always)]
    fn int(&mut self) -> Option<i64> {
        let start = self.pos;
        let mut value: i64 = 0;
        while let Some(byte @ b'0'..=b'9') = self.peek() {
            if self.pos - start == INT_DIGITS_MAX {
                return None;
            }
            value = value * 10 + i64::from(byte - b'0');
            self.pos += 1;
        }
        let digits = self.pos - start;
        // JSON forbids leading zeros ("01"); leave those to the fallback's error.
        let leading_zero = digits > 1 && self.bytes.get(start) == Some(&b'0');
        (digits > 0 && !leading_zero).then_some(value)
    }

    fn unsigned(&mut self) -> Option<u64> {
        self.int().and_then(|value| u64::try_from(value).ok())
    }

    fn boolean(&mut self) -> Option<bool> {
        if self.literal(b"true").is_some() {
            Some(true)
        } else if self.literal(b"false").is_some() {
            Some(false)
        } else {
            None
        }
    }

    /// Skip an unknown value: a string, a number, `true`, `false` or `null`. Objects and
    /// arrays are left to the fallback.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.skip_number(),
        }
    }

    fn skip_number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        self.int()?;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
        }
        Some(())
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        (self.pos > start).then_some(())
    }

    /// An aggTrade object `{…}` with its keys in any order and unknown scalar keys skipped.
    /// `None` when a field is missing or repeated, or `e` is not `aggTrade`.
    #[inline]
    fn trade_object(&mut self) -> Option<RawAggTrade<'a>> {
        self.byte(b'{')?;
        let mut trade = RawAggTrade {
            symbol: &[],
            event_time_ms: 0,
            agg_id: 0,
            price: &[],
            qty: &[],
            first_id: 0,
            last_id: 0,
            trade_time_ms: 0,
            buyer_maker: false,
        };
        let mut seen = 0u16;
        loop {
            self.byte(b'"')?;
            let key = self.string_body()?;
            self.byte(b':')?;
            let bit = self.trade_field(key, &mut trade)?;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match self.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        (seen == SEEN_ALL).then_some(trade)
    }

    /// Read the value of `key` into `trade`; the returned bit says which field it was (0 for an
    /// unknown key, whose value is skipped).
    #[inline(always)]
    fn trade_field(&mut self, key: &[u8], trade: &mut RawAggTrade<'a>) -> Option<u16> {
        let [name] = key else {
            self.skip_scalar()?;
            return Some(0);
        };
        Some(match name {
            b'e' => {
                if self.string()? != b"aggTrade" {
                    return None;
                }
                SEEN_E
            }
            b'E' => {
                trade.event_time_ms = self.int()?;
                SEEN_EVENT_TIME
            }
            b's' => {
                trade.symbol = self.string()?;
                SEEN_SYMBOL
            }
            b'a' => {
                trade.agg_id = self.int()?;
                SEEN_AGG_ID
            }
            b'p' => {
                trade.price = self.string()?;
                SEEN_PRICE
            }
            b'q' => {
                trade.qty = self.string()?;
                SEEN_QTY
            }
            b'f' => {
                trade.first_id = self.int()?;
                SEEN_FIRST
            }
            b'l' => {
                trade.last_id = self.int()?;
                SEEN_LAST
            }
            b'T' => {
                trade.trade_time_ms = self.int()?;
                SEEN_TRADE_TIME
            }
            b'm' => {
                trade.buyer_maker = self.boolean()?;
                SEEN_MAKER
            }
            _ => {
                self.skip_scalar()?;
                0
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRADE: &[u8] = br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1672531200001,"s":"BTCUSDT","a":770298494,"p":"16500.10","q":"0.010","f":3184717360,"l":3184717361,"T":1672531199998,"m":true}}"#;

    #[test]
    fn scans_the_binance_shape() {
        let Some(Frame::Trade(trade)) = scan_frame(TRADE) else {
            panic!("not scanned");
        };
        assert_eq!(trade.symbol, b"BTCUSDT");
        assert_eq!(trade.agg_id, 770_298_494);
        assert_eq!((trade.price, trade.qty), (&b"16500.10"[..], &b"0.010"[..]));
        assert_eq!(
            (trade.first_id, trade.last_id),
            (3_184_717_360, 3_184_717_361)
        );
        assert_eq!(
            (trade.event_time_ms, trade.trade_time_ms),
            (1_672_531_200_001, 1_672_531_199_998)
        );
        assert!(trade.buyer_maker);
    }

    #[test]
    fn gives_up_rather_than_guess() {
        let cases: [&[u8]; 9] = [
            br#"{"stream": "btcusdt@aggTrade","data":{}}"#,
            br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"B\u0054C","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}}"#,
            br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"B","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true,"x":{}}}"#,
            br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"B","a":1,"a":2,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}}"#,
            br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1.5,"s":"B","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}}"#,
            br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":01,"s":"B","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}}"#,
            br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"B","a":1,"p":"1","q":"1","f":1,"l":1,"T":1}}"#,
            br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"B","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}} "#,
            br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"B","a":1234567890123456789,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}}"#,
        ];
        for case in cases {
            assert_eq!(scan_frame(case), None, "{}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn never_panics_on_prefixes() {
        for end in 0..TRADE.len() {
            assert_eq!(scan_frame(&TRADE[..end]), None);
        }
    }
}
