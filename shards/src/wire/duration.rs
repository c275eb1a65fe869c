//! Durations as the command lines and config files of the engine and the simulator write them
//! (pure; called while flags are read, on the main thread): a number and a unit, `250ms`, `30s`,
//! `5m`, `2h`, `1d`, or a bare number of seconds.

use std::time::Duration;

/// Which numbers a duration may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    /// Whole numbers only (the engine's flags), exact to the millisecond; `1.5s` is refused as
    /// an unknown unit `.5s`.
    Whole,
    /// Decimals too (the simulator's flags: `0.5s`), through `f64` seconds.
    Decimal,
}

/// Why a duration was refused; each caller words its own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// No number before the unit.
    NotANumber,
    /// A unit other than `ms`, `s`, `m`, `h`, `d` (or none).
    UnknownUnit(String),
    /// Too long for a `Duration`.
    OutOfRange,
}

/// Parse `text` (surrounding white space ignored): the number first, then the unit.
///
/// # Errors
/// No number, an unknown unit, or a duration out of range.
pub fn parse(text: &str, numbers: Numbers) -> Result<Duration, DurationError> {
    let text = text.trim();
    let decimal = numbers == Numbers::Decimal;
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || (decimal && c == '.')))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = if decimal {
        (
            0,
            number
                .parse::<f64>()
                .map_err(|_| DurationError::NotANumber)?,
        )
    } else {
        (
            number
                .parse::<u64>()
                .map_err(|_| DurationError::NotANumber)?,
            0.0,
        )
    };
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError::UnknownUnit(unit.to_string())),
    };
    if !decimal {
        let ms = whole
            .checked_mul(ms_per_unit)
            .ok_or(DurationError::OutOfRange)?;
        return Ok(Duration::from_millis(ms));
    }
    let secs = match ms_per_unit {
        1 => fraction / 1000.0,
        ms => fraction * (ms / 1000) as f64,
    };
    Duration::try_from_secs_f64(secs).map_err(|_| DurationError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers() {
        let whole = |text| parse(text, Numbers::Whole);
        assert_eq!(whole(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(whole("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(whole("7"), Ok(Duration::from_secs(7)));
        assert_eq!(whole("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(whole("1.5s"), Err(DurationError::UnknownUnit(".5s".into())));
        assert_eq!(whole("ten"), Err(DurationError::NotANumber));
        assert_eq!(
            whole("99999999999999999999x"),
            Err(DurationError::NotANumber)
        );
        assert_eq!(
            whole("18446744073709551615d"),
            Err(DurationError::OutOfRange)
        );
    }

    #[test]
    fn decimals() {
        let decimal = |text| parse(text, Numbers::Decimal);
        assert_eq!(decimal("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(decimal("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(decimal("2.5ms"), Ok(Duration::from_micros(2500)));
        assert_eq!(decimal("1.2.3s"), Err(DurationError::NotANumber));
        assert_eq!(decimal("5y"), Err(DurationError::UnknownUnit("y".into())));
        assert_eq!(
            decimal("1e400"),
            Err(DurationError::UnknownUnit("e400".into()))
        );
        let huge = format!("{}d", "9".repeat(300));
        assert_eq!(decimal(&huge), Err(DurationError::OutOfRange));
    }
}
