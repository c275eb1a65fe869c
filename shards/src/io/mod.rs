//! A shard's WebSocket I/O (shard thread; the blocking connect runs on the connector thread):
//! the connections of one shard to Binance's `/market` route with combined framing, the
//! symbols each carries, pacing of control messages, pings, silence and ack timeouts,
//! reconnects with capped exponential back-off and jitter ([`backoff`]), and make-before-break
//! rotation before the connection lifetime runs out ([`overlap`]).
//!
//! Invariants: a symbol is owned by at most one non-retiring connection (`owner`); a retiring
//! connection keeps delivering its old streams until every symbol has been handed over to its
//! replacement without a gap or a double count (see [`overlap`]), or until the bounded overlap
//! ends; then it is closed. A replacement is not itself rotated while its overlap lasts. After
//! any reconnect every stream the connection should carry is subscribed again, after a delay
//! that grows with every failed attempt *and* every lost connection.

pub mod backoff;
pub mod conn;
pub mod connector;
pub mod overlap;
pub mod subs;
pub mod tls;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustc_hash::FxHashMap;
use tungstenite::Message;

use crate::protocol::{ShardCounters, SymbolIndex};
use crate::worker::Worker;
use conn::{ConnState, Connection, ReadStats, StreamFailures, read_frames};
use connector::{ConnectRequest, ConnectResult, tcp_of};
use overlap::{Gate, GateStats, Overlap, Side};

/// Token of the first connection; `Token(0)` is the shard's waker.
pub const FIRST_CONN_TOKEN: usize = 1;
/// A connect attempt that has not come back after this long is abandoned.
const CONNECT_DEADLINE: Duration = Duration::from_secs(15);
/// A retiring connection is closed at the latest this long after its rotation started, even
/// when its replacement never had every stream acknowledged (while the replacement is open).
const ROTATION_DEADLINE: Duration = Duration::from_secs(60);
/// ... and this long at the very latest, even while the replacement cannot connect (well
/// inside the margin the default lifetime leaves before the venue's 24 h limit).
const ROTATION_DEADLINE_MAX: Duration = Duration::from_secs(9 * 60);
/// A retiring connection is closed at the latest this long after its replacement had every
/// stream acknowledged; symbols that did not trade meanwhile switch then.
pub const ROTATION_OVERLAP_MAX: Duration = Duration::from_secs(10);

/// How a shard connects and paces itself.
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// `wss://fstream.binance.com` (or a simulator's `ws://127.0.0.1:PORT`).
    pub ws_base: String,
    /// Appended to `ws_base`: Binance's `/market` route, combined framing.
    pub route: String,
    pub streams_per_connection: usize,
    pub control_messages_per_sec: u32,
    /// Connections are rotated (make-before-break) when they reach this age.
    pub max_connection_lifetime: Duration,
    pub ping_interval: Duration,
    /// Nothing received (not even a pong) for this long: reconnect.
    pub silence_timeout: Duration,
    /// A SUBSCRIBE without an answer for this long: reconnect.
    pub ack_timeout: Duration,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    pub connections_max: usize,
    /// Frames read from one connection per loop iteration.
    pub frames_per_event_max: usize,
    /// Extra CA certificates (PEM) trusted for `wss://`, e.g. a simulator's.
    pub extra_ca_pem: Option<String>,
}

impl IoConfig {
    /// Binance's limits and sensible timers for `ws_base`.
    pub fn new(ws_base: impl Into<String>) -> IoConfig {
        IoConfig {
            ws_base: ws_base.into(),
            route: "/market/stream".into(),
            streams_per_connection: 200,
            control_messages_per_sec: 5,
            max_connection_lifetime: Duration::from_secs(23 * 3600 + 50 * 60),
            ping_interval: Duration::from_secs(30),
            silence_timeout: Duration::from_secs(90),
            ack_timeout: Duration::from_secs(10),
            reconnect_backoff_min: Duration::from_millis(200),
            reconnect_backoff_max: Duration::from_secs(30),
            connections_max: 64,
            frames_per_event_max: 1024,
            extra_ca_pem: None,
        }
    }

    /// The URL every connection opens.
    pub fn url(&self) -> String {
        format!("{}{}", self.ws_base.trim_end_matches('/'), self.route)
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("all {0} connections of the shard are full")]
    NoConnection(usize),
}

/// Counters of the I/O itself (published into [`ShardCounters`] by the shard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    pub reconnects: u64,
    pub rotations: u64,
    pub connect_failures: u64,
    pub subscribe_messages: u64,
    pub subscriptions_given_up: u64,
    pub control_errors: u64,
    /// Replacement trades held back during rotation overlaps.
    pub rotation_held: u64,
    /// Held trades dropped at [`overlap::HELD_PER_SYMBOL_MAX`].
    pub rotation_held_dropped: u64,
}

