//! The listener (`sim-acceptor` thread) and per-client connection threads (`sim-conn-N`): one
//! port serves REST and WebSocket; each accepted socket gets a thread that (optionally) runs
//! TLS, reads the HTTP request head and either answers REST on a keep-alive loop or upgrades
//! to a WebSocket. Connection threads are bounded by `max_connections` and joined on shutdown.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use super::http::{self, ReadOutcome};
use super::{rest, ws_conn};

/// Read timeout while waiting for a request (lets the thread notice shutdown).
const READ_POLL: Duration = Duration::from_millis(100);
/// A keep-alive connection idle this long is closed.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(120);
/// A request head must arrive within this time once a connection is open.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A client socket, plain or TLS.
#[derive(Debug)]
pub enum ConnStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl ConnStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ConnStream::Plain(s) => s,
            ConnStream::Tls(s) => &s.sock,
        }
    }
}

impl Read for ConnStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ConnStream::Plain(s) => s.read(buf),
            ConnStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ConnStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ConnStream::Plain(s) => s.write(buf),
            ConnStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ConnStream::Plain(s) => s.flush(),
            ConnStream::Tls(s) => s.flush(),
        }
    }
}

/// The acceptor thread body: accept until shutdown, then join every connection thread.
pub fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if shared.shutdown.load(Ordering::Relaxed) {
            break;
        }
        let Ok(stream) = conn else { continue };
        workers.retain(|w| !w.is_finished());
        if workers.len() >= shared.cfg.max_connections {
            shared
                .hub
                .counters
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        next_id += 1;
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sim-conn-{next_id}"))
            .spawn(move || serve_connection(&sh, stream));
        if let Ok(handle) = spawned {
            workers.push(handle);
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

fn serve_connection(shared: &Arc<Shared>, tcp: TcpStream) {
    let Ok(peer) = tcp.peer_addr() else { return };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(READ_POLL));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    let mut stream = match &shared.tls {
        None => ConnStream::Plain(tcp),
        Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
            Ok(conn) => ConnStream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
            Err(_) => return,
        },
    };
    let mut buf = Vec::new();
    let Some(first) = next_request(shared, &mut stream, &mut buf, HEAD_TIMEOUT) else {
        return;
    };
    if first.is_websocket_upgrade() {
        shared
            .hub
            .counters
            .ws_connections
            .fetch_add(1, Ordering::Relaxed);
        ws_conn::serve(shared.clone(), stream, &first, buf, peer);
        return;
    }
    shared
        .hub
        .counters
        .http_connections
        .fetch_add(1, Ordering::Relaxed);
    let mut req = first;
    loop {
        if !answer(shared, &mut stream, &req, peer) || !req.keep_alive {
            return;
        }
        match next_request(shared, &mut stream, &mut buf, KEEP_ALIVE_IDLE) {
            Some(r) if r.is_websocket_upgrade() => return, // upgrades must come on a fresh connection
            Some(r) => req = r,
            None => return,
        }
    }
}

/// Read the next request, polling so that shutdown is noticed; None on close/error/idle.
fn next_request(
    shared: &Shared,
    stream: &mut ConnStream,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> Option<http::Request> {
    let start = Instant::now();
    loop {
        if shared.shutdown.load(Ordering::Relaxed) || start.elapsed() > idle {
            return None;
        }
        match http::read_request(stream, buf) {
            Ok(ReadOutcome::Request(r)) => return Some(r),
            Ok(ReadOutcome::Pending) => continue,
            Ok(ReadOutcome::Closed) => return None,
            Err(_) => {
                let _ = http::write_response(
                    stream,
                    &http::error(400, -1000, "Malformed request."),
                    true,
                );
                return None;
            }
        }
    }
}

/// Answer one REST request; false when the connection must close.
fn answer(shared: &Shared, stream: &mut ConnStream, req: &http::Request, peer: SocketAddr) -> bool {
    let resp = rest::handle(shared, req, peer.ip());
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }
    http::write_response(stream, &resp, !req.keep_alive).is_ok()
}
