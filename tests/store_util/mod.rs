//! Helpers shared by the store's integration tests (test threads only): temporary directories,
//! kline builders, a writer with a kline channel, and polling with generous bounds.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};
use klagg::store::{Store, StoreCmd, WriterConfig, WriterHandle, spawn_writer};
use klagg_shards::kline::{Interval, Kline, Scales};
use klagg_shards::protocol::{KlineMsg, SymbolIndex};

pub const MIN: i64 = 60_000;
/// 2026-01-01 00:00:00 UTC.
pub const T0: i64 = 1_767_225_600_000;
/// Generous bound for anything that should take milliseconds (2 noisy cores).
pub const PATIENCE: Duration = Duration::from_secs(20);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "klagg-store-it-{tag}-{}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
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

/// A kline with trades at `open_ms`, values derived from `seed`.
pub fn kline(interval: Interval, open_ms: i64, seed: i64) -> Kline {
    Kline {
        open_time_ms: open_ms,
        close_time_ms: interval.close_time(open_ms),
        open: 1000 + seed,
        high: 1100 + seed,
        low: 900 + seed,
        close: 1050 + seed,
        volume: 5000 + i128::from(seed),
        quote_volume: 5_000_000 + i128::from(seed),
        taker_buy_volume: 2000 + i128::from(seed),
        taker_buy_quote_volume: 2_000_000 + i128::from(seed),
        trade_count: 10 + seed.unsigned_abs(),
        first_trade_id: 100 * seed,
        last_trade_id: 100 * seed + 9,
    }
}

pub fn closed(symbol: u32, interval: Interval, kline: Kline) -> KlineMsg {
    KlineMsg::Closed {
        symbol: SymbolIndex(symbol),
        interval,
        kline,
    }
}

pub fn update(symbol: u32, interval: Interval, kline: Kline) -> KlineMsg {
    KlineMsg::Update {
        symbol: SymbolIndex(symbol),
        interval,
        kline,
    }
}

pub fn register(index: u32, name: &str, scales: Scales) -> StoreCmd {
    StoreCmd::RegisterSymbol {
        index: SymbolIndex(index),
        name: Arc::from(name),
        scales,
    }
}

/// A running writer on a fresh store, with its kline channel.
pub struct Rig {
    pub dir: TempDir,
    pub writer: WriterHandle,
    pub klines: Sender<KlineMsg>,
}

impl Rig {
    pub fn new(tag: &str, config: WriterConfig, capacity: usize) -> Rig {
        let dir = TempDir::new(tag);
        let store = Store::open(dir.db()).expect("open store");
        let (klines, receiver) = bounded(capacity);
        let writer = spawn_writer(store, config, receiver).expect("spawn writer");
        Rig {
            dir,
            writer,
            klines,
        }
    }

    pub fn command(&self, cmd: StoreCmd) {
        self.writer.send(cmd, PATIENCE).expect("send command");
    }

    pub fn flush(&self) {
        self.writer.flush(PATIENCE).expect("flush");
    }
}

/// Poll `check` every 5 ms until it holds or `PATIENCE` passes; the elapsed time when it held.
pub fn wait_until(mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}
