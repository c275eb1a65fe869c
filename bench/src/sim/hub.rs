//! The subscription hub (shared by the generator, publisher and connection threads behind one
//! mutex): which WebSocket connection holds which streams, each connection's bounded outbound
//! queue and control flags, the subscription log, and the simulator's counters. Publishing never
//! blocks: a connection whose queue is full is marked for disconnection as a slow client.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use parking_lot::Mutex;

/// Subscription-log entries kept (the oldest are dropped and counted beyond this).
pub const SUB_LOG_CAPACITY: usize = 100_000;

/// Which routed endpoint a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/market/...`: aggTrade, kline, miniTicker, contractInfo are delivered.
    Market,
    /// `/public/...`: high-frequency streams only (none simulated), so silent.
    Public,
    /// Legacy root `/ws`, `/stream`: acks everything, delivers nothing (since 2026-04-23).
    Legacy,
}

/// What a connection thread is asked to send.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A stream event; combined framing wraps it with the stream name.
    Data {
        /// Canonical stream name.
        stream: Arc<str>,
        /// Raw payload JSON.
        payload: Arc<str>,
    },
    /// A deliberately broken frame (fault injection).
    Malformed(MalformedFrame),
}

/// Kinds of broken frames `send_malformed_frame` can inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MalformedFrame {
    /// A text frame with a cut-off aggTrade JSON.
    TruncatedJson,
    /// A text frame that is not JSON at all.
    NotJson,
    /// A binary frame of garbage bytes.
    Binary,
    /// A text frame with exactly this content.
    Custom(String),
}

/// Per-connection flags set from other threads.
#[derive(Debug, Default)]
pub struct ConnCtl {
    /// Drop the connection now (no close frame).
    pub kill: AtomicBool,
    /// Stay open but silent until this wall-clock ms.
    pub stall_until_ms: AtomicI64,
}

/// What kind of subscription event was logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// Streams named in the connection URL.
    UrlPath,
    /// A SUBSCRIBE request.
    Subscribe,
    /// An UNSUBSCRIBE request.
    Unsubscribe,
}

/// One subscription-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubEvent {
    /// Global order of events.
    pub seq: u64,
    /// Monotonic time the request was handled.
    pub at: Instant,
    /// Wall-clock ms the request was handled.
    pub at_ms: i64,
    /// Connection id.
    pub conn_id: u64,
    /// URL, SUBSCRIBE or UNSUBSCRIBE.
    pub kind: SubKind,
    /// Stream names as the client sent them.
    pub streams: Vec<String>,
    /// Request id (None for URL streams).
    pub request_id: Option<u64>,
    /// Whether the request was accepted.
    pub accepted: bool,
}

/// A connection as the handle reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Connection id (as in the subscription log).
    pub id: u64,
    /// Client address.
    pub peer: SocketAddr,
    /// Request path and query of the upgrade.
    pub path: String,
    /// Routed endpoint.
    pub route: Route,
    /// Current streams in subscription order.
    pub streams: Vec<String>,
}

/// Monotonic counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// WebSocket connections accepted.
    pub ws_connections: AtomicU64,
    /// REST (HTTP) connections accepted.
    pub http_connections: AtomicU64,
    /// Connections refused at the connection limit.
    pub connections_refused: AtomicU64,
    /// WebSocket data frames written.
    pub frames_sent: AtomicU64,
    /// WebSocket bytes of data frames written (payload).
    pub bytes_sent: AtomicU64,
    /// Frames dropped because a connection was stalled.
    pub frames_dropped_stalled: AtomicU64,
    /// Connections dropped because their outbound queue was full.
    pub slow_client_drops: AtomicU64,
    /// Connections closed with 1008 for too many incoming messages.
    pub rate_limit_closes: AtomicU64,
    /// Connections closed for a missing pong.
    pub pong_timeout_closes: AtomicU64,
    /// Connections closed at the lifetime limit.
    pub lifetime_closes: AtomicU64,
    /// Incoming WebSocket messages.
    pub ws_messages_in: AtomicU64,
    /// REST requests answered.
    pub rest_requests: AtomicU64,
    /// Request weight charged over all IPs.
    pub weight_used: AtomicU64,
    /// 429 answers.
    pub rest_429: AtomicU64,
    /// 418 answers.
    pub rest_418: AtomicU64,
    /// Injected 5xx answers.
    pub rest_5xx: AtomicU64,
    /// aggTrades published by the generator (synthetic and replay).
    pub trades_published: AtomicU64,
    /// Subscription-log entries dropped at capacity.
    pub sub_log_dropped: AtomicU64,
}

