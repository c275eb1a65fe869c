//! Helpers of the store/history end-to-end tests (test threads only): the simulator, the engine
//! (`start_app` with a kline store), reading the store, and comparing stored klines with the
//! simulator's field for field.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use klagg::app::{AppExtensions, RunningApp, start_app};
use klagg::clock::{ProcessStart, epoch_ms};
use klagg::config::{Config, RunArgs};
use klagg::store::{HistoryProgress, Reader, Source, Store, StoredKline};
use klagg_bench::sim::{RefKline, Sim, SimConfig, SimHandle};
use klagg_shards::kline::{Interval, Kline, Scales, parse_scaled};

/// Generous bound for waits (2 noisy cores, debug build).
pub const PATIENCE: Duration = Duration::from_secs(90);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "klagg-history-it-{tag}-{}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("klagg.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A simulator with `symbols` symbols, `trade_rate` trades/s in all and `history` of trades
/// before its start.
pub fn start_sim(symbols: usize, trade_rate: u64, seed: u64, history: Duration) -> SimHandle {
    let config = SimConfig::default()
        .with_listen("127.0.0.1:0".to_string())
        .with_symbols(symbols)
        .with_trade_rate(trade_rate)
        .with_seed(seed)
        .with_history(history);
    Sim::start(config).expect("simulator starts")
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
        rest_url: Some(sim.rest_url()),
        ws_url: Some(sim.ws_url()),
        listen: Some("127.0.0.1:0".into()),
        shards: Some(1),
        intervals: Some(intervals.into()),
        history_bars: Some(bars),
        rest_1s: Some(true),
        exchange_info_refresh: Some("60s".into()),
        ..RunArgs::default()
    };
    let mut config = args.resolve(2).expect("valid config");
    config.shard_cores = vec![None];
    tweak(&mut config);
    let store = Store::open(db).expect("store opens");
    let extensions = AppExtensions {
        store: Some(store),
        correction_sinks: corrections,
        ..AppExtensions::default()
    };
    // KLAGG_TEST_LOG=1 shows the engine's log.
    let handle = std::env::var_os("KLAGG_TEST_LOG")
        .map(|_| klagg::log::build(klagg::config::LogFormat::Term, slog::Level::Debug));
    let log = handle
        .as_ref()
        .map_or_else(klagg::log::discard, |h| h.root.clone());
    let app = start_app(config, ProcessStart::now(), &log, extensions).expect("engine starts");
    std::mem::forget(handle);
    app
}

pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The engine's history progress counters.
pub fn progress(app: &RunningApp) -> &HistoryProgress {
    &app.store.as_ref().expect("a store is attached").progress
}

pub fn get(counter: &AtomicU64) -> u64 {
    HistoryProgress::get(counter)
}

/// Stop the engine; a clean shutdown stays within 5 s.
pub fn stop(app: RunningApp) {
    let started = Instant::now();
    app.stop(klagg::shutdown::StopReason::RunFor);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "clean shutdown took {took:?}"
    );
}

/// Epoch ms of `name`'s first activation in `app`.
pub fn activated_ms(app: &RunningApp, name: &str) -> i64 {
    let index = app.registry.index(name).expect("registered");
    let since_start = app.status.symbol(index).activated_ms.expect("activated");
    app.status.start.started_at_ms + since_start
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

/// A simulator kline at the symbol's scales.
pub fn to_kline(rest: &RefKline, scales: Scales) -> Kline {
    let price =
        |d: &dyn std::fmt::Display| parse_scaled(d.to_string().as_bytes(), scales.price).unwrap();
    let big = |d: &dyn std::fmt::Display, scale: u8| {
        let text = d.to_string();
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let fraction = fraction.trim_end_matches('0');
        format!("{whole}{fraction:0<width$}", width = usize::from(scale))
            .parse::<i128>()
            .unwrap()
    };
    Kline {
        open_time_ms: rest.open_time,
        close_time_ms: rest.close_time,
        open: price(&rest.open),
        high: price(&rest.high),
        low: price(&rest.low),
        close: price(&rest.close),
        volume: big(&rest.volume, scales.qty),
        quote_volume: big(&rest.quote_volume, scales.quote()),
        taker_buy_volume: big(&rest.taker_buy_volume, scales.qty),
        taker_buy_quote_volume: big(&rest.taker_buy_quote_volume, scales.quote()),
        trade_count: rest.trades,
        first_trade_id: rest.first_id,
        last_trade_id: rest.last_id,
    }
}

/// The simulator's klines of `name` opening in `[from_ms, to_ms]`.
pub fn truth(
    sim: &SimHandle,
    name: &str,
    interval: Interval,
    from_ms: i64,
    to_ms: i64,
) -> Vec<Kline> {
    let sim_interval = klagg_bench::sim::Interval::parse(interval.as_str()).unwrap();
    let scales = sim
        .symbols()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| Scales {
            price: u8::try_from(s.price_dp).unwrap(),
            qty: u8::try_from(s.qty_dp).unwrap(),
        })
        .expect("a simulator symbol");
    sim.klines(name, sim_interval, from_ms, to_ms)
        .iter()
        .map(|k| to_kline(k, scales))
        .collect()
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
