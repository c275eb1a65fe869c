//! Simulator configuration (plain data, built by the caller before `Sim::start`): market size
//! and pace, REST limits, WebSocket limits, lifecycle delays, retention, TLS, replay and the
//! benchmark firehose. Fields are public; the `with_*` methods read like a builder.

use std::path::PathBuf;
use std::time::Duration;

/// Everything `Sim::start` needs. `SimConfig::default()` is a small market on an ephemeral
/// loopback port with Binance's limits; tests usually shorten the WebSocket timers.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind; `127.0.0.1:0` picks an ephemeral port.
    pub listen: String,
    /// Number of synthetic USDT perpetuals (0..=2000).
    pub symbols: usize,
    /// Total synthetic aggTrades per second over all symbols (before bursts).
    pub trade_rate: u64,
    /// Seed of the market generator: the same seed gives the same trades relative to start.
    pub seed: u64,
    /// Synthetic trading history generated before start (what REST backfill finds).
    pub history: Duration,
    /// Request weight per IP per fixed minute (exchangeInfo `REQUEST_WEIGHT`).
    pub weight_limit: u32,
    /// 429 answers an IP may receive within one minute before it is banned (418).
    pub rejections_before_ban: u32,
    /// Ban durations for the 1st, 2nd, … offence (the last one repeats).
    pub ban_durations: Vec<Duration>,
    /// Extra latency added to every REST response.
    pub rest_latency: Duration,
    /// Server ping interval on every WebSocket connection.
    pub ping_interval: Duration,
    /// A connection that sent no pong for this long is closed.
    pub pong_timeout: Duration,
    /// Connections are closed when they reach this age.
    pub max_connection_lifetime: Duration,
    /// Streams one connection may hold (URL streams plus SUBSCRIBE).
    pub max_streams_per_connection: usize,
    /// Incoming WebSocket messages per second per connection before a 1008 close.
    pub incoming_message_limit: u32,
    /// Period of `<symbol>@kline_<interval>` updates.
    pub kline_update_interval: Duration,
    /// Delay between a kline's close time and its final (`x:true`) stream update.
    pub kline_final_delay: Duration,
    /// A listed symbol stays PENDING_TRADING this long before it trades.
    pub listing_delay: Duration,
    /// A delisted symbol stays SETTLING this long before it is CLOSE.
    pub settle_delay: Duration,
    /// Trades of this last stretch of time are kept per symbol (counted back from its newest
    /// trade; never fewer than its newest 1000) for 1s klines, aggTrades REST and ground truth;
    /// older whole minutes live on as 1m summaries. Evicted time gets no 1s klines at all and
    /// aggTrades queries reaching into it are refused (-1130).
    pub trade_retention: Duration,
    /// Memory guard: at most this many trades kept per symbol (plus the rest of the oldest kept
    /// minute) whatever `trade_retention` says; 48 bytes each.
    pub trade_retention_max: usize,
    /// 1m summaries kept per symbol (minutes with trades; 1440 covers ticker/24hr).
    pub archive_minutes: usize,
    /// Serve `https://` and `wss://` behind a generated certificate.
    pub tls: bool,
    /// Recorded aggTrade files to replay as live symbols, next to the synthetic market.
    pub replay: Vec<ReplaySource>,
    /// Replay speed factor (1.0 = real pace).
    pub replay_speed: f64,
    /// List a new symbol this often (None: never).
    pub list_every: Option<Duration>,
    /// Delist a random trading symbol this often (None: never).
    pub delist_every: Option<Duration>,
    /// Drop every WebSocket connection this often (None: never).
    pub disconnect_every: Option<Duration>,
    /// Answer the next REST request with 503 `{"code":-1001}` this often (None: never).
    pub rest_error_every: Option<Duration>,
    /// Answer this fraction (0.0–1.0) of REST requests with 503 from the start (seeded).
    pub rest_error_ratio: f64,
    /// Stall every WebSocket connection (open but silent) this often (None: never)…
    pub stall_every: Option<Duration>,
    /// …for this long each time.
    pub stall_for: Duration,
    /// Send a malformed frame to every WebSocket connection this often (None: never); truncated
    /// aggTrade JSON, non-JSON text and a binary frame in turn.
    pub malformed_every: Option<Duration>,
    /// Withhold `fault_ids` aggTrades of a random active symbol from the stream this often.
    pub skip_ids_every: Option<Duration>,
    /// Send `fault_ids` aggTrades of a random active symbol twice this often.
    pub duplicate_ids_every: Option<Duration>,
    /// aggTrades withheld or duplicated each time (`skip_ids_every`, `duplicate_ids_every`).
    pub fault_ids: u64,
    /// Benchmark mode: aggTrade subscriptions receive generated frames as fast as possible.
    pub firehose: Option<FirehoseConfig>,
    /// Outbound frames queued per connection before it is dropped as a slow client.
    pub outbound_queue_capacity: usize,
    /// Stream latency: every WebSocket connection holds its data frames (not its control
    /// replies) for a fixed delay drawn from `[0, max]` by the seed when it opens, so two
    /// connections carrying the same stream deliver it at different lags (ZERO: none).
    pub ws_data_delay_max: Duration,
    /// Concurrent client connections (REST + WebSocket) before new ones are refused.
    pub max_connections: usize,
}

