//! The Binance-compatible API end to end (test threads, the engine's threads, the simulator's):
//! the engine (`start_app`) against the in-process simulator with the SQLite store attached,
//! its REST and WebSocket API compared with the simulator's own REST klines, field for field,
//! for 1s and 1m; the engine keeping up while misbehaving WebSocket clients are connected.
//! Time bounds are generous (2 noisy cores).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use klagg::activation_dispatcher::DispatchState;
use klagg::app::{AppExtensions, RunningApp, start_app};
use klagg::clock::{ProcessStart, epoch_ms};
use klagg::config::RunArgs;
use klagg::store::{Store, StoreCmd, WriterConfig, WriterHandle, spawn_writer};
use klagg_bench::sim::{Sim, SimConfig, SimHandle};
use klagg_shards::protocol::{KLINE_OUT_CAPACITY, SymbolSpec};
use klagg_shards::shard::KlineSink;
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const PATIENCE: Duration = Duration::from_secs(60);

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn start_sim(symbols: usize, trade_rate: u64) -> SimHandle {
    let config = SimConfig::default()
        .with_listen("127.0.0.1:0".to_string())
        .with_symbols(symbols)
        .with_trade_rate(trade_rate)
        .with_seed(11);
    Sim::start(config).expect("simulator starts")
}

fn temp_db(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("klagg-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("klagg.db")
}

/// The engine on `sim` with the store at `db` wired as `klagg run` does: the writer takes the
/// shards' final klines and every symbol's registration.
fn start_engine(sim: &SimHandle, intervals: &str, db: PathBuf) -> (RunningApp, WriterHandle) {
    let args = RunArgs {
        rest_url: Some(sim.rest_url()),
        ws_url: Some(sim.ws_url()),
        listen: Some("127.0.0.1:0".into()),
        shards: Some(2),
        intervals: Some(intervals.into()),
        ..RunArgs::default()
    };
    let mut config = args.resolve(2).expect("valid config");
    config.rest_has_1s = true;
    config.shard_cores = vec![None, None];
    config.db_path = db.clone();
    let store = Store::open(&db).expect("store opens");
    let (tx, rx) = bounded(KLINE_OUT_CAPACITY);
    let writer = spawn_writer(store, WriterConfig::default(), rx).expect("writer starts");
    let (spec_tx, spec_rx) = bounded::<SymbolSpec>(4096);
    let commands = writer.sender();
    std::thread::spawn(move || {
        for spec in spec_rx {
            let cmd = StoreCmd::RegisterSymbol {
                index: spec.index,
                name: spec.name,
                scales: spec.scales,
            };
            if commands.send(cmd).is_err() {
                return;
            }
        }
    });
    let extensions = AppExtensions {
        kline_sinks: vec![KlineSink { tx, updates: false }],
        symbol_listeners: vec![spec_tx],
        ..AppExtensions::default()
    };
    let log = klagg::log::discard();
    let app = start_app(config, ProcessStart::now(), &log, extensions).expect("engine starts");
    (app, writer)
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get_json(url: &str) -> Value {
    let body = ureq::get(url)
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

fn activated_epoch_ms(app: &RunningApp, name: &str) -> i64 {
    let index = app.registry.index(name).unwrap();
    app.status.start.started_at_ms + app.status.symbol(index).activated_ms.unwrap()
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
    let (app, writer) = start_engine(&sim, "1s,1m", temp_db("equal"));
    wait_for("all active", || app.status.all_active_ms().is_some());
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
        .map(|n| activated_epoch_ms(&app, n))
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
    assert!(
        rows.windows(2)
            .all(|w| w[1][0].as_i64().unwrap() - w[0][0].as_i64().unwrap() == 1_000)
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
    writer.shutdown(Duration::from_secs(5)).ok();
    sim.shutdown();
}
