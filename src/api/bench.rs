//! The API benchmarks (`klagg bench-api`, hidden; the main thread drives, the API's, the
//! engine's and the simulator's threads run in-process, plus client threads):
//!
//! * `rest`: `GET /fapi/v1/klines?limit=500` from the SQLite store (1500 stored 1m klines) with
//!   8 concurrent keep-alive clients: requests/s and latency percentiles.
//! * `latency`: the engine against the simulator; one client subscribed to every symbol's
//!   `@kline_1s`; per closed kline the delay from the period end to its arrival, split into the
//!   engine's part (the close, `E` − period end) and the API's (arrival − `E`).
//! * `fanout`: one shard fed by the simulator's firehose as fast as it can take it, its kline
//!   output into the API; trades/s without clients, with 200 clients × 20 streams reading, and
//!   without again; the ratio says how much the fan-out slows the engine's trade processing.
//!
//! Prints the figures and writes `bench-results/api.json`.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use klagg_shards::kline::{Interval, Kline, Scales};
use klagg_shards::protocol::{ShardCmd, ShardCounters, SymbolIndex, SymbolSpec};
use serde_json::{Value, json};

use super::standalone::Standalone;
use super::{Api, ApiCounters};
use crate::clock::epoch_ms;
use crate::shutdown::StopReason;
use crate::store::{Source, Store, StoreCmd, WriterConfig, spawn_writer};
use crate::symbol_manager::exchange::Ticker24h;
use crate::symbol_manager::registry::{Lifecycle, RegistryView};

/// Flags of `klagg bench-api`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchApiArgs {
    /// Parts to run.
    #[arg(long, value_delimiter = ',', default_value = "rest,latency,fanout")]
    pub parts: Vec<String>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent REST clients.
    #[arg(long, default_value_t = 8)]
    pub rest_clients: usize,
    /// WebSocket clients of the fan-out part.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Streams per WebSocket client of the fan-out part.
    #[arg(long, default_value_t = 20)]
    pub streams: usize,
    /// Firehose rate of the fan-out part in trades/s (0: as fast as the shard takes them).
    #[arg(long, default_value_t = 0)]
    pub firehose_rate: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/api.json")]
    pub out: PathBuf,
}