/// One replay input: the trades of `path` are served as symbol `symbol`.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    /// Symbol name to serve them as (upper case, e.g. `BTCUSDT`).
    pub symbol: String,
    /// aggTrades CSV or JSON file.
    pub path: PathBuf,
}

/// Benchmark firehose: every `<symbol>@aggTrade` subscription of a `/market` connection gets
/// pre-rendered aggTrade frames (ids contiguous per symbol and connection) written in large
/// batches. The trades are not stored, so REST knows nothing of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirehoseConfig {
    /// Frames per connection before the firehose stops (0: until the client leaves).
    pub trades_per_connection: u64,
    /// Target frames per second per connection (0: as fast as possible).
    pub rate_per_second: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".to_string(),
            symbols: 20,
            trade_rate: 200,
            seed: 1,
            history: Duration::from_secs(120),
            weight_limit: 2400,
            rejections_before_ban: 3,
            ban_durations: [120, 300, 900, 3600, 86_400, 259_200]
                .map(Duration::from_secs)
                .to_vec(),
            rest_latency: Duration::ZERO,
            ping_interval: Duration::from_secs(180),
            pong_timeout: Duration::from_secs(600),
            max_connection_lifetime: Duration::from_secs(24 * 3600),
            max_streams_per_connection: 1024,
            incoming_message_limit: 10,
            kline_update_interval: Duration::from_millis(250),
            kline_final_delay: Duration::from_secs(2),
            listing_delay: Duration::from_secs(2),
            settle_delay: Duration::from_secs(5),
            trade_retention: DEFAULT_TRADE_RETENTION,
            trade_retention_max: DEFAULT_TRADE_RETENTION_MAX,
            archive_minutes: 1440,
            tls: false,
            replay: Vec::new(),
            replay_speed: 1.0,
            list_every: None,
            delist_every: None,
            disconnect_every: None,
            rest_error_every: None,
            rest_error_ratio: 0.0,
            stall_every: None,
            stall_for: Duration::from_secs(30),
            malformed_every: None,
            skip_ids_every: None,
            duplicate_ids_every: None,
            fault_ids: 3,
            firehose: None,
            outbound_queue_capacity: 65_536,
            ws_data_delay_max: Duration::ZERO,
            max_connections: 1024,
        }
    }
}

macro_rules! with {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty;)*) => {
        impl SimConfig {
            $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
                self.$field = value;
                self
            })*
        }
    };
}

