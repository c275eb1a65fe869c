//! One WebSocket client (runs on that client's `sim-conn-N` thread): routing of the upgrade path,
//! the handshake, and the connection's event loop — control requests, the 10 msg/s limit (close
//! 1008), server pings and the pong timeout, the lifetime limit, stall and drop faults, the
//! connection's stream latency, and batched writes of the frames the hub queued for it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

use super::http;
use super::hub::{ConnCtl, MalformedFrame, Outbound, Route, SubKind};
use super::rng::SimRng;
use super::server::ConnStream;
use super::ws_proto::{self, Request as Ctl};
use super::{Shared, firehose, now_ms};

/// How long the loop waits for outbound frames before checking the socket again.
const POLL: Duration = Duration::from_millis(5);
/// Frames written per loop at most before reading and flushing.
const WRITE_BATCH: usize = 4096;
/// Incoming messages handled per loop at most.
const READ_BATCH: usize = 64;
/// tungstenite write buffer: flush threshold and the cap that marks a slow client.
const WRITE_BUFFER: usize = 128 * 1024;
const MAX_WRITE_BUFFER: usize = 16 * 1024 * 1024;
/// Attempts to get a close frame out before dropping the socket.
const CLOSE_FLUSH_TRIES: usize = 50;

/// How a connection asked for its data, from the upgrade path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Routed endpoint.
    pub route: Route,
    /// Streams named in the path or `streams=` query.
    pub streams: Vec<String>,
    /// Combined framing (`/stream`) rather than raw (`/ws`).
    pub combined: bool,
}

/// Map an upgrade path to its route and streams; None for unknown paths or invalid streams.
pub fn route_of(path: &str, query: &[(String, String)]) -> Option<Upgrade> {
    let (route, rest) = if let Some(r) = path.strip_prefix("/market") {
        (Route::Market, r)
    } else if let Some(r) = path.strip_prefix("/public") {
        (Route::Public, r)
    } else {
        (Route::Legacy, path)
    };
    let (combined, list): (bool, Vec<&str>) = if rest == "/stream" {
        let q = query
            .iter()
            .find(|(k, _)| k == "streams")
            .map_or("", |(_, v)| v.as_str());
        (true, q.split('/').filter(|s| !s.is_empty()).collect())
    } else if rest == "/ws" || rest == "/ws/" {
        (false, Vec::new())
    } else {
        (
            false,
            rest.strip_prefix("/ws/")?
                .split('/')
                .filter(|s| !s.is_empty())
                .collect(),
        )
    };
    let streams = list
        .into_iter()
        .map(ws_proto::canonical_stream)
        .collect::<Option<Vec<_>>>()?;
    Some(Upgrade {
        route,
        streams,
        combined,
    })
}

/// Serve one upgraded connection until it ends.
pub fn serve(
    shared: Arc<Shared>,
    mut stream: ConnStream,
    req: &http::Request,
    leftover: Vec<u8>,
    peer: SocketAddr,
) {
    let (Some(up), Some(key)) = (
        route_of(&req.path, &req.query),
        req.header("sec-websocket-key"),
    ) else {
        let resp = http::error(404, -1000, "Invalid websocket path or handshake.");
        let _ = http::write_response(&mut stream, &resp, true);
        return;
    };
    // Register before answering, so that a client that saw the 101 is already subscribed.
    let queue = shared.cfg.outbound_queue_capacity;
    let (id, rx, ctl) = shared
        .hub
        .register(up.route, peer, req.target.clone(), queue);
    if !up.streams.is_empty() {
        let max = shared.cfg.max_streams_per_connection;
        let ok = shared.hub.subscribe(id, &up.streams, max).is_ok();
        shared
            .hub
            .log_sub(id, SubKind::UrlPath, up.streams.clone(), None, ok);
    }
    if accept(&mut stream, key).is_err() {
        shared.hub.unregister(id);
        return;
    }
    let config = WebSocketConfig::default()
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER);
    let ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(config));
    let now = Instant::now();
    let mut conn = Conn {
        ws,
        id,
        rx,
        ctl,
        combined: up.combined,
        shared: shared.clone(),
        opened: now,
        last_ping: now,
        last_pong: now,
        window: (now, 0),
        pending_flush: false,
        firehose_sent: 0,
        delay: data_delay(&shared, id),
        held: VecDeque::new(),
    };
    conn.run();
    shared.hub.unregister(id);
}

