//! Benchmark (main thread = frame pump and consumer, plus the shard's threads): latency from
//! writing a trade's frame (one frame per TCP segment, paced) to the shard having applied it and
//! queued the kline update, observed when the pump — spinning on the update channel between
//! sends, on the other core — dequeues the update. Percentiles at 10 k, 100 k and 300 k
//! trades/s. Prints the figures and writes `bench-results/shard_latency.json`.
//!
//! The pump is a minimal WebSocket server of its own (tungstenite): it acknowledges the
//! shard's SUBSCRIBE and then sends each frame with its own write (TCP_NODELAY). Each frame
//! carries a unique `l` (underlying trade id), which the update's kline echoes as its
//! `last_trade_id`. An update coalesced over several trades of its symbol stands for all of
//! them: each trade's sample is taken when the first update that covers it is dequeued, so the
//! trades that waited in a burst are measured too (how many were covered so is reported).
//!
//! Usage: `cargo run --release -p klagg-bench --bin shard_latency -- [--seconds S] [--busy-poll]`

#[path = "shard_support/cpu.rs"]
mod cpu;

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use crossbeam_channel::{Receiver, bounded};
use klagg_bench::report;
use klagg_shards::kline::{Interval, Scales};
use klagg_shards::protocol::{
    ActivationId, InitialSymbolData, KLINE_OUT_CAPACITY, KlineMsg, SHARD_REPORT_CAPACITY, ShardCmd,
    ShardId, SymbolIndex, SymbolSpec, WorkerCmd, WsCmd,
};
use klagg_shards::shard::{KlineSink, ShardConfig, ShardOutputs, ShardThread, spawn_shard};
use klagg_shards::wire::control;
use tungstenite::{Message, WebSocket};

const SYMBOLS: usize = 100;
const RATES: [u64; 3] = [10_000, 100_000, 300_000];
const WARMUP_FRAMES: u64 = 2_000;

fn spec(index: usize) -> SymbolSpec {
    SymbolSpec {
        index: SymbolIndex(index as u32),
        name: Arc::from(format!("S{index:03}USDT").as_str()),
        scales: Scales { price: 2, qty: 3 },
    }
}

/// Start the shard, activate and subscribe the symbols; returns the shard and its updates.
fn start_shard(
    port: u16,
    core: Option<usize>,
    busy_poll: bool,
) -> (ShardThread, Receiver<KlineMsg>) {
    let (tx, rx) = bounded(KLINE_OUT_CAPACITY);
    let (reports_tx, _reports_rx) = bounded(SHARD_REPORT_CAPACITY);
    let mut config = ShardConfig::new(
        ShardId(0),
        vec![Interval::M1],
        format!("ws://127.0.0.1:{port}"),
    );
    config.core = core;
    config.busy_poll = busy_poll;
    let outputs = ShardOutputs {
        klines: vec![KlineSink { tx, updates: true }],
        reports: reports_tx,
    };
    let shard = spawn_shard(config, outputs).expect("shard starts");
    let (ack_tx, ack_rx) = bounded(SYMBOLS);
    for index in 0..SYMBOLS {
        let cmd = WorkerCmd::ActivateSymbol {
            symbol: spec(index),
            initial_data: InitialSymbolData {
                klines: vec![None],
                taken_at_ms: 0,
                last_agg_id: None,
            },
            activation: ActivationId(1),
            ack: ack_tx.clone(),
        };
        shard.handle.try_send(ShardCmd::Worker(cmd)).expect("inbox");
        ack_rx.recv_timeout(Duration::from_secs(5)).expect("ack");
        let subscribe = ShardCmd::Ws(WsCmd::SubscribeOne(SymbolIndex(index as u32)));
        shard.handle.try_send(subscribe).expect("inbox");
    }
    (shard, rx)
}

