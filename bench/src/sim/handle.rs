//! The in-process handle of a running simulator (used from the test's or program's own thread):
//! addresses, ground truth, counters, the subscription log, and fault injection. Dropping it
//! shuts the simulator down and joins its threads.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use super::hub::{ConnInfo, MalformedFrame, SubEvent};
use super::interval::Interval;
use super::market::SymbolStatus;
use super::refagg::{RefKline, RefTrade};
use super::render::fixed;
use super::tls::TlsMaterial;
use super::{Shared, SimError, now_ms, universe};
use super::{faults, generator};

/// A symbol as exchangeInfo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolInfo {
    /// Upper-case name.
    pub name: String,
    /// Lifecycle status.
    pub status: SymbolStatus,
    /// Tick size string (e.g. "0.10").
    pub tick_size: String,
    /// Step size string (e.g. "0.001").
    pub step_size: String,
    /// Price decimals (= pricePrecision).
    pub price_dp: u32,
    /// Quantity decimals (= quantityPrecision).
    pub qty_dp: u32,
    /// onboardDate, ms.
    pub onboard_ms: i64,
    /// deliveryDate, ms (the perpetual sentinel unless delisted).
    pub delivery_ms: i64,
    /// Served from a replay file.
    pub replayed: bool,
}

/// A snapshot of the simulator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// WebSocket connections accepted so far.
    pub ws_connections: u64,
    /// WebSocket connections open now.
    pub ws_open: u64,
    /// REST connections accepted so far.
    pub http_connections: u64,
    /// Connections refused at the connection limit.
    pub connections_refused: u64,
    /// WebSocket data frames written.
    pub frames_sent: u64,
    /// WebSocket payload bytes written.
    pub bytes_sent: u64,
    /// Frames dropped on stalled connections.
    pub frames_dropped_stalled: u64,
    /// Connections dropped as slow clients.
    pub slow_client_drops: u64,
    /// Connections closed with 1008.
    pub rate_limit_closes: u64,
    /// Connections closed for a missing pong.
    pub pong_timeout_closes: u64,
    /// Connections closed at the lifetime limit.
    pub lifetime_closes: u64,
    /// Incoming WebSocket messages.
    pub ws_messages_in: u64,
    /// REST requests.
    pub rest_requests: u64,
    /// Request weight charged.
    pub weight_used: u64,
    /// 429 answers.
    pub rest_429: u64,
    /// 418 answers.
    pub rest_418: u64,
    /// Injected 5xx answers.
    pub rest_5xx: u64,
    /// aggTrades published (history included).
    pub trades_published: u64,
    /// Subscription-log entries dropped at capacity.
    pub sub_log_dropped: u64,
}

/// A running simulator. Cheap to query from any thread (`&self` methods).
#[derive(Debug)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<TlsMaterial>,
    threads: Vec<JoinHandle<()>>,
}

