//! The Binance-compatible API end to end (test threads, the engine's threads, the simulator's):
//! the engine (`start_app`) against the in-process simulator with the SQLite store attached,
//! its REST and WebSocket API compared with the simulator's own REST klines, field for field,
//! for 1s and 1m; the engine keeping up while misbehaving WebSocket clients are connected.
//! Time bounds are generous (2 noisy cores).

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use klagg::activation_dispatcher::DispatchState;
use klagg::app::{AppExtensions, RunningApp};
use klagg::clock::epoch_ms;
use klagg::store::Store;
use klagg_bench::sim::SimHandle;
use serde_json::Value;
use support::engine::{self, activated_ms, trades_applied};
use support::{TempDir, get_json, get_text, wait_for};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const PATIENCE: Duration = Duration::from_secs(60);

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn start_sim(symbols: usize, trade_rate: u64) -> SimHandle {
    engine::start_sim(engine::sim_config(symbols, trade_rate, 11))
}

/// The engine on `sim` with the store at `db` attached as `klagg run` does (writer, symbol
/// registration, history).
fn start_engine(sim: &SimHandle, intervals: &str, db: PathBuf) -> RunningApp {
    let extensions = AppExtensions {
        store: Some(Store::open(&db).expect("store opens")),
        ..AppExtensions::default()
    };
    let args = engine::args(sim, 2, intervals);
    engine::start(args, |config| config.db_path = db, extensions)
}

/// x:true events received on a WebSocket, with their arrival time (epoch ms).
type Finals = Arc<parking_lot::Mutex<Vec<(i64, Value)>>>;

fn record_finals(mut ws: Ws, stop: Arc<AtomicBool>) -> Finals {
    let finals: Finals = Arc::default();
    let out = finals.clone();
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Message::Text(text)) = ws.read() else {
                continue;
            };
            let at = epoch_ms();
            let event: Value = serde_json::from_str(&text).unwrap();
            if event["data"]["k"]["x"] == true {
                out.lock().push((at, event["data"].clone()));
            }
        }
    });
    finals
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

/// Our REST klines for `[from, to]` equal the simulator's, field for field.
fn assert_rest_equal(
    app: &RunningApp,
    sim: &SimHandle,
    name: &str,
    interval: &str,
    from: i64,
    to: i64,
) -> usize {
    let query =
        format!("symbol={name}&interval={interval}&startTime={from}&endTime={to}&limit=1500");
    let ours = get_json(&format!("http://{}/fapi/v1/klines?{query}", app.listen));
    let theirs = get_json(&format!("{}/fapi/v1/klines?{query}", sim.rest_url()));
    let (ours, theirs) = (ours.as_array().unwrap(), theirs.as_array().unwrap());
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{name} {interval} rows in {from}..={to}"
    );
    for (mine, truth) in ours.iter().zip(theirs) {
        assert_eq!(mine, truth, "{name} {interval}");
    }
    ours.len()
}

