//! Benchmark (main thread + the simulator's and the shards' threads): multi-core scaling of
//! the data plane — N shards, each pinned to its own core and fed by its own firehose
//! connection with its own symbols, aggregate aggTrades/s against N × one shard, measured
//! side by side in one run. Prints the figures and writes `bench-results/shard_scaling.json`.
//!
//! Each shard's firehose sender is a simulator thread, so N shards keep about 2N cores busy;
//! the default shard counts stop where that would oversubscribe the machine.
//!
//! Usage: `cargo run --release -p klagg-bench --bin shard_scaling -- [--shards 1,2,4]
//! [--symbols-per-shard K] [--trades N] [--reps R] [--no-pin]`

#[path = "shard_support/cpu.rs"]
mod cpu;
#[path = "shard_support/firehose.rs"]
mod firehose;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use firehose::FedShard;
use klagg_bench::report;
use klagg_bench::sim::{FirehoseConfig, MAX_SYMBOLS, Sim, SimConfig};
use klagg_bench::workload::sim_specs;
use klagg_shards::protocol::SymbolSpec;

/// Longest a repetition may take before it is reported as stalled.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// How often the main thread samples the shards' counters.
const SAMPLE_EVERY: Duration = Duration::from_micros(500);

/// Multi-core scaling: N pinned shards side by side, aggregate aggTrades/s vs N × one shard.
#[derive(Debug, Parser)]
struct Args {
    /// Shard counts to measure, comma-separated (default: 1, then powers of two up to half
    /// the cores less one, and that number itself).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=64))]
    shards: Vec<u16>,
    /// Symbols each shard carries (its own, disjoint from the other shards').
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    symbols_per_shard: u64,
    /// Trades each shard's firehose sends per repetition.
    #[arg(long, default_value_t = 3_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    trades: u64,
    /// Repetitions per shard count.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    reps: u64,
    /// Leave the shard threads unpinned.
    #[arg(long)]
    no_pin: bool,
}

/// One repetition with N shards, over the window in which all of them were receiving.
#[derive(Debug, Clone, Copy)]
struct Rep {
    trades: u64,
    wall_s: f64,
    /// Summed shard-thread CPU time.
    cpu_s: f64,
    symbols_fed: usize,
}

impl Rep {
    fn aggregate(&self) -> f64 {
        self.trades as f64 / self.wall_s
    }

    fn per_core(&self) -> f64 {
        self.trades as f64 / self.cpu_s
    }
}

/// Default shard counts for a machine with `cores` cores.
fn default_counts(cores: usize) -> Vec<u16> {
    let top = ((cores.saturating_sub(2)) / 2).max(1) as u16;
    let mut counts: Vec<u16> = (0..16).map(|k| 1u16 << k).filter(|n| *n <= top).collect();
    if counts.last() != Some(&top) {
        counts.push(top);
    }
    counts
}

/// Samples of all shards' applied counters and CPU times.
struct Sample {
    at: Instant,
    applied: Vec<u64>,
    cpu_ns: Vec<u64>,
}

fn sample(shards: &[FedShard], tasks: &[PathBuf]) -> Sample {
    Sample {
        at: Instant::now(),
        applied: shards.iter().map(FedShard::applied).collect(),
        cpu_ns: tasks.iter().map(|t| cpu::cpu_ns(t).unwrap_or(0)).collect(),
    }
}

