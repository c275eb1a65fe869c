//! WebSocket protocol tests against a simulator on loopback (test threads).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use klagg_bench::sim::{Interval, MalformedFrame, SubKind};
use rust_decimal::Decimal;
use serde_json::Value;
use tungstenite::Message;

const SEC: Duration = Duration::from_secs(1);

fn agg_ids(ws: &mut Ws, n: usize, combined: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.len() < n && Instant::now() < deadline {
        if let Some(v) = next_json(ws, SEC) {
            let data = if combined {
                v["data"].clone()
            } else {
                v.clone()
            };
            if data["e"] == "aggTrade" {
                out.push(data);
            }
        }
    }
    assert_eq!(out.len(), n, "enough aggTrades arrived");
    out
}

#[test]
fn subscribe_agg_trade_contiguous_and_true() {
    let sim = start(cfg());
    let mut ws = connect(&format!("{}/market/ws", sim.ws_url()));
    let ack = request(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}"#,
    );
    assert_eq!(ack, serde_json::json!({"result": null, "id": 1}));
    let trades = agg_ids(&mut ws, 30, false);
    for w in trades.windows(2) {
        assert_eq!(
            w[1]["a"].as_u64().unwrap(),
            w[0]["a"].as_u64().unwrap() + 1,
            "contiguous ids"
        );
        assert_eq!(w[1]["f"].as_u64().unwrap(), w[0]["l"].as_u64().unwrap() + 1);
    }
    let truth = sim.trades("BTCUSDT");
    for t in &trades {
        let id = t["a"].as_u64().unwrap();
        let r = truth
            .iter()
            .find(|r| r.agg_id == id)
            .expect("published trade is stored");
        assert_eq!(
            t["p"].as_str().unwrap().parse::<Decimal>().unwrap(),
            r.price
        );
        assert_eq!(t["T"].as_i64().unwrap(), r.time_ms);
        assert!(t["E"].as_i64().unwrap() >= r.time_ms);
        assert_eq!(t["s"], "BTCUSDT");
    }
    let log = sim.subscription_log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].kind, log[0].request_id, log[0].accepted),
        (SubKind::Subscribe, Some(1), true)
    );
}

#[test]
fn raw_frame_key_order() {
    let sim = start(cfg());
    let mut ws = connect(&format!("{}/market/ws/btcusdt@aggTrade", sim.ws_url()));
    let text = loop {
        if let Next::Text(t) = next(&mut ws, 3 * SEC) {
            break t;
        }
    };
    let keys: Vec<&str> = text
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|k| k.len() == 1)
        .collect();
    assert_eq!(
        keys,
        ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m"],
        "{text}"
    );
    assert_eq!(sim.subscription_log()[0].kind, SubKind::UrlPath);
}

