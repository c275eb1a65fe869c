//! The gateway's listener (thread `api-accept`) and HTTP connection threads (`api-http-N`).
//! The acceptor waits on a mio poll (100 ms ticks for its heartbeat and shutdown), and gives
//! each accepted socket its own thread, within [`HttpLimits`]: at most `connections` at once
//! and `per_client` per client address ([`super::slots`]). A connection over either limit gets
//! one of the few `probe_slots` instead, which answer only `GET /health` (anything else: 503),
//! so health checks get through while the server is full or one client holds its share; when
//! those are taken too, a client gets a 503 at once. A connection thread serves keep-alive
//! requests through the [`Router`], and hands a WebSocket opening handshake, with the socket,
//! to its route's upgrade handler (which moves it to the push thread). A request head must be
//! complete `head_timeout` after its first byte (after the connection opened, for the first
//! request; 408 otherwise), so half-sent requests cannot hold slots; an idle keep-alive
//! connection is closed after `keep_alive_idle`, or `keep_alive_idle_busy` while the server is
//! over `HTTP_BUSY_PERCENT` full. Connection threads poll their socket every 100 ms, so they
//! notice shutdown; the acceptor joins them on its way out.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::http::{self, HttpResponse, ReadOutcome};
use super::slots::{ClientSlots, Slot, SlotRefusal, client_key};
use super::{GatewayContext, GatewayError, Router, error_response};
use crate::clock::epoch_ms;
use crate::shutdown::Shutdown;

/// HTTP connections served at once (each has a thread).
pub const HTTP_CONNECTIONS_MAX: usize = 512;
/// HTTP connections one client address may hold at once.
pub const HTTP_CONNECTIONS_PER_CLIENT_MAX: usize = 64;
/// Extra connections, beyond the limits, that only answer `GET /health`.
pub const HTTP_PROBE_SLOTS: usize = 8;
/// Probe connections one client address may hold at once.
pub const HTTP_PROBE_SLOTS_PER_CLIENT: usize = 2;
/// A request head must be complete this long after its first byte (for the first request of a
/// connection: after the connection opened).
pub const HTTP_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A keep-alive connection without a request for this long is closed.
pub const HTTP_KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);
/// The same while the server is nearly full (see [`HTTP_BUSY_PERCENT`]).
pub const HTTP_KEEP_ALIVE_IDLE_BUSY: Duration = Duration::from_secs(2);
/// The server counts as nearly full from this share of `connections` open, in percent.
pub const HTTP_BUSY_PERCENT: usize = 75;
/// A probe connection's head must be complete this long after it opened.
const PROBE_HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// The paths a probe connection answers.
const PROBE_PATHS: [&str; 1] = ["/health"];
/// A connection thread's socket read timeout: how often it checks for shutdown and timeouts.
const READ_POLL: Duration = Duration::from_millis(100);
/// Writing one answer may take at most this long (a client that does not read is dropped).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one answer may take to write in all: a client reading a few bytes now and then
/// cannot hold its slot for longer (each write alone is bounded by `WRITE_TIMEOUT`).
const ANSWER_WRITE_MAX: Duration = Duration::from_secs(30);
/// The acceptor's poll tick.
const ACCEPT_TICK: Duration = Duration::from_millis(100);
/// Connection threads' stack size (they only parse heads and format answers).
const CONNECTION_STACK_BYTES: usize = 256 * 1024;
/// How long the acceptor waits for connection threads at shutdown.
const JOIN_DEADLINE: Duration = Duration::from_secs(2);

const LISTENER: Token = Token(0);

const _: () = assert!(HTTP_CONNECTIONS_PER_CLIENT_MAX < HTTP_CONNECTIONS_MAX);
const _: () = assert!(HTTP_BUSY_PERCENT < 100);
const _: () = assert!(PROBE_HEAD_TIMEOUT.as_millis() <= HTTP_HEAD_TIMEOUT.as_millis());
const _: () = assert!(HTTP_KEEP_ALIVE_IDLE_BUSY.as_millis() < HTTP_KEEP_ALIVE_IDLE.as_millis());