/// Accept the shard's connection and acknowledge SUBSCRIBE requests until every stream is on.
fn accept(listener: &TcpListener) -> WebSocket<TcpStream> {
    let (stream, _) = listener.accept().expect("shard connects");
    stream.set_nodelay(true).expect("nodelay");
    let mut ws = tungstenite::accept(stream).expect("handshake");
    let mut streams = 0;
    while streams < SYMBOLS {
        if let Message::Text(text) = ws.read().expect("request") {
            let request: serde_json::Value = serde_json::from_str(&text).expect("json");
            streams += request["params"].as_array().map_or(0, Vec::len);
            let ack = control::result_null(request["id"].as_u64().expect("an id"));
            ws.send(Message::Text(ack.into())).expect("ack");
        }
    }
    ws
}

struct Pump {
    ws: WebSocket<TcpStream>,
    updates: Receiver<KlineMsg>,
    next_agg: Vec<i64>,
    seq: i64,
    /// Send instants by sequence number (index = seq − first).
    sent: Vec<Instant>,
    latencies_ns: Vec<u64>,
    first_seq: i64,
    /// Per symbol, the highest sequence number already sampled.
    sampled: Vec<i64>,
    /// Samples taken from an update that covered a later trade of the same symbol.
    covered: usize,
}

impl Pump {
    fn frame(&mut self, now_ms: i64) -> String {
        let symbol = (self.seq as usize) % SYMBOLS;
        let agg = self.next_agg[symbol];
        self.next_agg[symbol] += 1;
        format!(
            r#"{{"stream":"s{symbol:03}usdt@aggTrade","data":{{"e":"aggTrade","E":{now_ms},"s":"S{symbol:03}USDT","a":{agg},"p":"{}.{:02}","q":"0.{:03}","f":{seq},"l":{seq},"T":{now_ms},"m":{}}}}}"#,
            1000 + self.seq % 7,
            self.seq % 100,
            1 + self.seq % 900,
            self.seq % 2 == 0,
            seq = self.seq,
        )
    }

    /// Take every update waiting; each yields a sample for every trade of its symbol up to
    /// the one it echoes that has none yet.
    fn drain(&mut self) {
        let now = Instant::now();
        while let Ok(message) = self.updates.try_recv() {
            let KlineMsg::Update { kline, .. } = message else {
                continue;
            };
            let last = kline.last_trade_id;
            let symbol = last.rem_euclid(SYMBOLS as i64) as usize;
            // The first unsampled trade of this symbol in this run (its seq ≡ symbol mod SYMBOLS).
            let start = (self.sampled[symbol] + 1).max(self.first_seq);
            let mut seq = start + (symbol as i64 - start).rem_euclid(SYMBOLS as i64);
            while seq <= last {
                let index = usize::try_from(seq - self.first_seq).ok();
                if let Some(sent) = index.and_then(|i| self.sent.get(i)) {
                    self.latencies_ns
                        .push(now.duration_since(*sent).as_nanos() as u64);
                    self.covered += usize::from(seq < last);
                }
                seq += SYMBOLS as i64;
            }
            self.sampled[symbol] = self.sampled[symbol].max(last);
        }
    }

    /// Send `count` frames at `rate`/s, spinning on the update channel in between.
    fn run(&mut self, rate: u64, count: u64, measure: bool) -> f64 {
        self.first_seq = self.seq;
        self.sent.clear();
        self.latencies_ns.clear();
        self.covered = 0;
        let period = Duration::from_nanos(1_000_000_000 / rate);
        let start = Instant::now();
        for index in 0..count {
            let due = start + period * index as u32;
            while Instant::now() < due {
                self.drain();
            }
            let frame = self.frame(epoch_ms());
            self.sent.push(Instant::now());
            self.ws.send(Message::Text(frame.into())).expect("send");
            self.seq += 1;
            self.drain();
        }
        let elapsed = start.elapsed();
        let settle = Instant::now() + Duration::from_millis(200);
        while Instant::now() < settle {
            self.drain();
        }
        if !measure {
            self.latencies_ns.clear();
        }
        count as f64 / elapsed.as_secs_f64()
    }
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1e3
}