/// All connections of one shard.
#[derive(Debug)]
pub struct Io {
    config: IoConfig,
    url: String,
    conns: Vec<Option<Connection>>,
    owner: FxHashMap<SymbolIndex, usize>,
    names: FxHashMap<SymbolIndex, Box<str>>,
    next_request_id: u64,
    next_generation: u64,
    connect_tx: Sender<ConnectRequest>,
    jitter_state: u64,
    control_interval: Duration,
    stats: IoStats,
    /// A connection changed state since the last [`Io::take_changed`] (gauges are stale).
    changed: bool,
    /// Overlaps whose retiring connection is gone: their held trades go to the worker before
    /// anything else is read (at most one per connection slot).
    ended: Vec<Overlap>,
}

impl Io {
    pub fn new(config: IoConfig, connect_tx: Sender<ConnectRequest>, seed: u64) -> Io {
        let rate = config.control_messages_per_sec.max(1);
        Io {
            url: config.url(),
            conns: Vec::with_capacity(config.connections_max),
            owner: FxHashMap::default(),
            names: FxHashMap::default(),
            next_request_id: 1,
            next_generation: 1,
            connect_tx,
            jitter_state: seed | 1,
            control_interval: Duration::from_secs(1) / rate,
            stats: IoStats::default(),
            changed: false,
            ended: Vec::with_capacity(config.connections_max),
            config,
        }
    }

    pub fn stats(&self) -> IoStats {
        self.stats
    }

    /// True once after any connection changed state (opened, lost, closed, acks).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Carry `symbol`'s `<name>@aggTrade` stream: on its connection if it has one, else on the
    /// first connection with room, else on a new connection.
    ///
    /// # Errors
    /// Every connection is full and no new one may be opened.
    pub fn subscribe(
        &mut self,
        symbol: SymbolIndex,
        name: &str,
        now: Instant,
    ) -> Result<(), SubscribeError> {
        self.names
            .entry(symbol)
            .or_insert_with(|| format!("{}@aggTrade", name.to_ascii_lowercase()).into());
        // An owner whose connection has gone (closed for good) or is retiring (it sends no more
        // control messages) no longer carries the stream.
        let owned = self.owner.get(&symbol).copied();
        let usable = |slot: usize| self.conns[slot].as_ref().is_some_and(|c| !c.retiring);
        let slot = match owned.filter(|&slot| usable(slot)) {
            Some(slot) => slot,
            None => {
                let room = self.conns.iter().position(|conn| {
                    conn.as_ref().is_some_and(|c| {
                        !c.retiring && c.subs.wanted_count() < self.config.streams_per_connection
                    })
                });
                let slot = match room {
                    Some(slot) => slot,
                    None => self.allocate(now)?,
                };
                self.owner.insert(symbol, slot);
                slot
            }
        };
        if let Some(conn) = self.conns[slot].as_mut() {
            conn.subs.want(symbol);
        }
        Ok(())
    }

    /// `symbol` was activated again: a rotation in progress forgets what it held for it.
    pub fn on_activated(&mut self, symbol: SymbolIndex) {
        for conn in self.conns.iter_mut().flatten() {
            if let Some(overlap) = conn.overlap.as_mut() {
                overlap.reset(symbol);
            }
        }
    }

    /// Stop carrying `symbol`'s stream.
    pub fn unsubscribe(&mut self, symbol: SymbolIndex) {
        if let Some(slot) = self.owner.remove(&symbol)
            && let Some(conn) = self.conns[slot].as_mut()
        {
            conn.subs.unwant(symbol);
            if let Some(overlap) = conn.overlap.as_mut() {
                overlap.forget(symbol);
            }
        }
    }

    fn allocate(&mut self, now: Instant) -> Result<usize, SubscribeError> {
        if let Some(slot) = self.conns.iter().position(Option::is_none) {
            self.conns[slot] = Some(Connection::new(now));
            return Ok(slot);
        }
        if self.conns.len() < self.config.connections_max {
            self.conns.push(Some(Connection::new(now)));
            return Ok(self.conns.len() - 1);
        }
        Err(SubscribeError::NoConnection(self.config.connections_max))
    }

    /// A readiness event for `token` (writability is handled by the timers' flush).
    pub fn on_event(&mut self, token: Token, readable: bool) {
        let Some(conn) = token
            .0
            .checked_sub(FIRST_CONN_TOKEN)
            .and_then(|slot| self.conns.get_mut(slot))
            .and_then(Option::as_mut)
        else {
            return;
        };
        conn.readable |= readable;
    }

