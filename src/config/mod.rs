//! Configuration of `klagg run` (main thread, before anything starts): the raw command-line
//! flags ([`RunArgs`]), the optional config file (`--config`, TOML or JSON, same keys as the long
//! flags) and the resolved, validated [`Config`]. Precedence: built-in defaults < config file <
//! flags. Every validation failure is one [`ConfigError`] whose message names the flag. The
//! single values (lists, durations, addresses, log settings, the file) are read in `values`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use klagg_shards::kline::Interval;
use klagg_shards::worker::CLOSE_GRACE_MS_DEFAULT;
use serde::Deserialize;

use self::values::{load_file, parse_listen, parse_log_format, parse_log_level};
pub use self::values::{parse_core_list, parse_duration, parse_intervals};

pub use crate::app_store::StoreSettings;
use crate::constants::{
    BACKFILL_CONCURRENCY_MAX, EXCHANGE_INFO_REFRESH_MS, SHARDS_MAX, SYMBOLS_MAX,
};

mod checks;
mod values;

pub use self::checks::{
    SIM_REST_LATENCY_MS_MAX, SIM_SYMBOLS_MAX, SIM_TRADE_RATE_MAX, SIM_WEIGHT_LIMIT_MIN,
    default_pins, format_cores,
};

/// Binance USD-M production REST base.
pub const BINANCE_REST_URL: &str = "https://fapi.binance.com";
/// Binance USD-M production WebSocket base (the engine appends the `/market` route).
pub const BINANCE_WS_URL: &str = "wss://fstream.binance.com";
/// Intervals aggregated when `--intervals` is not given.
pub const DEFAULT_INTERVALS: &str = "1m,5m,30m,1h,4h,1d,1w";

/// Flags of `klagg run`. Every flag is optional here so that the config file can fill what the
/// command line leaves out; the defaults are applied in [`RunArgs::resolve`].
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RunArgs {
    /// Venue: `binance` (Binance USD-M, default) or `sim` (start the simulator in-process).
    #[arg(long, value_name = "binance|sim")]
    pub venue: Option<String>,
    /// REST base URL of a Binance-compatible venue (overrides the venue's).
    #[arg(long, value_name = "URL")]
    pub rest_url: Option<String>,
    /// WebSocket base URL of a Binance-compatible venue (the `/market` route is appended).
    #[arg(long, value_name = "URL")]
    pub ws_url: Option<String>,
    /// Intervals to aggregate [default: 1m,5m,30m,1h,4h,1d,1w].
    #[arg(long, value_name = "LIST")]
    pub intervals: Option<String>,
    /// Only these symbols (comma separated, e.g. BTCUSDT,ETHUSDT).
    #[arg(long, value_name = "LIST")]
    pub symbols: Option<String>,
    /// At most N symbols at startup, the busiest by 24 h quote volume.
    #[arg(long, value_name = "N")]
    pub max_symbols: Option<usize>,
    /// Number of shard threads [default: one per available core].
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Cores to pin the shards to, e.g. `2,3` or `2-5` [default: 0..shards].
    #[arg(long, value_name = "LIST")]
    pub shard_cores: Option<String>,
    /// Core for the control threads [default: unpinned].
    #[arg(long, value_name = "CORE")]
    pub control_core: Option<usize>,
    /// Symbols backfilled at the same time [default: 2].
    #[arg(long, value_name = "N")]
    pub backfill_concurrency: Option<usize>,
    /// SQLite database file [default: klagg.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Address of the API and operability endpoints [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// HTTP connections one client address may hold [default: 64]; behind a reverse proxy every
    /// client shares its address, so raise it there.
    #[arg(long, value_name = "N")]
    pub http_conns_per_ip: Option<usize>,
    /// WebSocket clients one client address may hold [default: 256].
    #[arg(long, value_name = "N")]
    pub ws_conns_per_ip: Option<usize>,
    /// Stop cleanly after this long (e.g. 30s, 5m, 2h).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub run_for: Option<String>,
    /// Proxy for REST calls only (http://, socks5://); WebSocket connections go direct.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Config file (TOML or JSON, keys as the long flags); flags win over it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Log format: `term` or `json` [default: term].
    #[arg(long, value_name = "term|json")]
    pub log_format: Option<String>,
    /// Log level: error, warn, info, debug, trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// exchangeInfo refresh period (delistings, promotions) [default: 60s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub exchange_info_refresh: Option<String>,
    /// How long after a period's end (on the estimated exchange clock) a kline without a later
    /// trade is closed; a trade of the period arriving later amends it [default: 150ms].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub close_grace: Option<String>,
    /// `--venue sim`: number of simulated symbols [default: 20].
    #[arg(long, value_name = "N")]
    pub sim_symbols: Option<usize>,
    /// `--venue sim`: total aggregate trades per second [default: 200].
    #[arg(long, value_name = "N")]
    pub sim_trade_rate: Option<u64>,
    /// `--venue sim`: market seed [default: 1].
    #[arg(long, value_name = "N")]
    pub sim_seed: Option<u64>,
    /// `--venue sim`: latency added to every REST response, in ms [default: 0].
    #[arg(long, value_name = "MS")]
    pub sim_rest_latency_ms: Option<u64>,
    /// `--venue sim`: request-weight limit per minute [default: 2400].
    #[arg(long, value_name = "N")]
    pub sim_weight_limit: Option<u64>,
    /// Closed klines kept per interval and symbol, fetched after the symbol is live; 0 turns
    /// the history backfill off [default: 1000].
    #[arg(long, value_name = "N")]
    pub history_bars: Option<u32>,
    /// Share of the REST weight allowance per minute that history and repairs may use, in
    /// percent (activation packages may use all of it) [default: 50].
    #[arg(long, value_name = "PERCENT")]
    pub history_weight_percent: Option<u64>,
    /// Whether the venue serves 1s klines over REST (Binance futures does not; 1s history and
    /// repairs are skipped then) [default: true with --venue sim, else false].
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub rest_1s: Option<bool>,
    /// How often the open klines are written to the store [default: 1s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub snapshot_interval: Option<String>,
    /// The most periods per interval one repair fetches again after a gap [default: 1000].
    #[arg(long, value_name = "N")]
    pub repair_max_periods: Option<u32>,
    /// Also re-fetch the periods of every activation, whose live klines miss the trades
    /// between the initial package and the subscription [default: true].
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub repair_activations: Option<bool>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
    #[error("--config {path}: {reason}")]
    File { path: String, reason: String },
}