struct ConnEntry {
    tx: Sender<Outbound>,
    ctl: Arc<ConnCtl>,
    route: Route,
    peer: SocketAddr,
    path: String,
    streams: Vec<String>,
}

#[derive(Default)]
struct HubInner {
    next_id: u64,
    conns: HashMap<u64, ConnEntry>,
    by_stream: HashMap<String, Vec<u64>>,
}

/// The hub: registry, log and counters.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<HubInner>,
    log: Mutex<(u64, VecDeque<SubEvent>)>,
    /// Counters shared by every thread.
    pub counters: Counters,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.inner.lock().conns.len())
            .finish()
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubError {
    /// More streams than the per-connection limit.
    TooManyStreams,
}

impl Hub {
    /// Register a new connection; returns its id, outbound queue and flags.
    pub fn register(
        &self,
        route: Route,
        peer: SocketAddr,
        path: String,
        queue: usize,
    ) -> (u64, Receiver<Outbound>, Arc<ConnCtl>) {
        let (tx, rx) = bounded(queue);
        let ctl = Arc::new(ConnCtl::default());
        let mut g = self.inner.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.conns.insert(
            id,
            ConnEntry {
                tx,
                ctl: ctl.clone(),
                route,
                peer,
                path,
                streams: Vec::new(),
            },
        );
        (id, rx, ctl)
    }

    /// Forget a connection and its subscriptions.
    pub fn unregister(&self, id: u64) {
        let mut g = self.inner.lock();
        if let Some(e) = g.conns.remove(&id) {
            for s in &e.streams {
                remove_sub(&mut g.by_stream, s, id);
            }
        }
    }

    /// Add streams (canonical names) to a connection, keeping the per-connection limit.
    pub fn subscribe(&self, id: u64, streams: &[String], max: usize) -> Result<(), SubError> {
        let mut g = self.inner.lock();
        let HubInner {
            conns, by_stream, ..
        } = &mut *g;
        let Some(e) = conns.get_mut(&id) else {
            return Ok(());
        };
        let new: Vec<&String> = streams.iter().filter(|s| !e.streams.contains(s)).collect();
        if e.streams.len() + new.len() > max {
            return Err(SubError::TooManyStreams);
        }
        for s in new {
            e.streams.push(s.clone());
            if e.route == Route::Market {
                by_stream.entry(s.clone()).or_default().push(id);
            }
        }
        Ok(())
    }

    /// Remove streams from a connection (unknown ones are ignored).
    pub fn unsubscribe(&self, id: u64, streams: &[String]) {
        let mut g = self.inner.lock();
        let HubInner {
            conns, by_stream, ..
        } = &mut *g;
        if let Some(e) = conns.get_mut(&id) {
            e.streams.retain(|s| !streams.contains(s));
            for s in streams {
                remove_sub(by_stream, s, id);
            }
        }
    }

    /// A connection's streams in subscription order.
    pub fn list(&self, id: u64) -> Vec<String> {
        self.inner
            .lock()
            .conns
            .get(&id)
            .map(|e| e.streams.clone())
            .unwrap_or_default()
    }

    /// True when some `/market` connection holds `stream`.
    pub fn has_subscribers(&self, stream: &str) -> bool {
        self.inner
            .lock()
            .by_stream
            .get(stream)
            .is_some_and(|v| !v.is_empty())
    }