/// Run `n` shards at once until the first finishes; measure from when all are receiving.
fn run(ws_base: &str, specs: &[SymbolSpec], n: usize, args: &Args, cores: &[usize]) -> Rep {
    let per = args.symbols_per_shard as usize;
    let shards: Vec<FedShard> = (0..n)
        .map(|i| {
            let core = (!args.no_pin).then(|| cores[i % cores.len()]);
            firehose::start(i as u16, ws_base, &specs[i * per..(i + 1) * per], core)
        })
        .collect();
    let tasks: Vec<PathBuf> = (0..n)
        .map(|i| cpu::thread_dir(&format!("shard-{i:02}")).expect("shard thread"))
        .collect();
    let mut fed = vec![false; specs.len()];
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut first: Option<Sample> = None;
    let last = loop {
        shards.iter().for_each(|s| s.drain(&mut fed));
        let now = sample(&shards, &tasks);
        if first.is_none() && now.applied.iter().all(|a| *a > 0) {
            first = Some(now);
        } else if now.applied.iter().any(|a| *a >= args.trades) || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    shards.into_iter().for_each(FedShard::stop);
    let first = first.expect("every shard received trades");
    Rep {
        trades: last.applied.iter().sum::<u64>() - first.applied.iter().sum::<u64>(),
        wall_s: last.at.duration_since(first.at).as_secs_f64(),
        cpu_s: (last.cpu_ns.iter().sum::<u64>() - first.cpu_ns.iter().sum::<u64>()) as f64 / 1e9,
        symbols_fed: fed.iter().filter(|f| **f).count(),
    }
}

fn median_by(reps: &[Rep], key: fn(&Rep) -> f64) -> f64 {
    let mut values: Vec<f64> = reps.iter().map(key).collect();
    report::min_median(&mut values).1
}

fn main() {
    let mut args = Args::parse();
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .map(|c| c.id)
        .collect();
    if args.shards.is_empty() {
        args.shards = default_counts(cores.len().max(1));
    }
    let most = *args.shards.iter().max().expect("shard counts") as usize;
    let symbols = most * args.symbols_per_shard as usize;
    if symbols > MAX_SYMBOLS {
        eprintln!(
            "error: {most} shards × {} symbols exceed the simulator's {MAX_SYMBOLS}; lower --symbols-per-shard",
            args.symbols_per_shard
        );
        std::process::exit(2);
    }
    if !args.no_pin && most > cores.len() {
        eprintln!(
            "error: {most} shards need {most} cores to pin to, this machine has {}; pass --no-pin or fewer shards",
            cores.len()
        );
        std::process::exit(2);
    }
    let firehose = FirehoseConfig {
        trades_per_connection: args.trades,
        rate_per_second: 0,
    };
    let sim_config = SimConfig::default()
        .with_symbols(symbols)
        .with_firehose(Some(firehose));
    let sim = Sim::start(sim_config).expect("simulator");
    let specs = sim_specs(&sim, symbols);
    let ws_base = sim.ws_url();
    println!(
        "{} cores; shard counts {:?}; {} symbols per shard, {} intervals, {} trades per shard and rep{}",
        cores.len(),
        args.shards,
        args.symbols_per_shard,
        firehose::INTERVALS.len(),
        args.trades,
        if args.no_pin { ", unpinned" } else { "" }
    );
    let mut table = Vec::new();
    for &n in &args.shards {
        let reps: Vec<Rep> = (0..args.reps)
            .map(|_| run(&ws_base, &specs, n as usize, &args, &cores))
            .collect();
        for (k, rep) in reps.iter().enumerate() {
            println!(
                "{n:2} shards rep {k}: {} trades in {:.3} s, {:.2} M/s aggregate, {:.2} M/s per shard core, {} symbols fed",
                rep.trades,
                rep.wall_s,
                rep.aggregate() / 1e6,
                rep.per_core() / 1e6,
                rep.symbols_fed
            );
        }
        table.push((
            n,
            median_by(&reps, Rep::aggregate),
            median_by(&reps, Rep::per_core),
            reps,
        ));
    }
    summarize(&args, &table);
}

type Row = (u16, f64, f64, Vec<Rep>);

fn summarize(args: &Args, table: &[Row]) {
    let base = table
        .iter()
        .find(|row| row.0 == 1)
        .map(|row| row.1)
        .unwrap_or(table[0].1 / table[0].0 as f64);
    println!("shards | aggregate M/s | per shard core M/s | speed-up | efficiency");
    let mut rows = Vec::new();
    for (n, aggregate, per_core, reps) in table {
        let speedup = aggregate / base;
        println!(
            "{n:6} | {:13.2} | {:18.2} | {speedup:8.2} | {:10.2}",
            aggregate / 1e6,
            per_core / 1e6,
            speedup / *n as f64
        );
        let reps_json: Vec<_> = reps
            .iter()
            .map(|r| {
                serde_json::json!({"trades": r.trades, "wall_s": r.wall_s,
                "shard_cpu_s": r.cpu_s, "symbols_fed": r.symbols_fed})
            })
            .collect();
        rows.push(serde_json::json!({
            "shards": n, "aggregate_trades_per_sec_median": aggregate,
            "per_core_trades_per_sec_median": per_core, "speedup": speedup,
            "efficiency": speedup / *n as f64, "reps": reps_json,
        }));
    }
    report::save(
        "shard_scaling",
        serde_json::json!({
            "benchmark": "shard_scaling", "symbols_per_shard": args.symbols_per_shard,
            "intervals": firehose::INTERVALS.len(), "trades_per_shard": args.trades,
            "pinned": !args.no_pin, "rows": rows,
        }),
    );
}
