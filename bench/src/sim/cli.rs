//! `klagg sim` (runs on the main thread): flags, start-up banner, and waiting for Ctrl-C /
//! SIGTERM or `--run-for` before shutting the simulator down.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use klagg_shards::wire::duration::{self, DurationError, Numbers};

use super::config::{DEFAULT_TRADE_RETENTION_MAX, FirehoseConfig, ReplaySource, SimConfig};
use super::{Sim, SimHandle};
use crate::replay::symbol_from_file_name;

const STATUS_EVERY: Duration = Duration::from_secs(30);

/// Run a simulated Binance USD-M futures exchange (REST + WebSocket on one port).
///
/// Durations accept `250ms`, `30s`, `5m`, `2h`, `1d` (a bare number means seconds).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = concat!(
    "Durations accept 250ms, 30s, 5m, 2h, 1d (a bare number means seconds).\n",
    "REST: /fapi/v1/{ping,time,exchangeInfo,klines,aggTrades,ticker/24hr}; WebSocket: /market/ws, ",
    "/market/ws/<stream>/..., /market/stream?streams=a/b (legacy /ws and /stream ack but stay silent).\n",
    "Example: klagg sim --listen 127.0.0.1:9090 --symbols 50 --trade-rate 500 --disconnect-every 10m"
))]
pub struct SimArgs {
    /// Address to listen on (REST and WebSocket share it); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: String,
    /// Number of synthetic USDT perpetuals (0..=2000; 0 with --replay serves only the replay).
    #[arg(long, default_value_t = 200)]
    pub symbols: usize,
    /// Total synthetic aggTrades per second over all symbols (bursts go above it).
    #[arg(long, default_value_t = 1000)]
    pub trade_rate: u64,
    /// Seed of the market: the same seed gives the same trades relative to start.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trading history generated before start (what REST backfill finds).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub history: Duration,
    /// Request weight per IP per minute before 429 (exchangeInfo REQUEST_WEIGHT).
    #[arg(long, default_value_t = 2400)]
    pub weight_limit: u32,
    /// 429s an IP may receive within a minute before it gets a 418 ban.
    #[arg(long, default_value_t = 3)]
    pub rejections_before_ban: u32,
    /// Ban durations for the 1st, 2nd, … offence, comma-separated (the last repeats).
    #[arg(long, default_value = "2m,5m,15m,1h,1d,3d", value_delimiter = ',', value_parser = parse_duration)]
    pub ban_durations: Vec<Duration>,
    /// Latency added to every REST response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub rest_latency_ms: u64,
    /// Server ping interval on WebSocket connections.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Close a WebSocket connection that sent no pong for this long.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub pong_timeout: Duration,
    /// Maximum WebSocket connection lifetime (Binance: 24h).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub max_lifetime: Duration,
    /// Maximum streams per WebSocket connection.
    #[arg(long, default_value_t = 1024)]
    pub max_streams: usize,
    /// Incoming WebSocket messages per second per connection before a 1008 close.
    #[arg(long, default_value_t = 10)]
    pub incoming_limit: u32,
    /// Period of <symbol>@kline_<interval> updates.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub kline_update_interval: Duration,
    /// Delay of the final (x:true) kline update after the close (Binance futures: ~2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub kline_final_delay: Duration,
    /// How long a new listing stays PENDING_TRADING.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub listing_delay: Duration,
    /// How long a delisted symbol stays SETTLING before CLOSE.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub settle_delay: Duration,
    /// List a new symbol this often.
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    pub list_every: Option<Duration>,
    /// Delist a random trading symbol this often.
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    pub delist_every: Option<Duration>,
    /// Drop every WebSocket connection this often.
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    pub disconnect_every: Option<Duration>,
    /// Answer the next REST request with 503 {"code":-1001} this often.
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    pub rest_error_every: Option<Duration>,
    /// Answer this fraction of REST requests (0 to 1, e.g. 0.05) with 503 {"code":-1001}.
    #[arg(long, value_name = "RATIO", default_value_t = 0.0, value_parser = parse_ratio)]
    pub rest_error_ratio: f64,
    /// Stall every WebSocket connection (open but silent: no data, no pings) this often.
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    pub stall_every: Option<Duration>,
    /// How long each --stall-every stall lasts.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_period)]
    pub stall_for: Duration,
    /// Send a malformed frame to every WebSocket connection this often (truncated JSON,
    /// non-JSON text, binary garbage in turn).
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    pub malformed_every: Option<Duration>,
    /// Withhold the next --fault-ids aggTrades of a random active symbol from its stream this
    /// often (REST keeps them: a jump in `a`).
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    pub skip_ids_every: Option<Duration>,
    /// Send the next --fault-ids aggTrades of a random active symbol twice this often.
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    pub duplicate_ids_every: Option<Duration>,
    /// aggTrades skipped or duplicated each time by --skip-ids-every / --duplicate-ids-every.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = parse_count)]
    pub fault_ids: usize,
    /// Replay recorded aggTrades (data.binance.vision CSV or REST JSON) as live symbols:
    /// FILE (symbol from the file name) or SYMBOL=FILE.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub replay: Vec<String>,
    /// Replay speed factor (1 = real pace, klines line up with the recording's minutes).
    #[arg(long, default_value_t = 1.0)]
    pub replay_speed: f64,
    /// Keep each symbol's trades of this last stretch of time (never fewer than its newest 1000);
    /// older minutes live on as 1m summaries: no 1s klines there, aggTrades refused (-1130).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_period)]
    pub trade_retention: Duration,
    /// Memory guard: at most this many trades kept per symbol (48 bytes each), whatever
    /// --trade-retention says.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TRADE_RETENTION_MAX, value_parser = parse_count)]
    pub trade_retention_max: usize,
    /// 1m summaries kept per symbol.
    #[arg(long, default_value_t = 1440)]
    pub archive_minutes: usize,
    /// Serve https:// and wss:// behind a generated self-signed CA.
    #[arg(long)]
    pub tls: bool,
    /// With --tls: write the CA certificate (PEM) here for clients to trust.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_out: Option<PathBuf>,
    /// Benchmark mode: aggTrade subscriptions get generated frames as fast as possible.
    #[arg(long)]
    pub firehose: bool,
    /// With --firehose: frames per connection (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub firehose_trades: u64,
    /// With --firehose: frames per second per connection (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub firehose_rate: u64,
    /// Concurrent client connections before new ones are refused.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Stop cleanly after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    pub run_for: Option<Duration>,
}