/// The HTTP server's limits (defaults: the constants above; tests lower them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections at once.
    pub connections: usize,
    /// Connections per client address.
    pub per_client: usize,
    /// Probe connections (health checks) beyond the limits, in all.
    pub probe_slots: usize,
    /// Probe connections per client address.
    pub probe_slots_per_client: usize,
    pub head_timeout: Duration,
    pub keep_alive_idle: Duration,
    pub keep_alive_idle_busy: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connections: HTTP_CONNECTIONS_MAX,
            per_client: HTTP_CONNECTIONS_PER_CLIENT_MAX,
            probe_slots: HTTP_PROBE_SLOTS,
            probe_slots_per_client: HTTP_PROBE_SLOTS_PER_CLIENT,
            head_timeout: HTTP_HEAD_TIMEOUT,
            keep_alive_idle: HTTP_KEEP_ALIVE_IDLE,
            keep_alive_idle_busy: HTTP_KEEP_ALIVE_IDLE_BUSY,
        }
    }
}

impl HttpLimits {
    /// How long a keep-alive connection may idle with `open` connections open.
    pub fn idle_limit(&self, open: usize) -> Duration {
        if open.saturating_mul(100) >= self.connections.saturating_mul(HTTP_BUSY_PERCENT) {
            self.keep_alive_idle_busy
        } else {
            self.keep_alive_idle
        }
    }
}

/// Counters of the HTTP side (the `/metrics` endpoint shows them).
#[derive(Debug, Default)]
pub struct HttpCounters {
    pub connections_accepted: AtomicU64,
    /// Connections refused a regular slot (over a limit), the per-client ones included.
    pub connections_refused: AtomicU64,
    /// Of those, refused for the per-client limit.
    pub connections_refused_per_client: AtomicU64,
    pub connections_open: AtomicUsize,
    pub requests: AtomicU64,
    pub bad_requests: AtomicU64,
    /// Requests whose head was not complete in time (408).
    pub head_timeouts: AtomicU64,
    /// Health checks answered on a probe slot.
    pub probe_answers: AtomicU64,
    pub upgrades: AtomicU64,
}

/// Bind the listener (first thing in `run_app`).
///
/// # Errors
/// The address is taken or not ours.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr).map_err(|e| GatewayError::Bind {
        addr,
        reason: e.to_string(),
    })
}

/// Start the acceptor; it runs until shutdown. Limits are `ctx.http_limits`.
///
/// # Errors
/// The poll or the thread could not be created.
pub fn serve(
    listener: TcpListener,
    router: Router,
    ctx: Arc<GatewayContext>,
    shutdown: &Shutdown,
    core: Option<usize>,
) -> Result<Vec<JoinHandle<()>>, GatewayError> {
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let acceptor = Acceptor {
        listener,
        poll,
        router: Arc::new(router),
        ctx,
        shutdown: shutdown.clone(),
        slots: Arc::default(),
        probes: Arc::default(),
        workers: Vec::new(),
        next_id: 0,
    };
    let thread = crate::runtime::spawn_control("api-accept", core, move || acceptor.run())?;
    Ok(vec![thread])
}

struct Acceptor {
    listener: mio::net::TcpListener,
    poll: Poll,
    router: Arc<Router>,
    ctx: Arc<GatewayContext>,
    shutdown: Shutdown,
    /// Regular connections.
    slots: Arc<ClientSlots>,
    /// Probe connections (health checks beyond the limits).
    probes: Arc<ClientSlots>,
    workers: Vec<JoinHandle<()>>,
    next_id: u64,
}

/// What a connection thread serves.
enum Service {
    /// Every route, keep-alive.
    Full,
    /// Only [`PROBE_PATHS`], one request; anything else is refused with this reason.
    Probe(SlotRefusal),
}