#[test]
fn combined_framing_and_properties() {
    let sim = start(cfg());
    let mut ws = connect(&format!(
        "{}/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade",
        sim.ws_url()
    ));
    let v = next_json(&mut ws, 3 * SEC).expect("data");
    assert!(v["stream"].as_str().unwrap().ends_with("@aggTrade"));
    assert_eq!(v["data"]["e"], "aggTrade");
    let r = request(
        &mut ws,
        r#"{"method":"GET_PROPERTY","params":["combined"],"id":2}"#,
    );
    assert_eq!(r["result"], true);
    let r = request(
        &mut ws,
        r#"{"method":"LIST_SUBSCRIPTIONS","id":18446744073709551615}"#,
    );
    assert_eq!(r["id"].as_u64(), Some(u64::MAX));
    assert_eq!(
        r["result"],
        serde_json::json!(["btcusdt@aggTrade", "ethusdt@aggTrade"])
    );
    let r = request(
        &mut ws,
        r#"{"method":"SET_PROPERTY","params":["combined",false],"id":3}"#,
    );
    assert_eq!(r["result"], Value::Null);
    let raw = agg_ids(&mut ws, 3, false);
    assert!(raw[0].get("stream").is_none());
    let r = request(
        &mut ws,
        r#"{"method":"UNSUBSCRIBE","params":["ethusdt@aggTrade"],"id":4}"#,
    );
    assert_eq!(r, serde_json::json!({"result": null, "id": 4}));
    let r = request(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":5}"#);
    assert_eq!(r["result"], serde_json::json!(["btcusdt@aggTrade"]));
}

#[test]
fn control_errors() {
    let sim = start(cfg().with_max_streams_per_connection(2));
    let mut ws = connect(&format!("{}/market/ws", sim.ws_url()));
    let r = request(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["a@aggTrade","b@aggTrade","c@aggTrade"],"id":7}"#,
    );
    assert_eq!(r["error"]["code"], 2);
    assert_eq!(r["id"], 7);
    let r = request(&mut ws, r#"{"method":"FOO","params":[],"id":8}"#);
    let msg = r["error"]["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("Invalid request: unknown variant `FOO`, expected one of `SUBSCRIBE`"),
        "{msg}"
    );
    let r = request(
        &mut ws,
        r#"{"method":"SET_PROPERTY","params":["combined",1],"id":9}"#,
    );
    assert_eq!(
        r,
        serde_json::json!({"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": 9})
    );
    ws.send(Message::text("{not json")).unwrap();
    let r = next_json(&mut ws, 2 * SEC).unwrap();
    assert_eq!(r["error"]["code"], 3);
    assert_eq!(r["id"], Value::Null);
    ws.send(Message::text(
        r#"{"method":"SUBSCRIBE","params":[],"id":"x"}"#,
    ))
    .unwrap();
    let r = next_json(&mut ws, 2 * SEC).unwrap();
    assert_eq!(
        r["error"]["msg"],
        "Invalid request: request ID must be an unsigned integer"
    );
    let r = request(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["nosuchusdt@aggTrade"],"id":10}"#,
    );
    assert_eq!(
        r["result"],
        Value::Null,
        "unknown symbols are acked silently"
    );
}

#[test]
fn too_many_messages_close_1008() {
    let sim = start(cfg());
    let mut ws = connect(&format!("{}/market/ws", sim.ws_url()));
    for i in 0..12 {
        let _ = ws.send(Message::text(format!(
            r#"{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}"#
        )));
    }
    let deadline = Instant::now() + 3 * SEC;
    let code = loop {
        match next(&mut ws, SEC) {
            Next::Closed(c) => break c,
            _ if Instant::now() > deadline => break None,
            _ => {}
        }
    };
    assert_eq!(code, Some(1008));
    assert_eq!(sim.counters().rate_limit_closes, 1);
}

#[test]
fn pings_lifetime_and_pong_timeout() {
    let c = cfg()
        .with_ping_interval(Duration::from_millis(150))
        .with_pong_timeout(Duration::from_millis(600))
        .with_max_connection_lifetime(Duration::from_millis(1500));
    let sim = start(c);
    // A reading client answers pings (tungstenite does) and lives until the lifetime limit.
    let mut ws = connect(&format!("{}/market/ws", sim.ws_url()));
    let t = Instant::now();
    let mut pings = 0;
    let code = loop {
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(tungstenite::Error::Io(_)) if t.elapsed() < 4 * SEC => {}
            Err(e) => panic!("unexpected {e}"),
        }
    };
    assert!(pings >= 3, "pings: {pings}");
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "closed at the lifetime limit, not before"
    );
    assert_eq!(code, Some(1001));
    // A client that never reads never pongs: closed after the pong timeout.
    let mut raw = raw_upgrade(&sim.local_addr().to_string(), "/market/ws");
    std::thread::sleep(Duration::from_millis(1000));
    raw.set_read_timeout(Some(SEC)).unwrap();
    let mut bytes = Vec::new();
    let _ = raw.read_to_end(&mut bytes);
    assert!(bytes.contains(&0x89), "server pinged");
    assert!(bytes.contains(&0x88), "server sent a close frame");
    assert!(sim.counters().pong_timeout_closes >= 1);
}