impl SimArgs {
    /// The simulator configuration these flags describe.
    pub fn to_config(&self) -> Result<SimConfig, String> {
        let replay = self
            .replay
            .iter()
            .map(|r| replay_source(r))
            .collect::<Result<Vec<_>, _>>()?;
        let firehose = self.firehose.then_some(FirehoseConfig {
            trades_per_connection: self.firehose_trades,
            rate_per_second: self.firehose_rate,
        });
        let cfg = SimConfig {
            listen: self.listen.clone(),
            symbols: self.symbols,
            trade_rate: self.trade_rate,
            seed: self.seed,
            history: self.history,
            weight_limit: self.weight_limit,
            rejections_before_ban: self.rejections_before_ban,
            ban_durations: self.ban_durations.clone(),
            rest_latency: Duration::from_millis(self.rest_latency_ms),
            ping_interval: self.ping_interval,
            pong_timeout: self.pong_timeout,
            max_connection_lifetime: self.max_lifetime,
            max_streams_per_connection: self.max_streams,
            incoming_message_limit: self.incoming_limit,
            kline_update_interval: self.kline_update_interval,
            kline_final_delay: self.kline_final_delay,
            listing_delay: self.listing_delay,
            settle_delay: self.settle_delay,
            trade_retention: self.trade_retention,
            trade_retention_max: self.trade_retention_max,
            archive_minutes: self.archive_minutes,
            tls: self.tls,
            replay,
            replay_speed: self.replay_speed,
            list_every: self.list_every,
            delist_every: self.delist_every,
            disconnect_every: self.disconnect_every,
            firehose,
            outbound_queue_capacity: SimConfig::default().outbound_queue_capacity,
            ws_data_delay_max: Duration::ZERO,
            max_connections: self.max_connections,
            ..SimConfig::default()
        };
        let cfg = self.with_faults(cfg);
        cfg.validate()?;
        Ok(cfg)
    }

