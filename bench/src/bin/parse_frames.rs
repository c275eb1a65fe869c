//! Benchmark (main thread): frames/s and ns/frame of the aggTrade frame parser on realistic
//! combined-stream frames (500 symbols, skewed, ≈186 bytes): the hand-written scanner and the
//! serde_json fallback side by side, each with and without the decimal conversion at the
//! symbol's scale. Prints the figures and writes `bench-results/parse_frames.json`.
//!
//! Usage: `cargo run --release -p klagg-bench --bin parse_frames -- [--frames N] [--reps R]`

#[path = "shard_support/frames.rs"]
mod frames;

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use klagg_bench::report;
use klagg_shards::kline::Scales;
use klagg_shards::parse::fallback::parse_frame_serde;
use klagg_shards::parse::scan::scan_frame;
use klagg_shards::parse::{Frame, ParseError, RawAggTrade, parse_frame};
use rustc_hash::FxHashMap;

/// Parser benchmark: scanner vs serde_json fallback on realistic combined-stream frames.
#[derive(Debug, Parser)]
struct Args {
    /// Distinct frames generated (at least 1).
    #[arg(long, default_value_t = 500_000)]
    frames: usize,
    /// Timed repetitions of each case (at least 1).
    #[arg(long, default_value_t = 7)]
    reps: usize,
}

type Case<'a> = (&'a str, Box<dyn Fn(&[u8]) -> i64 + 'a>);

fn checksum(trade: &RawAggTrade<'_>) -> i64 {
    trade.agg_id ^ trade.trade_time_ms ^ trade.price.len() as i64
}

fn decimals(trade: &RawAggTrade<'_>, scales: &FxHashMap<&[u8], Scales>) -> Result<i64, ParseError> {
    let scale = scales.get(trade.symbol).copied().unwrap_or_default();
    let converted = trade.to_agg_trade(scale)?;
    Ok(converted.price ^ converted.qty ^ converted.agg_id)
}

fn cases<'a>(scales: &'a FxHashMap<&'a [u8], Scales>) -> Vec<Case<'a>> {
    vec![
        (
            "scanner (scan_frame)",
            Box::new(|f: &[u8]| match scan_frame(f) {
                Some(Frame::Trade(t)) => checksum(&t),
                _ => -1,
            }),
        ),
        (
            "scanner + decimals (parse_frame + to_agg_trade)",
            Box::new(move |f: &[u8]| match parse_frame(f) {
                Ok(Frame::Trade(t)) => decimals(&t, scales).unwrap_or(-1),
                _ => -1,
            }),
        ),
        (
            "serde_json fallback (parse_frame_serde)",
            Box::new(|f: &[u8]| match parse_frame_serde(f) {
                Ok(Frame::Trade(t)) => checksum(&t),
                _ => -1,
            }),
        ),
        (
            "serde_json fallback + decimals",
            Box::new(move |f: &[u8]| match parse_frame_serde(f) {
                Ok(Frame::Trade(t)) => decimals(&t, scales).unwrap_or(-1),
                _ => -1,
            }),
        ),
    ]
}

fn main() {
    let mut args = Args::parse();
    (args.frames, args.reps) = (args.frames.max(1), args.reps.max(1));
    let mut symbols = frames::symbols(500, 42);
    let data = frames::frames(&mut symbols, args.frames, 7, 1_672_531_200_000);
    let bytes: usize = data.iter().map(String::len).sum();
    let mean_bytes = bytes as f64 / data.len() as f64;
    let scales: FxHashMap<&[u8], Scales> = symbols
        .iter()
        .map(|s| (s.spec.name.as_bytes(), s.spec.scales))
        .collect();
    verify(&data);
    println!(
        "{} frames, {mean_bytes:.1} bytes/frame, 500 symbols (skewed), {} repetitions",
        data.len(),
        args.reps
    );
    let mut results = Vec::new();
    for (name, case) in cases(&scales) {
        let run = || {
            let start = Instant::now();
            let mut sum = 0i64;
            for frame in &data {
                sum = sum.wrapping_add(case(black_box(frame.as_bytes())));
            }
            black_box(sum);
            start.elapsed().as_nanos() as f64 / data.len() as f64
        };
        run(); // warm-up
        let mut samples: Vec<f64> = (0..args.reps).map(|_| run()).collect();
        let (min, median) = report::min_median(&mut samples);
        println!(
            "{name:<50} {min:7.1} / {median:7.1} ns/frame (min/med)  {:6.2} M frames/s (best)",
            1e3 / min
        );
        results.push(serde_json::json!({
            "case": name, "ns_per_frame_min": min, "ns_per_frame_median": median,
            "frames_per_sec_best": 1e9 / min, "frames_per_sec_median": 1e9 / median,
        }));
    }
    let target_ok = results
        .get(1)
        .and_then(|r| r["ns_per_frame_median"].as_f64())
        .is_some_and(|ns| ns <= 250.0);
    println!(
        "target ≤ 250 ns/frame (≥ 4 M/s) for scanner + decimals: {}",
        if target_ok { "met" } else { "NOT met" }
    );
    report::save(
        "parse_frames",
        serde_json::json!({
            "benchmark": "parse_frames", "frames": data.len(), "mean_frame_bytes": mean_bytes,
            "symbols": 500, "repetitions": args.reps, "results": results,
            "target_ns_per_frame": 250, "target_met": target_ok,
        }),
    );
}

/// Both paths must agree on every frame before anything is timed.
fn verify(data: &[String]) {
    for frame in data {
        let fast = scan_frame(frame.as_bytes());
        let slow = parse_frame_serde(frame.as_bytes()).ok();
        assert!(fast.is_some(), "scanner gave up on {frame}");
        assert_eq!(fast, slow, "scanner and serde disagree on {frame}");
    }
}