pub(crate) fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// Where the market data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Venue {
    Binance,
    /// The in-process simulator; its URLs are known once it listens.
    Sim(SimSettings),
}

/// Knobs of the in-process simulator (`--venue sim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimSettings {
    pub symbols: usize,
    pub trade_rate: u64,
    pub seed: u64,
    pub rest_latency_ms: u64,
    pub weight_limit: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Term,
    Json,
}

/// Which symbols to serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolFilter {
    /// `--symbols`: exactly these (upper case); new listings outside the list are ignored.
    pub only: Option<Vec<String>>,
    /// `--max-symbols`: the N busiest at startup (new listings are still added).
    pub max: Option<usize>,
}

/// The resolved configuration of `klagg run`.
#[derive(Debug, Clone)]
pub struct Config {
    pub venue: Venue,
    /// REST base; empty for `--venue sim` until the simulator listens.
    pub rest_url: String,
    /// WebSocket base without route; empty for `--venue sim` until the simulator listens.
    pub ws_url: String,
    /// Whether the venue serves 1s klines over REST (the simulator does, Binance futures not).
    pub rest_has_1s: bool,
    /// Shortest first.
    pub intervals: Vec<Interval>,
    pub symbols: SymbolFilter,
    pub shards: usize,
    /// Per shard the core it is pinned to (`None`: unpinned).
    pub shard_cores: Vec<Option<usize>>,
    pub control_core: Option<usize>,
    pub backfill_concurrency: usize,
    pub db_path: PathBuf,
    pub listen: SocketAddr,
    /// HTTP connections and WebSocket clients per client address.
    pub http_conns_per_ip: usize,
    pub ws_conns_per_ip: usize,
    pub run_for: Option<Duration>,
    pub proxy: Option<String>,
    pub log_format: LogFormat,
    pub log_level: slog::Level,
    pub exchange_info_refresh_ms: i64,
    /// Clock closes happen this long after a period's end.
    pub close_grace_ms: i64,
    /// The store: history, snapshots and repairs.
    pub store: StoreSettings,
}

