//! Benchmark (benchmark thread, one core): the kline core applying a realistic stream — 600
//! symbols, heavy-tailed activity, the default 7 intervals — in trades/s and ns/trade, beside the
//! cost of merely streaming the same trades. Run: `cargo bench -p klagg-bench --bench kline_core`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use klagg_bench::report::{Timing, save};
use klagg_bench::workload::{SlotTrade, StreamShape, generate};
use klagg_shards::kline::{BookEvent, Interval, Kline, KlineBook};
use serde_json::json;

const SYMBOLS: u32 = 600;
const TRADES: usize = 4_000_000;
const REPETITIONS: usize = 7;
/// Events are drained as often as a shard loop iteration would.
const DRAIN_EVERY: usize = 256;
const DEFAULT_INTERVALS: [Interval; 7] = [
    Interval::M1,
    Interval::M5,
    Interval::M30,
    Interval::H1,
    Interval::H4,
    Interval::D1,
    Interval::W1,
];

fn baseline(trades: &[SlotTrade]) -> u64 {
    trades.iter().fold(0u64, |sum, t| {
        sum.wrapping_add(t.trade.qty as u64 ^ u64::from(t.slot))
    })
}

fn run_book(trades: &[SlotTrade], intervals: &[Interval]) -> (usize, u64) {
    let mut book = KlineBook::new(intervals, SYMBOLS as usize);
    for slot in 0..SYMBOLS {
        book.init_slot(slot, &vec![None; intervals.len()]).unwrap();
    }
    let mut events: Vec<BookEvent> = Vec::with_capacity(4096);
    let mut closed = 0usize;
    for chunk in trades.chunks(DRAIN_EVERY) {
        for t in chunk {
            let _ = book.apply(t.slot, &t.trade);
        }
        book.take_events(&mut events);
        closed += events
            .iter()
            .filter(|e| matches!(e, BookEvent::Closed { .. }))
            .count();
        events.clear();
    }
    (closed, book.stats().trades_applied)
}

fn time<F: FnMut() -> u64>(mut work: F) -> Vec<Duration> {
    black_box(work());
    (0..REPETITIONS)
        .map(|_| {
            let start = Instant::now();
            black_box(work());
            start.elapsed()
        })
        .collect()
}

fn regime(name: &str, mean_step_us: u64) -> serde_json::Value {
    let shape = StreamShape {
        symbols: SYMBOLS,
        trades: TRADES,
        mean_step_us,
        start_ms: 1_767_225_600_000,
        seed: 42,
    };
    let trades = generate(shape);
    let base = Timing::per_op(&time(|| baseline(&trades)), TRADES);
    let (closed, applied) = run_book(&trades, &DEFAULT_INTERVALS);
    assert_eq!(applied as usize, TRADES);
    let book = Timing::per_op(&time(|| run_book(&trades, &DEFAULT_INTERVALS).1), TRADES);
    let one = Timing::per_op(&time(|| run_book(&trades, &[Interval::M1]).1), TRADES);
    println!(
        "{name:>14}: kline core 7 intervals {:.1} / {:.1} ns/trade (min/median) = {:.1} M trades/s; \
         1 interval {:.1} ns; stream-only baseline {:.1} ns; {closed} klines closed",
        book.min_ns,
        book.median_ns,
        book.best_rate() / 1e6,
        one.min_ns,
        base.min_ns
    );
    json!({
        "regime": name, "mean_step_us": mean_step_us, "trades": TRADES, "klines_closed": closed,
        "seven_intervals": book.to_json(), "one_interval": one.to_json(), "stream_baseline": base.to_json(),
    })
}

fn main() {
    println!(
        "kline core: {SYMBOLS} symbols, intervals {}, {TRADES} trades, {REPETITIONS} runs, kline {} bytes",
        DEFAULT_INTERVALS.map(|i| i.as_str()).join(","),
        std::mem::size_of::<Kline>()
    );
    let regimes = vec![regime("2k trades/s", 500), regime("rollover-heavy", 50_000)];
    let result =
        json!({ "benchmark": "kline_core", "target_ns_per_trade": 33.0, "regimes": regimes });
    save("kline_core", result);
}
