//! The Binance-compatible API (types shared by its threads; started from `run_app`): REST
//! (`/fapi/v1/klines`, `exchangeInfo`, `time`, `ping`, on the gateway's connection threads), the
//! WebSocket kline streams and the chart page.
//!
//! ```text
//!  shard-NN ──KlineSink (updates: true, KLINE_OUT_CAPACITY)──► api-hub
//!     api-hub: LiveKlines (latest open + recent closed per stream, read by REST),
//!              250 ms throttle of open-kline updates, closed/corrected/flat pushed at once;
//!              renders each event once (raw + combined frames) for streams with subscribers
//!     api-hub ──PushEvent (PUSH_EVENT_CAPACITY) + mio Waker──► api-ws
//!     api-http-N (handshake) ──NewClient (HANDOFF_CAPACITY) + Waker──► api-ws
//!     api-ws: mio poll over every WebSocket client: SUBSCRIBE & co, fan-out into per-client
//!             bounded queues, slow clients closed (1008), pings, limits
//! ```
//!
//! Nothing here can slow a shard: the hub only takes from its channel (the shard drops open
//! updates the channel refuses and queues closed ones in its outbox, which the hub drains at
//! memory speed), and the hub never waits on the push thread (a full event channel drops the
//! event, counted).

pub mod bench;
pub mod chart;
pub mod hub;
pub mod live;
pub mod render;
pub mod rest;
pub mod standalone;
pub mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use klagg_shards::kline::Interval;
use klagg_shards::protocol::{KLINE_OUT_CAPACITY, KlineMsg, SymbolIndex};
use klagg_shards::shard::KlineSink;

use crate::constants::SYMBOLS_MAX;
use crate::gateway::Router;
use crate::shutdown::Shutdown;
use crate::symbol_manager::registry::RegistryView;

pub use live::{LiveKlines, RECENT_CLOSED_MAX};
pub use rest::ReaderPool;

/// Capacity of the hub → push thread event channel.
pub const PUSH_EVENT_CAPACITY: usize = 65_536;
/// Capacity of the handshake → push thread channel of new WebSocket clients.
pub const HANDOFF_CAPACITY: usize = 256;
/// WebSocket clients served at once; more are refused at the handshake (HTTP 503).
pub const WS_CONNECTIONS_MAX: usize = 1024;
/// WebSocket clients one client address may hold at once (HTTP 503 beyond), so that no single
/// client takes every connection.
pub const WS_CONNECTIONS_PER_CLIENT_MAX: usize = 256;
/// Streams one WebSocket client may hold (Binance: 1024).
pub const STREAMS_PER_CLIENT_MAX: usize = 1024;
/// Open-kline updates of one stream are pushed at most this often (Binance: 250 ms).
pub const UPDATE_INTERVAL_MS: i64 = 250;

const _: () = assert!(WS_CONNECTIONS_PER_CLIENT_MAX < WS_CONNECTIONS_MAX);

/// The API's limits (defaults: the constants above and in [`ws::client`]; tests lower them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// WebSocket clients at once.
    pub ws_connections: usize,
    /// WebSocket clients per client address.
    pub ws_per_client: usize,
    /// Streams per WebSocket client.
    pub streams_per_client: usize,
    /// Bytes queued for one client before it is closed as too slow.
    pub client_queue_bytes: usize,
    /// Frames queued for one client before it is closed as too slow.
    pub client_queue_frames: usize,
    /// Incoming messages per second per client before it is closed.
    pub messages_per_second: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            ws_connections: WS_CONNECTIONS_MAX,
            ws_per_client: WS_CONNECTIONS_PER_CLIENT_MAX,
            streams_per_client: STREAMS_PER_CLIENT_MAX,
            client_queue_bytes: ws::client::CLIENT_QUEUE_BYTES_MAX,
            client_queue_frames: ws::client::CLIENT_QUEUE_FRAMES_MAX,
            messages_per_second: ws::client::MESSAGES_PER_SECOND_MAX,
        }
    }
}

/// One kline stream: a symbol and an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub symbol: SymbolIndex,
    pub interval: Interval,
}

impl StreamKey {
    /// Dense index for per-stream tables (`symbol × 16 + interval`).
    pub fn slot(self) -> usize {
        let interval = Interval::ALL
            .iter()
            .position(|&i| i == self.interval)
            .unwrap_or(0);
        self.symbol.0 as usize * Interval::ALL.len() + interval
    }
}

/// Subscriber counts per stream (written by the push thread, read by the hub, which renders
/// only streams somebody listens to).
#[derive(Debug)]
pub struct Interest {
    counts: Box<[AtomicU32]>,
}

impl Default for Interest {
    fn default() -> Self {
        let counts = (0..SYMBOLS_MAX * Interval::ALL.len())
            .map(|_| AtomicU32::new(0))
            .collect();
        Interest { counts }
    }
}

