//! Store benchmark (test thread plus the store writer thread; ignored by default). Run:
//! `cargo test --release -p klagg --test store_bench -- --ignored --nocapture`.
//! Prints the writer's rows/s (closed klines through the kline channel, and REST backfills),
//! the reader's klines queries/s with latency percentiles, the planner's time and bytes/row.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use klagg::store::{Source, Store, StoreCmd, StoreCounters, WriterConfig, spawn_writer};
use klagg_shards::kline::{Interval, Scales};
use klagg_shards::protocol::{KLINE_OUT_CAPACITY, SymbolIndex};
use support::TempDir;
use support::store::{MIN, PATIENCE, T0, closed, kline};

const SYMBOLS: u32 = 200;
const LIVE_ROWS: i64 = 200_000;
const BACKFILLS: i64 = 200;
const BACKFILL_ROWS: i64 = 1000;
const QUERIES: usize = 2000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn store_throughput() {
    let dir = TempDir::new("bench");
    let store = Store::open(dir.db()).unwrap();
    let (klines, receiver) = crossbeam_channel::bounded(KLINE_OUT_CAPACITY);
    let writer = spawn_writer(store, WriterConfig::default(), receiver).unwrap();
    let scales = Scales { price: 2, qty: 3 };
    for index in 0..SYMBOLS {
        let name: Arc<str> = Arc::from(format!("SYM{index:03}USDT"));
        let cmd = StoreCmd::RegisterSymbol {
            index: SymbolIndex(index),
            name,
            scales,
        };
        writer.send(cmd, PATIENCE).unwrap();
    }
    writer.flush(PATIENCE).unwrap();

    // Live: closed 1m klines of 200 symbols, minute after minute.
    let started = Instant::now();
    for i in 0..LIVE_ROWS {
        let symbol = (i % i64::from(SYMBOLS)) as u32;
        let open = T0 + (i / i64::from(SYMBOLS)) * MIN;
        klines
            .send(closed(symbol, Interval::M1, kline(Interval::M1, open, i)))
            .unwrap();
    }
    writer.flush(PATIENCE).unwrap();
    let live = started.elapsed();
    let batches = StoreCounters::get(&writer.counters().batches);
    let max_batch_us = StoreCounters::get(&writer.counters().max_batch_us);

    // Backfill: 1000-row REST answers into the 5m interval.
    let started = Instant::now();
    for b in 0..BACKFILLS {
        let symbol = (b % i64::from(SYMBOLS)) as u32;
        let first = T0 + (b / i64::from(SYMBOLS)) * BACKFILL_ROWS * 5 * MIN;
        let rows = (0..BACKFILL_ROWS)
            .map(|i| kline(Interval::M5, first + i * 5 * MIN, i))
            .collect();
        let cmd = StoreCmd::Backfilled {
            symbol: SymbolIndex(symbol),
            interval: Interval::M5,
            klines: rows,
            source: Source::Rest,
            request: None,
        };
        writer.send(cmd, PATIENCE).unwrap();
    }
    writer.flush(PATIENCE).unwrap();
    let backfill = started.elapsed();

    let reader = writer.reader().unwrap();
    let mut latencies = Vec::with_capacity(QUERIES);
    let started = Instant::now();
    for q in 0..QUERIES {
        let symbol = format!("SYM{:03}USDT", q % SYMBOLS as usize);
        let t = Instant::now();
        let rows = reader
            .klines(&symbol, Interval::M5, None, None, Some(500))
            .unwrap();
        latencies.push(t.elapsed());
        assert_eq!(rows.len(), 500);
    }
    let query_500 = started.elapsed();
    latencies.sort();
    let started = Instant::now();
    for q in 0..QUERIES / 4 {
        let symbol = format!("SYM{:03}USDT", q % SYMBOLS as usize);
        let rows = reader
            .klines(&symbol, Interval::M1, Some(T0), None, Some(1500))
            .unwrap();
        assert_eq!(rows.len(), 1000);
    }
    let query_1000 = started.elapsed();
    let started = Instant::now();
    let plans = 200u32;
    for q in 0..plans {
        let symbol = format!("SYM{:03}USDT", q % SYMBOLS);
        let plan = reader
            .plan_history(&symbol, Interval::M1, 1000, T0 + 1000 * MIN + 1)
            .unwrap();
        assert!(plan.is_complete());
    }
    let planning = started.elapsed();
    let report = writer.shutdown(PATIENCE).unwrap();
    let rows_total = (LIVE_ROWS + BACKFILLS * BACKFILL_ROWS) as f64;
    let bytes = std::fs::metadata(dir.db()).unwrap().len();

    println!(
        "{{\"live_rows_per_s\": {:.0}, \"live_batches\": {batches}, \"max_batch_ms\": {:.1}, \
         \"backfill_rows_per_s\": {:.0}, \"klines500_queries_per_s\": {:.0}, \
         \"klines500_p50_us\": {}, \"klines500_p99_us\": {}, \"klines1000_queries_per_s\": {:.0}, \
         \"plan_1000_bars_us\": {:.0}, \"db_bytes_per_row\": {:.0}, \"rows_written\": {}}}",
        LIVE_ROWS as f64 / live.as_secs_f64(),
        max_batch_us as f64 / 1000.0,
        (BACKFILLS * BACKFILL_ROWS) as f64 / backfill.as_secs_f64(),
        QUERIES as f64 / query_500.as_secs_f64(),
        percentile(&latencies, 0.5).as_micros(),
        percentile(&latencies, 0.99).as_micros(),
        (QUERIES / 4) as f64 / query_1000.as_secs_f64(),
        planning.as_secs_f64() * 1e6 / f64::from(plans),
        bytes as f64 / rows_total,
        report.rows_written,
    );
    assert_eq!(report.rows_lost, 0);
}
