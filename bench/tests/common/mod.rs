//! Helpers shared by the simulator's integration tests (test threads only): start a simulator
//! with short timers, a keep-alive HTTP client, a WebSocket client with read timeouts, and the
//! shared real-data directory.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use klagg_bench::sim::{Sim, SimConfig, SimHandle};
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// A small fast market for tests.
pub fn cfg() -> SimConfig {
    SimConfig::default()
        .with_symbols(6)
        .with_trade_rate(400)
        .with_history(Duration::from_secs(90))
        .with_seed(11)
}

pub fn start(cfg: SimConfig) -> SimHandle {
    Sim::start(cfg).expect("simulator starts")
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET a path; returns status, the used-weight header, Retry-After and the JSON body.
pub struct Got {
    pub status: u16,
    pub weight: Option<u32>,
    pub retry_after: Option<u64>,
    pub body: Value,
}

pub fn get(agent: &ureq::Agent, sim: &SimHandle, path: &str) -> Got {
    let url = format!("{}{}", sim.rest_url(), path);
    let mut resp = agent.get(&url).call().expect("HTTP request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let weight = header("x-mbx-used-weight-1m").and_then(|v| v.parse().ok());
    let retry_after = header("retry-after").and_then(|v| v.parse().ok());
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Got {
        status,
        weight,
        retry_after,
        body,
    }
}

pub fn connect(url: &str) -> Ws {
    let (ws, _) = tungstenite::connect(url).expect("websocket connects");
    set_timeout(&ws, Duration::from_millis(100));
    ws
}

pub fn set_timeout(ws: &Ws, d: Duration) {
    match ws.get_ref() {
        MaybeTlsStream::Plain(s) => s.set_read_timeout(Some(d)).unwrap(),
        MaybeTlsStream::Rustls(s) => s.sock.set_read_timeout(Some(d)).unwrap(),
        _ => {}
    }
}

/// Outcome of waiting for a frame.
#[derive(Debug)]
pub enum Next {
    Text(String),
    Closed(Option<u16>),
    Timeout,
}

/// Next text frame within `timeout` (pings are answered by tungstenite and skipped).
pub fn next(ws: &mut Ws, timeout: Duration) -> Next {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => return Next::Text(t.to_string()),
            Ok(Message::Close(f)) => return Next::Closed(f.map(|f| u16::from(f.code))),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Next::Closed(None),
        }
    }
    Next::Timeout
}

pub fn next_json(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    match next(ws, timeout) {
        Next::Text(t) => Some(serde_json::from_str(&t).expect("frames are JSON")),
        _ => None,
    }
}

/// Send a control request and return the first reply that carries an `id` (data may come first).
pub fn request(ws: &mut Ws, text: &str) -> Value {
    ws.send(Message::text(text.to_string())).expect("send");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(v) = next_json(ws, Duration::from_millis(500))
            && v.get("id").is_some()
        {
            return v;
        }
    }
    panic!("no reply to {text}");
}

/// `../shared/data/<rel>` from the workspace root, or None (skip) unless CI=true.
pub fn data_file(rel: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = root.join("../shared/data").join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("missing test data {}", p.display());
    }
    eprintln!("skipping: test data {} not found", p.display());
    None
}