/// Shard latency benchmark: frame written → trade applied and update queued, one frame per TCP
/// segment, at 10 k, 100 k and 300 k trades/s.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds measured at each rate.
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    /// Let the shard spin instead of sleeping in its poll.
    #[arg(long)]
    busy_poll: bool,
}

fn main() {
    let args = Args::parse();
    let seconds = args.seconds;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (pump_core, shard_core) = (cores.first().map(|c| c.id), cores.last().map(|c| c.id));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let busy_poll = args.busy_poll;
    let (shard, updates) = start_shard(port, shard_core, busy_poll);
    if let Some(id) = pump_core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let ws = accept(&listener);
    let task = cpu::thread_dir("shard-00").expect("shard thread");
    let mut pump = Pump {
        ws,
        updates,
        next_agg: vec![1; SYMBOLS],
        seq: 1,
        sent: Vec::new(),
        latencies_ns: Vec::new(),
        first_seq: 1,
        sampled: vec![0; SYMBOLS],
        covered: 0,
    };
    pump.run(10_000, WARMUP_FRAMES, false);
    println!(
        "one frame per TCP segment, {SYMBOLS} symbols, pump on core {pump_core:?}, shard on core {shard_core:?}"
    );
    let mut results = Vec::new();
    for rate in RATES {
        let count = (rate as f64 * seconds) as u64;
        let cpu_before = cpu::cpu_ns(&task).unwrap_or(0);
        let achieved = pump.run(rate, count, true);
        let cpu_per_frame = (cpu::cpu_ns(&task).unwrap_or(0) - cpu_before) as f64 / count as f64;
        let mut samples = std::mem::take(&mut pump.latencies_ns);
        samples.sort_unstable();
        let (p50, p99, p999) = (
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            percentile(&samples, 0.999),
        );
        let max = samples.last().copied().unwrap_or(0) as f64 / 1e3;
        println!(
            "{rate:>7}/s (achieved {achieved:>9.0}/s): p50 {p50:7.1} µs  p99 {p99:7.1} µs  \
             p99.9 {p999:7.1} µs  max {max:8.1} µs; {} of {count} sampled ({} by a later trade's \
             update); shard CPU {:.2} µs/frame",
            samples.len(),
            pump.covered,
            cpu_per_frame / 1e3
        );
        results.push(serde_json::json!({
            "rate": rate, "achieved_rate": achieved, "frames": count, "sampled": samples.len(),
            "sampled_by_later_update": pump.covered,
            "p50_us": p50, "p99_us": p99, "p999_us": p999, "max_us": max,
            "shard_cpu_us_per_frame": cpu_per_frame / 1e3,
        }));
    }
    let counters = shard.handle.health().counters;
    println!(
        "shard: {} loop iterations, busiest iteration {:.1} µs, {} frames, {} updates dropped",
        counters.loop_iterations,
        counters.busiest_iteration_ns as f64 / 1e3,
        counters.frames,
        counters.updates_dropped
    );
    let _ = pump.ws.close(None);
    let _ = shard.handle.try_send(ShardCmd::Shutdown);
    let _ = shard.join.join();
    let goal = results.get(1).is_some_and(|r| {
        r["p50_us"].as_f64().is_some_and(|v| v <= 50.0)
            && r["p99_us"].as_f64().is_some_and(|v| v <= 250.0)
    });
    println!(
        "goal at 100k/s (p50 ≤ 50 µs, p99 ≤ 250 µs): {}",
        if goal { "met" } else { "NOT met" }
    );
    report::save(
        if busy_poll {
            "shard_latency_busy_poll"
        } else {
            "shard_latency"
        },
        serde_json::json!({
            "benchmark": "shard_latency", "symbols": SYMBOLS, "seconds_per_rate": seconds,
            "pump_core": pump_core, "shard_core": shard_core, "busy_poll": busy_poll, "results": results,
            "goal_100k_met": goal,
            "shard_busiest_iteration_us": counters.busiest_iteration_ns as f64 / 1e3,
            "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "method": "send instant before the frame's write → update dequeued by the pump (spinning between sends on the other core)",
        }),
    );
}
