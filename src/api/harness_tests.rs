//! The API without the engine (test threads plus the API's own): a registry with a few symbols,
//! the gateway on an ephemeral loopback port, the hub and push threads, and kline messages fed
//! into the API's sink as a shard would. Covers the throttle, closed klines pushed at once, the
//! control protocol over a real socket, the REST overlay, and misbehaving clients (one that
//! never reads, a SUBSCRIBE flood, connection and stream limits) next to a well-behaved one.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use klagg_shards::kline::{Interval, Kline, Scales};
use klagg_shards::protocol::{KlineMsg, SymbolIndex};
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::standalone::Standalone;
use super::{Api, ApiCounters, ApiLimits, ApiState};
use crate::symbol_manager::exchange::Ticker24h;
use crate::symbol_manager::registry::{Lifecycle, RegistryView};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

const SCALES: Scales = Scales { price: 2, qty: 3 };
const NAMES: [&str; 4] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"];

struct Harness {
    addr: std::net::SocketAddr,
    klines: Sender<KlineMsg>,
    state: Arc<ApiState>,
    api: Standalone,
}

impl Harness {
    fn start(limits: ApiLimits) -> Harness {
        let registry = RegistryView::new();
        for name in NAMES {
            let mut table = registry.write();
            let _ = table.insert(name, SCALES, Lifecycle::Sent, Ticker24h::default());
        }
        let intervals = [Interval::S1, Interval::M1];
        let api = Api::with_limits(&intervals, registry.clone(), None, limits).unwrap();
        let api = Standalone::start(api, registry).unwrap();
        Harness {
            addr: api.addr,
            klines: api.sink.tx.clone(),
            state: api.state.clone(),
            api,
        }
    }

    fn ws(&self, path: &str) -> Ws {
        let (ws, _) = tungstenite::connect(format!("ws://{}{path}", self.addr)).unwrap();
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        ws
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let response = ureq::get(format!("http://{}{path}", self.addr))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().read_to_string().unwrap();
        (status, serde_json::from_str(&body).unwrap())
    }

    fn stop(self) {
        drop(self.klines);
        assert_eq!(self.api.stop(), 0, "API threads panicked");
    }
}

fn kline(open_ms: i64, close: i64) -> Kline {
    let mut k = Kline::flat(Interval::S1, open_ms, close);
    k.trade_count = 1;
    k.volume = 1000;
    k
}

fn closed(symbol: u32, kline: Kline) -> KlineMsg {
    KlineMsg::Closed {
        symbol: SymbolIndex(symbol),
        interval: Interval::S1,
        kline,
    }
}

fn update(symbol: u32, kline: Kline) -> KlineMsg {
    KlineMsg::Update {
        symbol: SymbolIndex(symbol),
        interval: Interval::S1,
        kline,
    }
}

fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).unwrap();
}

