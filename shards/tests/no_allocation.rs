//! Test (test thread): the shard's hot path — parse a combined-stream aggTrade frame, route it
//! by symbol name, apply it to every interval, close klines on the clock, drain the events —
//! makes no heap allocation once warmed up. dhat's counting allocator counts the allocations
//! made while the measured frames are processed (one test per binary, so nothing else runs).

use std::sync::Arc;

use crossbeam_channel::bounded;
use klagg_shards::kline::{Interval, Scales};
use klagg_shards::parse::{Frame, parse_frame};
use klagg_shards::protocol::{
    ActivationId, InitialSymbolData, ShardId, SymbolIndex, SymbolSpec, WorkerCmd,
};
use klagg_shards::worker::{Worker, WorkerConfig, WorkerEvent};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Heap blocks allocated since the profiler started (any thread; this binary has one test).
fn allocations() -> u64 {
    dhat::HeapStats::get().total_blocks
}

const SYMBOLS: usize = 50;
const INTERVALS: [Interval; 7] = [
    Interval::S1,
    Interval::M1,
    Interval::M5,
    Interval::M15,
    Interval::H1,
    Interval::H4,
    Interval::D1,
];
/// 2024-01-01 00:00:00 UTC.
const T0: i64 = 1_704_067_200_000;

fn name(symbol: usize) -> String {
    format!("S{symbol:03}USDT")
}

/// `count` frames spread over the symbols, 25 ms apart, so that seconds, minutes, 5- and
/// 15-minute periods roll over while they are applied (120 000 frames: 50 minutes).
fn frames(count: usize) -> Vec<String> {
    (0..count)
        .map(|k| {
            let symbol = (k * 7) % SYMBOLS;
            let id = k / SYMBOLS + 1;
            let t = T0 + k as i64 * 25;
            let price = 100 + k % 13;
            format!(
                r#"{{"stream":"{lower}@aggTrade","data":{{"e":"aggTrade","E":{e},"a":{id},"s":"{upper}","p":"{price}.25","q":"1.{q:03}","f":{f},"l":{f},"T":{t},"m":{m}}}}}"#,
                lower = name(symbol).to_lowercase(),
                upper = name(symbol),
                e = t + 2,
                q = k % 1000,
                f = id * 3,
                m = k % 3 == 0,
            )
        })
        .collect()
}

fn worker() -> Worker {
    let mut worker = Worker::new(&WorkerConfig::new(ShardId(0), INTERVALS.to_vec(), 64));
    let (ack_tx, ack_rx) = bounded(SYMBOLS);
    for symbol in 0..SYMBOLS {
        worker.process_command(WorkerCmd::ActivateSymbol {
            symbol: SymbolSpec {
                index: SymbolIndex(symbol as u32),
                name: Arc::from(name(symbol).as_str()),
                scales: Scales { price: 2, qty: 3 },
            },
            initial_data: InitialSymbolData {
                klines: vec![None; INTERVALS.len()],
                taken_at_ms: T0,
                last_agg_id: None,
            },
            activation: ActivationId(1),
            ack: ack_tx.clone(),
        });
    }
    assert_eq!(ack_rx.try_iter().count(), SYMBOLS, "every symbol acked");
    worker
}

/// Process `frames` as the shard loop does; returns the trades applied.
fn run(worker: &mut Worker, frames: &[String], events: &mut Vec<WorkerEvent>) -> usize {
    let mut applied = 0;
    for (k, frame) in frames.iter().enumerate() {
        let Ok(Frame::Trade(raw)) = parse_frame(frame.as_bytes()) else {
            panic!("a trade frame: {frame}");
        };
        worker.process_raw_trade(&raw).expect("routed and parsed");
        applied += 1;
        if k % 256 == 255 {
            worker.process_clock_tick(raw.trade_time_ms);
            worker.take_events(events);
            events.clear();
        }
    }
    applied
}

#[test]
fn the_hot_path_does_not_allocate_once_warm() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let all = frames(120_000);
    // Warm up over the first 1000 s (every interval up to 15m has rolled over once, so the
    // event buffers have reached their size), then measure the next 2000 s.
    let (warm, measured) = all.split_at(40_000);
    let mut worker = worker();
    let mut events = Vec::new();
    run(&mut worker, warm, &mut events);
    let before = allocations();
    let applied = run(&mut worker, measured, &mut events);
    let made = allocations() - before;
    assert_eq!(applied, measured.len());
    assert_eq!(made, 0, "{made} allocations for {applied} frames");
    let closed = worker.book().stats();
    assert!(closed.trades_applied as usize == all.len(), "{closed:?}");
}