/// Every period in `[from, to]` was pushed as x:true, equal to the simulator's kline; returns
/// the push delays after the periods' ends (ms).
fn assert_stream_equal(
    sim: &SimHandle,
    finals: &[(i64, Value)],
    name: &str,
    interval: &str,
    from: i64,
    to: i64,
) -> Vec<i64> {
    let mut last: BTreeMap<i64, &Value> = BTreeMap::new();
    let mut delays = Vec::new();
    for (at, event) in finals {
        let k = &event["k"];
        let open = k["t"].as_i64().unwrap();
        if event["s"] != name || k["i"] != interval || open < from || open > to {
            continue;
        }
        if !last.contains_key(&open) {
            delays.push(at - (k["T"].as_i64().unwrap() + 1));
        }
        last.insert(open, k);
    }
    let iv = klagg_bench::sim::Interval::parse(interval).unwrap();
    let truth = sim.klines(name, iv, from, to);
    assert_eq!(last.len(), truth.len(), "{name} {interval}: periods pushed");
    for (k, t) in last.values().zip(&truth) {
        assert_eq!(k["t"].as_i64(), Some(t.open_time));
        assert_eq!(k["T"].as_i64(), Some(t.close_time));
        let decimal = |v: &Value| {
            v.as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        };
        assert_eq!(
            decimal(&k["o"]),
            t.open,
            "{name} {interval} {}",
            t.open_time
        );
        assert_eq!(decimal(&k["h"]), t.high);
        assert_eq!(decimal(&k["l"]), t.low);
        assert_eq!(decimal(&k["c"]), t.close);
        assert_eq!(decimal(&k["v"]), t.volume);
        assert_eq!(decimal(&k["q"]), t.quote_volume);
        assert_eq!(decimal(&k["V"]), t.taker_buy_volume);
        assert_eq!(decimal(&k["Q"]), t.taker_buy_quote_volume);
        assert_eq!(k["n"].as_u64(), Some(t.trades));
        assert_eq!(
            (k["f"].as_i64(), k["L"].as_i64()),
            (Some(t.first_id), Some(t.last_id))
        );
    }
    delays
}

#[test]
fn rest_and_stream_klines_equal_the_simulator_for_1s_and_1m() {
    let sim = start_sim(4, 400);
    let dir = TempDir::new("api-equal");
    let app = start_engine(&sim, "1s,1m", dir.db());
    wait_for("all active", PATIENCE, || {
        app.status.all_active_ms().is_some()
    });
    let names = ["BTCUSDT", "ETHUSDT"];
    for name in names {
        let index = app.registry.index(name).unwrap();
        assert_eq!(app.status.symbol(index).state, DispatchState::Active);
    }
    let streams = "btcusdt@kline_1s/btcusdt@kline_1m/ethusdt@kline_1s/ethusdt@kline_1m";
    let url = format!("ws://{}/market/stream?streams={streams}", app.listen);
    let (ws, _) = tungstenite::connect(url).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let finals = record_finals(ws, stop.clone());
    let activated = names
        .map(|n| activated_ms(&app, n))
        .into_iter()
        .max()
        .unwrap();
    // The first whole minute after activation (and a few seconds for it to close and reach
    // the store).
    let minute = (activated / 60_000 + 1) * 60_000;
    let until = minute + 60_000 + 3_000;
    let wait = u64::try_from(until - epoch_ms()).unwrap_or(0);
    eprintln!("waiting {wait} ms for the minute {minute} to close");
    std::thread::sleep(Duration::from_millis(wait));
    let seconds_from = (activated / 1_000 + 1) * 1_000;
    let seconds_to = (epoch_ms() / 1_000 - 3) * 1_000;
    let mut compared = 0;
    for name in names {
        compared += assert_rest_equal(&app, &sim, name, "1s", seconds_from, seconds_to);
        compared += assert_rest_equal(&app, &sim, name, "1m", minute, minute);
    }
    // The latest rows, with the open kline, come from memory and the store together.
    let latest = get_json(&format!(
        "http://{}/fapi/v1/klines?symbol=BTCUSDT&interval=1s&limit=1000",
        app.listen
    ));
    let rows = latest.as_array().unwrap();
    assert!(rows.len() >= 60, "{} rows", rows.len());
    let gaps: Vec<(i64, i64)> = rows
        .windows(2)
        .map(|w| (w[0][0].as_i64().unwrap(), w[1][0].as_i64().unwrap()))
        .filter(|(a, b)| b - a != 1_000)
        .collect();
    let first = rows[0][0].as_i64().unwrap();
    eprintln!(
        "latest 1000: {} rows from {first}, activation at {activated}, holes {gaps:?}",
        rows.len()
    );
    // Live klines (and the open one) follow each other without a hole.
    assert!(
        gaps.iter().all(|&(_, after)| after <= activated),
        "holes after activation: {gaps:?}"
    );
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let finals = finals.lock().clone();
    let mut delays = Vec::new();
    for name in names {
        delays.extend(assert_stream_equal(
            &sim,
            &finals,
            name,
            "1s",
            seconds_from,
            seconds_to,
        ));
        delays.extend(assert_stream_equal(
            &sim, &finals, name, "1m", minute, minute,
        ));
    }
    delays.sort_unstable();
    let (p50, p99, max) = (
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays[delays.len() - 1],
    );
    eprintln!(
        "compared {compared} REST rows; {} closed klines pushed, after the period end: p50 {p50} ms, p99 {p99} ms, max {max} ms",
        delays.len()
    );
    assert!(p99 <= 2_000, "closed kline push p99 {p99} ms");
    app.stop(klagg::shutdown::StopReason::RunFor);
    sim.shutdown();
}