impl Acceptor {
    fn run(mut self) {
        let mut events = Events::with_capacity(16);
        // The thread's event loop: intentionally unbounded, one poll tick per iteration.
        while !self.shutdown.is_requested() {
            self.ctx.heartbeat_ms.store(epoch_ms(), Ordering::Relaxed);
            if let Err(e) = self.poll.poll(&mut events, Some(ACCEPT_TICK))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                break;
            }
            self.accept_all();
        }
        let deadline = Instant::now() + JOIN_DEADLINE;
        for worker in self.workers.drain(..) {
            while !worker.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if worker.is_finished() {
                let _ = worker.join();
            }
        }
    }

    fn accept_all(&mut self) {
        // Bounded by the listen backlog: accept until the kernel has no more.
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.start(stream.into(), peer),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn start(&mut self, stream: TcpStream, peer: SocketAddr) {
        let (counters, limits) = (&self.ctx.http, self.ctx.http_limits);
        self.workers.retain(|w| !w.is_finished());
        let client = client_key(Some(peer));
        let refusal = match Slot::take(&self.slots, client, limits.connections, limits.per_client) {
            Ok(slot) => {
                counters
                    .connections_accepted
                    .fetch_add(1, Ordering::Relaxed);
                return self.spawn(stream, peer, slot, Service::Full);
            }
            Err(refusal) => refusal,
        };
        counters.connections_refused.fetch_add(1, Ordering::Relaxed);
        if matches!(refusal, SlotRefusal::PerClient(_)) {
            counters
                .connections_refused_per_client
                .fetch_add(1, Ordering::Relaxed);
        }
        let probe = Slot::take(
            &self.probes,
            client,
            limits.probe_slots,
            limits.probe_slots_per_client,
        );
        match probe {
            Ok(slot) => self.spawn(stream, peer, slot, Service::Probe(refusal)),
            Err(_) => refuse(stream, refusal),
        }
    }

    /// Serve `stream` on its own thread, which holds `slot` while it runs.
    fn spawn(&mut self, stream: TcpStream, peer: SocketAddr, slot: Slot, service: Service) {
        self.next_id += 1;
        let (router, ctx, shutdown) =
            (self.router.clone(), self.ctx.clone(), self.shutdown.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("api-http-{}", self.next_id))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _slot = slot;
                match service {
                    Service::Full => {
                        ctx.http.connections_open.fetch_add(1, Ordering::Relaxed);
                        serve_connection(&router, &ctx, &shutdown, stream, peer);
                        ctx.http.connections_open.fetch_sub(1, Ordering::Relaxed);
                    }
                    Service::Probe(refusal) => serve_probe(&router, &ctx, stream, peer, refusal),
                }
            });
        match spawned {
            Ok(handle) => self.workers.push(handle),
            Err(_) => {
                // The closure, and with it the slot, is gone: the client sees the close.
                self.ctx
                    .http
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The 503 of a connection over the limits.
fn refusal_response(refusal: SlotRefusal) -> HttpResponse {
    let msg = match refusal {
        SlotRefusal::Full(limit) => format!("Too many HTTP connections (limit {limit})."),
        SlotRefusal::PerClient(limit) => {
            format!("Too many HTTP connections from your address (limit {limit}).")
        }
    };
    error_response(503, -1003, &msg)
}

/// Answer 503 to a connection over the limits (best effort, never blocks the acceptor long).
fn refuse(mut stream: TcpStream, refusal: SlotRefusal) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(50)));
    let _ = http::write_response(&mut stream, &refusal_response(refusal), false);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Prepare an accepted socket for a connection thread.
/// Writes to a stream that give up once `until` has passed (each write blocks at most until
/// then, and at most `WRITE_TIMEOUT`).
struct DeadlineWriter<'a> {
    stream: &'a TcpStream,
    until: Instant,
}

impl<'a> DeadlineWriter<'a> {
    fn new(stream: &'a TcpStream, within: Duration) -> DeadlineWriter<'a> {
        DeadlineWriter {
            stream,
            until: Instant::now() + within,
        }
    }
}

impl Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream
            .set_write_timeout(Some(left.min(WRITE_TIMEOUT)))?;
        let mut stream = self.stream;
        stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut stream = self.stream;
        stream.flush()
    }
}

fn configure(stream: &TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(READ_POLL));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
}

/// One connection: requests until the client leaves, idles out, upgrades, or shutdown.
fn serve_connection(
    router: &Router,
    ctx: &GatewayContext,
    shutdown: &Shutdown,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    configure(&stream);
    let mut buf = Vec::with_capacity(1024);
    let mut waiting = Waiting::First(Instant::now());
    // Bounded by the timeouts, the client and shutdown.
    loop {
        let Some(mut request) = next_request(ctx, shutdown, &mut stream, &mut buf, waiting) else {
            return;
        };
        request.peer = Some(peer);
        ctx.http.requests.fetch_add(1, Ordering::Relaxed);
        if request.is_websocket_upgrade() {
            ctx.http.upgrades.fetch_add(1, Ordering::Relaxed);
            match router.find_upgrade(&request.path) {
                Some(handler) => handler(ctx, request, stream, std::mem::take(&mut buf)),
                None => {
                    let answer = error_response(404, -1000, "No WebSocket endpoint here.");
                    let _ = http::write_response(&mut stream, &answer, false);
                }
            }
            return;
        }
        let answer = router.dispatch(ctx, &request);
        let keep_alive = request.keep_alive && !shutdown.is_requested();
        let mut out = DeadlineWriter::new(&stream, ANSWER_WRITE_MAX);
        let written = http::write_response(&mut out, &answer, keep_alive);
        if written.is_err() || !keep_alive {
            return;
        }
        waiting = Waiting::Next(Instant::now());
    }
}

