//! The Binance USD-M exchange simulator (library API; called from the thread that starts it).
//! `Sim::start` spawns a `sim-generator` thread (market, replay, stream publishers) and a
//! `sim-acceptor` thread whose `sim-conn-N` children serve REST and WebSocket clients on one
//! loopback port. The returned [`SimHandle`] reads ground truth and injects faults; dropping it
//! (or calling [`SimHandle::shutdown`]) stops and joins every thread.
//!
//! # Using it from tests and benchmarks
//!
//! ```no_run
//! use std::time::Duration;
//! use klagg_bench::sim::{Interval, Sim, SimConfig};
//!
//! let sim = Sim::start(SimConfig::default().with_symbols(5).with_trade_rate(100)).unwrap();
//! let rest = sim.rest_url(); // "http://127.0.0.1:PORT" — append "/fapi/v1/klines?..."
//! let ws = sim.ws_url(); // "ws://127.0.0.1:PORT" — append "/market/ws" or "/market/stream?streams=..."
//! let btc = &sim.symbols()[0]; // BTCUSDT, tick "0.10", step "0.001", TRADING
//! let m1 = Interval::parse("1m").unwrap();
//! let truth = sim.klines(&btc.name, m1, 0, i64::MAX); // the reference klines REST serves
//! sim.drop_connections(); // fault: every WebSocket client is cut off
//! sim.skip_agg_ids("BTCUSDT", 3).unwrap(); // the next 3 trades never reach the stream
//! sim.shutdown();
//! ```
//!
//! # What it serves
//!
//! REST on `rest_url()`: `/fapi/v1/{ping,time,exchangeInfo,klines,aggTrades,ticker/24hr}` with
//! Binance's weights, `X-MBX-USED-WEIGHT-1M`, 429/418 with `Retry-After`, and error codes
//! -1100/-1102/-1120/-1121/-1127/-1130/-1023 (HTTP 400). WebSocket on `ws_url()`: `/market/ws`,
//! `/market/ws/<s>/<s>`, `/market/stream?streams=…`, `/public/...` and the legacy `/ws`,
//! `/stream` (both acknowledge and deliver nothing); streams `<symbol>@aggTrade`,
//! `<symbol>@kline_<interval>`, `!miniTicker@arr`, `!contractInfo`.
//!
//! # Semantics chosen where Binance is not documented
//!
//! * klines REST: open times in `[startTime, endTime]` (a `startTime` inside a kline starts at
//!   the next one); none before a symbol's first trade; delisted symbols end at delisting.
//! * The kline stream pushes the open kline when it changed (every 250 ms by default) and a
//!   final `x:true` for every interval after subscription, including flat ones (`f = L = -1`).
//! * SUBSCRIBE beyond `max_streams_per_connection` is refused with error code 2 "too many
//!   streams". All incoming frames (text, ping, pong) count toward the per-second limit.
//! * `skip_agg_ids` withholds the next n trades from the stream only (REST has them — what a
//!   missed message looks like); `duplicate_agg_ids` sends the next n trades twice. The
//!   periodic `skip_ids_every` / `duplicate_ids_every` pick a random symbol (seeded) among those
//!   that traded within the last minute; every periodic fault (`*_every`, `src/sim/faults.rs`)
//!   calls the same operation as the handle method and first fires one period after start.
//! * Retention (memory stays bounded on long runs): each symbol keeps its trades of the last
//!   `trade_retention` (default 30 min, counted back from its newest trade, never fewer than
//!   its newest 1000), at most `trade_retention_max` of them (default 2 M; plus the rest of the
//!   oldest kept minute). Older whole minutes survive as integer 1m summaries,
//!   `archive_minutes` of them per symbol. Memory: 48 bytes per kept trade, about
//!   `trade_rate` × (`trade_retention` + 1 min) × 48 B in all plus up to 1000 trades per quiet
//!   symbol (`--trade-rate 1000`, 200 symbols: 2.2 M trades, 124 MB RSS measured); the guard
//!   caps one symbol at `trade_retention_max` trades plus the rest of a minute. Minute-multiple klines stay exact over the archive. Evicted time is never served as if it
//!   had no trades: `1s` klines start at the first whole minute still kept (as Binance starts at
//!   a symbol's first data), and an `aggTrades` query whose answer would include evicted trades
//!   (`fromId`/`startTime` before the oldest kept trade, or an `endTime`/latest page with fewer
//!   kept trades than `limit`) is refused with HTTP 400 `{"code":-1130}` naming the parameter
//!   and the oldest kept id. [`SimHandle::trades`] only covers kept trades;
//!   [`SimHandle::trades_kept_from_ms`] says where they start.
//!   `ticker/24hr` and `!miniTicker@arr` use the 1m summaries (one-minute granularity).
//!
//! # Determinism
//!
//! The generator advances in virtual 10 ms ticks from `start − history`; a seed fixes every
//! trade (symbol, price, quantity, ids, side, offset in its tick) relative to the start time.
//! Faults triggered by wall-clock events (handle calls, `*_every`) add their own timing.
//!
//! # TLS
//!
//! With `tls: true` a throw-away CA and a `localhost`/`127.0.0.1` leaf are generated at start;
//! `rest_url()`/`ws_url()` become `https://localhost:PORT` / `wss://localhost:PORT`, and
//! [`SimHandle::tls`] gives the CA as PEM/DER plus a ready rustls `ClientConfig`.
//!
//! # Benchmark firehose
//!
//! With `firehose: Some(..)` every `/market` connection's `<symbol>@aggTrade` subscriptions are
//! fed generated frames as fast as possible (or at `rate_per_second`), written in ~200 KB
//! batches; ids are contiguous per symbol and connection, and nothing is stored. The synthetic
//! market then produces history only. `bench/src/bin/sim_throughput.rs` measures it.