/// Trades the simulator published for `names` with trade times in `[from, to)`.
fn sim_trades(sim: &SimHandle, names: &[String], from: i64, to: i64) -> u64 {
    names
        .iter()
        .map(|n| {
            let trades = sim.trades(n);
            trades
                .iter()
                .filter(|t| t.time_ms >= from && t.time_ms < to)
                .count() as u64
        })
        .sum()
}

/// Trades applied by the engine over `window`, as a fraction of what the simulator published.
fn keep_up_ratio(app: &RunningApp, sim: &SimHandle, names: &[String], window: Duration) -> f64 {
    let (t0, applied0) = (epoch_ms(), trades_applied(app));
    std::thread::sleep(window);
    let (t1, applied1) = (epoch_ms(), trades_applied(app));
    // Trades published in the window reach the engine within a few ms; allow the edges.
    std::thread::sleep(Duration::from_millis(300));
    let published = sim_trades(sim, names, t0, t1).max(1);
    (applied1 - applied0) as f64 / published as f64
}

fn ws_connect(app: &RunningApp, path: &str) -> Ws {
    let (ws, _) = tungstenite::connect(format!("ws://{}{path}", app.listen)).unwrap();
    ws
}

/// Clients that misbehave: five that never read (every stream), a SUBSCRIBE flood, one that
/// sends an unmasked frame, one that sends half a request head (and garbage HTTP, answered
/// with 400 at once).
struct Misbehavers {
    _deaf: Vec<Ws>,
    flood: Ws,
    unmasked: Ws,
    _half: TcpStream,
}