with! {
    /// Set `listen`.
    with_listen: listen: String;
    /// Set `symbols`.
    with_symbols: symbols: usize;
    /// Set `trade_rate`.
    with_trade_rate: trade_rate: u64;
    /// Set `seed`.
    with_seed: seed: u64;
    /// Set `history`.
    with_history: history: Duration;
    /// Set `weight_limit`.
    with_weight_limit: weight_limit: u32;
    /// Set `rejections_before_ban`.
    with_rejections_before_ban: rejections_before_ban: u32;
    /// Set `ban_durations`.
    with_ban_durations: ban_durations: Vec<Duration>;
    /// Set `rest_latency`.
    with_rest_latency: rest_latency: Duration;
    /// Set `ping_interval`.
    with_ping_interval: ping_interval: Duration;
    /// Set `pong_timeout`.
    with_pong_timeout: pong_timeout: Duration;
    /// Set `max_connection_lifetime`.
    with_max_connection_lifetime: max_connection_lifetime: Duration;
    /// Set `max_streams_per_connection`.
    with_max_streams_per_connection: max_streams_per_connection: usize;
    /// Set `incoming_message_limit`.
    with_incoming_message_limit: incoming_message_limit: u32;
    /// Set `kline_update_interval`.
    with_kline_update_interval: kline_update_interval: Duration;
    /// Set `kline_final_delay`.
    with_kline_final_delay: kline_final_delay: Duration;
    /// Set `listing_delay`.
    with_listing_delay: listing_delay: Duration;
    /// Set `settle_delay`.
    with_settle_delay: settle_delay: Duration;
    /// Set `trade_retention`.
    with_trade_retention: trade_retention: Duration;
    /// Set `trade_retention_max`.
    with_trade_retention_max: trade_retention_max: usize;
    /// Set `archive_minutes`.
    with_archive_minutes: archive_minutes: usize;
    /// Set `tls`.
    with_tls: tls: bool;
    /// Set `replay`.
    with_replay: replay: Vec<ReplaySource>;
    /// Set `replay_speed`.
    with_replay_speed: replay_speed: f64;
    /// Set `list_every`.
    with_list_every: list_every: Option<Duration>;
    /// Set `delist_every`.
    with_delist_every: delist_every: Option<Duration>;
    /// Set `disconnect_every`.
    with_disconnect_every: disconnect_every: Option<Duration>;
    /// Set `rest_error_every`.
    with_rest_error_every: rest_error_every: Option<Duration>;
    /// Set `rest_error_ratio`.
    with_rest_error_ratio: rest_error_ratio: f64;
    /// Set `stall_every`.
    with_stall_every: stall_every: Option<Duration>;
    /// Set `stall_for`.
    with_stall_for: stall_for: Duration;
    /// Set `malformed_every`.
    with_malformed_every: malformed_every: Option<Duration>;
    /// Set `skip_ids_every`.
    with_skip_ids_every: skip_ids_every: Option<Duration>;
    /// Set `duplicate_ids_every`.
    with_duplicate_ids_every: duplicate_ids_every: Option<Duration>;
    /// Set `fault_ids`.
    with_fault_ids: fault_ids: u64;
    /// Set `firehose`.
    with_firehose: firehose: Option<FirehoseConfig>;
    /// Set `outbound_queue_capacity`.
    with_outbound_queue_capacity: outbound_queue_capacity: usize;
    /// Set `ws_data_delay_max`.
    with_ws_data_delay_max: ws_data_delay_max: Duration;
    /// Set `max_connections`.
    with_max_connections: max_connections: usize;
}

/// Largest supported market.
pub const MAX_SYMBOLS: usize = 2000;
/// Default `trade_retention`: 30 minutes covers the default 10 minutes of `klagg sim` history
/// and a 1000-bar 1s backfill (16 min 40 s) at any time of a run.
pub const DEFAULT_TRADE_RETENTION: Duration = Duration::from_secs(30 * 60);
/// Default `trade_retention_max`: 2 M trades (96 MB) per symbol, above what the busiest symbol
/// trades in 30 minutes at `--trade-rate 1000`.
pub const DEFAULT_TRADE_RETENTION_MAX: usize = 2_000_000;

impl SimConfig {
    /// Check the values `Sim::start` relies on; returns a message for the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.symbols > MAX_SYMBOLS {
            return Err(format!("symbols must be at most {MAX_SYMBOLS}"));
        }
        if self.ban_durations.is_empty() {
            return Err("ban_durations must not be empty".into());
        }
        if self.trade_retention.is_zero() || self.trade_retention_max == 0 {
            return Err("trade_retention and trade_retention_max must be positive".into());
        }
        if self.outbound_queue_capacity == 0 {
            return Err("outbound_queue_capacity must be positive".into());
        }
        if self.ping_interval.is_zero() || self.kline_update_interval.is_zero() {
            return Err("ping_interval and kline_update_interval must be positive".into());
        }
        if self.replay_speed.is_nan() || self.replay_speed <= 0.0 {
            return Err("replay_speed must be positive".into());
        }
        self.validate_faults()
    }

    fn validate_faults(&self) -> Result<(), String> {
        let periods = [
            ("list_every", self.list_every),
            ("delist_every", self.delist_every),
            ("disconnect_every", self.disconnect_every),
            ("rest_error_every", self.rest_error_every),
            ("stall_every", self.stall_every),
            ("malformed_every", self.malformed_every),
            ("skip_ids_every", self.skip_ids_every),
            ("duplicate_ids_every", self.duplicate_ids_every),
        ];
        if let Some((name, _)) = periods.iter().find(|(_, d)| d.is_some_and(|d| d.is_zero())) {
            return Err(format!("{name} must be positive"));
        }
        if !(0.0..=1.0).contains(&self.rest_error_ratio) {
            return Err("rest_error_ratio must be between 0 and 1".into());
        }
        if self.stall_for.is_zero() || self.fault_ids == 0 {
            return Err("stall_for and fault_ids must be positive".into());
        }
        Ok(())
    }
}
