//! The gateway's HTTP server under pressure (test threads plus the gateway's own), over real
//! loopback sockets — so every client is 127.0.0.1 and the per-client limits are lowered: a
//! flood of half-sent requests from one address cannot lock others out, `/health` still
//! answers, half-sent heads time out (408) and give their slots back, idle keep-alive
//! connections are closed early while the server is nearly full, refusals are counted on
//! `/metrics`. Time bounds are generous (2 noisy cores).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use klagg::clock::{ProcessStart, epoch_ms};
use klagg::gateway::{self, GatewayContext, HttpLimits, Router};
use klagg::shutdown::{Shutdown, StopReason};
use klagg::status::StatusBoard;
use klagg::symbol_manager::registry::RegistryView;
use klagg::symbol_manager::rest::WeightBudget;
use klagg::watchdog::{HealthBoard, collect};

/// A half-sent request head.
const HALF_HEAD: &[u8] = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n";

struct Server {
    addr: SocketAddr,
    ctx: Arc<GatewayContext>,
    shutdown: Shutdown,
}

impl Server {
    fn start(limits: HttpLimits) -> Server {
        let mut ctx = GatewayContext::new(
            Arc::new(StatusBoard::new(ProcessStart::now())),
            RegistryView::new(),
            Arc::new(HealthBoard::new()),
            Arc::new(WeightBudget::new()),
        );
        ctx.http_limits = limits;
        let ctx = Arc::new(ctx);
        let listener = gateway::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let router = Router::new().operability();
        gateway::serve(listener, router, ctx.clone(), &shutdown, None).unwrap();
        Server {
            addr,
            ctx,
            shutdown,
        }
    }

    /// Publish a fresh, healthy watchdog report (no watchdog runs here).
    fn healthy(&self) {
        self.ctx.health.publish(collect(&[], epoch_ms()));
    }

    /// `GET path` on a new connection: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        read_answer(&mut stream)
    }

    fn open(&self) -> usize {
        self.ctx.http.connections_open.load(Ordering::Relaxed)
    }

    fn wait_open(&self, what: &str, want: impl Fn(usize) -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !want(self.open()) {
            assert!(Instant::now() < until, "{what}: {} open", self.open());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn metric(&self, name: &str) -> u64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.request(StopReason::RunFor);
    }
}

/// Read an answer until the server closes: status and body.
fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn half_sent(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    // A refused connection may be closed before the write; that is fine here.
    let _ = stream.write_all(HALF_HEAD);
    stream
}

#[test]
fn a_flood_from_one_address_leaves_health_answerable() {
    let server = Server::start(HttpLimits {
        connections: 32,
        per_client: 8,
        probe_slots: 2,
        probe_slots_per_client: 2,
        // Long, so the flood holds its slots for the whole test.
        head_timeout: Duration::from_secs(120),
        ..HttpLimits::default()
    });
    server.healthy();
    let flood: Vec<TcpStream> = (0..200).map(|_| half_sent(server.addr)).collect();
    server.wait_open("the flood holds its share", |n| n == 8);
    // Health checks get through (a probe slot the flood took is free within 2 s) …
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        server.healthy();
        let (status, body) = server.get("/health");
        if status == 200 {
            assert!(body.contains("\"status\":\"ok\""), "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < until, "/health never answered: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // … while other requests from this address are refused with a reason.
    let (status, body) = server.get("/api/v1/status");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("from your address (limit 8)"), "{body}");
    assert_eq!(server.open(), 8, "the flood keeps its share, no more");
    drop(flood);
    server.wait_open("the flood's slots come back", |n| n == 0);
    // Refusals and health checks beyond the limits are counted.
    let (_, metrics) = server.get("/metrics");
    assert!(metrics.contains("# TYPE klagg_http_connections_refused counter"));
    assert!(metrics.contains("# TYPE klagg_http_connections_open gauge"));
    assert!(server.metric("klagg_http_connections_refused_per_client_total") >= 190);
    assert!(server.metric("klagg_http_probe_answers_total") >= 1);
    assert_eq!(server.get("/api/v1/status").0, 200);
}

#[test]
fn half_sent_heads_time_out_and_give_their_slots_back() {
    let server = Server::start(HttpLimits {
        connections: 4,
        per_client: 2,
        head_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    });
    let mut slow: Vec<TcpStream> = (0..2).map(|_| half_sent(server.addr)).collect();
    server.wait_open("two held", |n| n == 2);
    let started = Instant::now();
    for stream in &mut slow {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (status, body) = read_answer(stream);
        assert_eq!(status, 408, "{body}");
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    server.wait_open("slots given back", |n| n == 0);
    // A client trickling a valid head byte by byte gains nothing either.
    let mut trickle = TcpStream::connect(server.addr).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut head = b"GET /api/v1/status HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(head.len() + 1_000, b'a');
    let (started, mut answer) = (Instant::now(), Vec::new());
    for byte in head {
        let mut buf = [0u8; 256];
        match trickle.read(&mut buf) {
            Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
            Ok(_) => break,
            Err(_) => {}
        }
        if !answer.is_empty() || trickle.write_all(&[byte]).is_err() {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // A connection that never sends a byte is closed without an answer.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let read = silent.read_to_end(&mut rest);
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
    assert!(server.metric("klagg_http_head_timeouts_total") >= 4);
    assert_eq!(server.get("/api/v1/status").0, 200);
}

#[test]
fn idle_keep_alive_is_cut_short_when_nearly_full() {
    let server = Server::start(HttpLimits {
        connections: 4,
        per_client: 4,
        head_timeout: Duration::from_secs(120),
        keep_alive_idle: Duration::from_secs(120),
        keep_alive_idle_busy: Duration::from_millis(500),
        ..HttpLimits::default()
    });
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(idle.read(&mut buf).unwrap() > 0, "answered, kept alive");
    // Three of four slots (75 %) in use: nearly full.
    let _held: Vec<TcpStream> = (0..2).map(|_| half_sent(server.addr)).collect();
    server.wait_open("three open", |n| n == 3);
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        started.elapsed()
    );
    server.wait_open("the idle one closed", |n| n == 2);
}
