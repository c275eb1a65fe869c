//! Kline ↔ stored text (pure, any thread: the store writer encodes, readers decode). Prices and
//! volumes are stored as exact decimal strings at the symbol's decimal places, the way Binance
//! prints them; this module formats them and parses them back into fixed-point mantissas.

use std::fmt::Write as _;

use klagg_shards::kline::{Fixed, Kline, Scales};

/// The largest scale a stored decimal may be read at (`10^38` still fits in a `u128`).
pub const DECODE_SCALE_MAX: u8 = 38;

/// Why a stored decimal string could not be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a decimal number")]
    Syntax,
    #[error("non-zero digit beyond {scale} decimal places")]
    TooPrecise { scale: u8 },
    #[error("does not fit in 128 bits at {scale} decimal places")]
    Overflow { scale: u8 },
    #[error("does not fit in 64 bits at {scale} decimal places")]
    Overflow64 { scale: u8 },
}

/// Parse a decimal string (optional leading `-`, digits, at most one `.`) into its mantissa at
/// `scale` places. Fewer places than `scale` are exact (`"1.5"` at 3 → `1500`); extra places must
/// be zeros.
///
/// # Errors
/// Malformed text, a non-zero digit beyond `scale`, or a value outside `i128`.
pub fn parse_decimal(text: &str, scale: u8) -> Result<i128, DecodeError> {
    if scale > DECODE_SCALE_MAX {
        return Err(DecodeError::Overflow { scale });
    }
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let magnitude = parse_magnitude(digits, scale)?;
    if negative {
        0i128
            .checked_sub_unsigned(magnitude)
            .ok_or(DecodeError::Overflow { scale })
    } else {
        i128::try_from(magnitude).map_err(|_| DecodeError::Overflow { scale })
    }
}

/// [`parse_decimal`] for a value that must fit in `i64` (prices).
///
/// # Errors
/// As [`parse_decimal`], or a value outside `i64`.
pub fn parse_decimal_i64(text: &str, scale: u8) -> Result<i64, DecodeError> {
    let value = parse_decimal(text, scale)?;
    i64::try_from(value).map_err(|_| DecodeError::Overflow64 { scale })
}

fn parse_magnitude(digits: &[u8], scale: u8) -> Result<u128, DecodeError> {
    let overflow = DecodeError::Overflow { scale };
    let mut magnitude: u128 = 0;
    let mut places: Option<u8> = None;
    let mut digit_count = 0usize;
    for &byte in digits {
        match byte {
            b'0'..=b'9' => {
                digit_count += 1;
                let digit = u128::from(byte - b'0');
                if let Some(count) = places.as_mut() {
                    if *count >= scale {
                        if digit != 0 {
                            return Err(DecodeError::TooPrecise { scale });
                        }
                        continue;
                    }
                    *count += 1;
                }
                magnitude = magnitude
                    .checked_mul(10)
                    .and_then(|value| value.checked_add(digit))
                    .ok_or(overflow)?;
            }
            b'.' if places.is_none() => places = Some(0),
            _ => return Err(DecodeError::Syntax),
        }
    }
    if digit_count == 0 {
        return Err(DecodeError::Syntax);
    }
    let missing = u32::from(scale - places.unwrap_or(0));
    magnitude.checked_mul(10u128.pow(missing)).ok_or(overflow)
}

/// The eight decimal columns of one kline as text, with reusable buffers (the writer encodes
/// thousands of rows per batch without allocating per row).
#[derive(Debug, Default)]
pub struct KlineText {
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
    pub quote_volume: String,
    pub taker_buy_volume: String,
    pub taker_buy_quote_volume: String,
}

impl KlineText {
    /// Format `kline` at `scales` into the buffers.
    pub fn encode(&mut self, kline: &Kline, scales: Scales) {
        let (price, qty, quote) = (scales.price, scales.qty, scales.quote());
        put(&mut self.open, Fixed::new(kline.open, price));
        put(&mut self.high, Fixed::new(kline.high, price));
        put(&mut self.low, Fixed::new(kline.low, price));
        put(&mut self.close, Fixed::new(kline.close, price));
        put(&mut self.volume, Fixed::new(kline.volume, qty));
        put(
            &mut self.quote_volume,
            Fixed::new(kline.quote_volume, quote),
        );
        put(
            &mut self.taker_buy_volume,
            Fixed::new(kline.taker_buy_volume, qty),
        );
        put(
            &mut self.taker_buy_quote_volume,
            Fixed::new(kline.taker_buy_quote_volume, quote),
        );
    }
}

fn put(buffer: &mut String, value: Fixed) {
    buffer.clear();
    let _ = write!(buffer, "{value}");
}

