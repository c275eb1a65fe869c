//! The store's integration tests (test threads): kline and command builders, a writer with a
//! kline channel on a fresh store, and polling with a generous bound.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use klagg::store::{Store, StoreCmd, WriterConfig, WriterHandle, spawn_writer};
use klagg_shards::kline::{Interval, Kline, Scales};
use klagg_shards::protocol::{KlineMsg, SymbolIndex};

use super::TempDir;

pub const MIN: i64 = 60_000;
/// 2026-01-01 00:00:00 UTC.
pub const T0: i64 = 1_767_225_600_000;
/// Generous bound for anything that should take milliseconds (2 noisy cores).
pub const PATIENCE: Duration = Duration::from_secs(20);

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
pub fn wait_until(check: impl FnMut() -> bool) -> Option<Duration> {
    super::wait_until(PATIENCE, Duration::from_millis(5), check)
}
