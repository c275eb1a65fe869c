//! Benchmark (main thread + one client thread): how many aggTrade frames per second the
//! simulator's firehose mode delivers to one loopback WebSocket client (tungstenite, blocking
//! reads). Prints the figure and writes `bench-results/sim_throughput.json`.
//!
//! Usage: `cargo run --release -p klagg-bench --bin sim_throughput -- [--frames N]
//! [--symbols K] [--combined] [--rate R]`

use std::time::{Duration, Instant};

use clap::Parser;
use klagg_bench::report;
use klagg_bench::sim::{FirehoseConfig, Sim, SimConfig};
use tungstenite::Message;

/// Simulator benchmark: aggTrade frames per second delivered to one loopback WebSocket client.
#[derive(Debug, Parser)]
struct Args {
    /// Frames the firehose sends.
    #[arg(long, default_value_t = 4_000_000)]
    frames: u64,
    /// Symbols the frames are spread over.
    #[arg(long, default_value_t = 10)]
    symbols: usize,
    /// Combined framing (`{"stream":…,"data":…}`) instead of raw payloads.
    #[arg(long)]
    combined: bool,
    /// Frames per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

/// Receive `frames` frames; returns (elapsed, bytes, frames checked for contiguity).
fn client(url: &str, frames: u64, combined: bool) -> Result<(Duration, u64, u64), String> {
    let (mut ws, _) = tungstenite::connect(url).map_err(|e| e.to_string())?;
    let mut last_a: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let (mut got, mut bytes, mut checked) = (0u64, 0u64, 0u64);
    let mut start = None;
    while got < frames {
        let msg = ws.read().map_err(|e| e.to_string())?;
        let Message::Text(t) = msg else { continue };
        start.get_or_insert_with(Instant::now);
        got += 1;
        bytes += t.len() as u64;
        if got % 4096 == 1 {
            checked += 1;
            let v: serde_json::Value =
                serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
            let d = if combined { &v["data"] } else { &v };
            let (s, a) = (
                d["s"].as_str().unwrap_or("").to_string(),
                d["a"].as_u64().unwrap_or(0),
            );
            if let Some(prev) = last_a.insert(s.clone(), a)
                && a <= prev
            {
                return Err(format!("{s}: id went from {prev} to {a}"));
            }
        }
    }
    let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
    Ok((elapsed, bytes, checked))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let firehose = FirehoseConfig {
        trades_per_connection: args.frames,
        rate_per_second: args.rate,
    };
    let cfg = SimConfig::default()
        .with_symbols(args.symbols.max(1))
        .with_trade_rate(10)
        .with_history(Duration::ZERO)
        .with_firehose(Some(firehose));
    let sim = match Sim::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sim_throughput: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let streams: Vec<String> = sim
        .symbols()
        .iter()
        .map(|s| format!("{}@aggTrade", s.name.to_ascii_lowercase()))
        .collect();
    let url = if args.combined {
        format!(
            "{}/market/stream?streams={}",
            sim.ws_url(),
            streams.join("/")
        )
    } else {
        format!("{}/market/ws/{}", sim.ws_url(), streams.join("/"))
    };
    let (frames, combined) = (args.frames, args.combined);
    let handle = std::thread::spawn(move || client(&url, frames, combined));
    let result = handle
        .join()
        .unwrap_or_else(|_| Err("client thread panicked".into()));
    let counters = sim.counters();
    sim.shutdown();
    let (elapsed, bytes, checked) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sim_throughput: client failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = args.frames as f64 / secs;
    println!(
        "sim_throughput: {} aggTrade frames ({}, {} symbols) in {:.3} s = {:.2} M frames/s, {:.1} MB/s, avg {:.0} B/frame (server counter at finish: {})",
        args.frames,
        if args.combined { "combined" } else { "raw" },
        args.symbols,
        secs,
        rate / 1e6,
        bytes as f64 / secs / 1e6,
        bytes as f64 / args.frames as f64,
        counters.frames_sent
    );
    write_json(&args, secs, rate, bytes, checked);
    std::process::ExitCode::SUCCESS
}

fn write_json(args: &Args, secs: f64, rate: f64, bytes: u64, checked: u64) {
    let json = serde_json::json!({
        "benchmark": "sim_throughput",
        "frames": args.frames,
        "symbols": args.symbols,
        "framing": if args.combined { "combined" } else { "raw" },
        "paced_rate": args.rate,
        "seconds": secs,
        "frames_per_second": rate,
        "bytes": bytes,
        "frames_checked": checked,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "client": "tungstenite 0.30 blocking read, one thread",
        "unix_ms": klagg_bench::sim::now_ms(),
    });
    let name = if args.combined {
        "sim_throughput_combined"
    } else {
        "sim_throughput"
    };
    report::save(name, json);
}
