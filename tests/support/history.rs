//! The store/history end-to-end tests (test threads): the simulator with a past, the engine
//! with a kline store, reading the store, and comparing stored klines with the simulator's
//! field for field.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use klagg::app::{AppExtensions, RunningApp};
use klagg::clock::epoch_ms;
use klagg::config::{Config, RunArgs};
use klagg::store::{HistoryProgress, Reader, Source, Store, StoredKline};
use klagg_bench::sim::SimHandle;
use klagg_shards::kline::{Interval, Kline, Scales};

use super::{engine, klines};

/// Generous bound for waits (2 noisy cores, debug build).
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A simulator with `symbols` symbols, `trade_rate` trades/s in all and `history` of trades
/// before its start.
pub fn start_sim(symbols: usize, trade_rate: u64, seed: u64, history: Duration) -> SimHandle {
    engine::start_sim(engine::sim_config(symbols, trade_rate, seed).with_history(history))
}

/// The engine on `sim` with a store at `db`, `intervals`, `--history-bars bars`; `tweak`
/// adjusts the resolved configuration.
pub fn start_engine(
    sim: &SimHandle,
    db: &Path,
    intervals: &str,
    bars: u32,
    tweak: impl FnOnce(&mut Config),
) -> RunningApp {
    start_engine_with(sim, db, intervals, bars, tweak, Vec::new())
}

/// [`start_engine`] with listeners of the klines repairs correct.
pub fn start_engine_with(
    sim: &SimHandle,
    db: &Path,
    intervals: &str,
    bars: u32,
    tweak: impl FnOnce(&mut Config),
    corrections: Vec<crossbeam_channel::Sender<klagg_shards::protocol::KlineMsg>>,
) -> RunningApp {
    let args = RunArgs {
        history_bars: Some(bars),
        exchange_info_refresh: Some("60s".into()),
        ..engine::args(sim, 1, intervals)
    };
    let extensions = AppExtensions {
        store: Some(Store::open(db).expect("store opens")),
        correction_sinks: corrections,
        ..AppExtensions::default()
    };
    engine::start(args, tweak, extensions)
}

/// The engine's history progress counters.
pub fn progress(app: &RunningApp) -> &HistoryProgress {
    &app.store.as_ref().expect("a store is attached").progress
}

pub fn get(counter: &AtomicU64) -> u64 {
    HistoryProgress::get(counter)
}

/// Every stored kline of `symbol` and `interval` (ascending).
pub fn stored(db: &Path, symbol: &str, interval: Interval) -> Vec<StoredKline> {
    let reader = Reader::open(db).expect("reader");
    let mut out: Vec<StoredKline> = Vec::new();
    let mut from = i64::MIN;
    loop {
        let batch = reader
            .stored_klines(symbol, interval, Some(from), None, Some(1500))
            .expect("stored klines");
        let full = batch.len() == 1500;
        if let Some(last) = batch.last() {
            from = last.kline.open_time_ms + 1;
        }
        out.extend(batch);
        if !full {
            return out;
        }
    }
}

/// A symbol's decimal places as registered in the store.
pub fn scales(db: &Path, symbol: &str) -> Scales {
    let reader = Reader::open(db).expect("reader");
    reader.scales(symbol).unwrap().expect("registered")
}

/// The simulator's klines of `name` opening in `[from_ms, to_ms]`.
pub fn truth(
    sim: &SimHandle,
    name: &str,
    interval: Interval,
    from_ms: i64,
    to_ms: i64,
) -> Vec<Kline> {
    let scales = klines::sim_scales(sim, name);
    klines::sim_klines(sim, name, interval, (from_ms, to_ms), scales)
}

/// A stored kline equals the simulator's: every field, except the trade ids of rows fetched
/// over REST (Binance's REST klines carry none) and the first trade id of a live kline that
/// started from an initial package.
pub fn same(row: &StoredKline, truth: &Kline) -> bool {
    let mut mine = row.kline;
    if matches!(row.source, Source::Rest | Source::Repair) {
        mine.first_trade_id = truth.first_trade_id;
        mine.last_trade_id = truth.last_trade_id;
    }
    // A live kline started from an initial package (REST) has no first trade id.
    if mine.first_trade_id == -1 {
        mine.first_trade_id = truth.first_trade_id;
    }
    &mine == truth
}

/// The stored closed klines of `name` opening in `[from_ms, to_ms]` that differ from the
/// simulator's or are missing, as (open time, what is stored) for the message.
pub fn differences(
    db: &Path,
    sim: &SimHandle,
    name: &str,
    interval: Interval,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(i64, Option<StoredKline>)> {
    let rows: Vec<StoredKline> = stored(db, name, interval)
        .into_iter()
        .filter(|r| r.closed && from_ms <= r.kline.open_time_ms && r.kline.open_time_ms <= to_ms)
        .collect();
    let mut out = Vec::new();
    for want in truth(sim, name, interval, from_ms, to_ms) {
        let row = rows
            .iter()
            .find(|r| r.kline.open_time_ms == want.open_time_ms);
        if !row.is_some_and(|r| same(r, &want)) {
            out.push((want.open_time_ms, row.copied()));
        }
    }
    out
}

/// Open times missing between the first and last stored kline (a hole).
pub fn holes(rows: &[StoredKline], interval: Interval) -> Vec<i64> {
    let mut missing = Vec::new();
    for pair in rows.windows(2) {
        let mut open = interval.next_open(pair[0].kline.open_time_ms);
        while open < pair[1].kline.open_time_ms && missing.len() < 100 {
            missing.push(open);
            open = interval.next_open(open);
        }
    }
    missing
}

/// The open time of the period `periods` before the one containing `t_ms`.
pub fn periods_before(interval: Interval, t_ms: i64, periods: u32) -> i64 {
    (0..periods).fold(interval.open_time(t_ms), |open, _| {
        interval.open_time(open - 1)
    })
}

/// Now, epoch ms.
pub fn now_ms() -> i64 {
    epoch_ms()
}