/// The next text message as JSON.
fn next(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Wait until the push thread has registered the subscription.
fn subscribed(h: &Harness, symbol: u32) {
    let key = super::StreamKey {
        symbol: SymbolIndex(symbol),
        interval: Interval::S1,
    };
    let until = Instant::now() + Duration::from_secs(5);
    while !h.state.interest.any(key) {
        assert!(Instant::now() < until, "subscription never registered");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn updates_are_throttled_and_closes_pushed_at_once() {
    let h = Harness::start(ApiLimits::default());
    let mut ws = h.ws("/market/ws/btcusdt@kline_1s");
    subscribed(&h, 0);
    let started = Instant::now();
    // 100 updates over ~1 s: at most one push per 250 ms (plus the first).
    for i in 0..100 {
        h.klines.send(update(0, kline(1_000_000, 100 + i))).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.klines.send(closed(0, kline(1_000_000, 999))).unwrap();
    let mut updates = 0;
    let last = loop {
        let event = next(&mut ws);
        assert_eq!(event["e"], "kline");
        if event["k"]["x"] == true {
            break event;
        }
        updates += 1;
    };
    let elapsed = started.elapsed().as_millis();
    assert!(updates >= 2, "{updates} updates");
    assert!(
        updates as u128 <= 2 + elapsed / 250,
        "{updates} updates in {elapsed} ms"
    );
    assert_eq!(last["k"]["c"], "9.99");
    assert_eq!(last["s"], "BTCUSDT");
    assert!(ApiCounters::get(&h.state.counters.updates_coalesced) > 0);
    // The live kline is served by REST too (no store here).
    let (status, rows) = h.get("/fapi/v1/klines?symbol=BTCUSDT&interval=1s");
    assert_eq!(status, 200);
    assert_eq!(rows[0][4], "9.99");
    h.stop();
}

#[test]
fn control_protocol_over_a_socket() {
    let h = Harness::start(ApiLimits {
        streams_per_client: 3,
        ..ApiLimits::default()
    });
    let mut ws = h.ws("/market/ws");
    send(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@kline_1s","newusdt@kline_1m"],"id":1}"#,
    );
    assert_eq!(next(&mut ws), serde_json::json!({"result": null, "id": 1}));
    send(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["ethusdt@kline_1s","solusdt@kline_1s"],"id":2}"#,
    );
    let error = next(&mut ws);
    assert_eq!(error["error"]["code"], 2);
    assert_eq!(error["id"], 2);
    assert!(
        error["error"]["msg"]
            .as_str()
            .unwrap()
            .contains("too many streams")
    );
    send(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#);
    assert_eq!(
        next(&mut ws),
        serde_json::json!({"result": ["btcusdt@kline_1s", "newusdt@kline_1m"], "id": 3})
    );
    send(
        &mut ws,
        r#"{"method":"UNSUBSCRIBE","params":["newusdt@kline_1m"],"id":4}"#,
    );
    assert_eq!(next(&mut ws)["result"], Value::Null);
    send(
        &mut ws,
        r#"{"method":"SET_PROPERTY","params":["combined",true],"id":5}"#,
    );
    assert_eq!(next(&mut ws), serde_json::json!({"result": null, "id": 5}));
    send(
        &mut ws,
        r#"{"method":"GET_PROPERTY","params":["combined"],"id":6}"#,
    );
    assert_eq!(next(&mut ws), serde_json::json!({"result": true, "id": 6}));
    subscribed(&h, 0);
    h.klines.send(closed(0, kline(2_000_000, 5))).unwrap();
    let event = next(&mut ws);
    assert_eq!(event["stream"], "btcusdt@kline_1s");
    assert_eq!(event["data"]["k"]["x"], true);
    h.stop();
}

#[test]
fn misbehaving_clients_do_not_hurt_a_good_one() {
    let h = Harness::start(ApiLimits {
        client_queue_bytes: 64 * 1024,
        ws_connections: 4,
        ..ApiLimits::default()
    });
    let mut good = h.ws("/market/stream?streams=btcusdt@kline_1s");
    // Never reads a byte.
    let _deaf =
        h.ws("/market/ws/btcusdt@kline_1s/ethusdt@kline_1s/solusdt@kline_1s/xrpusdt@kline_1s");
    // Floods SUBSCRIBE: closed with 1008.
    let mut flood = h.ws("/market/ws");
    for i in 0..30 {
        let text = format!(r#"{{"method":"SUBSCRIBE","params":["ethusdt@kline_1s"],"id":{i}}}"#);
        if flood.send(Message::text(text)).is_err() {
            break;
        }
    }
    let mut flood_closed = None;
    for _ in 0..40 {
        match flood.read() {
            Ok(Message::Close(frame)) => {
                flood_closed = frame;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let frame = flood_closed.expect("flooder closed with a reason");
    assert_eq!(u16::from(frame.code), 1008);
    assert!(
        frame.reason.contains("too many requests"),
        "{}",
        frame.reason
    );
    // The connection limit is 4: with the flooder gone, two more fit and a fifth is refused.
    let until = Instant::now() + Duration::from_secs(5);
    while h.state.push.open() > 2 {
        assert!(
            Instant::now() < until,
            "the flooder's slot was never released"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _third = h.ws("/market/ws");
    let _fourth = h.ws("/market/ws");
    match tungstenite::connect(format!("ws://{}/market/ws", h.addr)) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 503),
        other => panic!("over the connection limit: {other:?}"),
    }
    // Malformed HTTP is answered and closed.
    let mut raw = TcpStream::connect(h.addr).unwrap();
    std::io::Write::write_all(&mut raw, b"GARBAGE\x01 / HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut raw, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    subscribed(&h, 0);
    // 6000 closed klines of ~400 bytes per symbol, paced: the deaf client gets ~10 MB, far
    // more than its queue and the loopback socket buffers (4 MB) hold; the good client one
    // stream, and keeps up.
    const N: i64 = 6000;
    let feeder = {
        let tx = h.klines.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                for symbol in 0..4 {
                    tx.send(closed(symbol, kline(i * 1000, i))).unwrap();
                }
                if i % 30 == 29 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };
    for i in 0..N {
        let event = next(&mut good);
        assert_eq!(event["data"]["k"]["t"], i * 1000, "in order, none missing");
    }
    feeder.join().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while ApiCounters::get(&h.state.counters.ws_closed_slow) == 0 {
        assert!(Instant::now() < until, "the deaf client was never closed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ApiCounters::get(&h.state.counters.events_dropped), 0);
    h.stop();
}

#[test]
fn handshake_refusals_are_http_errors() {
    let h = Harness::start(ApiLimits::default());
    for (path, status) in [
        ("/market/ws/btcusdt@kline_5m", 400),
        ("/market/ws/btcusdt@aggTrade", 400),
        ("/market/nope", 404),
    ] {
        match tungstenite::connect(format!("ws://{}{path}", h.addr)) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status, "{path}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    // ccxt's connection labels are no streams.
    let mut labelled = h.ws("/market/ws/0");
    send(&mut labelled, r#"{"method":"LIST_SUBSCRIPTIONS","id":1}"#);
    assert_eq!(
        next(&mut labelled),
        serde_json::json!({"result": [], "id": 1})
    );
    let (status, body) = h.get("/fapi/v1/klines?symbol=BTCUSDT&interval=1s&limit=1501");
    assert_eq!((status, body["code"].as_i64()), (400, Some(-1130)));
    let (status, body) = h.get("/fapi/v1/klines?symbol=BTCUSDT&interval=1s&startTime=x");
    assert_eq!((status, body["code"].as_i64()), (400, Some(-1100)));
    let (_, info) = h.get("/fapi/v1/exchangeInfo");
    assert_eq!(info["symbols"].as_array().unwrap().len(), NAMES.len());
    assert_eq!(info["symbols"][0]["filters"][0]["tickSize"], "0.01");
    assert_eq!(info["symbols"][0]["filters"][1]["stepSize"], "0.001");
    h.stop();
}

#[test]
fn one_address_cannot_take_every_websocket_slot() {
    let h = Harness::start(ApiLimits {
        ws_connections: 10,
        ws_per_client: 2,
        ..ApiLimits::default()
    });
    // Every client of a test is 127.0.0.1: two fit, the third is refused for its address.
    let first = h.ws("/market/ws");
    let _second = h.ws("/market/ws");
    match tungstenite::connect(format!("ws://{}/market/ws", h.addr)) {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
            assert!(body.contains("from your address"), "{body}");
        }
        other => panic!("over the per-client limit: {other:?}"),
    }
    let c = &h.state.counters;
    assert_eq!(ApiCounters::get(&c.ws_refused_per_client), 1);
    assert_eq!(ApiCounters::get(&c.ws_refused), 1);
    // A client that leaves gives its slot back.
    drop(first);
    let until = Instant::now() + Duration::from_secs(5);
    while h.state.push.open() > 1 {
        assert!(Instant::now() < until, "the slot was never released");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _third = h.ws("/market/ws");
    let (status, _) = h.get("/fapi/v1/time");
    assert_eq!(
        status, 200,
        "plain HTTP is not counted against the WebSocket limit"
    );
    h.stop();
}