    /// The connector finished an attempt.
    pub fn on_connect_result(&mut self, result: ConnectResult, registry: &Registry, now: Instant) {
        self.changed = true;
        match result {
            ConnectResult::Connected {
                slot,
                generation,
                ws,
            } => {
                let Some(conn) = self.live_attempt(slot, generation) else {
                    return; // stale attempt: dropping the socket closes it
                };
                let Some(tcp) = tcp_of(&ws) else {
                    return;
                };
                let fd = tcp.as_raw_fd();
                let token = Token(slot + FIRST_CONN_TOKEN);
                let interest = Interest::READABLE | Interest::WRITABLE;
                if registry
                    .register(&mut SourceFd(&fd), token, interest)
                    .is_err()
                {
                    self.fail_attempt(slot, now);
                    return;
                }
                conn.state = ConnState::Open(ws);
                conn.opened_at = Some(now);
                (conn.last_rx, conn.last_ping, conn.next_control_at) = (now, now, now);
                // The handshake may have read frames already: read before waiting for an event.
                conn.readable = true;
                conn.subs.reset();
            }
            ConnectResult::Failed {
                slot, generation, ..
            } => {
                if self.live_attempt(slot, generation).is_some() {
                    self.stats.connect_failures += 1;
                    self.fail_attempt(slot, now);
                }
            }
        }
    }

    fn live_attempt(&mut self, slot: usize, generation: u64) -> Option<&mut Connection> {
        let conn = self.conns.get_mut(slot)?.as_mut()?;
        (matches!(conn.state, ConnState::Connecting { .. }) && conn.generation == generation)
            .then_some(conn)
    }

    fn fail_attempt(&mut self, slot: usize, now: Instant) {
        let until = now + self.backoff(slot);
        if let Some(conn) = self.conns[slot].as_mut() {
            conn.failures = conn.failures.saturating_add(1);
            conn.state = ConnState::Backoff { until };
        }
    }

    /// Capped exponential back-off with jitter (see [`backoff::delay`]).
    fn backoff(&mut self, slot: usize) -> Duration {
        let failures = self.conns[slot].as_ref().map_or(0, |conn| conn.failures);
        let draw = backoff::next_draw(&mut self.jitter_state);
        let (min, max) = (
            self.config.reconnect_backoff_min,
            self.config.reconnect_backoff_max,
        );
        backoff::delay(min, max, failures, draw)
    }

    /// A connection broke: reconnect it after a back-off that grows with every loss (its
    /// streams are subscribed again once open), or drop it when it was retiring (its streams
    /// live on its replacement).
    pub fn lose(&mut self, slot: usize, registry: &Registry, now: Instant) {
        self.changed = true;
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        deregister(conn, registry);
        if conn.retiring {
            self.end_overlap(slot);
            self.conns[slot] = None;
            return;
        }
        conn.subs.reset();
        conn.readable = false;
        conn.want_flush = false;
        if let Some(overlap) = conn.overlap.as_mut() {
            overlap.restart();
        }
        self.stats.reconnects += 1;
        let until = now + self.backoff(slot);
        if let Some(conn) = self.conns[slot].as_mut() {
            conn.failures = conn.failures.saturating_add(1);
            conn.state = ConnState::Backoff { until };
        }
    }

    /// The retiring connection in `slot` goes away: its replacement's overlap ends, and its
    /// held trades are applied before anything else is read.
    fn end_overlap(&mut self, slot: usize) {
        let replacement = self.conns[slot].as_ref().and_then(|conn| conn.replacement);
        if let Some(conn) = replacement.and_then(|next| self.conns.get_mut(next)?.as_mut())
            && conn
                .overlap
                .as_ref()
                .is_some_and(|overlap| overlap.from == slot)
            && let Some(overlap) = conn.overlap.take()
        {
            self.ended.push(overlap);
        }
    }

    /// Apply the held trades of every ended overlap.
    fn flush_ended(&mut self, worker: &mut Worker) {
        for overlap in self.ended.drain(..) {
            for (symbol, held) in overlap.finish() {
                overlap::apply_held(worker, symbol, held);
            }
        }
    }