impl RunArgs {
    /// Merge the config file (when given) under the flags, then validate and resolve.
    /// `core_ids` are the cores the process may run on (its affinity mask, see
    /// `runtime::core_ids`; empty when unknown): shards are pinned to them by default, and
    /// `--shard-cores` / `--control-core` must name them.
    ///
    /// # Errors
    /// An unreadable or malformed config file, or any invalid value.
    pub fn resolve(self, core_ids: &[usize]) -> Result<Config, ConfigError> {
        let merged = match &self.config {
            Some(path) => self.clone().over(load_file(path)?),
            None => self,
        };
        merged.validate(core_ids)
    }

    /// `self` (flags) over `file`: every field the flags leave empty is taken from the file.
    fn over(self, file: RunArgs) -> RunArgs {
        RunArgs {
            venue: self.venue.or(file.venue),
            rest_url: self.rest_url.or(file.rest_url),
            ws_url: self.ws_url.or(file.ws_url),
            intervals: self.intervals.or(file.intervals),
            symbols: self.symbols.or(file.symbols),
            max_symbols: self.max_symbols.or(file.max_symbols),
            shards: self.shards.or(file.shards),
            shard_cores: self.shard_cores.or(file.shard_cores),
            control_core: self.control_core.or(file.control_core),
            backfill_concurrency: self.backfill_concurrency.or(file.backfill_concurrency),
            db: self.db.or(file.db),
            listen: self.listen.or(file.listen),
            run_for: self.run_for.or(file.run_for),
            proxy: self.proxy.or(file.proxy),
            config: self.config,
            http_conns_per_ip: self.http_conns_per_ip.or(file.http_conns_per_ip),
            ws_conns_per_ip: self.ws_conns_per_ip.or(file.ws_conns_per_ip),
            log_format: self.log_format.or(file.log_format),
            log_level: self.log_level.or(file.log_level),
            exchange_info_refresh: self.exchange_info_refresh.or(file.exchange_info_refresh),
            close_grace: self.close_grace.or(file.close_grace),
            sim_symbols: self.sim_symbols.or(file.sim_symbols),
            sim_trade_rate: self.sim_trade_rate.or(file.sim_trade_rate),
            sim_seed: self.sim_seed.or(file.sim_seed),
            sim_rest_latency_ms: self.sim_rest_latency_ms.or(file.sim_rest_latency_ms),
            sim_weight_limit: self.sim_weight_limit.or(file.sim_weight_limit),
            history_bars: self.history_bars.or(file.history_bars),
            history_weight_percent: self.history_weight_percent.or(file.history_weight_percent),
            rest_1s: self.rest_1s.or(file.rest_1s),
            snapshot_interval: self.snapshot_interval.or(file.snapshot_interval),
            repair_max_periods: self.repair_max_periods.or(file.repair_max_periods),
            repair_activations: self.repair_activations.or(file.repair_activations),
        }
    }

    fn validate(self, core_ids: &[usize]) -> Result<Config, ConfigError> {
        let venue = self.resolve_venue()?;
        let (rest_url, ws_url) = self.resolve_urls(&venue)?;
        let (shards, shard_cores) = self.resolve_shards(core_ids)?;
        if let Some(core) = self.control_core {
            checks::check_cores("control-core", &[core], core_ids)?;
        }
        if let Some(proxy) = &self.proxy {
            checks::check_proxy(proxy)?;
        }
        let backfill_concurrency = self.backfill_concurrency.unwrap_or(2);
        if backfill_concurrency == 0 || backfill_concurrency > BACKFILL_CONCURRENCY_MAX {
            return Err(invalid(
                "backfill-concurrency",
                format!("must be 1..={BACKFILL_CONCURRENCY_MAX}"),
            ));
        }
        let (http_conns_per_ip, ws_conns_per_ip) = checks::per_address_limits(&self)?;
        Ok(Config {
            http_conns_per_ip,
            ws_conns_per_ip,
            rest_has_1s: self.rest_1s.unwrap_or(matches!(venue, Venue::Sim(_))),
            store: StoreSettings::resolve(&self)?,
            venue,
            rest_url,
            ws_url,
            intervals: parse_intervals(self.intervals.as_deref().unwrap_or(DEFAULT_INTERVALS))?,
            symbols: self.resolve_symbols()?,
            shards,
            shard_cores,
            control_core: self.control_core,
            backfill_concurrency,
            db_path: self.db.clone().unwrap_or_else(|| PathBuf::from("klagg.db")),
            listen: parse_listen(self.listen.as_deref().unwrap_or("127.0.0.1:8080"))?,
            run_for: self
                .run_for
                .as_deref()
                .map(|t| parse_duration("run-for", t))
                .transpose()?,
            proxy: self.proxy.clone(),
            log_format: parse_log_format(self.log_format.as_deref().unwrap_or("term"))?,
            log_level: parse_log_level(self.log_level.as_deref().unwrap_or("info"))?,
            exchange_info_refresh_ms: self.resolve_refresh()?,
            close_grace_ms: self.resolve_close_grace()?,
        })
    }

