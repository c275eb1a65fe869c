//! Fixed-point decimals (pure, any thread): Binance decimal strings ↔ integers at a symbol's
//! scale, without any floating point.
//!
//! A price or quantity is an `i64` mantissa at the symbol's scale (`"0.7476"` at scale 4 is
//! `7476`). A parsed value must be non-negative and fit in `i64` (at most 18 significant digits are
//! always safe), and it may not carry non-zero digits beyond the scale: that would be a silent
//! rounding, so it is an error. Trailing zeros beyond the scale are fine (`"0.74760000"` at scale
//! 4). Sums (volumes) are `i128`; see [`crate::kline::Kline`] for the bounds.

use std::fmt;

/// The largest scale (decimal places) a symbol may have: `10^18` still fits in an `i64`.
pub const SCALE_MAX: u8 = 18;

/// Why a decimal string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("empty number")]
    Empty,
    #[error("invalid character {byte:?} at position {index}")]
    InvalidChar { index: usize, byte: char },
    #[error("more than one decimal point")]
    SecondPoint,
    #[error("non-zero digit beyond {scale} decimal places (would be rounded)")]
    TooPrecise { scale: u8 },
    #[error("number does not fit in 64 bits at {scale} decimal places")]
    Overflow { scale: u8 },
    #[error("scale {scale} is larger than the maximum {SCALE_MAX}")]
    ScaleTooLarge { scale: u8 },
}

const POW10: [i64; 19] = {
    let mut table = [1i64; 19];
    let mut index = 1;
    while index < 19 {
        table[index] = table[index - 1] * 10;
        index += 1;
    }
    table
};

/// `10^scale` for a valid scale.
pub const fn pow10(scale: u8) -> i64 {
    POW10[scale as usize]
}

/// Parse a decimal string into its mantissa at `scale` decimal places.
///
/// # Errors
/// Any character other than digits and one `.`, an empty string, a non-zero digit beyond
/// `scale`, or a value that does not fit in `i64`.
pub fn parse_scaled(text: &[u8], scale: u8) -> Result<i64, DecimalError> {
    if scale > SCALE_MAX {
        return Err(DecimalError::ScaleTooLarge { scale });
    }
    let overflow = DecimalError::Overflow { scale };
    let mut value: i64 = 0;
    let mut fraction_digits: Option<u8> = None;
    let mut digit_count = 0usize;
    for (index, &byte) in text.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {
                digit_count += 1;
                let digit = i64::from(byte - b'0');
                match fraction_digits.as_mut() {
                    Some(count) if *count >= scale => {
                        if digit != 0 {
                            return Err(DecimalError::TooPrecise { scale });
                        }
                        continue;
                    }
                    Some(count) => *count += 1,
                    None => {}
                }
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(digit))
                    .ok_or(overflow)?;
            }
            b'.' if fraction_digits.is_none() => fraction_digits = Some(0),
            b'.' => return Err(DecimalError::SecondPoint),
            _ => {
                return Err(DecimalError::InvalidChar {
                    index,
                    byte: char::from(byte),
                });
            }
        }
    }
    if digit_count == 0 {
        return Err(DecimalError::Empty);
    }
    let missing = scale - fraction_digits.unwrap_or(0);
    value.checked_mul(pow10(missing)).ok_or(overflow)
}

/// The number of decimal places a string is written with (`"0.74760000"` → 8, `"12"` → 0).
///
/// # Errors
/// The same syntax errors as [`parse_scaled`].
pub fn written_scale(text: &[u8]) -> Result<u8, DecimalError> {
    let places = match text.iter().position(|&b| b == b'.') {
        Some(point) => text.len() - point - 1,
        None => 0,
    };
    let scale = u8::try_from(places).unwrap_or(u8::MAX);
    if scale > SCALE_MAX {
        return Err(DecimalError::ScaleTooLarge { scale });
    }
    parse_scaled(text, scale).map(|_| scale)
}

/// A fixed-point value for printing: `Fixed { value: 7476, scale: 4 }` prints `0.7476`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    pub value: i128,
    pub scale: u8,
}

