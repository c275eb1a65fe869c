//! The values of `klagg run`'s flags and config file (main thread, while the configuration is
//! resolved): the config file itself, interval and core lists, durations, the listen address
//! and the log settings, each refused with a [`ConfigError`] naming its flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use klagg_shards::kline::Interval;
use klagg_shards::wire::duration::{self, DurationError, Numbers};

use super::{ConfigError, LogFormat, RunArgs, invalid};
use crate::constants::SHARDS_MAX;

/// The config file at `path` (TOML, or JSON by extension or a leading `{`).
///
/// # Errors
/// It cannot be read or does not parse.
pub(super) fn load_file(path: &PathBuf) -> Result<RunArgs, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let is_json =
        path.extension().is_some_and(|ext| ext == "json") || text.trim_start().starts_with('{');
    if is_json {
        serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))
    } else {
        toml::from_str(&text).map_err(|e| file_error(e.to_string().trim().replace('\n', " ")))
    }
}

/// Parse an interval list (`1m,5m,1h`), sorted shortest first, without duplicates.
///
/// # Errors
/// An unknown interval name, an empty list or a duplicate.
pub fn parse_intervals(text: &str) -> Result<Vec<Interval>, ConfigError> {
    let mut intervals = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let interval: Interval = name
            .parse()
            .map_err(|e: klagg_shards::kline::IntervalError| invalid("intervals", e.to_string()))?;
        if intervals.contains(&interval) {
            return Err(invalid("intervals", format!("{name} is listed twice")));
        }
        intervals.push(interval);
    }
    if intervals.is_empty() {
        return Err(invalid("intervals", "the list is empty"));
    }
    intervals.sort_unstable();
    Ok(intervals)
}

/// Parse a core list: `0,2,4`, `2-5`, or a mix (`0,4-6`).
///
/// # Errors
/// A malformed number or range, or an empty list.
pub fn parse_core_list(text: &str) -> Result<Vec<usize>, ConfigError> {
    let mut cores = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            invalid(
                "shard-cores",
                format!("{part:?} is not a core or a range a-b"),
            )
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a >= SHARDS_MAX {
                    return Err(bad());
                }
                cores.extend(a..=b);
            }
            None => cores.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cores.is_empty() || cores.len() > SHARDS_MAX {
        return Err(invalid(
            "shard-cores",
            format!("give 1..={SHARDS_MAX} cores"),
        ));
    }
    Ok(cores)
}

/// Parse a duration: `500ms`, `30s`, `5m`, `2h`, `1d`; a bare number is seconds.
///
/// # Errors
/// A missing or malformed number, or an unknown unit.
pub fn parse_duration(flag: &'static str, text: &str) -> Result<Duration, ConfigError> {
    if text.trim().starts_with('-') {
        return Err(invalid(
            flag,
            format!(
                "{:?} is negative; give a duration like 150ms, 30s, 5m",
                text.trim()
            ),
        ));
    }
    duration::parse(text, Numbers::Whole).map_err(|error| {
        let text = text.trim();
        let reason = match error {
            DurationError::NotANumber => format!("{text:?} is not a duration like 30s, 5m, 2h"),
            DurationError::UnknownUnit(unit) => {
                format!("unknown unit {unit:?} (use ms, s, m, h, d)")
            }
            DurationError::OutOfRange => format!("{text:?} is too long"),
        };
        invalid(flag, reason)
    })
}

pub(super) fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        invalid(
            "listen",
            format!("{text:?} is not an address like 127.0.0.1:8080"),
        )
    })
}

pub(super) fn parse_log_format(text: &str) -> Result<LogFormat, ConfigError> {
    match text {
        "term" => Ok(LogFormat::Term),
        "json" => Ok(LogFormat::Json),
        other => Err(invalid(
            "log-format",
            format!("{other:?} is not one of term, json"),
        )),
    }
}

pub(super) fn parse_log_level(text: &str) -> Result<slog::Level, ConfigError> {
    match text.to_ascii_lowercase().as_str() {
        "error" => Ok(slog::Level::Error),
        "warn" | "warning" => Ok(slog::Level::Warning),
        "info" => Ok(slog::Level::Info),
        "debug" => Ok(slog::Level::Debug),
        "trace" => Ok(slog::Level::Trace),
        other => Err(invalid(
            "log-level",
            format!("{other:?} is not one of error, warn, info, debug, trace"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_core_lists() {
        assert_eq!(
            parse_duration("run-for", "30s").unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            parse_duration("run-for", "5m").unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(
            parse_duration("run-for", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("run-for", "7").unwrap(),
            Duration::from_secs(7)
        );
        assert!(parse_duration("run-for", "5y").is_err());
        assert_eq!(parse_core_list("0,4-6").unwrap(), vec![0, 4, 5, 6]);
        assert!(parse_core_list("").is_err());
    }
}