/// A connection over the limits: one request, answered only for [`PROBE_PATHS`].
fn serve_probe(
    router: &Router,
    ctx: &GatewayContext,
    mut stream: TcpStream,
    peer: SocketAddr,
    refusal: SlotRefusal,
) {
    configure(&stream);
    let mut buf = Vec::with_capacity(256);
    let deadline = Instant::now() + PROBE_HEAD_TIMEOUT;
    // Bounded by the deadline (each read waits at most READ_POLL).
    while Instant::now() < deadline {
        match http::read_request(&mut stream, &mut buf) {
            Ok(ReadOutcome::Request(mut request)) => {
                request.peer = Some(peer);
                ctx.http.requests.fetch_add(1, Ordering::Relaxed);
                let probe = request.method == "GET"
                    && !request.is_websocket_upgrade()
                    && PROBE_PATHS.contains(&request.path.as_str());
                let answer = if probe {
                    ctx.http.probe_answers.fetch_add(1, Ordering::Relaxed);
                    router.dispatch(ctx, &request)
                } else {
                    refusal_response(refusal)
                };
                let _ = http::write_response(&mut stream, &answer, false);
                return;
            }
            Ok(ReadOutcome::Pending) => {}
            Ok(ReadOutcome::Closed) | Err(_) => break,
        }
    }
    let _ = http::write_response(&mut stream, &refusal_response(refusal), false);
}

/// What a connection waits for, since when.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    /// Its first request: the head is due `head_timeout` after the connection opened.
    First(Instant),
    /// A later request: it may idle (keep-alive) until its first byte, then the head is due
    /// `head_timeout` after that.
    Next(Instant),
}

/// The next request head, or `None` when the connection should end (answering a malformed or
/// late head with its error first).
fn next_request(
    ctx: &GatewayContext,
    shutdown: &Shutdown,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    waiting: Waiting,
) -> Option<http::HttpRequest> {
    let limits = ctx.http_limits;
    let (mut head_since, idle_since) = match waiting {
        Waiting::First(opened) => (Some(opened), opened),
        Waiting::Next(answered) => ((!buf.is_empty()).then_some(answered), answered),
    };
    // Bounded by the head timeout or the idle limit (each read returns within READ_POLL).
    loop {
        if shutdown.is_requested() {
            return None;
        }
        let now = Instant::now();
        if head_since.is_none() && !buf.is_empty() {
            head_since = Some(now);
        }
        match head_since {
            Some(since) if now.duration_since(since) > limits.head_timeout => {
                ctx.http.head_timeouts.fetch_add(1, Ordering::Relaxed);
                // A connection that never sent a byte is closed silently (a client that opened
                // it ahead of time must not read a 408 as the answer to its coming request).
                if !buf.is_empty() {
                    let answer = error_response(408, -1000, "Request head not complete in time.");
                    let _ = http::write_response(stream, &answer, false);
                }
                return None;
            }
            None => {
                let open = ctx.http.connections_open.load(Ordering::Relaxed);
                if now.duration_since(idle_since) > limits.idle_limit(open) {
                    return None;
                }
            }
            Some(_) => {}
        }
        match http::read_request(stream, buf) {
            Ok(ReadOutcome::Request(request)) => return Some(request),
            Ok(ReadOutcome::Pending) => {}
            Ok(ReadOutcome::Closed) => return None,
            Err(http::HttpError::Io(_)) => return None,
            Err(error) => {
                ctx.http.bad_requests.fetch_add(1, Ordering::Relaxed);
                let answer: HttpResponse =
                    error_response(error.status(), -1000, &error.to_string());
                let _ = http::write_response(stream, &answer, false);
                let _ = stream.flush();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_short_when_nearly_full() {
        let limits = HttpLimits {
            connections: 100,
            ..HttpLimits::default()
        };
        assert_eq!(limits.idle_limit(0), HTTP_KEEP_ALIVE_IDLE);
        assert_eq!(limits.idle_limit(74), HTTP_KEEP_ALIVE_IDLE);
        assert_eq!(limits.idle_limit(75), HTTP_KEEP_ALIVE_IDLE_BUSY);
        assert_eq!(limits.idle_limit(500), HTTP_KEEP_ALIVE_IDLE_BUSY);
    }

    #[test]
    fn refusals_say_which_limit() {
        let full = refusal_response(SlotRefusal::Full(7));
        assert_eq!(full.status, 503);
        assert!(full.text().contains("limit 7"), "{}", full.text());
        let mine = refusal_response(SlotRefusal::PerClient(2));
        assert!(mine.text().contains("from your address"), "{}", mine.text());
    }
}
