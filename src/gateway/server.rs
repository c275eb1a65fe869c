//! The gateway's listener (thread `api-accept`) and HTTP connection threads (`api-http-N`).
//! The acceptor waits on a mio poll (100 ms ticks for its heartbeat and shutdown), and gives
//! each accepted socket its own thread, at most [`HTTP_CONNECTIONS_MAX`] at once (beyond that a
//! client gets a 503 and is closed). A connection thread serves keep-alive requests through the
//! [`Router`], and hands a WebSocket opening handshake, with the socket, to its route's upgrade
//! handler (which moves it to the push thread). Connection threads poll their socket every
//! 100 ms, so they notice shutdown; the acceptor joins them on its way out.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::http::{self, HttpResponse, ReadOutcome};
use super::{GatewayContext, GatewayError, Router, error_response};
use crate::clock::epoch_ms;
use crate::shutdown::Shutdown;

/// HTTP connections served at once (each has a thread); more are refused with a 503.
pub const HTTP_CONNECTIONS_MAX: usize = 512;
/// A connection thread's socket read timeout: how often it checks for shutdown.
const READ_POLL: Duration = Duration::from_millis(100);
/// A request head must be complete this long after the connection opened (or after the
/// previous answer, for the first bytes of the next one to count as a request being sent).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection without a request for this long is closed.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);
/// Writing one answer may take at most this long (a client that does not read is dropped).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The acceptor's poll tick.
const ACCEPT_TICK: Duration = Duration::from_millis(100);
/// Connection threads' stack size (they only parse heads and format answers).
const CONNECTION_STACK_BYTES: usize = 256 * 1024;
/// How long the acceptor waits for connection threads at shutdown.
const JOIN_DEADLINE: Duration = Duration::from_secs(2);

const LISTENER: Token = Token(0);

/// Counters of the HTTP side (the `/metrics` endpoint shows them).
#[derive(Debug, Default)]
pub struct HttpCounters {
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_open: AtomicUsize,
    pub requests: AtomicU64,
    pub bad_requests: AtomicU64,
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

/// Start the acceptor; it runs until shutdown.
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
    workers: Vec<JoinHandle<()>>,
    next_id: u64,
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
        let counters = &self.ctx.http;
        self.workers.retain(|w| !w.is_finished());
        if self.workers.len() >= HTTP_CONNECTIONS_MAX {
            counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            refuse(stream);
            return;
        }
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        self.next_id += 1;
        let (router, ctx, shutdown) =
            (self.router.clone(), self.ctx.clone(), self.shutdown.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("api-http-{}", self.next_id))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                ctx.http.connections_open.fetch_add(1, Ordering::Relaxed);
                serve_connection(&router, &ctx, &shutdown, stream, peer);
                ctx.http.connections_open.fetch_sub(1, Ordering::Relaxed);
            });
        match spawned {
            Ok(handle) => self.workers.push(handle),
            Err(_) => {
                counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Answer 503 to a connection over the limit (best effort, never blocks the acceptor long).
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(50)));
    let msg = format!("Too many HTTP connections (limit {HTTP_CONNECTIONS_MAX}).");
    let _ = http::write_response(&mut stream, &error_response(503, -1003, &msg), false);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// One connection: requests until the client leaves, idles out, upgrades, or shutdown.
fn serve_connection(
    router: &Router,
    ctx: &GatewayContext,
    shutdown: &Shutdown,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(READ_POLL));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut idle = HEAD_TIMEOUT;
    // Bounded by the idle timeout, the client and shutdown.
    loop {
        let Some(mut request) = next_request(ctx, shutdown, &mut stream, &mut buf, idle) else {
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
        if http::write_response(&mut stream, &answer, keep_alive).is_err() || !keep_alive {
            return;
        }
        idle = KEEP_ALIVE_IDLE;
    }
}

/// The next request head, or `None` when the connection should end (answering a malformed head
/// with its error first).
fn next_request(
    ctx: &GatewayContext,
    shutdown: &Shutdown,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> Option<http::HttpRequest> {
    let started = Instant::now();
    // Bounded by `idle` (each read waits at most READ_POLL).
    loop {
        if shutdown.is_requested() || started.elapsed() > idle {
            return None;
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
