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
    #[arg(long, value_parser = parse_duration)]
    pub list_every: Option<Duration>,
    /// Delist a random trading symbol this often.
    #[arg(long, value_parser = parse_duration)]
    pub delist_every: Option<Duration>,
    /// Drop every WebSocket connection this often.
    #[arg(long, value_parser = parse_duration)]
    pub disconnect_every: Option<Duration>,
    /// Replay recorded aggTrades (data.binance.vision CSV or REST JSON) as live symbols:
    /// FILE (symbol from the file name) or SYMBOL=FILE.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub replay: Vec<String>,
    /// Replay speed factor (1 = real pace, klines line up with the recording's minutes).
    #[arg(long, default_value_t = 1.0)]
    pub replay_speed: f64,
    /// Keep each symbol's trades of this last stretch of time (never fewer than its newest 1000);
    /// older minutes live on as 1m summaries: no 1s klines there, aggTrades refused (-1130).
    #[arg(long, default_value = "30m", value_parser = parse_period)]
    pub trade_retention: Duration,
    /// Memory guard: at most this many trades kept per symbol (48 bytes each), whatever
    /// --trade-retention says.
    #[arg(long, default_value_t = DEFAULT_TRADE_RETENTION_MAX, value_parser = parse_count)]
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
            max_connections: self.max_connections,
        };
        cfg.validate()?;
        Ok(cfg)
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
}
