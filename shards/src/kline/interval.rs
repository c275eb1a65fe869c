//! Kline intervals (pure, any thread): names, open-time alignment and close times for every
//! Binance interval. Open times are epoch multiples for 1s…1d and 3d; 1w opens Monday 00:00 UTC;
//! 1M opens on the 1st of the calendar month (UTC). `close_time = next_open − 1`.

use std::fmt;
use std::str::FromStr;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// The Unix epoch (1970-01-01) was a Thursday; the first Monday is 4 days later.
const FIRST_MONDAY_MS: i64 = 4 * DAY_MS;

/// A Binance kline interval. `1m` (minute) and `1M` (month) are different variants. The order
/// (`Ord`) is shortest first, the order of [`Interval::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    S1,
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H8,
    H12,
    D1,
    D3,
    W1,
    Mo1,
}

/// The interval name was not one of Binance's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown interval {name:?}; expected one of {}", Interval::NAMES)]
pub struct IntervalError {
    pub name: String,
}

impl Interval {
    /// Every interval, shortest first.
    pub const ALL: [Interval; 16] = [
        Interval::S1,
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H8,
        Interval::H12,
        Interval::D1,
        Interval::D3,
        Interval::W1,
        Interval::Mo1,
    ];

    /// The accepted names, for error messages and `--help`.
    pub const NAMES: &'static str = "1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M";

    /// Binance's name of the interval (`"1m"`, `"1M"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Interval::S1 => "1s",
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H8 => "8h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::D3 => "3d",
            Interval::W1 => "1w",
            Interval::Mo1 => "1M",
        }
    }

    /// The fixed length in milliseconds, or `None` for the calendar month.
    pub const fn fixed_ms(self) -> Option<i64> {
        Some(match self {
            Interval::S1 => SECOND_MS,
            Interval::M1 => MINUTE_MS,
            Interval::M3 => 3 * MINUTE_MS,
            Interval::M5 => 5 * MINUTE_MS,
            Interval::M15 => 15 * MINUTE_MS,
            Interval::M30 => 30 * MINUTE_MS,
            Interval::H1 => HOUR_MS,
            Interval::H2 => 2 * HOUR_MS,
            Interval::H4 => 4 * HOUR_MS,
            Interval::H6 => 6 * HOUR_MS,
            Interval::H8 => 8 * HOUR_MS,
            Interval::H12 => 12 * HOUR_MS,
            Interval::D1 => DAY_MS,
            Interval::D3 => 3 * DAY_MS,
            Interval::W1 => WEEK_MS,
            Interval::Mo1 => return None,
        })
    }

    /// True when every period of `inner` lies inside one period of `self`: then `self`'s open
    /// kline holds every trade `inner`'s open kline holds. Intervals up to 1d divide the day
    /// and are epoch-aligned, so they nest in each other by length and in every interval whose
    /// periods start on day boundaries (1d, 3d, 1w, 1M); 3d, 1w and 1M nest in nothing else.
    pub fn contains(self, inner: Interval) -> bool {
        if self == inner {
            return true;
        }
        match (self.fixed_ms(), inner.fixed_ms()) {
            (_, Some(len)) if len > DAY_MS => false,
            (None, Some(_)) => true,
            (Some(outer), Some(len)) => outer >= DAY_MS || outer % len == 0,
            (_, None) => false,
        }
    }

    /// The open time of the period that contains `ts_ms`.
    pub fn open_time(self, ts_ms: i64) -> i64 {
        match self {
            Interval::W1 => ts_ms - (ts_ms - FIRST_MONDAY_MS).rem_euclid(WEEK_MS),
            Interval::Mo1 => {
                let (year, month, _) = civil_from_days(ts_ms.div_euclid(DAY_MS));
                days_from_civil(year, month, 1) * DAY_MS
            }
            _ => {
                let len = self.fixed_ms().expect("fixed interval");
                ts_ms - ts_ms.rem_euclid(len)
            }
        }
    }

    /// The open time of the period after the one that opens at `open_ms`.
    pub fn next_open(self, open_ms: i64) -> i64 {
        match self.fixed_ms() {
            Some(len) => open_ms + len,
            None => {
                let (year, month, _) = civil_from_days(open_ms.div_euclid(DAY_MS));
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                days_from_civil(year, month, 1) * DAY_MS
            }
        }
    }

    /// The close time of the period that opens at `open_ms` (`next_open − 1`).
    pub fn close_time(self, open_ms: i64) -> i64 {
        self.next_open(open_ms) - 1
    }

    /// How many periods lie from the period opening at `from_open_ms` up to (excluding) the one
    /// opening at `to_open_ms`. Both must be aligned open times with `from ≤ to`.
    pub fn periods_between(self, from_open_ms: i64, to_open_ms: i64) -> u64 {
        debug_assert!(from_open_ms <= to_open_ms);
        let count = match self.fixed_ms() {
            Some(len) => (to_open_ms - from_open_ms) / len,
            None => month_index(to_open_ms) - month_index(from_open_ms),
        };
        u64::try_from(count).unwrap_or(0)
    }

    /// Parse a comma-separated list (`"1m,5m,1h"`), keeping the order given and refusing
    /// duplicates.
    pub fn parse_list(list: &str) -> Result<Vec<Interval>, IntervalError> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim) {
            let interval: Interval = name.parse()?;
            if out.contains(&interval) {
                return Err(IntervalError {
                    name: format!("{name} (listed twice)"),
                });
            }
            out.push(interval);
        }
        Ok(out)
    }
}