    /// The overlap gating the reads of `slot` (taken out; give it back with
    /// [`Io::put_overlap`]): its own as a replacement, its replacement's when retiring.
    fn take_overlap(&mut self, slot: usize) -> Option<(usize, Side, Overlap)> {
        let conn = self.conns.get(slot)?.as_ref()?;
        let (holder, side) = match conn.replacement {
            Some(next) if conn.retiring => (next, Side::Retiring),
            _ => (slot, Side::Replacement),
        };
        let holder_conn = self.conns.get_mut(holder)?.as_mut()?;
        if side == Side::Retiring && holder_conn.overlap.as_ref()?.from != slot {
            return None;
        }
        Some((holder, side, holder_conn.overlap.take()?))
    }

    fn put_overlap(&mut self, holder: usize, overlap: Overlap) {
        if let Some(conn) = self.conns[holder].as_mut() {
            conn.overlap = Some(overlap);
        }
    }

    /// Read every connection with pending frames (retiring ones first), at most
    /// `frames_per_event_max` frames each; during a rotation through its overlap's gate.
    pub fn read_ready(
        &mut self,
        worker: &mut Worker,
        registry: &Registry,
        now: Instant,
        failures: &mut StreamFailures,
    ) -> ReadStats {
        let mut total = ReadStats::default();
        for retiring_pass in [true, false] {
            for slot in 0..self.conns.len() {
                let ready = self.conns[slot]
                    .as_ref()
                    .is_some_and(|conn| conn.retiring == retiring_pass && conn.readable);
                if !ready {
                    continue;
                }
                self.flush_ended(worker);
                let stats = self.read_one(slot, worker, now, failures);
                add_stats(&mut total, &stats);
                if stats.lost {
                    self.lose(slot, registry, now);
                }
            }
        }
        self.flush_ended(worker);
        self.changed |= total.acks > 0 || total.control_errors > 0;
        self.stats.control_errors += total.control_errors;
        self.stats.subscriptions_given_up += total.given_up;
        self.stats.rotation_held += total.held;
        self.stats.rotation_held_dropped += total.held_dropped;
        total
    }

    fn read_one(
        &mut self,
        slot: usize,
        worker: &mut Worker,
        now: Instant,
        failures: &mut StreamFailures,
    ) -> ReadStats {
        let mut taken = self.take_overlap(slot);
        let budget = self.config.frames_per_event_max;
        let Some(conn) = self.conns[slot].as_mut() else {
            return ReadStats::default();
        };
        let gate = taken.as_mut().map(|(_, side, overlap)| Gate {
            side: *side,
            overlap,
            stats: GateStats::default(),
        });
        let stats = read_frames(conn, worker, budget, now, failures, gate);
        if conn.want_flush || stats.frames > 0 {
            // Pongs to the server's pings go out with the next flush.
            let _ = conn.flush();
        }
        if let Some((holder, _, overlap)) = taken {
            self.put_overlap(holder, overlap);
        }
        stats
    }

    /// True when some connection stopped reading at its budget (poll without waiting).
    pub fn has_readable(&self) -> bool {
        self.conns.iter().flatten().any(|conn| conn.readable)
    }
}

mod timers;

#[cfg(test)]
mod tests;

fn deregister(conn: &mut Connection, registry: &Registry) {
    if let ConnState::Open(ws) = &conn.state
        && let Some(tcp) = tcp_of(ws)
    {
        let fd = tcp.as_raw_fd();
        let _ = registry.deregister(&mut SourceFd(&fd));
    }
}

fn add_stats(total: &mut ReadStats, stats: &ReadStats) {
    total.frames += stats.frames;
    total.bytes += stats.bytes;
    total.trades += stats.trades;
    total.other_frames += stats.other_frames;
    total.parse_errors += stats.parse_errors;
    total.unknown_symbol += stats.unknown_symbol;
    total.acks += stats.acks;
    total.control_errors += stats.control_errors;
    total.given_up += stats.given_up;
    total.held += stats.held;
    total.held_dropped += stats.held_dropped;
    if stats.last_event_time_ms != 0 {
        total.last_event_time_ms = stats.last_event_time_ms;
    }
}

/// Ping payloads are empty; a helper for the timers.
fn ping() -> Message {
    Message::Ping(Vec::new().into())
}

/// Publish the subscription and connection gauges.
pub fn publish_gauges(io: &Io, counters: &Arc<ShardCounters>) {
    let (mut pending, mut active, mut open) = (0u64, 0u64, 0u64);
    for conn in io.conns.iter().flatten() {
        open += u64::from(conn.is_open());
        if !conn.retiring {
            let (p, a) = conn.subs.counts();
            pending += p as u64;
            active += a as u64;
        }
    }
    ShardCounters::set(&counters.subscriptions_pending, pending);
    ShardCounters::set(&counters.subscriptions_active, active);
    ShardCounters::set(&counters.connections_open, open);
}