fn raw_upgrade(addr: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    s
}

#[test]
fn legacy_root_paths_ack_but_stay_silent() {
    let sim = start(cfg().with_trade_rate(2000));
    for path in ["/ws", "/stream?streams=btcusdt@aggTrade"] {
        let mut ws = connect(&format!("{}{path}", sim.ws_url()));
        let r = request(
            &mut ws,
            r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","btcusdt@kline_1m"],"id":1}"#,
        );
        assert_eq!(r, serde_json::json!({"result": null, "id": 1}));
        assert!(
            matches!(next(&mut ws, SEC), Next::Timeout),
            "{path} delivers nothing"
        );
    }
}

#[test]
fn kline_stream_updates_and_final() {
    let c = cfg()
        .with_kline_final_delay(Duration::from_millis(300))
        .with_trade_rate(1000);
    let sim = start(c);
    let mut ws = connect(&format!("{}/market/ws/btcusdt@kline_1s", sim.ws_url()));
    let mut finals = Vec::new();
    let mut updates = 0;
    let deadline = Instant::now() + 5 * SEC;
    while finals.len() < 2 && Instant::now() < deadline {
        let Some(v) = next_json(&mut ws, SEC) else {
            continue;
        };
        assert_eq!(v["e"], "kline");
        assert_eq!(v["k"]["i"], "1s");
        if v["k"]["x"] == true {
            finals.push(v);
        } else {
            updates += 1;
        }
    }
    assert!(
        updates >= 2 && finals.len() == 2,
        "updates {updates}, finals {}",
        finals.len()
    );
    let iv = Interval::parse("1s").unwrap();
    for f in finals {
        let k = &f["k"];
        let t = k["t"].as_i64().unwrap();
        let truth = &sim.klines("BTCUSDT", iv, t, t)[0];
        assert!(
            f["E"].as_i64().unwrap() >= truth.close_time + 300,
            "final after the delay"
        );
        assert_eq!(
            k["c"].as_str().unwrap().parse::<Decimal>().unwrap(),
            truth.close
        );
        assert_eq!(
            k["v"].as_str().unwrap().parse::<Decimal>().unwrap(),
            truth.volume
        );
        assert_eq!(k["n"].as_u64().unwrap(), truth.trades);
        assert_eq!(k["L"].as_i64().unwrap(), truth.last_id);
    }
}

#[test]
fn mini_ticker_and_new_listing() {
    let sim = start(
        cfg()
            .with_listing_delay(Duration::from_millis(200))
            .with_trade_rate(600),
    );
    let mut ws = connect(&format!(
        "{}/market/stream?streams=!miniTicker@arr/!contractInfo",
        sim.ws_url()
    ));
    sim.list_symbol("ZZNEWUSDT").unwrap();
    let mut saw_pending = false;
    let mut saw_new_ticker = false;
    let deadline = Instant::now() + 8 * SEC;
    while !(saw_pending && saw_new_ticker) && Instant::now() < deadline {
        let Some(v) = next_json(&mut ws, SEC) else {
            continue;
        };
        if v["stream"] == "!contractInfo" && v["data"]["cs"] == "PENDING_TRADING" {
            saw_pending = true;
        }
        if v["stream"] == "!miniTicker@arr" {
            let arr = v["data"].as_array().unwrap();
            assert!(!arr.is_empty() && arr.len() <= 7);
            assert_eq!(arr[0]["e"], "24hrMiniTicker");
            saw_new_ticker |= arr.iter().any(|t| t["s"] == "ZZNEWUSDT");
        }
    }
    assert!(saw_pending, "contractInfo announced the listing");
    assert!(
        saw_new_ticker,
        "the listing shows up in !miniTicker@arr once it trades"
    );
}