    fn resolve_venue(&self) -> Result<Venue, ConfigError> {
        match self.venue.as_deref().unwrap_or("binance") {
            "binance" => {
                checks::reject_sim_flags(self, "binance")?;
                Ok(Venue::Binance)
            }
            "sim" => Ok(Venue::Sim(checks::sim_settings(self)?)),
            other => Err(invalid(
                "venue",
                format!("{other:?} is not one of binance, sim"),
            )),
        }
    }

    fn resolve_urls(&self, venue: &Venue) -> Result<(String, String), ConfigError> {
        let (rest_default, ws_default) = match venue {
            Venue::Binance => (BINANCE_REST_URL, BINANCE_WS_URL),
            Venue::Sim(_) => ("", ""),
        };
        let rest = self.rest_url.as_deref().unwrap_or(rest_default);
        let ws = self.ws_url.as_deref().unwrap_or(ws_default);
        if !(rest.is_empty() || rest.starts_with("http://") || rest.starts_with("https://")) {
            return Err(invalid(
                "rest-url",
                format!("{rest:?} must start with http:// or https://"),
            ));
        }
        if !(ws.is_empty() || ws.starts_with("ws://") || ws.starts_with("wss://")) {
            return Err(invalid(
                "ws-url",
                format!("{ws:?} must start with ws:// or wss://"),
            ));
        }
        Ok((
            rest.trim_end_matches('/').to_string(),
            ws.trim_end_matches('/').to_string(),
        ))
    }

    fn resolve_shards(
        &self,
        core_ids: &[usize],
    ) -> Result<(usize, Vec<Option<usize>>), ConfigError> {
        let listed = self
            .shard_cores
            .as_deref()
            .map(parse_core_list)
            .transpose()?;
        if let Some(list) = &listed {
            checks::check_cores("shard-cores", list, core_ids)?;
        }
        let shards = match (self.shards, &listed) {
            (Some(n), Some(list)) if n != list.len() => {
                return Err(invalid(
                    "shard-cores",
                    format!("lists {} cores for --shards {n}", list.len()),
                ));
            }
            (Some(n), _) => n,
            (None, Some(list)) => list.len(),
            (None, None) => core_ids.len().max(1),
        };
        if shards == 0 || shards > SHARDS_MAX {
            return Err(invalid("shards", format!("must be 1..={SHARDS_MAX}")));
        }
        let pins = match listed {
            Some(list) => list.into_iter().map(Some).collect(),
            // Default: one shard per allowed core, pinned in order; more shards than cores
            // share them.
            None => default_pins(shards, core_ids),
        };
        Ok((shards, pins))
    }

    fn resolve_symbols(&self) -> Result<SymbolFilter, ConfigError> {
        let only = match self.symbols.as_deref() {
            None => None,
            Some(list) => {
                let names: Vec<String> = list
                    .split(',')
                    .map(|s| s.trim().to_ascii_uppercase())
                    .filter(|s| !s.is_empty())
                    .collect();
                if names.is_empty() || names.len() > SYMBOLS_MAX {
                    return Err(invalid("symbols", format!("give 1..={SYMBOLS_MAX} names")));
                }
                if let Some(bad) = names
                    .iter()
                    .find(|n| !n.bytes().all(|b| b.is_ascii_alphanumeric()))
                {
                    return Err(invalid("symbols", format!("{bad:?} is not a symbol name")));
                }
                Some(names)
            }
        };
        if let Some(max) = self.max_symbols
            && (max == 0 || max > SYMBOLS_MAX)
        {
            return Err(invalid("max-symbols", format!("must be 1..={SYMBOLS_MAX}")));
        }
        Ok(SymbolFilter {
            only,
            max: self.max_symbols,
        })
    }

