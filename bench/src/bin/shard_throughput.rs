//! Benchmark (main thread + the simulator's and the shard's threads): bulk throughput of one
//! shard — simulator firehose → loopback WebSocket → parse → kline core → outputs — in
//! aggTrades/s per shard core, and its ratio to the same frames parsed and aggregated in memory
//! without a socket (same Worker, same outputs). Prints the figures and writes
//! `bench-results/shard_throughput.json`.
//!
//! Usage: `cargo run --release -p klagg-bench --bin shard_throughput -- [--trades N]
//! [--symbols K] [--reps R]`

#[path = "shard_support/cpu.rs"]
mod cpu;
#[path = "shard_support/firehose.rs"]
mod firehose;

use std::time::{Duration, Instant};

use clap::Parser;
use crossbeam_channel::bounded;
use firehose::{INTERVALS, empty_package};
use klagg_bench::report;
use klagg_bench::sim::{FirehoseConfig, Sim, SimConfig, SimHandle};
use klagg_bench::workload::sim_specs;
use klagg_shards::parse::{Frame, parse_frame};
use klagg_shards::protocol::{
    ActivationId, KLINE_OUT_CAPACITY, SHARD_REPORT_CAPACITY, ShardId, SymbolSpec, WorkerCmd,
};
use klagg_shards::shard::{KlineSink, Publisher};
use klagg_shards::wire::control;
use klagg_shards::worker::{Worker, WorkerConfig};

/// Shard benchmark: bulk aggTrades/s per shard core over loopback vs the same frames in memory.
#[derive(Debug, Parser)]
struct Args {
    /// Trades the firehose sends per repetition.
    #[arg(long, default_value_t = 3_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    trades: u64,
    /// Symbols the trades are spread over (1 to 200).
    #[arg(long, default_value_t = 200)]
    symbols: usize,
    /// Repetitions (at least 1).
    #[arg(long, default_value_t = 3)]
    reps: usize,
}

/// Read `count` firehose frames with a plain client (the in-memory reference input).
fn capture(sim: &SimHandle, specs: &[SymbolSpec], count: usize) -> Vec<String> {
    let url = format!("{}/market/stream", sim.ws_url());
    let (mut ws, _) = tungstenite::connect(url).expect("capture connects");
    let streams: Vec<String> = specs
        .iter()
        .map(|s| format!("{}@aggTrade", s.name.to_lowercase()))
        .collect();
    let request = control::request("SUBSCRIBE", &streams, 1);
    ws.send(tungstenite::Message::Text(request.into()))
        .expect("subscribe");
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        if let tungstenite::Message::Text(text) = ws.read().expect("frame")
            && text.contains("aggTrade")
        {
            out.push(text.as_str().to_owned());
        }
    }
    let _ = ws.close(None);
    out
}

/// Parse + route + aggregate + publish in memory; ns per frame.
fn in_memory(frames: &[String], specs: &[SymbolSpec]) -> f64 {
    let (tx, rx) = bounded(KLINE_OUT_CAPACITY);
    let (reports_tx, _reports_rx) = bounded(SHARD_REPORT_CAPACITY);
    let sinks = vec![KlineSink { tx, updates: true }];
    let mut publisher = Publisher::new(ShardId(0), sinks, reports_tx, usize::MAX);
    let mut worker = Worker::new(&WorkerConfig::new(ShardId(0), INTERVALS.to_vec(), 1024));
    let (ack_tx, _ack_rx) = bounded(specs.len());
    for spec in specs {
        worker.process_command(WorkerCmd::ActivateSymbol {
            symbol: spec.clone(),
            initial_data: empty_package(),
            activation: ActivationId(1),
            ack: ack_tx.clone(),
        });
    }
    let mut events = Vec::new();
    let start = Instant::now();
    for chunk in frames.chunks(1024) {
        for frame in chunk {
            if let Ok(Frame::Trade(raw)) = parse_frame(frame.as_bytes()) {
                let _ = worker.process_raw_trade(&raw);
            }
        }
        worker.take_events(&mut events);
        publisher.publish(&mut events, &mut worker);
        publisher.flush();
        while rx.try_recv().is_ok() {}
    }
    start.elapsed().as_nanos() as f64 / frames.len() as f64
}

struct ShardRun {
    trades: u64,
    wall_s: f64,
    cpu_s: f64,
    /// Symbols the shard produced klines for (all of them when the firehose fed every one).
    symbols_fed: usize,
}