/// Read aggTrades until two consecutive ids satisfy `f` (within 5 s).
fn wait_for_pair(ws: &mut Ws, f: impl Fn(u64, u64) -> bool) -> bool {
    let deadline = Instant::now() + 5 * SEC;
    let mut prev: Option<u64> = None;
    while Instant::now() < deadline {
        let Some(v) = next_json(ws, SEC) else {
            continue;
        };
        let Some(a) = v["a"].as_u64() else { continue };
        if prev.is_some_and(|p| f(p, a)) {
            return true;
        }
        prev = Some(a);
    }
    false
}

#[test]
fn faults_skip_duplicate_malformed_drop_stall() {
    let sim = start(cfg().with_trade_rate(1500));
    let mut ws = connect(&format!("{}/market/ws/btcusdt@aggTrade", sim.ws_url()));
    agg_ids(&mut ws, 3, false);
    sim.skip_agg_ids("BTCUSDT", 4).unwrap();
    assert!(wait_for_pair(&mut ws, |a, b| b == a + 5), "a gap of 4 ids");
    sim.duplicate_agg_ids("BTCUSDT", 2).unwrap();
    assert!(wait_for_pair(&mut ws, |a, b| b == a), "a duplicated id");
    assert_eq!(
        sim.send_malformed_frame(None, MalformedFrame::TruncatedJson),
        1
    );
    let mut saw_broken = false;
    for _ in 0..200 {
        if let Next::Text(t) = next(&mut ws, SEC)
            && serde_json::from_str::<Value>(&t).is_err()
        {
            saw_broken = true;
            break;
        }
    }
    assert!(saw_broken);
    let id = sim.connections()[0].id;
    assert!(sim.stall_connection(id, Duration::from_millis(1500)));
    std::thread::sleep(Duration::from_millis(50));
    while let Next::Text(_) = next(&mut ws, Duration::from_millis(100)) {}
    assert!(
        matches!(next(&mut ws, Duration::from_millis(500)), Next::Timeout),
        "stalled: silent"
    );
    assert!(
        next_json(&mut ws, 2 * SEC).is_some(),
        "data resumes after the stall"
    );
    assert_eq!(sim.drop_connections(), 1);
    let deadline = Instant::now() + 3 * SEC;
    loop {
        match next(&mut ws, SEC) {
            Next::Closed(_) => break,
            _ => assert!(Instant::now() < deadline, "dropped connection ends"),
        }
    }
}

/// The run-time fault flags (`--skip-ids-every`, `--duplicate-ids-every`, `--malformed-every`,
/// `--rest-error-every`) reach live clients; one symbol, so the random pick is BTCUSDT.
#[test]
fn periodic_stream_and_rest_faults() {
    let ms = Duration::from_millis;
    let sim = start(
        cfg()
            .with_symbols(1)
            .with_trade_rate(1500)
            .with_skip_ids_every(Some(ms(300)))
            .with_duplicate_ids_every(Some(ms(300)))
            .with_fault_ids(2)
            .with_malformed_every(Some(ms(400)))
            .with_rest_error_every(Some(ms(200))),
    );
    let mut ws = connect(&format!("{}/market/ws/btcusdt@aggTrade", sim.ws_url()));
    let (mut gap, mut dup, mut broken, mut prev) = (false, false, false, None);
    let deadline = Instant::now() + 8 * SEC;
    while !(gap && dup && broken) && Instant::now() < deadline {
        let Next::Text(text) = next(&mut ws, SEC) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            broken = true;
            continue;
        };
        let Some(a) = v["a"].as_u64() else { continue };
        if let Some(p) = prev {
            gap |= a > p + 1;
            dup |= a == p;
        }
        prev = Some(a);
    }
    assert!(gap, "--skip-ids-every: a jump in a");
    assert!(dup, "--duplicate-ids-every: a repeated a");
    assert!(broken, "--malformed-every: a frame that is not JSON");
    let a = agent();
    let deadline = Instant::now() + 3 * SEC;
    let mut saw_503 = false;
    while !saw_503 && Instant::now() < deadline {
        saw_503 = get(&a, &sim, "/fapi/v1/ping").status == 503;
        std::thread::sleep(ms(40));
    }
    assert!(saw_503, "--rest-error-every: a 503");
}