    fn resolve_close_grace(&self) -> Result<i64, ConfigError> {
        let Some(text) = self.close_grace.as_deref() else {
            return Ok(CLOSE_GRACE_MS_DEFAULT);
        };
        let duration = parse_duration("close-grace", text)?;
        if duration > Duration::from_secs(60) {
            return Err(invalid("close-grace", "must be at most 60s"));
        }
        Ok(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
    }

    fn resolve_refresh(&self) -> Result<i64, ConfigError> {
        let Some(text) = self.exchange_info_refresh.as_deref() else {
            return Ok(EXCHANGE_INFO_REFRESH_MS);
        };
        let duration = parse_duration("exchange-info-refresh", text)?;
        if duration < Duration::from_secs(1) {
            return Err(invalid("exchange-info-refresh", "must be at least 1s"));
        }
        Ok(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: RunArgs) -> Result<Config, ConfigError> {
        args.resolve(&[0, 1, 2, 3])
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = resolve(RunArgs::default()).unwrap();
        assert_eq!(config.venue, Venue::Binance);
        assert_eq!(config.rest_url, BINANCE_REST_URL);
        assert_eq!(config.ws_url, BINANCE_WS_URL);
        assert_eq!(config.intervals.len(), 7);
        assert_eq!(config.intervals[0], Interval::M1);
        assert_eq!(config.shards, 4);
        assert_eq!(config.shard_cores, vec![Some(0), Some(1), Some(2), Some(3)]);
        assert_eq!(config.backfill_concurrency, 2);
        assert_eq!(config.db_path, PathBuf::from("klagg.db"));
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(config.run_for.is_none());
        assert!(!config.rest_has_1s);
        assert_eq!(config.log_level, slog::Level::Info);
        assert_eq!(config.store, StoreSettings::default());
        assert_eq!(config.store.history_bars, 1000);
        assert_eq!(config.store.snapshot_interval, Duration::from_secs(1));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        type Case = (fn(&mut RunArgs), &'static str);
        let cases: [Case; 13] = [
            (|a| a.history_bars = Some(2_000_000), "--history-bars"),
            (
                |a| a.history_weight_percent = Some(0),
                "--history-weight-percent",
            ),
            (
                |a| a.snapshot_interval = Some("10ms".into()),
                "--snapshot-interval",
            ),
            (|a| a.repair_max_periods = Some(0), "--repair-max-periods"),
            (|a| a.venue = Some("kraken".into()), "--venue"),
            (|a| a.intervals = Some("1m,7m".into()), "--intervals"),
            (|a| a.intervals = Some("1m,1m".into()), "--intervals"),
            (|a| a.shards = Some(0), "--shards"),
            (|a| a.shard_cores = Some("3-1".into()), "--shard-cores"),
            (|a| a.run_for = Some("ten".into()), "--run-for"),
            (|a| a.listen = Some("nowhere".into()), "--listen"),
            (
                |a| a.backfill_concurrency = Some(0),
                "--backfill-concurrency",
            ),
            (|a| a.rest_url = Some("ftp://x".into()), "--rest-url"),
        ];
        for (set, flag) in cases {
            let mut args = RunArgs::default();
            set(&mut args);
            let message = resolve(args).unwrap_err().to_string();
            assert!(message.starts_with(flag), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn bad_machine_and_simulator_values_name_the_flag() {
        type Case = (fn(&mut RunArgs), &'static str);
        let sim = |a: &mut RunArgs| a.venue = Some("sim".into());
        let cases: [Case; 11] = [
            (
                |a| a.shard_cores = Some("1,99".into()),
                "--shard-cores: core 99 is not available to this process (allowed: 0-3)",
            ),
            (
                |a| a.control_core = Some(999),
                "--control-core: core 999 is not available",
            ),
            (
                |a| a.sim_symbols = Some(5),
                "--sim-symbols: only applies to --venue sim",
            ),
            (
                |a| a.sim_weight_limit = Some(5),
                "--sim-weight-limit: only applies to --venue sim",
            ),
            (
                |a| {
                    a.venue = Some("sim".into());
                    a.sim_symbols = Some(0);
                },
                "--sim-symbols: must be 1..=2000, not 0",
            ),
            (
                |a| {
                    a.venue = Some("sim".into());
                    a.sim_symbols = Some(5000);
                },
                "--sim-symbols: must be 1..=2000, not 5000",
            ),
            (
                |a| {
                    a.venue = Some("sim".into());
                    a.sim_trade_rate = Some(0);
                },
                "--sim-trade-rate: must be 1..=",
            ),
            (
                |a| {
                    a.venue = Some("sim".into());
                    a.sim_weight_limit = Some(0);
                },
                "--sim-weight-limit: must be 50..=",
            ),
            (
                |a| {
                    a.venue = Some("sim".into());
                    a.sim_rest_latency_ms = Some(60_000);
                },
                "--sim-rest-latency-ms: must be at most",
            ),
            (
                |a| a.proxy = Some("ftp://x".into()),
                "--proxy: \"ftp://x\" must start with http://",
            ),
            (
                |a| a.close_grace = Some("-1s".into()),
                "--close-grace: \"-1s\" is negative",
            ),
        ];
        for (set, expected) in cases {
            let mut args = RunArgs::default();
            set(&mut args);
            let message = resolve(args).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        let mut fine = RunArgs::default();
        sim(&mut fine);
        fine.sim_weight_limit = Some(SIM_WEIGHT_LIMIT_MIN);
        fine.sim_symbols = Some(SIM_SYMBOLS_MAX);
        fine.proxy = Some("socks5://127.0.0.1:1080".into());
        assert!(resolve(fine).is_ok());
    }

    #[test]
    fn default_pins_are_the_allowed_core_ids() {
        // As under `taskset -c 1`: one shard, pinned to core 1 (not 0).
        let config = RunArgs::default().resolve(&[1]).unwrap();
        assert_eq!((config.shards, config.shard_cores), (1, vec![Some(1)]));
        let config = RunArgs::default().resolve(&[2, 5]).unwrap();
        assert_eq!(config.shard_cores, vec![Some(2), Some(5)]);
        let shards = RunArgs {
            shards: Some(3),
            ..RunArgs::default()
        };
        assert_eq!(
            shards.resolve(&[2, 5]).unwrap().shard_cores,
            vec![Some(2), Some(5), Some(2)]
        );
    }

    #[test]
    fn shard_cores_decide_the_shard_count() {
        let args = RunArgs {
            shard_cores: Some("2-3".into()),
            ..RunArgs::default()
        };
        let config = resolve(args).unwrap();
        assert_eq!(
            (config.shards, config.shard_cores),
            (2, vec![Some(2), Some(3)])
        );
        let mismatch = RunArgs {
            shards: Some(3),
            shard_cores: Some("2-3".into()),
            ..RunArgs::default()
        };
        assert!(resolve(mismatch).is_err());
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let dir = std::env::temp_dir().join(format!("klagg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("klagg.toml");
        std::fs::write(
            &toml_path,
            "venue = \"sim\"\nmax-symbols = 5\nintervals = \"1m\"\n",
        )
        .unwrap();
        let args = RunArgs {
            config: Some(toml_path.clone()),
            intervals: Some("5m".into()),
            ..RunArgs::default()
        };
        let config = resolve(args).unwrap();
        assert!(matches!(config.venue, Venue::Sim(_)));
        assert_eq!(config.symbols.max, Some(5));
        assert_eq!(config.intervals, vec![Interval::M5]);
        let json_path = dir.join("klagg.json");
        std::fs::write(&json_path, r#"{"shards": 2, "listen": "127.0.0.1:0"}"#).unwrap();
        let config = resolve(RunArgs {
            config: Some(json_path),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(config.shards, 2);
        std::fs::write(&toml_path, "bogus = 1\n").unwrap();
        let err = resolve(RunArgs {
            config: Some(toml_path),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("--config"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