    /// The run-time fault flags beyond listings, delistings and disconnects.
    fn with_faults(&self, cfg: SimConfig) -> SimConfig {
        cfg.with_rest_error_every(self.rest_error_every)
            .with_rest_error_ratio(self.rest_error_ratio)
            .with_stall_every(self.stall_every)
            .with_stall_for(self.stall_for)
            .with_malformed_every(self.malformed_every)
            .with_skip_ids_every(self.skip_ids_every)
            .with_duplicate_ids_every(self.duplicate_ids_every)
            .with_fault_ids(self.fault_ids as u64)
    }
}

fn replay_source(arg: &str) -> Result<ReplaySource, String> {
    if let Some((sym, path)) = arg.split_once('=') {
        return Ok(ReplaySource {
            symbol: sym.to_ascii_uppercase(),
            path: PathBuf::from(path),
        });
    }
    let path = PathBuf::from(arg);
    let symbol = symbol_from_file_name(&path)
        .ok_or_else(|| format!("cannot tell the symbol of {arg}; write SYMBOL={arg}"))?;
    Ok(ReplaySource { symbol, path })
}

/// Parse `250ms`, `30s`, `5m`, `2h`, `1d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    duration::parse(s, Numbers::Decimal).map_err(|error| match error {
        DurationError::NotANumber => format!("not a duration: {s:?}"),
        DurationError::UnknownUnit(_) => {
            format!("unknown duration unit in {s:?} (use ms, s, m, h, d)")
        }
        DurationError::OutOfRange => format!("duration out of range: {s:?}"),
    })
}

/// A positive duration (periods, windows): [`parse_duration`] refusing zero.
pub fn parse_period(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("must be positive, got {:?}", s.trim()));
    }
    Ok(d)
}

/// A fraction from 0 to 1.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Ok(_) => Err(format!("must be between 0 and 1, got {:?}", s.trim())),
        Err(_) => Err(format!("not a number: {:?}", s.trim())),
    }
}

/// A positive whole number.
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("not a whole number: {:?}", s.trim())),
    }
}