mod config;
mod exinfo;
mod faults;
mod firehose;
mod generator;
mod http;
mod hub;
mod interval;
mod market;
mod publish;
mod ratelimit;
mod refagg;
mod render;
mod replay;
mod rest;
mod rng;
mod server;
mod synth;
mod tls;
mod universe;
mod ws_conn;
mod ws_proto;

pub mod cli;
mod handle;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use thiserror::Error;

pub use cli::{SimArgs, run_cli};
pub use config::{
    DEFAULT_TRADE_RETENTION, DEFAULT_TRADE_RETENTION_MAX, FirehoseConfig, MAX_SYMBOLS,
    ReplaySource, SimConfig,
};
pub use handle::{SimCounters, SimHandle, SymbolInfo};
pub use hub::{ConnInfo, MalformedFrame, Route, SubEvent, SubKind};
pub use interval::{INTERVALS, Interval};
pub use market::{PERPETUAL_DELIVERY_MS, SymbolStatus};
pub use refagg::{RefKline, RefTrade, Scales, aggregate};
pub use tls::{TlsError, TlsMaterial};

use faults::RestFaults;
use hub::Hub;
use market::{Market, Retention, TradeSource};
use ratelimit::RateLimiter;
use rng::SimRng;

/// Why the simulator could not start or a handle call failed.
#[derive(Debug, Error)]
pub enum SimError {
    /// A configuration value is out of range.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A thread could not be spawned.
    #[error("cannot spawn a simulator thread: {0}")]
    Spawn(std::io::Error),
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A replay file could not be read.
    #[error(transparent)]
    Replay(#[from] crate::replay::ReplayError),
    /// No such symbol.
    #[error("unknown symbol {0}")]
    UnknownSymbol(String),
    /// The symbol already exists.
    #[error("symbol {0} already exists")]
    SymbolExists(String),
}

/// Wall-clock time in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// State shared by every simulator thread.
#[derive(Debug)]
struct Shared {
    cfg: SimConfig,
    market: Mutex<Market>,
    hub: Hub,
    limiter: Mutex<RateLimiter>,
    faults: RestFaults,
    shutdown: AtomicBool,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Entry point of the simulator library.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Bind `cfg.listen`, build the market (history included) and start serving.
    pub fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
        cfg.validate().map_err(SimError::Config)?;
        let listener = TcpListener::bind(&cfg.listen).map_err(|source| SimError::Bind {
            addr: cfg.listen.clone(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: cfg.listen.clone(),
            source,
        })?;
        let (tls_material, tls_server) = match cfg.tls {
            true => {
                let (m, s) = tls::generate()?;
                (Some(m), Some(s))
            }
            false => (None, None),
        };
        let start = now_ms();
        let retention = Retention {
            window_ms: i64::try_from(cfg.trade_retention.as_millis()).unwrap_or(i64::MAX),
            max_trades: cfg.trade_retention_max,
        };
        let mut market = Market::new(retention, cfg.archive_minutes);
        let cursors = replay::load(&cfg.replay, &mut market, start, cfg.replay_speed)?;
        add_synthetic(&mut market, &cfg, start);
        let shared = Arc::new(Shared {
            limiter: Mutex::new(RateLimiter::new(
                cfg.weight_limit,
                cfg.rejections_before_ban,
                cfg.ban_durations.clone(),
            )),
            faults: RestFaults::new(&cfg),
            market: Mutex::new(market),
            hub: Hub::default(),
            shutdown: AtomicBool::new(false),
            tls: tls_server,
            cfg,
        });
        let generator = generator::Generator::new(shared.clone(), cursors, start);
        let mut threads = Vec::new();
        threads.push(spawn("sim-generator", move || generator.run())?);
        let sh = shared.clone();
        threads.push(spawn("sim-acceptor", move || {
            server::accept_loop(sh, listener)
        })?);
        Ok(SimHandle::new(shared, addr, tls_material, threads))
    }
}

fn spawn(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, SimError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(SimError::Spawn)
}

fn add_synthetic(market: &mut Market, cfg: &SimConfig, start: i64) {
    let mut rng = SimRng::new(cfg.seed ^ 0x0B0A);
    let history = cfg.history.as_millis() as i64;
    for spec in universe::build(cfg.symbols, cfg.seed) {
        if market.find(&spec.name).is_some() {
            continue; // a replayed symbol of the same name wins
        }
        let age_days = 30 + rng.below(1500) as i64;
        let onboard = (start - history - age_days * 86_400_000).div_euclid(3_600_000) * 3_600_000;
        market.add(spec, SymbolStatus::Trading, onboard, TradeSource::Synthetic);
    }
}