/// `--stall-every` / `--stall-for`: the connection goes silent (frames discarded), then resumes.
#[test]
fn periodic_stalls() {
    let ms = Duration::from_millis;
    let sim = start(
        cfg()
            .with_symbols(1)
            .with_trade_rate(1000)
            .with_stall_every(Some(ms(500)))
            .with_stall_for(ms(300)),
    );
    let mut ws = connect(&format!("{}/market/ws/btcusdt@aggTrade", sim.ws_url()));
    let deadline = Instant::now() + 5 * SEC;
    while sim.counters().frames_dropped_stalled == 0 && Instant::now() < deadline {
        let _ = next(&mut ws, ms(100));
    }
    assert!(
        sim.counters().frames_dropped_stalled > 0,
        "frames were held back"
    );
    assert_eq!(agg_ids(&mut ws, 3, false).len(), 3, "data resumes");
}

#[test]
fn subscription_log_orders_events() {
    let sim = start(cfg());
    let mut a = connect(&format!("{}/market/ws", sim.ws_url()));
    let mut b = connect(&format!("{}/market/ws", sim.ws_url()));
    request(
        &mut a,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}"#,
    );
    request(
        &mut b,
        r#"{"method":"SUBSCRIBE","params":["ethusdt@aggTrade"],"id":2}"#,
    );
    request(
        &mut a,
        r#"{"method":"UNSUBSCRIBE","params":["btcusdt@aggTrade"],"id":3}"#,
    );
    let log = sim.subscription_log();
    assert_eq!(log.len(), 3);
    assert!(
        log.windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at)
    );
    assert_eq!(log[0].streams, vec!["btcusdt@aggTrade"]);
    assert_ne!(log[0].conn_id, log[1].conn_id);
    assert_eq!(log[2].kind, SubKind::Unsubscribe);
    assert_eq!(sim.connections().len(), 2);
}

#[test]
fn tls_wss_and_https() {
    let sim = start(cfg().with_tls(true));
    assert!(sim.ws_url().starts_with("wss://localhost:"));
    let tls = sim.tls().expect("TLS material").clone();
    let connector = tungstenite::Connector::Rustls(tls.client_config());
    let url = format!("{}/market/ws/btcusdt@aggTrade", sim.ws_url());
    let tcp = TcpStream::connect(sim.local_addr()).unwrap();
    let (mut ws, _) =
        tungstenite::client_tls_with_config(url.as_str(), tcp, None, Some(connector)).unwrap();
    set_timeout(&ws, Duration::from_millis(100));
    let v = next_json(&mut ws, 3 * SEC).expect("data over wss");
    assert_eq!(v["e"], "aggTrade");
    let root = ureq::tls::Certificate::from_der(&tls.ca_der).to_owned();
    let tls_cfg = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[root]))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls_cfg)
        .build()
        .into();
    let body = agent
        .get(&format!("{}/fapi/v1/time", sim.rest_url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(body.starts_with(r#"{"serverTime":"#));
}

#[test]
fn firehose_feeds_contiguous_frames() {
    use klagg_bench::sim::FirehoseConfig;
    let fh = FirehoseConfig {
        trades_per_connection: 20_000,
        rate_per_second: 0,
    };
    let sim = start(cfg().with_firehose(Some(fh)));
    let mut ws = connect(&format!(
        "{}/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade",
        sim.ws_url()
    ));
    let mut last = std::collections::HashMap::new();
    let mut n = 0;
    while n < 20_000 {
        let v = next_json(&mut ws, 2 * SEC).expect("firehose frame");
        let (s, a) = (
            v["data"]["s"].as_str().unwrap().to_string(),
            v["data"]["a"].as_u64().unwrap(),
        );
        if let Some(prev) = last.insert(s, a) {
            assert_eq!(a, prev + 1);
        }
        n += 1;
    }
    assert_eq!(last.len(), 2);
    assert!(
        matches!(next(&mut ws, Duration::from_millis(300)), Next::Timeout),
        "budget spent"
    );
}