/// The decimal columns of one stored row, borrowed from the SQLite row.
#[derive(Debug, Clone, Copy)]
pub struct DecimalColumns<'a> {
    pub open: &'a str,
    pub high: &'a str,
    pub low: &'a str,
    pub close: &'a str,
    pub volume: &'a str,
    pub quote_volume: &'a str,
    pub taker_buy_volume: &'a str,
    pub taker_buy_quote_volume: &'a str,
}

/// Parse the decimal columns into `kline` at `scales`.
///
/// # Errors
/// The name of the first column that did not parse, with the reason.
pub fn decode_into(
    columns: &DecimalColumns<'_>,
    scales: Scales,
    kline: &mut Kline,
) -> Result<(), (&'static str, DecodeError)> {
    let (price, qty, quote) = (scales.price, scales.qty, scales.quote());
    let price_of = |name, text| parse_decimal_i64(text, price).map_err(|e| (name, e));
    let volume_of = |name, text, scale| parse_decimal(text, scale).map_err(|e| (name, e));
    kline.open = price_of("open", columns.open)?;
    kline.high = price_of("high", columns.high)?;
    kline.low = price_of("low", columns.low)?;
    kline.close = price_of("close", columns.close)?;
    kline.volume = volume_of("volume", columns.volume, qty)?;
    kline.quote_volume = volume_of("quote_volume", columns.quote_volume, quote)?;
    kline.taker_buy_volume = volume_of("taker_buy_volume", columns.taker_buy_volume, qty)?;
    kline.taker_buy_quote_volume = volume_of(
        "taker_buy_quote_volume",
        columns.taker_buy_quote_volume,
        quote,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_fixed_prints_at_extremes() {
        for scale in [0u8, 1, 8, 18, 36] {
            for value in [0i128, 1, -1, 42, i128::MAX, i128::MIN, i128::from(i64::MAX)] {
                let text = Fixed::new(value, scale).to_string();
                assert_eq!(parse_decimal(&text, scale), Ok(value), "{text} @ {scale}");
            }
        }
    }

    #[test]
    fn reads_at_a_finer_scale_exactly_and_refuses_rounding() {
        assert_eq!(parse_decimal("57212.6", 2), Ok(5_721_260));
        assert_eq!(parse_decimal("12", 3), Ok(12_000));
        assert_eq!(parse_decimal("0.7476000", 4), Ok(7476));
        assert_eq!(
            parse_decimal("0.74765", 4),
            Err(DecodeError::TooPrecise { scale: 4 })
        );
        assert_eq!(
            parse_decimal(&i128::MAX.to_string(), 1),
            Err(DecodeError::Overflow { scale: 1 })
        );
        assert_eq!(
            parse_decimal_i64("9223372036854775808", 0),
            Err(DecodeError::Overflow64 { scale: 0 })
        );
        assert_eq!(parse_decimal_i64("-1", 0), Ok(-1));
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "", "-", ".", "1.2.3", "+1", "1e5", " 1", "1 ", "--1", "NaN", "0x10",
        ] {
            assert_eq!(parse_decimal(bad, 2), Err(DecodeError::Syntax), "{bad:?}");
        }
        assert_eq!(
            parse_decimal("1", 39),
            Err(DecodeError::Overflow { scale: 39 })
        );
    }

    #[test]
    fn encodes_and_decodes_a_kline() {
        let scales = Scales { price: 2, qty: 3 };
        let kline = Kline {
            open: 5_721_269,
            high: 5_731_500,
            low: 5_719_619,
            close: 5_730_000,
            volume: 496_263,
            quote_volume: 2_842_551_478_940,
            taker_buy_volume: 273_108,
            taker_buy_quote_volume: 1_564_262_369_718,
            ..Kline::default()
        };
        let mut text = KlineText::default();
        text.encode(&kline, scales);
        assert_eq!(text.open, "57212.69");
        assert_eq!(text.quote_volume, "28425514.78940");
        let columns = DecimalColumns {
            open: &text.open,
            high: &text.high,
            low: &text.low,
            close: &text.close,
            volume: &text.volume,
            quote_volume: &text.quote_volume,
            taker_buy_volume: &text.taker_buy_volume,
            taker_buy_quote_volume: &text.taker_buy_quote_volume,
        };
        let mut back = Kline::default();
        decode_into(&columns, scales, &mut back).unwrap();
        assert_eq!(back, kline);
        let coarser = Scales { price: 1, qty: 3 };
        assert_eq!(
            decode_into(&columns, coarser, &mut back),
            Err(("open", DecodeError::TooPrecise { scale: 1 }))
        );
    }
}