    /// Streams with at least one `/market` subscriber that start with `prefix`-free filter `f`.
    pub fn active_streams(&self, f: impl Fn(&str) -> bool) -> Vec<String> {
        let g = self.inner.lock();
        g.by_stream
            .iter()
            .filter(|(k, v)| !v.is_empty() && f(k))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Queue a frame to every `/market` subscriber of `stream`; full queues drop their
    /// connection (slow client). Returns the number of connections reached.
    pub fn publish(&self, stream: &Arc<str>, payload: Arc<str>) -> usize {
        let g = self.inner.lock();
        let Some(ids) = g.by_stream.get(&**stream) else {
            return 0;
        };
        let mut reached = 0;
        for id in ids {
            let Some(e) = g.conns.get(id) else { continue };
            let msg = Outbound::Data {
                stream: stream.clone(),
                payload: payload.clone(),
            };
            match e.tx.try_send(msg) {
                Ok(()) => reached += 1,
                Err(TrySendError::Full(_)) => {
                    if !e.ctl.kill.swap(true, Ordering::Relaxed) {
                        self.counters
                            .slow_client_drops
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        reached
    }

    /// Queue a broken frame on one connection (or all with `None`).
    pub fn send_malformed(&self, id: Option<u64>, frame: &MalformedFrame) -> usize {
        let g = self.inner.lock();
        g.conns
            .iter()
            .filter(|(cid, _)| id.is_none_or(|want| want == **cid))
            .filter(|(_, e)| e.tx.try_send(Outbound::Malformed(frame.clone())).is_ok())
            .count()
    }

    /// Apply `f` to the flags of one connection (or all with `None`); returns how many.
    pub fn with_ctl(&self, id: Option<u64>, f: impl Fn(&ConnCtl)) -> usize {
        let g = self.inner.lock();
        let mut n = 0;
        for (cid, e) in &g.conns {
            if id.is_none_or(|want| want == *cid) {
                f(&e.ctl);
                n += 1;
            }
        }
        n
    }

    /// Snapshot of the open WebSocket connections, by id.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let g = self.inner.lock();
        let mut v: Vec<ConnInfo> = g
            .conns
            .iter()
            .map(|(id, e)| ConnInfo {
                id: *id,
                peer: e.peer,
                path: e.path.clone(),
                route: e.route,
                streams: e.streams.clone(),
            })
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Append to the subscription log.
    pub fn log_sub(
        &self,
        conn_id: u64,
        kind: SubKind,
        streams: Vec<String>,
        request_id: Option<u64>,
        accepted: bool,
    ) {
        let mut g = self.log.lock();
        g.0 += 1;
        let ev = SubEvent {
            seq: g.0,
            at: Instant::now(),
            at_ms: super::now_ms(),
            conn_id,
            kind,
            streams,
            request_id,
            accepted,
        };
        if g.1.len() >= SUB_LOG_CAPACITY {
            g.1.pop_front();
            self.counters
                .sub_log_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
        g.1.push_back(ev);
    }

    /// The subscription log, oldest first.
    pub fn sub_log(&self) -> Vec<SubEvent> {
        self.log.lock().1.iter().cloned().collect()
    }
}

fn remove_sub(by_stream: &mut HashMap<String, Vec<u64>>, stream: &str, id: u64) {
    if let Some(v) = by_stream.get_mut(stream) {
        v.retain(|x| *x != id);
        if v.is_empty() {
            by_stream.remove(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn market_routes_deliver_legacy_does_not() {
        let hub = Hub::default();
        let (a, rx_a, _) = hub.register(Route::Market, peer(), "/market/ws".into(), 4);
        let (b, rx_b, _) = hub.register(Route::Legacy, peer(), "/ws".into(), 4);
        let s = vec!["btcusdt@aggTrade".to_string()];
        hub.subscribe(a, &s, 10).unwrap();
        hub.subscribe(b, &s, 10).unwrap();
        assert_eq!(hub.list(b), s, "legacy acks and lists");
        let stream: Arc<str> = Arc::from("btcusdt@aggTrade");
        assert_eq!(hub.publish(&stream, Arc::from("{}")), 1);
        assert!(rx_a.try_recv().is_ok());
        assert!(rx_b.try_recv().is_err());
    }

    #[test]
    fn limits_and_slow_clients() {
        let hub = Hub::default();
        let (a, _rx, ctl) = hub.register(Route::Market, peer(), "/market/ws".into(), 1);
        let two = vec!["a@aggTrade".to_string(), "b@aggTrade".to_string()];
        assert_eq!(hub.subscribe(a, &two, 1), Err(SubError::TooManyStreams));
        hub.subscribe(a, &two[..1], 1).unwrap();
        let stream: Arc<str> = Arc::from("a@aggTrade");
        hub.publish(&stream, Arc::from("1"));
        hub.publish(&stream, Arc::from("2"));
        assert!(ctl.kill.load(Ordering::Relaxed));
        assert_eq!(hub.counters.slow_client_drops.load(Ordering::Relaxed), 1);
        hub.unsubscribe(a, &two[..1]);
        assert!(!hub.has_subscribers("a@aggTrade"));
    }
}