impl Misbehavers {
    fn connect(app: &RunningApp, names: &[String]) -> Misbehavers {
        use std::io::{Read, Write};
        let all: Vec<String> = names
            .iter()
            .flat_map(|n| {
                let lower = n.to_lowercase();
                [format!("{lower}@kline_1s"), format!("{lower}@kline_1m")]
            })
            .collect();
        let deaf = (0..5)
            .map(|_| ws_connect(app, &format!("/market/ws/{}", all.join("/"))))
            .collect();
        // Closed with 1008 after 10 messages in a second.
        let mut flood = ws_connect(app, "/market/ws");
        for i in 0..100 {
            let stream = &all[i % all.len()];
            let text = format!(r#"{{"method":"SUBSCRIBE","params":["{stream}"],"id":{i}}}"#);
            if flood.send(Message::text(text)).is_err() {
                break;
            }
        }
        let mut garbage = TcpStream::connect(app.listen).unwrap();
        garbage.write_all(b"\x00\x01\x02 nonsense\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = garbage.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let mut unmasked = ws_connect(app, "/market/ws");
        if let MaybeTlsStream::Plain(s) = unmasked.get_mut() {
            s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
        }
        let mut half = TcpStream::connect(app.listen).unwrap();
        half.write_all(b"GET /fapi/v1/klines?symbol=BTC").unwrap();
        Misbehavers {
            _deaf: deaf,
            flood,
            unmasked,
            _half: half,
        }
    }

    /// Whether the flooder got 1008 and the unmasked client 1002 (or was dropped).
    fn closed(&mut self) -> (bool, bool) {
        let close_code = |ws: &mut Ws| {
            for _ in 0..200 {
                match ws.read() {
                    Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            None
        };
        let flood = close_code(&mut self.flood) == Some(1008);
        let unmasked = matches!(close_code(&mut self.unmasked), Some(1002) | None);
        (flood, unmasked)
    }
}

/// One value of `/metrics` (0 when absent).
fn metric(app: &RunningApp, name: &str) -> u64 {
    let text = get_text(&format!("http://{}/metrics", app.listen));
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Misbehaving clients connect while a good one listens: clients that never read, a SUBSCRIBE
/// flood, malformed HTTP and WebSocket frames, a half-sent request head. The engine keeps
/// applying every trade, the good client gets every closed kline in time, REST answers.
#[test]
fn misbehaving_clients_slow_neither_the_engine_nor_other_clients() {
    let sim = start_sim(20, 2_000);
    let dir = TempDir::new("api-misbehaving");
    let app = start_engine(&sim, "1s,1m", dir.db());
    wait_for("all active", PATIENCE, || {
        app.status.all_active_ms().is_some()
    });
    let names: Vec<String> = sim.symbols().iter().map(|s| s.name.clone()).collect();
    std::thread::sleep(Duration::from_secs(2));
    let baseline = keep_up_ratio(&app, &sim, &names, Duration::from_secs(4));
    let (good, _) = tungstenite::connect(format!(
        "ws://{}/market/stream?streams=btcusdt@kline_1s",
        app.listen
    ))
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let finals = record_finals(good, stop.clone());
    let started = epoch_ms();
    let mut bad = Misbehavers::connect(&app, &names);
    // While they are connected: REST answers quickly, and the engine keeps up.
    let asked = Instant::now();
    let rows = get_json(&format!(
        "http://{}/fapi/v1/klines?symbol=BTCUSDT&interval=1s&limit=500",
        app.listen
    ));
    let rest_ms = asked.elapsed().as_millis();
    assert!(rows.as_array().is_some_and(|r| !r.is_empty()));
    let during = keep_up_ratio(&app, &sim, &names, Duration::from_secs(6));
    let (flood_closed, unmasked_closed) = bad.closed();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let to = (epoch_ms() / 1_000 - 3) * 1_000;
    let from = (started / 1_000 + 1) * 1_000;
    let finals = finals.lock().clone();
    let mut delays = assert_stream_equal(&sim, &finals, "BTCUSDT", "1s", from, to);
    delays.sort_unstable();
    let p99 = percentile(&delays, 0.99);
    let metric = |name: &str| metric(&app, name);
    eprintln!(
        "trades applied / published: baseline {baseline:.3}, with misbehaving clients {during:.3}; \
         good client: {} closed 1s klines, p99 {p99} ms after the period end; REST {rest_ms} ms; \
         closed for rate {}, protocol {}; events dropped {}",
        delays.len(),
        metric("klagg_api_ws_closed_rate_total"),
        metric("klagg_api_ws_closed_protocol_total"),
        metric("klagg_api_events_dropped_total"),
    );
    assert!(
        baseline > 0.95 && during > 0.95,
        "engine fell behind: {baseline:.3} → {during:.3}"
    );
    assert!(
        delays.len() >= 5,
        "good client got {} closed klines",
        delays.len()
    );
    assert!(p99 <= 2_000, "good client p99 {p99} ms");
    assert!(rest_ms < 2_000, "REST took {rest_ms} ms");
    assert!(flood_closed, "the flooder was not closed");
    assert!(unmasked_closed, "the unmasked client was not closed");
    assert!(metric("klagg_api_ws_closed_rate_total") >= 1);
    assert!(metric("klagg_http_bad_requests_total") >= 1);
    drop(bad);
    app.stop(klagg::shutdown::StopReason::RunFor);
    sim.shutdown();
}