/// Entry point of `klagg bench-api`.
pub fn run(args: BenchApiArgs) -> ExitCode {
    let mut results = serde_json::Map::new();
    for part in &args.parts {
        let result = match part.as_str() {
            "rest" => rest(&args),
            "latency" => latency(&args),
            "fanout" => fanout(&args),
            other => Err(format!("unknown part {other:?} (rest, latency, fanout)")),
        };
        match result {
            Ok(value) => {
                println!(
                    "{part}: {}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
                results.insert(part.clone(), value);
            }
            Err(error) => {
                eprintln!("klagg bench-api: {part}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let doc = json!({ "benchmark": "api", "machine": klagg_bench::report::machine(), "results": results });
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
    ) {
        Ok(()) => {
            eprintln!("wrote {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "klagg bench-api: cannot write {}: {error}",
                args.out.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// p50, p99 and max of `values` (sorted here), in the unit given.
fn percentiles(values: &mut [f64]) -> Value {
    values.sort_by(f64::total_cmp);
    let at = |p: f64| values[((values.len() as f64 - 1.0) * p).round() as usize];
    if values.is_empty() {
        return json!(null);
    }
    json!({ "p50": at(0.5), "p99": at(0.99), "max": at(1.0), "count": values.len() })
}

/// The API alone on an ephemeral port over `registry`, its store at `db`.
fn api_alone(
    registry: RegistryView,
    intervals: &[Interval],
    db: Option<PathBuf>,
) -> Result<Standalone, String> {
    let api = Api::new(intervals, registry.clone(), db).map_err(|e| e.to_string())?;
    Standalone::start(api, registry)
}

fn registry_of(names: &[(String, Scales)]) -> RegistryView {
    let registry = RegistryView::new();
    for (name, scales) in names {
        let _ = registry
            .write()
            .insert(name, *scales, Lifecycle::Sent, Ticker24h::default());
    }
    registry
}

/// 1500 closed 1m klines of BTCUSDT in a fresh store.
fn filled_store(dir: &std::path::Path) -> Result<PathBuf, String> {
    let db = dir.join("klagg.db");
    let store = Store::open(&db).map_err(|e| e.to_string())?;
    let writer = spawn_writer(store, WriterConfig::default(), crossbeam_channel::never())
        .map_err(|e| e.to_string())?;
    let scales = Scales { price: 1, qty: 3 };
    let now = Interval::M1.open_time(epoch_ms());
    let first = now - 1500 * 60_000;
    let klines: Vec<Kline> = (0..1500)
        .map(|i| {
            let mut k = Kline::flat(Interval::M1, first + i * 60_000, 600_000 + i % 97 * 10);
            k.high += 55;
            k.low -= 45;
            k.volume = 123_456 + i128::from(i);
            k.quote_volume = k.volume * 600_000;
            k.taker_buy_volume = k.volume / 2;
            k.taker_buy_quote_volume = k.quote_volume / 2;
            k.trade_count = 1000 + i as u64;
            k
        })
        .collect();
    let timeout = Duration::from_secs(10);
    let send = |cmd| writer.send(cmd, timeout).map_err(|e| e.to_string());
    send(StoreCmd::RegisterSymbol {
        index: SymbolIndex(0),
        name: Arc::from("BTCUSDT"),
        scales,
    })?;
    send(StoreCmd::Backfilled {
        symbol: SymbolIndex(0),
        interval: Interval::M1,
        klines,
        source: Source::Rest,
        request: None,
    })?;
    writer.flush(timeout).map_err(|e| e.to_string())?;
    writer.shutdown(timeout).map_err(|e| e.to_string())?;
    Ok(db)
}

fn rest(args: &BenchApiArgs) -> Result<Value, String> {
    let dir = std::env::temp_dir().join(format!("klagg-bench-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db = filled_store(&dir)?;
    let registry = registry_of(&[("BTCUSDT".into(), Scales { price: 1, qty: 3 })]);
    let rig = api_alone(registry, &[Interval::M1], Some(db))?;
    let url = format!(
        "http://{}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=500",
        rig.addr
    );
    let probe = ureq::get(&url).call().map_err(|e| e.to_string())?;
    let body = probe
        .into_body()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let rows = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);
    if rows != 500 {
        return Err(format!("expected 500 rows, got {rows}"));
    }
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.rest_clients)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let sent = Instant::now();
                    let ok = agent
                        .get(&url)
                        .call()
                        .and_then(|r| r.into_body().read_to_vec())
                        .is_ok();
                    if ok {
                        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<f64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap_or_default())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    rig.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let requests = latencies.len();
    Ok(json!({
        "endpoint": "GET /fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=500 (from SQLite)",
        "clients": args.rest_clients,
        "seconds": elapsed,
        "requests": requests,
        "requests_per_s": requests as f64 / elapsed,
        "latency_ms": percentiles(&mut latencies),
        "response_bytes": body.len(),
    }))
}

fn latency(args: &BenchApiArgs) -> Result<Value, String> {
    let sim_config = klagg_bench::sim::SimConfig::default()
        .with_listen("127.0.0.1:0".to_string())
        .with_symbols(50)
        .with_trade_rate(500)
        .with_seed(3);
    let sim = klagg_bench::sim::Sim::start(sim_config).map_err(|e| e.to_string())?;
    let run_args = crate::config::RunArgs {
        rest_url: Some(sim.rest_url()),
        ws_url: Some(sim.ws_url()),
        listen: Some("127.0.0.1:0".into()),
        intervals: Some("1s,1m".into()),
        ..crate::config::RunArgs::default()
    };
    let mut config = run_args
        .resolve(&crate::runtime::core_ids())
        .map_err(|e| e.to_string())?;
    config.rest_has_1s = true;
    let log = crate::log::discard();
    let app = crate::app::start_app(
        config,
        crate::clock::ProcessStart::now(),
        &log,
        crate::app::AppExtensions::default(),
    )
    .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.status.all_active_ms().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let names: Vec<String> = sim
        .symbols()
        .iter()
        .map(|s| format!("{}@kline_1s", s.name.to_lowercase()))
        .collect();
    let url = format!(
        "ws://{}/market/stream?streams={}",
        app.listen,
        names.join("/")
    );
    let (mut ws, _) = tungstenite::connect(url).map_err(|e| e.to_string())?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    }
    let (mut total, mut engine, mut api) = (Vec::new(), Vec::new(), Vec::new());
    let until = Instant::now() + Duration::from_secs(args.seconds.max(10));
    while Instant::now() < until {
        let Ok(tungstenite::Message::Text(text)) = ws.read() else {
            continue;
        };
        let at = epoch_ms();
        let Ok(event) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let data = &event["data"];
        if data["k"]["x"] != true {
            continue;
        }
        let (end, pushed) = (
            data["k"]["T"].as_i64().unwrap_or(0) + 1,
            data["E"].as_i64().unwrap_or(0),
        );
        total.push((at - end) as f64);
        engine.push((pushed - end) as f64);
        api.push((at - pushed) as f64);
    }
    app.stop(StopReason::RunFor);
    sim.shutdown();
    Ok(json!({
        "what": "closed 1s kline: delay from the period end to its arrival at a loopback WebSocket client (ms)",
        "symbols": 50, "trade_rate": 500, "close_grace_ms": klagg_shards::worker::CLOSE_GRACE_MS_DEFAULT,
        "total_ms": percentiles(&mut total),
        "engine_close_ms": percentiles(&mut engine),
        "api_delivery_ms": percentiles(&mut api),
    }))
}

/// Reads every socket without blocking and counts bytes until `stop`.
fn drain_clients(streams: Vec<TcpStream>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let builder = std::thread::Builder::new().name("bench-clients".into());
    builder
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for mut stream in &streams {
                    while let Ok(n) = std::io::Read::read(&mut stream, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        total += n as u64;
                        idle = false;
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            total
        })
        .expect("client thread")
}

/// CPU seconds used so far by this process's threads, by thread-name prefix (Linux
/// `/proc/self/task/*/stat`, USER_HZ = 100).
fn thread_cpu(prefixes: &[&str]) -> Vec<f64> {
    let mut out = vec![0.0; prefixes.len()];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is field 3, utime 14 and stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cpu = (ticks(11) + ticks(12)) / 100.0;
        for (slot, prefix) in out.iter_mut().zip(prefixes) {
            if comm.trim().starts_with(prefix) {
                *slot += cpu;
            }
        }
    }
    out
}

const CPU_THREADS: [&str; 5] = ["shard-00", "api-hub", "api-ws", "sim-conn", "bench-clients"];

/// Trades applied per second over `seconds`, and the CPU share (cores) of [`CPU_THREADS`].
fn measured_rate(counters: &ShardCounters, seconds: u64) -> (f64, Value) {
    let cpu0 = thread_cpu(&CPU_THREADS);
    let started = Instant::now();
    let rate = applied_rate(counters, seconds);
    let wall = started.elapsed().as_secs_f64();
    let cpu1 = thread_cpu(&CPU_THREADS);
    let mut shares = serde_json::Map::new();
    for (i, name) in CPU_THREADS.iter().enumerate() {
        shares.insert((*name).to_string(), json!((cpu1[i] - cpu0[i]) / wall));
    }
    (rate, Value::Object(shares))
}

fn applied_rate(counters: &ShardCounters, seconds: u64) -> f64 {
    let (t0, n0) = (Instant::now(), ShardCounters::get(&counters.trades_applied));
    std::thread::sleep(Duration::from_secs(seconds));
    let n1 = ShardCounters::get(&counters.trades_applied);
    (n1 - n0) as f64 / t0.elapsed().as_secs_f64()
}

const FANOUT_SYMBOLS: usize = 200;
const FANOUT_INTERVALS: [Interval; 2] = [Interval::S1, Interval::M1];

/// The simulator with its firehose, and the symbols it serves as the engine names them.
fn firehose_sim(rate: u64) -> Result<(klagg_bench::sim::SimHandle, Vec<SymbolSpec>), String> {
    let firehose = klagg_bench::sim::FirehoseConfig {
        trades_per_connection: 0,
        rate_per_second: rate,
    };
    let sim_config = klagg_bench::sim::SimConfig::default()
        .with_listen("127.0.0.1:0".to_string())
        .with_symbols(FANOUT_SYMBOLS)
        .with_trade_rate(100)
        .with_firehose(Some(firehose));
    let sim = klagg_bench::sim::Sim::start(sim_config).map_err(|e| e.to_string())?;
    let specs = klagg_bench::workload::sim_specs(&sim, FANOUT_SYMBOLS);
    Ok((sim, specs))
}

/// `clients` WebSocket clients with `streams` kline streams each, as non-blocking sockets.
fn connect_clients(
    addr: SocketAddr,
    specs: &[SymbolSpec],
    clients: usize,
    streams: usize,
) -> Result<Vec<TcpStream>, String> {
    let n_intervals = FANOUT_INTERVALS.len();
    let mut sockets = Vec::with_capacity(clients);
    for client in 0..clients {
        let names: Vec<String> = (0..streams)
            .map(|j| {
                let n = client * streams + j;
                let spec = &specs[(n / n_intervals) % specs.len()];
                let interval = FANOUT_INTERVALS[n % n_intervals];
                format!("{}@kline_{interval}", spec.name.to_lowercase())
            })
            .collect();
        let url = format!("ws://{addr}/market/ws/{}", names.join("/"));
        let (ws, _) = tungstenite::connect(url).map_err(|e| e.to_string())?;
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.into_inner() {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            sockets.push(s);
        }
    }
    Ok(sockets)
}

fn fanout(args: &BenchApiArgs) -> Result<Value, String> {
    let (sim, specs) = firehose_sim(args.firehose_rate)?;
    let names: Vec<(String, Scales)> = specs
        .iter()
        .map(|s| (s.name.to_string(), s.scales))
        .collect();
    let rig = api_alone(registry_of(&names), &FANOUT_INTERVALS, None)?;
    let shard = klagg_bench::fed_shard::spawn_fed_shard(
        0,
        &sim.ws_url(),
        &FANOUT_INTERVALS,
        &specs,
        rig.sink.clone(),
        None,
    )?;
    let counters = shard.handle.counters.clone();
    std::thread::sleep(Duration::from_secs(3));
    let secs = args.seconds.max(3);
    let (without, cpu_without) = measured_rate(&counters, secs);
    let sockets = connect_clients(rig.addr, &specs, args.clients, args.streams)?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = drain_clients(sockets, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let c = &rig.state.counters;
    let frames0 = ApiCounters::get(&c.ws_frames_sent);
    let t0 = Instant::now();
    let (with, cpu_with) = measured_rate(&counters, secs);
    let frames_per_s =
        (ApiCounters::get(&c.ws_frames_sent) - frames0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let bytes = reader.join().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));
    let (after, cpu_after) = measured_rate(&counters, secs);
    let result = json!({
        "what": "one shard fed by the simulator's firehose; trades applied per second without and with WebSocket clients reading",
        "symbols": FANOUT_SYMBOLS, "intervals": ["1s", "1m"], "firehose_rate": args.firehose_rate,
        "clients": args.clients, "streams_per_client": args.streams,
        "trades_per_s_without_clients": without,
        "trades_per_s_with_clients": with,
        "trades_per_s_after_clients": after,
        "ratio_with_to_without": with / ((without + after) / 2.0),
        "cpu_cores_without_clients": cpu_without,
        "cpu_cores_with_clients": cpu_with,
        "cpu_cores_after_clients": cpu_after,
        "frames_queued_per_s_with_clients": frames_per_s,
        "bytes_read_by_clients": bytes,
        "clients_closed_slow": ApiCounters::get(&c.ws_closed_slow),
        "events_dropped": ApiCounters::get(&c.events_dropped),
        "shard_updates_dropped": ShardCounters::get(&counters.updates_dropped),
    });
    let _ = shard.handle.try_send(ShardCmd::Shutdown);
    let _ = shard.join.join();
    rig.stop();
    sim.shutdown();
    Ok(result)
}