impl Interest {
    pub fn add(&self, key: StreamKey) {
        if let Some(count) = self.counts.get(key.slot()) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn remove(&self, key: StreamKey) {
        if let Some(count) = self.counts.get(key.slot()) {
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        }
    }

    pub fn any(&self, key: StreamKey) -> bool {
        self.counts
            .get(key.slot())
            .is_some_and(|c| c.load(Ordering::Relaxed) > 0)
    }
}

/// Counters of the API (shown by `/metrics`).
#[derive(Debug, Default)]
pub struct ApiCounters {
    pub kline_messages: AtomicU64,
    pub events_rendered: AtomicU64,
    /// Events the push thread's channel refused (it was behind).
    pub events_dropped: AtomicU64,
    /// Open-kline updates replaced by a newer one within the throttle window.
    pub updates_coalesced: AtomicU64,
    pub ws_clients: AtomicU64,
    pub ws_clients_total: AtomicU64,
    /// WebSocket handshakes refused (limits, or the push thread's hand-off full).
    pub ws_refused: AtomicU64,
    /// Of those, refused for the per-client limit.
    pub ws_refused_per_client: AtomicU64,
    pub ws_subscriptions: AtomicU64,
    pub ws_frames_sent: AtomicU64,
    pub ws_bytes_sent: AtomicU64,
    pub ws_closed_slow: AtomicU64,
    pub ws_closed_rate: AtomicU64,
    pub ws_closed_protocol: AtomicU64,
    pub ws_closed_idle: AtomicU64,
    pub ws_requests: AtomicU64,
    pub ws_request_errors: AtomicU64,
    pub rest_klines: AtomicU64,
    pub rest_errors: AtomicU64,
    pub store_errors: AtomicU64,
    /// Epoch ms of the hub's and the push thread's last loop.
    pub hub_heartbeat_ms: AtomicI64,
    pub push_heartbeat_ms: AtomicI64,
}

impl ApiCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Record a thread's heartbeat.
    pub fn beat(heartbeat: &AtomicI64) {
        heartbeat.store(crate::clock::epoch_ms(), Ordering::Relaxed);
    }
}

/// Health of the API's threads: the hub's and the push thread's heartbeats (fatal when stale:
/// the streams would be dead), with the client and drop counts as details.
#[derive(Debug)]
pub struct ApiThreadsHealth {
    pub state: Arc<ApiState>,
}

impl crate::health::HealthReporter for ApiThreadsHealth {
    fn name(&self) -> &str {
        "api-streams"
    }

    fn report(&self) -> crate::health::HealthReport {
        let c = &self.state.counters;
        let now = crate::clock::epoch_ms();
        let oldest = c
            .hub_heartbeat_ms
            .load(Ordering::Relaxed)
            .min(c.push_heartbeat_ms.load(Ordering::Relaxed));
        crate::health::heartbeat_report(now, oldest, true)
            .detail("ws_clients", ApiCounters::get(&c.ws_clients))
            .detail("events_dropped", ApiCounters::get(&c.events_dropped))
            .detail("ws_closed_slow", ApiCounters::get(&c.ws_closed_slow))
    }
}

/// What the API's handlers and threads share (in `GatewayContext::extra`).
#[derive(Debug)]
pub struct ApiState {
    /// The intervals this process aggregates (served by REST and the streams).
    pub intervals: Vec<Interval>,
    pub registry: RegistryView,
    pub live: LiveKlines,
    pub readers: ReaderPool,
    pub interest: Interest,
    pub counters: ApiCounters,
    pub limits: ApiLimits,
    pub push: ws::PushHandle,
}

/// The API before it runs: state, the kline channel's receiving end and the push thread's poll.
#[derive(Debug)]
pub struct Api {
    state: Arc<ApiState>,
    klines_tx: Sender<KlineMsg>,
    klines_rx: Receiver<KlineMsg>,
    events: (Sender<hub::PushEvent>, Receiver<hub::PushEvent>),
    push: ws::PushParts,
}

impl Api {
    /// Prepare the API for `intervals`, reading history from the store at `db` (when given).
    ///
    /// # Errors
    /// The push thread's poll could not be created.
    pub fn new(
        intervals: &[Interval],
        registry: RegistryView,
        db: Option<PathBuf>,
    ) -> std::io::Result<Api> {
        Api::with_limits(intervals, registry, db, ApiLimits::default())
    }