impl FromStr for Interval {
    type Err = IntervalError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Interval::ALL
            .into_iter()
            .find(|interval| interval.as_str() == name)
            .ok_or_else(|| IntervalError {
                name: name.to_string(),
            })
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn month_index(ts_ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(ts_ms.div_euclid(DAY_MS));
    year * 12 + i64::from(month) - 1
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC date-time, built independently of the code under test's callers.
    fn utc(year: i64, month: u32, day: u32, hour: i64, minute: i64, second: i64) -> i64 {
        days_from_civil(year, month, day) * DAY_MS
            + hour * HOUR_MS
            + minute * MINUTE_MS
            + second * 1000
    }

    #[test]
    fn contains_matches_the_periods() {
        // 400 days (months, weeks, 3-day periods and a leap day) in steps of 7919 s, a prime,
        // so the samples fall at every phase of the shorter periods: `outer` contains `inner`
        // exactly when no sampled `inner` period straddles an `outer` boundary.
        let start = utc(2023, 12, 1, 0, 0, 0);
        let step = 7_919_000;
        for outer in Interval::ALL {
            for inner in Interval::ALL {
                let straddles = (0..400 * DAY_MS / step).any(|k| {
                    let open = inner.open_time(start + k * step);
                    outer.open_time(open) != outer.open_time(inner.close_time(open))
                });
                assert_eq!(
                    outer.contains(inner),
                    !straddles,
                    "{outer} contains {inner}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip_and_minute_is_not_month() {
        for interval in Interval::ALL {
            assert_eq!(interval.as_str().parse::<Interval>(), Ok(interval));
        }
        assert_eq!("1m".parse::<Interval>(), Ok(Interval::M1));
        assert_eq!("1M".parse::<Interval>(), Ok(Interval::Mo1));
        for bad in ["", "1", "2m", "1S", "60s", "1mo", "1W", " 1m", "1h "] {
            let err = bad.parse::<Interval>().unwrap_err();
            assert_eq!(err.name, bad);
            assert!(err.to_string().contains("expected one of 1s 1m"));
        }
    }

    #[test]
    fn parse_list_keeps_order_and_refuses_duplicates() {
        assert_eq!(
            Interval::parse_list("1m, 5m,1M").unwrap(),
            vec![Interval::M1, Interval::M5, Interval::Mo1]
        );
        assert!(Interval::parse_list("1m,1m").is_err());
        assert!(Interval::parse_list("1m,,5m").is_err());
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn fixed_intervals_are_epoch_multiples() {
        let ts = utc(2024, 2, 29, 13, 47, 31) + 123;
        assert_eq!(Interval::S1.open_time(ts), utc(2024, 2, 29, 13, 47, 31));
        assert_eq!(Interval::M1.open_time(ts), utc(2024, 2, 29, 13, 47, 0));
        assert_eq!(Interval::M15.open_time(ts), utc(2024, 2, 29, 13, 45, 0));
        assert_eq!(Interval::H4.open_time(ts), utc(2024, 2, 29, 12, 0, 0));
        assert_eq!(Interval::H12.open_time(ts), utc(2024, 2, 29, 12, 0, 0));
        assert_eq!(Interval::D1.open_time(ts), utc(2024, 2, 29, 0, 0, 0));
        assert_eq!(
            Interval::M1.close_time(utc(2020, 6, 4, 9, 5, 0)),
            1_591_261_559_999
        );
        assert_eq!(
            Interval::S1.close_time(1_787_370_000_000),
            1_787_370_000_999
        );
        // Exact boundaries belong to the period they open.
        let boundary = utc(2024, 1, 1, 0, 0, 0);
        assert_eq!(Interval::M1.open_time(boundary), boundary);
        assert_eq!(Interval::M1.open_time(boundary - 1), boundary - MINUTE_MS);
    }

    #[test]
    fn three_days_are_epoch_aligned() {
        assert_eq!(Interval::D3.open_time(0), 0);
        assert_eq!(Interval::D3.open_time(3 * DAY_MS - 1), 0);
        assert_eq!(Interval::D3.open_time(3 * DAY_MS), 3 * DAY_MS);
        let ts = utc(2026, 11, 28, 12, 0, 0);
        let open = Interval::D3.open_time(ts);
        assert_eq!(open % (3 * DAY_MS), 0);
        assert!(open <= ts && ts < open + 3 * DAY_MS);
    }

    #[test]
    fn weeks_open_on_monday_across_year_ends() {
        // The documented weekly kline: open Mon 2017-07-03, close Sun 2017-07-09 23:59:59.999.
        assert_eq!(
            Interval::W1.open_time(1_499_040_000_000 + 5 * DAY_MS),
            1_499_040_000_000
        );
        assert_eq!(
            Interval::W1.close_time(1_499_040_000_000),
            1_499_644_799_999
        );
        // 2020-12-31 (Thu) and 2021-01-03 (Sun) are in the week of Mon 2020-12-28.
        let monday = utc(2020, 12, 28, 0, 0, 0);
        assert_eq!(
            Interval::W1.open_time(utc(2020, 12, 31, 23, 59, 59)),
            monday
        );
        assert_eq!(
            Interval::W1.open_time(utc(2021, 1, 3, 23, 59, 59) + 999),
            monday
        );
        assert_eq!(
            Interval::W1.open_time(utc(2021, 1, 4, 0, 0, 0)),
            utc(2021, 1, 4, 0, 0, 0)
        );
        // 2025-12-29 is a Monday; 2026-01-01 belongs to its week.
        assert_eq!(
            Interval::W1.open_time(utc(2026, 1, 1, 0, 0, 0)),
            utc(2025, 12, 29, 0, 0, 0)
        );
        // Before the first Monday of the epoch.
        assert_eq!(Interval::W1.open_time(0), utc(1969, 12, 29, 0, 0, 0));
    }

    #[test]
    fn months_follow_the_calendar_including_leap_years() {
        let feb_2024 = utc(2024, 2, 1, 0, 0, 0);
        assert_eq!(
            Interval::Mo1.open_time(utc(2024, 2, 29, 23, 59, 59)),
            feb_2024
        );
        assert_eq!(Interval::Mo1.next_open(feb_2024), utc(2024, 3, 1, 0, 0, 0));
        assert_eq!(
            Interval::Mo1.close_time(feb_2024),
            utc(2024, 3, 1, 0, 0, 0) - 1
        );
        let feb_2023 = utc(2023, 2, 1, 0, 0, 0);
        assert_eq!(Interval::Mo1.next_open(feb_2023) - feb_2023, 28 * DAY_MS);
        let feb_2100 = utc(2100, 2, 1, 0, 0, 0); // not a leap year
        assert_eq!(Interval::Mo1.next_open(feb_2100) - feb_2100, 28 * DAY_MS);
        let feb_2000 = utc(2000, 2, 1, 0, 0, 0); // a leap year
        assert_eq!(Interval::Mo1.next_open(feb_2000) - feb_2000, 29 * DAY_MS);
        let dec = utc(2025, 12, 1, 0, 0, 0);
        assert_eq!(Interval::Mo1.next_open(dec), utc(2026, 1, 1, 0, 0, 0));
        assert_eq!(
            Interval::Mo1.periods_between(dec, utc(2027, 3, 1, 0, 0, 0)),
            15
        );
    }

    #[test]
    fn periods_between_counts_fixed_periods() {
        let open = utc(2026, 1, 1, 0, 0, 0);
        assert_eq!(Interval::M1.periods_between(open, open), 0);
        assert_eq!(Interval::M1.periods_between(open, open + 5 * MINUTE_MS), 5);
        assert_eq!(
            Interval::W1.periods_between(monday(), monday() + 3 * WEEK_MS),
            3
        );
    }

    fn monday() -> i64 {
        utc(2026, 11, 23, 0, 0, 0)
    }
}