impl SimHandle {
    pub(super) fn new(
        shared: Arc<Shared>,
        addr: SocketAddr,
        tls: Option<TlsMaterial>,
        threads: Vec<JoinHandle<()>>,
    ) -> Self {
        SimHandle {
            shared,
            addr,
            tls,
            threads,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (`https://localhost:PORT` with TLS).
    pub fn rest_url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// `ws://127.0.0.1:PORT` (`wss://localhost:PORT` with TLS); append `/market/ws` etc.
    pub fn ws_url(&self) -> String {
        match self.tls {
            Some(_) => format!("wss://localhost:{}", self.addr.port()),
            None => format!("ws://{}", self.addr),
        }
    }

    /// The generated CA and certificate when TLS is on.
    pub fn tls(&self) -> Option<&TlsMaterial> {
        self.tls.as_ref()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &super::SimConfig {
        &self.shared.cfg
    }

    /// Every symbol ever listed, in listing order.
    pub fn symbols(&self) -> Vec<SymbolInfo> {
        let m = self.shared.market.lock();
        m.books
            .iter()
            .map(|b| SymbolInfo {
                name: b.spec.name.clone(),
                status: b.status,
                tick_size: fixed(i128::from(b.spec.tick), b.spec.price_dp),
                step_size: fixed(i128::from(b.spec.step), b.spec.qty_dp),
                price_dp: b.spec.price_dp,
                qty_dp: b.spec.qty_dp,
                onboard_ms: b.onboard_ms,
                delivery_ms: b.delivery_ms,
                replayed: b.source == super::market::TradeSource::Replay,
            })
            .collect()
    }

    /// Reference klines with open times in `[start_ms, end_ms]` (clamped to the symbol's life:
    /// first trade … now or delisting), the same values REST serves. Empty for unknown symbols.
    pub fn klines(
        &self,
        symbol: &str,
        interval: Interval,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<RefKline> {
        let m = self.shared.market.lock();
        let Some(idx) = m.find(symbol) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut from = start_ms;
        loop {
            let batch = m.klines(idx, interval, Some(from), Some(end_ms), 1500, now_ms());
            let Some(last) = batch.last() else { break };
            from = interval.next_open(last.open_time);
            let full = batch.len() == 1500;
            out.extend(batch);
            if !full {
                break;
            }
        }
        out
    }

    /// The trades of `symbol` kept in the store (all published ones unless retention evicted
    /// older minutes), oldest first.
    pub fn trades(&self, symbol: &str) -> Vec<RefTrade> {
        let m = self.shared.market.lock();
        m.find(symbol).map(|i| m.ref_trades(i)).unwrap_or_default()
    }

    /// Where retention evicted trades of `symbol`: the minute from which every trade is kept
    /// (1s klines start there). None when nothing was evicted or the symbol is unknown.
    pub fn trades_kept_from_ms(&self, symbol: &str) -> Option<i64> {
        let m = self.shared.market.lock();
        m.find(symbol).and_then(|i| m.books[i].kept_from_ms())
    }

    /// SUBSCRIBE / UNSUBSCRIBE / URL-stream events, oldest first (bounded, see `SUB_LOG_CAPACITY`).
    pub fn subscription_log(&self) -> Vec<SubEvent> {
        self.shared.hub.sub_log()
    }

    /// Open WebSocket connections.
    pub fn connections(&self) -> Vec<ConnInfo> {
        self.shared.hub.connections()
    }

    /// Counter snapshot.
    pub fn counters(&self) -> SimCounters {
        let c = &self.shared.hub.counters;
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        SimCounters {
            ws_connections: l(&c.ws_connections),
            ws_open: self.shared.hub.connections().len() as u64,
            http_connections: l(&c.http_connections),
            connections_refused: l(&c.connections_refused),
            frames_sent: l(&c.frames_sent),
            bytes_sent: l(&c.bytes_sent),
            frames_dropped_stalled: l(&c.frames_dropped_stalled),
            slow_client_drops: l(&c.slow_client_drops),
            rate_limit_closes: l(&c.rate_limit_closes),
            pong_timeout_closes: l(&c.pong_timeout_closes),
            lifetime_closes: l(&c.lifetime_closes),
            ws_messages_in: l(&c.ws_messages_in),
            rest_requests: l(&c.rest_requests),
            weight_used: l(&c.weight_used),
            rest_429: l(&c.rest_429),
            rest_418: l(&c.rest_418),
            rest_5xx: l(&c.rest_5xx),
            trades_published: l(&c.trades_published),
            sub_log_dropped: l(&c.sub_log_dropped),
        }
    }

    /// Request weight `ip` has used in the current minute.
    pub fn weight_used(&self, ip: IpAddr) -> u32 {
        self.shared.limiter.lock().used(ip, now_ms())
    }

    /// List a new symbol: PENDING_TRADING now, TRADING after `listing_delay`; it shows up in
    /// `!miniTicker@arr` with its first trade.
    pub fn list_symbol(&self, name: &str) -> Result<(), SimError> {
        let spec = universe::listing_spec(name);
        generator::list_spec(&self.shared, spec, now_ms()).map_err(SimError::SymbolExists)
    }

    /// Delist a symbol: SETTLING now (trades stop, deliveryDate = now), CLOSE after
    /// `settle_delay`.
    pub fn delist_symbol(&self, name: &str) -> Result<(), SimError> {
        generator::delist(&self.shared, name, now_ms()).map_err(SimError::UnknownSymbol)
    }

    /// Drop every WebSocket connection (no close frame). Returns how many.
    /// `--disconnect-every` does the same periodically.
    pub fn drop_connections(&self) -> usize {
        faults::drop_connections(&self.shared, None)
    }

    /// Drop one WebSocket connection by id; false if it is not open.
    pub fn drop_connection(&self, id: u64) -> bool {
        faults::drop_connections(&self.shared, Some(id)) > 0
    }

    /// Keep every WebSocket connection open but silent (no data, no pings, requests unread)
    /// for `d`; frames due meanwhile are discarded. Returns how many.
    /// `--stall-every` / `--stall-for` do the same periodically.
    pub fn stall_connections(&self, d: Duration) -> usize {
        faults::stall_connections(&self.shared, None, until(d))
    }

    /// Stall one connection by id; false if it is not open.
    pub fn stall_connection(&self, id: u64, d: Duration) -> bool {
        faults::stall_connections(&self.shared, Some(id), until(d)) > 0
    }

    /// Add `d` of latency to every REST response from now on.
    pub fn set_rest_latency(&self, d: Duration) {
        self.shared
            .faults
            .latency_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Answer the next `count` REST requests with 503 `{"code":-1001,…}`.
    /// `--rest-error-every` does this with a count of one periodically.
    pub fn inject_rest_errors(&self, count: u64) {
        faults::inject_rest_errors(&self.shared, count);
    }

    /// Answer this fraction (0.0–1.0) of REST requests with 503 (seeded, deterministic order);
    /// `--rest-error-ratio` sets it at start.
    pub fn set_rest_error_ratio(&self, ratio: f64) {
        self.shared
            .faults
            .error_ppm
            .store(faults::ratio_ppm(ratio), Ordering::Relaxed);
    }

    /// Send a broken frame to one connection (`Some(id)`) or all. Returns how many got it.
    /// `--malformed-every` sends one to all periodically.
    pub fn send_malformed_frame(&self, conn: Option<u64>, frame: MalformedFrame) -> usize {
        faults::send_malformed(&self.shared, conn, &frame)
    }

    /// Withhold the next `n` aggTrades of `symbol` from the stream (REST still has them), so
    /// subscribers see a jump in `a`. `--skip-ids-every` does it for an active symbol.
    pub fn skip_agg_ids(&self, symbol: &str, n: u64) -> Result<(), SimError> {
        faults::disturb_agg_ids(&self.shared, symbol, n, false)
    }

    /// Send the next `n` aggTrades of `symbol` twice on the stream.
    /// `--duplicate-ids-every` does it for an active symbol.
    pub fn duplicate_agg_ids(&self, symbol: &str, n: u64) -> Result<(), SimError> {
        faults::disturb_agg_ids(&self.shared, symbol, n, true)
    }

    /// Stop every thread and wait for them (also done by Drop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the acceptor blocked in accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Wall-clock ms `d` from now.
fn until(d: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