/// Entry point of `klagg sim`.
pub fn run_cli(args: SimArgs) -> ExitCode {
    let cfg = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("klagg sim: {e}");
            return ExitCode::from(2);
        }
    };
    let sim = match Sim::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("klagg sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(tls)) = (&args.tls_ca_out, sim.tls())
        && let Err(e) = std::fs::write(path, &tls.ca_pem)
    {
        eprintln!("klagg sim: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    banner(&sim, &args);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("klagg sim: cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    wait(&sim, &stop, args.run_for);
    let c = sim.counters();
    eprintln!(
        "klagg sim: stopping; {} trades published, {} frames sent, {} REST requests",
        c.trades_published, c.frames_sent, c.rest_requests
    );
    sim.shutdown();
    ExitCode::SUCCESS
}

fn banner(sim: &SimHandle, args: &SimArgs) {
    let rest = sim.rest_url();
    let ws = sim.ws_url();
    let n = sim.symbols().len();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "klagg sim: listening on {}", sim.local_addr());
    let _ = writeln!(out, "  REST       {rest}/fapi/v1/exchangeInfo");
    let _ = writeln!(
        out,
        "  WebSocket  {ws}/market/ws  |  {ws}/market/stream?streams=btcusdt@aggTrade"
    );
    let _ = writeln!(out, "  rest_url={rest} ws_url={ws}");
    let _ = writeln!(
        out,
        "  {n} symbols, trade rate {}/s, seed {}",
        args.trade_rate, args.seed
    );
    if let Some(t) = sim.tls() {
        let _ = writeln!(out, "  TLS on; CA certificate:\n{}", t.ca_pem.trim_end());
    }
    let _ = out.flush();
}

fn wait(sim: &SimHandle, stop: &AtomicBool, run_for: Option<Duration>) {
    let started = Instant::now();
    let mut last_status = Instant::now();
    while !stop.load(Ordering::Relaxed) && run_for.is_none_or(|d| started.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(100));
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            let c = sim.counters();
            eprintln!(
                "klagg sim: {} trades, {} ws open, {} frames sent, {} REST requests ({} 429, {} 418)",
                c.trades_published,
                c.ws_open,
                c.frames_sent,
                c.rest_requests,
                c.rest_429,
                c.rest_418
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: SimArgs,
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn flags_to_config() {
        let w = Wrap::parse_from([
            "x",
            "--listen",
            "127.0.0.1:0",
            "--symbols",
            "50",
            "--trade-rate",
            "500",
            "--ban-durations",
            "1s,2s",
            "--replay",
            "VIRTUALUSDT=/tmp/a.json",
            "/x/BTCUSDT-aggTrades-2026-01-01.csv",
            "--ping-interval",
            "1s",
        ]);
        let cfg = w.args.to_config().unwrap();
        assert_eq!((cfg.symbols, cfg.trade_rate), (50, 500));
        assert_eq!(
            cfg.ban_durations,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert_eq!(cfg.replay[0].symbol, "VIRTUALUSDT");
        assert_eq!(cfg.replay[1].symbol, "BTCUSDT");
        assert_eq!(cfg.ping_interval, Duration::from_secs(1));
        let bad = Wrap::parse_from(["x", "--replay", "trades.csv"]);
        assert!(bad.args.to_config().is_err());
    }

    #[test]
    fn fault_and_retention_flags() {
        let w = Wrap::parse_from([
            "x",
            "--rest-error-every",
            "2s",
            "--rest-error-ratio",
            "0.05",
            "--stall-every",
            "1m",
            "--stall-for",
            "250ms",
            "--malformed-every",
            "30s",
            "--skip-ids-every",
            "10s",
            "--duplicate-ids-every",
            "15s",
            "--fault-ids",
            "7",
            "--trade-retention",
            "1h",
            "--trade-retention-max",
            "5000",
        ]);
        let cfg = w.args.to_config().unwrap();
        let s = Duration::from_secs;
        assert_eq!(cfg.rest_error_every, Some(s(2)));
        assert_eq!(cfg.rest_error_ratio, 0.05);
        assert_eq!(
            (cfg.stall_every, cfg.stall_for),
            (Some(s(60)), Duration::from_millis(250))
        );
        assert_eq!(cfg.malformed_every, Some(s(30)));
        assert_eq!(
            (cfg.skip_ids_every, cfg.duplicate_ids_every, cfg.fault_ids),
            (Some(s(10)), Some(s(15)), 7)
        );
        assert_eq!(
            (cfg.trade_retention, cfg.trade_retention_max),
            (s(3600), 5000)
        );
        let defaults = Wrap::parse_from(["x"]).args.to_config().unwrap();
        assert_eq!(defaults.trade_retention, s(1800));
        assert_eq!(
            (defaults.stall_every, defaults.rest_error_ratio),
            (None, 0.0)
        );
    }

    #[test]
    fn bad_fault_values_are_refused_with_the_reason() {
        for (flag, value, reason) in [
            ("--stall-every", "0s", "must be positive"),
            ("--disconnect-every", "0", "must be positive"),
            ("--malformed-every", "5x", "unknown duration unit"),
            ("--skip-ids-every", "soon", "not a duration"),
            ("--rest-error-ratio", "1.5", "must be between 0 and 1"),
            ("--rest-error-ratio", "NaN", "must be between 0 and 1"),
            ("--rest-error-ratio", "lots", "not a number"),
            ("--fault-ids", "0", "must be at least 1"),
            ("--trade-retention", "0m", "must be positive"),
            ("--trade-retention-max", "many", "not a whole number"),
        ] {
            let err = Wrap::try_parse_from(["x", flag, value])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(flag) && err.contains(reason),
                "{flag} {value}: {err}"
            );
        }
        let zero = SimConfig::default().with_duplicate_ids_every(Some(Duration::ZERO));
        assert_eq!(
            zero.validate(),
            Err("duplicate_ids_every must be positive".into())
        );
    }
}