impl Fixed {
    pub fn new(value: impl Into<i128>, scale: u8) -> Self {
        Fixed {
            value: value.into(),
            scale,
        }
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let divisor = 10u128.pow(u32::from(self.scale));
        let magnitude = self.value.unsigned_abs();
        if self.value < 0 {
            f.write_str("-")?;
        }
        write!(f, "{}", magnitude / divisor)?;
        if self.scale > 0 {
            let width = usize::from(self.scale);
            write!(f, ".{:0width$}", magnitude % divisor)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_at_the_symbol_scale() {
        assert_eq!(parse_scaled(b"0.7476", 4), Ok(7476));
        assert_eq!(parse_scaled(b"0.74760000", 4), Ok(7476));
        assert_eq!(parse_scaled(b"57212.69", 2), Ok(5_721_269));
        assert_eq!(parse_scaled(b"57212.6", 2), Ok(5_721_260));
        assert_eq!(parse_scaled(b"57212", 2), Ok(5_721_200));
        assert_eq!(parse_scaled(b"57212.", 2), Ok(5_721_200));
        assert_eq!(parse_scaled(b".5", 1), Ok(5));
        assert_eq!(parse_scaled(b"100", 0), Ok(100));
        assert_eq!(parse_scaled(b"0.0000001", 7), Ok(1));
    }

    #[test]
    fn zero_quantities_are_values() {
        assert_eq!(parse_scaled(b"0", 3), Ok(0));
        assert_eq!(parse_scaled(b"0.000", 3), Ok(0));
        assert_eq!(parse_scaled(b"0.0000000000", 3), Ok(0));
    }

    #[test]
    fn refuses_rounding() {
        assert_eq!(
            parse_scaled(b"0.74765", 4),
            Err(DecimalError::TooPrecise { scale: 4 })
        );
        assert_eq!(
            parse_scaled(b"1.5", 0),
            Err(DecimalError::TooPrecise { scale: 0 })
        );
        assert_eq!(
            parse_scaled(b"1.00000001", 4),
            Err(DecimalError::TooPrecise { scale: 4 })
        );
    }

    #[test]
    fn refuses_malformed_text() {
        assert_eq!(parse_scaled(b"", 2), Err(DecimalError::Empty));
        assert_eq!(parse_scaled(b".", 2), Err(DecimalError::Empty));
        assert_eq!(parse_scaled(b"1.2.3", 2), Err(DecimalError::SecondPoint));
        assert_eq!(
            parse_scaled(b"-1", 2),
            Err(DecimalError::InvalidChar {
                index: 0,
                byte: '-'
            })
        );
        assert_eq!(
            parse_scaled(b"+1", 2),
            Err(DecimalError::InvalidChar {
                index: 0,
                byte: '+'
            })
        );
        assert_eq!(
            parse_scaled(b"1e5", 2),
            Err(DecimalError::InvalidChar {
                index: 1,
                byte: 'e'
            })
        );
        assert_eq!(
            parse_scaled(b" 1", 2),
            Err(DecimalError::InvalidChar {
                index: 0,
                byte: ' '
            })
        );
        assert_eq!(
            parse_scaled(b"NaN", 2),
            Err(DecimalError::InvalidChar {
                index: 0,
                byte: 'N'
            })
        );
        assert_eq!(
            parse_scaled(b"1", 19),
            Err(DecimalError::ScaleTooLarge { scale: 19 })
        );
    }

    #[test]
    fn max_digits_and_overflow() {
        // i64::MAX = 9223372036854775807: 19 digits fit exactly, one more unit does not.
        assert_eq!(parse_scaled(b"9223372036854775807", 0), Ok(i64::MAX));
        assert_eq!(
            parse_scaled(b"9223372036854775808", 0),
            Err(DecimalError::Overflow { scale: 0 })
        );
        assert_eq!(parse_scaled(b"922337203685477580.7", 1), Ok(i64::MAX));
        assert_eq!(
            parse_scaled(b"922337203685477581", 1),
            Err(DecimalError::Overflow { scale: 1 })
        );
        assert_eq!(
            parse_scaled(b"0.999999999999999999", 18),
            Ok(999_999_999_999_999_999)
        );
        assert_eq!(
            parse_scaled(b"10", 18),
            Err(DecimalError::Overflow { scale: 18 })
        );
        // 18 significant digits are always safe.
        assert_eq!(
            parse_scaled(b"99999999.9999999999", 10),
            Ok(999_999_999_999_999_999)
        );
        // Leading zeros do not count towards overflow.
        assert_eq!(parse_scaled(b"000000000000000000000001.5", 1), Ok(15));
    }

    #[test]
    fn written_scale_counts_places_as_written() {
        assert_eq!(written_scale(b"0.74760000"), Ok(8));
        assert_eq!(written_scale(b"87648.21"), Ok(2));
        assert_eq!(written_scale(b"12"), Ok(0));
        assert!(written_scale(b"1.2x").is_err());
        assert!(written_scale(b"0.0000000000000000001").is_err());
    }

    #[test]
    fn prints_with_the_symbol_places() {
        assert_eq!(Fixed::new(7476, 4).to_string(), "0.7476");
        assert_eq!(Fixed::new(5_721_269, 2).to_string(), "57212.69");
        assert_eq!(Fixed::new(0, 4).to_string(), "0.0000");
        assert_eq!(Fixed::new(0, 0).to_string(), "0");
        assert_eq!(Fixed::new(12, 0).to_string(), "12");
        assert_eq!(Fixed::new(1, 7).to_string(), "0.0000001");
        assert_eq!(Fixed::new(-15, 1).to_string(), "-1.5");
        assert_eq!(
            Fixed::new(i128::MAX, 18).to_string(),
            "170141183460469231731.687303715884105727"
        );
        assert_eq!(
            Fixed::new(i128::MIN, 0).to_string(),
            "-170141183460469231731687303715884105728"
        );
    }

    #[test]
    fn round_trips_through_text() {
        for (value, scale) in [
            (0i64, 0u8),
            (1, 8),
            (123_456_789, 3),
            (i64::MAX, 18),
            (42, 18),
        ] {
            let text = Fixed::new(value, scale).to_string();
            assert_eq!(parse_scaled(text.as_bytes(), scale), Ok(value), "{text}");
        }
    }
}