/// Write the 101 answer and switch the socket to non-blocking.
fn accept(stream: &mut ConnStream, key: &str) -> io::Result<()> {
    let head = klagg_shards::wire::http::switching_protocols(key);
    io::Write::write_all(stream, head.as_bytes())?;
    io::Write::flush(stream)?;
    stream.tcp().set_nonblocking(true)
}

/// Why the loop ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Close with this code and reason.
    Close(CloseCode, &'static str),
    /// Just drop the socket.
    Drop,
}

/// One connection's loop state.
pub(crate) struct Conn {
    pub(crate) ws: WebSocket<ConnStream>,
    pub(crate) id: u64,
    rx: Receiver<Outbound>,
    pub(crate) ctl: Arc<ConnCtl>,
    pub(crate) combined: bool,
    pub(crate) shared: Arc<Shared>,
    opened: Instant,
    last_ping: Instant,
    last_pong: Instant,
    window: (Instant, u32),
    pending_flush: bool,
    /// Frames the benchmark firehose wrote on this connection.
    pub(crate) firehose_sent: u64,
    /// This connection's stream latency (`ws_data_delay_max`); ZERO: frames go out at once.
    delay: Duration,
    /// Data frames waiting out `delay`, with the instant each is due (at most the outbound
    /// queue's capacity; beyond it the connection is a slow client).
    held: VecDeque<(Instant, Outbound)>,
}

