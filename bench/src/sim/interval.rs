//! Kline interval grid (pure functions, used by every simulator thread): parsing Binance's
//! interval names and aligning times to open times. Deliberately independent of the engine's
//! kline core: epoch multiples for 1s…1d and 3d, Monday 00:00 UTC for 1w, the 1st of the
//! calendar month for 1M, and `close = next open − 1`.

use std::fmt;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// 1970-01-01 was a Thursday; the first Monday 00:00 UTC is 4 days later.
const FIRST_MONDAY_MS: i64 = 4 * DAY_MS;

/// A kline interval. `Fixed` covers every interval of constant length aligned to epoch
/// multiples (1s, 1m…1d, 3d); weeks and months have their own alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    /// Constant length in ms, open times are multiples of it since the Unix epoch.
    Fixed(i64),
    /// One week opening Monday 00:00 UTC.
    Week,
    /// One calendar month opening on the 1st 00:00 UTC.
    Month,
}

/// Binance names and the interval they stand for, in Binance's order (`1s` is the extension).
pub const INTERVALS: [(&str, Interval); 16] = [
    ("1s", Interval::Fixed(SECOND_MS)),
    ("1m", Interval::Fixed(MINUTE_MS)),
    ("3m", Interval::Fixed(3 * MINUTE_MS)),
    ("5m", Interval::Fixed(5 * MINUTE_MS)),
    ("15m", Interval::Fixed(15 * MINUTE_MS)),
    ("30m", Interval::Fixed(30 * MINUTE_MS)),
    ("1h", Interval::Fixed(HOUR_MS)),
    ("2h", Interval::Fixed(2 * HOUR_MS)),
    ("4h", Interval::Fixed(4 * HOUR_MS)),
    ("6h", Interval::Fixed(6 * HOUR_MS)),
    ("8h", Interval::Fixed(8 * HOUR_MS)),
    ("12h", Interval::Fixed(12 * HOUR_MS)),
    ("1d", Interval::Fixed(DAY_MS)),
    ("3d", Interval::Fixed(3 * DAY_MS)),
    ("1w", Interval::Week),
    ("1M", Interval::Month),
];

impl Interval {
    /// Parse a Binance interval name (`1s`, `1m` … `1M`); case matters (`1m` ≠ `1M`).
    pub fn parse(name: &str) -> Option<Interval> {
        INTERVALS.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
    }

    /// The Binance name of this interval.
    pub fn name(self) -> &'static str {
        INTERVALS
            .iter()
            .find(|(_, i)| *i == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// Open time of the interval that contains `t_ms`.
    pub fn open_of(self, t_ms: i64) -> i64 {
        match self {
            Interval::Fixed(len) => t_ms.div_euclid(len) * len,
            Interval::Week => {
                (t_ms - FIRST_MONDAY_MS).div_euclid(WEEK_MS) * WEEK_MS + FIRST_MONDAY_MS
            }
            Interval::Month => {
                let (y, m, _) = civil_from_days(t_ms.div_euclid(DAY_MS));
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }

    /// Open time of the interval after the one opening at `open_ms`.
    pub fn next_open(self, open_ms: i64) -> i64 {
        match self {
            Interval::Fixed(len) => open_ms + len,
            Interval::Week => open_ms + WEEK_MS,
            Interval::Month => {
                let (y, m, _) = civil_from_days(open_ms.div_euclid(DAY_MS));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(ny, nm, 1) * DAY_MS
            }
        }
    }

    /// Close time of the interval opening at `open_ms`: next open − 1 ms.
    pub fn close_of(self, open_ms: i64) -> i64 {
        self.next_open(open_ms) - 1
    }

    /// True when every interval boundary is also a 1-minute boundary (all but `1s`).
    pub fn is_minute_multiple(self) -> bool {
        match self {
            Interval::Fixed(len) => len % MINUTE_MS == 0,
            Interval::Week | Interval::Month => true,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31). Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01. Inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_name_round_trip() {
        for (name, iv) in INTERVALS {
            assert_eq!(Interval::parse(name), Some(iv));
            assert_eq!(iv.name(), name);
        }
        assert_eq!(Interval::parse("2m"), None);
        assert_eq!(Interval::parse("1H"), None);
    }

    #[test]
    fn fixed_alignment_and_close() {
        let m1 = Interval::parse("1m").unwrap();
        assert_eq!(m1.open_of(1_591_261_559_999), 1_591_261_500_000);
        assert_eq!(m1.close_of(1_591_261_500_000), 1_591_261_559_999);
        let d3 = Interval::parse("3d").unwrap();
        assert_eq!(d3.open_of(259_200_000 * 5 + 7), 259_200_000 * 5);
    }

    #[test]
    fn week_opens_monday() {
        // Binance's documented weekly bar: Mon 2017-07-03 00:00 UTC .. Sun 23:59:59.999.
        let w = Interval::Week;
        assert_eq!(w.open_of(1_499_300_000_000), 1_499_040_000_000);
        assert_eq!(w.close_of(1_499_040_000_000), 1_499_644_799_999);
        assert_eq!(w.open_of(1_499_040_000_000), 1_499_040_000_000);
    }

    #[test]
    fn month_opens_on_the_first() {
        let m = Interval::Month;
        // 2024-02-15 → 2024-02-01; next is 2024-03-01 (leap year).
        assert_eq!(m.open_of(1_707_955_200_000), 1_706_745_600_000);
        assert_eq!(m.next_open(1_706_745_600_000), 1_709_251_200_000);
        // December rolls into January.
        assert_eq!(m.next_open(1_701_388_800_000), 1_704_067_200_000);
        assert_eq!(m.open_of(-1), -2_678_400_000);
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