/// The real shard against the firehose: wall time and shard-thread CPU time for `trades`.
fn over_socket(
    sim: &SimHandle,
    specs: &[SymbolSpec],
    trades: u64,
    core: Option<usize>,
) -> ShardRun {
    let shard = firehose::start(0, &sim.ws_url(), specs, core);
    let task = cpu::thread_dir("shard-00").expect("shard thread");
    let mut fed = vec![false; specs.len()];
    let (mut started, mut cpu_start) = (None, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while shard.applied() < trades && Instant::now() < deadline {
        shard.drain(&mut fed);
        if started.is_none() && shard.applied() > 0 {
            started = Some((Instant::now(), shard.applied()));
            cpu_start = cpu::cpu_ns(&task).unwrap_or(0);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let cpu_end = cpu::cpu_ns(&task).unwrap_or(0);
    let (t0, n0) = started.expect("trades arrived");
    let run = ShardRun {
        trades: shard.applied() - n0,
        wall_s: t0.elapsed().as_secs_f64(),
        cpu_s: (cpu_end - cpu_start) as f64 / 1e9,
        symbols_fed: fed.iter().filter(|f| **f).count(),
    };
    shard.stop();
    run
}

fn main() {
    let mut args = Args::parse();
    (args.symbols, args.reps) = (args.symbols.clamp(1, 200), args.reps.max(1));
    let firehose = FirehoseConfig {
        trades_per_connection: args.trades,
        rate_per_second: 0,
    };
    let sim_config = SimConfig::default()
        .with_symbols(args.symbols)
        .with_firehose(Some(firehose));
    let sim = Sim::start(sim_config).expect("simulator");
    let specs = sim_specs(&sim, args.symbols);
    let reference = capture(&sim, &specs, 1_000_000.min(args.trades as usize));
    let mean_bytes =
        reference.iter().map(String::len).sum::<usize>() as f64 / reference.len() as f64;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let core = cores.last().map(|c| c.id);
    println!(
        "{} symbols, {} intervals, {mean_bytes:.1} bytes/frame, shard pinned to core {core:?}",
        specs.len(),
        INTERVALS.len()
    );
    let mut memory_ns = Vec::new();
    let mut runs = Vec::new();
    for rep in 0..args.reps {
        memory_ns.push(in_memory(&reference, &specs));
        let run = over_socket(&sim, &specs, args.trades, core);
        println!(
            "rep {rep}: in memory {:6.1} ns/trade | over loopback: {} trades, {:.3} s wall \
             ({:.2} M/s), {:.3} s shard CPU ({:.2} M/s per shard core, {:.0} ns/trade), {} symbols fed",
            memory_ns[rep],
            run.trades,
            run.wall_s,
            run.trades as f64 / run.wall_s / 1e6,
            run.cpu_s,
            run.trades as f64 / run.cpu_s / 1e6,
            run.cpu_s * 1e9 / run.trades as f64,
            run.symbols_fed
        );
        runs.push(run);
    }
    report(&args, &specs, mean_bytes, core, &mut memory_ns, &runs);
}

fn report(
    args: &Args,
    specs: &[SymbolSpec],
    mean_bytes: f64,
    core: Option<usize>,
    memory_ns: &mut [f64],
    runs: &[ShardRun],
) {
    let (memory_min, memory_med) = report::min_median(memory_ns);
    let mut per_core: Vec<f64> = runs.iter().map(|r| r.trades as f64 / r.cpu_s).collect();
    let mut wall: Vec<f64> = runs.iter().map(|r| r.trades as f64 / r.wall_s).collect();
    let (_, per_core_med) = report::min_median(&mut per_core);
    let (_, wall_med) = report::min_median(&mut wall);
    let memory_rate = 1e9 / memory_med;
    let ratio = per_core_med / memory_rate;
    println!(
        "median: {:.2} M aggTrades/s per shard core (wall {:.2} M/s); in memory {:.2} M/s \
         ({memory_min:.1}/{memory_med:.1} ns min/med); ratio {ratio:.2}",
        per_core_med / 1e6,
        wall_med / 1e6,
        memory_rate / 1e6
    );
    println!(
        "targets: ≥ 1.5 M/s per core: {}; ratio ≥ 0.5: {}",
        if per_core_med >= 1.5e6 {
            "met"
        } else {
            "NOT met"
        },
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );
    let runs_json: Vec<_> = runs
        .iter()
        .map(|r| {
            serde_json::json!({"trades": r.trades, "wall_s": r.wall_s, "shard_cpu_s": r.cpu_s,
                "symbols_fed": r.symbols_fed})
        })
        .collect();
    report::save(
        "shard_throughput",
        serde_json::json!({
            "benchmark": "shard_throughput", "symbols": specs.len(), "intervals": INTERVALS.len(),
            "trades_per_run": args.trades, "mean_frame_bytes": mean_bytes, "shard_core": core,
            "in_memory_ns_per_trade_min": memory_min, "in_memory_ns_per_trade_median": memory_med,
            "per_core_trades_per_sec_median": per_core_med, "wall_trades_per_sec_median": wall_med,
            "ratio_to_in_memory": ratio, "runs": runs_json,
        }),
    );
}