    /// [`Api::new`] with other limits.
    ///
    /// # Errors
    /// The push thread's poll could not be created.
    pub fn with_limits(
        intervals: &[Interval],
        registry: RegistryView,
        db: Option<PathBuf>,
        limits: ApiLimits,
    ) -> std::io::Result<Api> {
        let (klines_tx, klines_rx) = bounded(KLINE_OUT_CAPACITY);
        let (push_handle, push) = ws::PushParts::new()?;
        let counters = ApiCounters::default();
        ApiCounters::beat(&counters.hub_heartbeat_ms);
        ApiCounters::beat(&counters.push_heartbeat_ms);
        let state = Arc::new(ApiState {
            intervals: intervals.to_vec(),
            registry,
            live: LiveKlines::default(),
            readers: ReaderPool::new(db),
            interest: Interest::default(),
            counters,
            limits,
            push: push_handle,
        });
        Ok(Api {
            state,
            klines_tx,
            klines_rx,
            events: bounded(PUSH_EVENT_CAPACITY),
            push,
        })
    }

    /// Prepare the API for `klagg run` and plug it into `extensions`: its kline sink (also for
    /// the store's repair corrections), routes, state and health reporter. REST reads the attached store (`extensions.store`, when there is one).
    ///
    /// # Errors
    /// The push thread's poll could not be created.
    pub fn install(
        config: &crate::config::Config,
        extensions: &mut crate::app::AppExtensions,
    ) -> std::io::Result<Api> {
        let db = extensions.store.as_ref().map(|s| s.path().to_path_buf());
        let limits = ApiLimits {
            ws_per_client: config.ws_conns_per_ip,
            ..ApiLimits::default()
        };
        let api = Api::with_limits(&config.intervals, extensions.registry.clone(), db, limits)?;
        extensions.kline_sinks.push(api.sink());
        // Klines a store repair changed come as `Corrected`, like a shard's late corrections.
        extensions.correction_sinks.push(api.klines_tx.clone());
        let router = std::mem::take(&mut extensions.router);
        extensions.router = router.merge(Api::router());
        extensions.gateway_state.push(api.state());
        extensions
            .reporters
            .push(Arc::new(ApiThreadsHealth { state: api.state() }));
        Ok(api)
    }

    /// The shared state (for `AppExtensions::gateway_state`).
    pub fn state(&self) -> Arc<ApiState> {
        self.state.clone()
    }

    /// The kline consumer to hand to every shard (open updates included).
    pub fn sink(&self) -> KlineSink {
        KlineSink {
            tx: self.klines_tx.clone(),
            updates: true,
        }
    }

    /// The API's routes.
    pub fn router() -> Router {
        Router::new()
            .get("/fapi/v1/klines", rest::handle_klines)
            .get("/fapi/v1/exchangeInfo", rest::handle_exchange_info)
            .get("/fapi/v1/time", rest::handle_time)
            .get("/fapi/v1/ping", rest::handle_ping)
            .get("/api/v1/intervals", rest::handle_intervals)
            .get("/", chart::handle_page)
            .get_prefix("/assets/", chart::handle_asset)
            .websocket("/market", ws::handshake::upgrade)
            .websocket("/ws", ws::handshake::upgrade)
            .websocket("/stream", ws::handshake::upgrade)
    }

    /// Start the hub (`api-hub`) and push (`api-ws`) threads; they run until shutdown.
    ///
    /// # Errors
    /// A thread could not be created.
    pub fn spawn(
        self,
        shutdown: &Shutdown,
        core: Option<usize>,
    ) -> std::io::Result<Vec<(String, JoinHandle<()>)>> {
        let Api {
            state,
            klines_tx,
            klines_rx,
            events: (events_tx, events_rx),
            push,
        } = self;
        // Only the shards hold senders from now on: the hub ends when they are all gone.
        drop(klines_tx);
        let hub = hub::Hub::new(state.clone(), klines_rx, events_tx, shutdown.clone());
        let hub = crate::runtime::spawn_control("api-hub", core, move || hub.run())?;
        let pusher = ws::Pusher::new(state, push, events_rx, shutdown.clone());
        let pusher = crate::runtime::spawn_control("api-ws", core, move || pusher.run())?;
        Ok(vec![("api-hub".into(), hub), ("api-ws".into(), pusher)])
    }
}

#[cfg(test)]
mod harness_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_slots_are_dense_and_interest_counts() {
        let key = |s, interval| StreamKey {
            symbol: SymbolIndex(s),
            interval,
        };
        assert_eq!(key(0, Interval::S1).slot(), 0);
        assert_eq!(key(1, Interval::M1).slot(), 17);
        let interest = Interest::default();
        let k = key(3, Interval::H1);
        assert!(!interest.any(k));
        interest.add(k);
        interest.add(k);
        interest.remove(k);
        assert!(interest.any(k));
        interest.remove(k);
        interest.remove(k);
        assert!(!interest.any(k));
        // Out of range symbols are ignored, not a panic.
        interest.add(key(u32::MAX, Interval::M1));
    }
}