/// The fixed stream latency of connection `id`: uniform in `[0, ws_data_delay_max]`, by seed.
fn data_delay(shared: &Shared, id: u64) -> Duration {
    let max = shared.cfg.ws_data_delay_max.as_micros() as u64;
    if max == 0 {
        return Duration::ZERO;
    }
    let mut rng = SimRng::new(shared.cfg.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    Duration::from_micros(rng.below(max + 1))
}

impl Conn {
    /// The event loop; it ends when the client leaves, a limit or fault ends it, or shutdown.
    fn run(&mut self) {
        let end = loop {
            if let Err(e) = self.turn() {
                break e;
            }
        };
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = self.ws.close(Some(frame));
            for _ in 0..CLOSE_FLUSH_TRIES {
                match self.ws.flush() {
                    Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    _ => break,
                }
            }
        }
        let _ = self.ws.get_ref().tcp().shutdown(std::net::Shutdown::Both);
    }

    fn turn(&mut self) -> Result<(), End> {
        if self.shared.shutdown.load(Ordering::Relaxed) {
            return Err(End::Close(CloseCode::Away, "server shutdown"));
        }
        if self.ctl.kill.load(Ordering::Relaxed) {
            return Err(End::Drop);
        }
        if self.ctl.stall_until_ms.load(Ordering::Relaxed) > now_ms() {
            let dropped = self.rx.try_iter().count() as u64;
            self.shared
                .hub
                .counters
                .frames_dropped_stalled
                .fetch_add(dropped, Ordering::Relaxed);
            std::thread::sleep(POLL);
            return Ok(());
        }
        self.read_incoming()?;
        self.timers()?;
        if self.shared.cfg.firehose.is_some() && firehose::wanted(self) {
            return firehose::run(self).map_err(|_| End::Drop);
        }
        self.write_outbound()
    }

    fn read_incoming(&mut self) -> Result<(), End> {
        for _ in 0..READ_BATCH {
            let msg = match self.ws.read() {
                Ok(m) => m,
                Err(WsError::Io(e)) if http::is_timeout(&e) => return Ok(()),
                Err(_) => return Err(End::Drop),
            };
            self.shared
                .hub
                .counters
                .ws_messages_in
                .fetch_add(1, Ordering::Relaxed);
            self.count_incoming()?;
            match msg {
                Message::Text(t) => self.control(t.as_str())?,
                Message::Pong(_) => self.last_pong = Instant::now(),
                Message::Close(_) => {
                    let _ = self.ws.flush();
                    return Err(End::Drop);
                }
                Message::Ping(_) | Message::Binary(_) | Message::Frame(_) => {}
            }
        }
        Ok(())
    }

    fn count_incoming(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if now.duration_since(self.window.0) >= Duration::from_secs(1) {
            self.window = (now, 0);
        }
        self.window.1 += 1;
        if self.window.1 > self.shared.cfg.incoming_message_limit {
            self.shared
                .hub
                .counters
                .rate_limit_closes
                .fetch_add(1, Ordering::Relaxed);
            return Err(End::Close(CloseCode::Policy, "Too many requests"));
        }
        Ok(())
    }

    fn control(&mut self, text: &str) -> Result<(), End> {
        let hub = &self.shared.hub;
        let max = self.shared.cfg.max_streams_per_connection;
        let reply = match ws_proto::parse(text) {
            Err(reply) => reply,
            Ok(Ctl::Subscribe { id, streams }) => {
                let res = hub.subscribe(self.id, &streams, max);
                hub.log_sub(self.id, SubKind::Subscribe, streams, Some(id), res.is_ok());
                match res {
                    Ok(()) => ws_proto::result_null(id),
                    Err(_) => ws_proto::error(2, "Invalid request: too many streams", Some(id)),
                }
            }
            Ok(Ctl::Unsubscribe { id, streams }) => {
                hub.unsubscribe(self.id, &streams);
                hub.log_sub(self.id, SubKind::Unsubscribe, streams, Some(id), true);
                ws_proto::result_null(id)
            }
            Ok(Ctl::List { id }) => ws_proto::result_list(id, &hub.list(self.id)),
            Ok(Ctl::SetCombined { id, value }) => {
                self.combined = value;
                ws_proto::result_null(id)
            }
            Ok(Ctl::GetCombined { id }) => ws_proto::result_bool(id, self.combined),
        };
        self.send(Message::text(reply))
    }

    fn timers(&mut self) -> Result<(), End> {
        let cfg = &self.shared.cfg;
        let now = Instant::now();
        if now.duration_since(self.opened) >= cfg.max_connection_lifetime {
            self.shared
                .hub
                .counters
                .lifetime_closes
                .fetch_add(1, Ordering::Relaxed);
            return Err(End::Close(CloseCode::Away, "connection lifetime reached"));
        }
        if now.duration_since(self.last_pong) >= cfg.pong_timeout {
            self.shared
                .hub
                .counters
                .pong_timeout_closes
                .fetch_add(1, Ordering::Relaxed);
            return Err(End::Close(CloseCode::Away, "pong timeout"));
        }
        if now.duration_since(self.last_ping) >= cfg.ping_interval {
            self.last_ping = now;
            self.send(Message::Ping(now_ms().to_string().into_bytes().into()))?;
        }
        Ok(())
    }

    /// Queue a message; WouldBlock means it is buffered and will be flushed later.
    pub(crate) fn send(&mut self, msg: Message) -> Result<(), End> {
        match self.ws.write(msg) {
            Ok(()) => Ok(()),
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.pending_flush = true;
                Ok(())
            }
            Err(WsError::WriteBufferFull(_)) => {
                self.shared
                    .hub
                    .counters
                    .slow_client_drops
                    .fetch_add(1, Ordering::Relaxed);
                Err(End::Drop)
            }
            Err(_) => Err(End::Drop),
        }
    }

    fn write_outbound(&mut self) -> Result<(), End> {
        if !self.delay.is_zero() {
            return self.write_delayed();
        }
        let first = if self.pending_flush {
            self.rx
                .try_recv()
                .map_err(|e| e == TryRecvError::Disconnected)
        } else {
            self.rx
                .recv_timeout(POLL)
                .map_err(|e| e == RecvTimeoutError::Disconnected)
        };
        let mut written = 0u64;
        let mut bytes = 0u64;
        if let Ok(msg) = first {
            let rx = self.rx.clone();
            for m in std::iter::once(msg).chain(rx.try_iter().take(WRITE_BATCH)) {
                let (message, len) = self.frame(m);
                self.send(message)?;
                written += 1;
                bytes += len as u64;
            }
        }
        self.finish_batch(written, bytes)
    }

    /// Like [`Conn::write_outbound`], but each data frame waits `delay` after it was taken
    /// from the queue (control replies are written at once by [`Conn::send`]).
    fn write_delayed(&mut self) -> Result<(), End> {
        let now = Instant::now();
        let next_due = self.held.front().map_or(now + POLL, |(due, _)| *due);
        let wait = next_due.saturating_duration_since(now).min(POLL);
        if let Ok(first) = self.rx.recv_timeout(wait) {
            let due = Instant::now() + self.delay;
            self.held.push_back((due, first));
            let rx = self.rx.clone();
            self.held
                .extend(rx.try_iter().take(WRITE_BATCH).map(|m| (due, m)));
        }
        if self.held.len() > self.shared.cfg.outbound_queue_capacity {
            let c = &self.shared.hub.counters;
            c.slow_client_drops.fetch_add(1, Ordering::Relaxed);
            return Err(End::Drop);
        }
        let (mut written, mut bytes) = (0u64, 0u64);
        let now = Instant::now();
        while self.held.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, m)) = self.held.pop_front() else {
                break;
            };
            let (message, len) = self.frame(m);
            self.send(message)?;
            written += 1;
            bytes += len as u64;
        }
        self.finish_batch(written, bytes)
    }

    /// Count a batch of `written` data frames (`bytes` in all) and flush it.
    fn finish_batch(&mut self, written: u64, bytes: u64) -> Result<(), End> {
        let c = &self.shared.hub.counters;
        c.frames_sent.fetch_add(written, Ordering::Relaxed);
        c.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
        self.flush(written == 0)
    }

    fn flush(&mut self, idle: bool) -> Result<(), End> {
        match self.ws.flush() {
            Ok(()) => self.pending_flush = false,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.pending_flush && idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
                self.pending_flush = true;
            }
            Err(_) => return Err(End::Drop),
        }
        Ok(())
    }

    fn frame(&self, m: Outbound) -> (Message, usize) {
        match m {
            Outbound::Data { stream, payload } => {
                let text = if self.combined {
                    format!(r#"{{"stream":"{stream}","data":{payload}}}"#)
                } else {
                    payload.to_string()
                };
                let len = text.len();
                (Message::text(text), len)
            }
            Outbound::Malformed(kind) => {
                let msg = match kind {
                    MalformedFrame::TruncatedJson => Message::text(r#"{"e":"aggTrade","E":17"#),
                    MalformedFrame::NotJson => Message::text("\u{1}this is not json"),
                    MalformedFrame::Binary => Message::binary(vec![0xde, 0xad, 0xbe, 0xef, 0x00]),
                    MalformedFrame::Custom(s) => Message::text(s),
                };
                (msg, 0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_paths() {
        let q = |s: &str| klagg_shards::wire::http::parse_query(s);
        let u = route_of("/market/ws", &[]).unwrap();
        assert_eq!(
            (u.route, u.combined, u.streams.len()),
            (Route::Market, false, 0)
        );
        let u = route_of("/market/ws/btcusdt@aggTrade/ethusdt@kline_1m", &[]).unwrap();
        assert_eq!(u.streams, vec!["btcusdt@aggTrade", "ethusdt@kline_1m"]);
        let u = route_of(
            "/market/stream",
            &q("streams=btcusdt@aggTrade/!miniTicker@arr"),
        )
        .unwrap();
        assert!(u.combined);
        assert_eq!(u.streams.len(), 2);
        assert_eq!(route_of("/ws", &[]).unwrap().route, Route::Legacy);
        assert_eq!(
            route_of("/stream", &q("streams=a@aggTrade")).unwrap().route,
            Route::Legacy
        );
        assert_eq!(route_of("/public/ws", &[]).unwrap().route, Route::Public);
        assert!(route_of("/market/ws/nonsense", &[]).is_none());
        assert!(route_of("/other", &[]).is_none());
    }
}
