//! Benchmark support (main thread): a real shard against the simulator's firehose
//! ([`klagg_bench::fed_shard`]) with its kline output at hand, and the benchmarks' intervals.

#![allow(dead_code)]

use crossbeam_channel::{Receiver, bounded};
use klagg_bench::fed_shard::spawn_fed_shard;
use klagg_shards::kline::Interval;
use klagg_shards::protocol::{
    InitialSymbolData, KLINE_OUT_CAPACITY, KlineMsg, ShardCmd, ShardCounters, ShardHandle,
    SymbolSpec,
};
use klagg_shards::shard::{KlineSink, ShardThread};

/// The engine's 7 default intervals.
pub const INTERVALS: [Interval; 7] = [
    Interval::S1,
    Interval::M1,
    Interval::M5,
    Interval::M15,
    Interval::H1,
    Interval::H4,
    Interval::D1,
];

/// An activation package with no history.
pub fn empty_package() -> InitialSymbolData {
    klagg_bench::fed_shard::empty_package(INTERVALS.len())
}

/// A running shard and the receiving end of its kline output.
pub struct FedShard {
    pub thread: ShardThread,
    pub klines: Receiver<KlineMsg>,
}

impl FedShard {
    /// Trades the shard has applied so far.
    pub fn applied(&self) -> u64 {
        applied(&self.thread.handle)
    }

    /// Take every waiting kline message, marking the symbols they are for in `fed`.
    pub fn drain(&self, fed: &mut [bool]) {
        while let Ok(msg) = self.klines.try_recv() {
            if let Some(flag) = fed.get_mut(msg.symbol().0 as usize) {
                *flag = true;
            }
        }
    }

    /// Ask the shard to stop and wait for its thread.
    pub fn stop(self) {
        self.thread
            .handle
            .try_send(ShardCmd::Shutdown)
            .expect("inbox");
        while self.klines.try_recv().is_ok() {}
        let _ = self.thread.join.join();
    }
}

/// Trades applied by the shard behind `handle`.
pub fn applied(handle: &ShardHandle) -> u64 {
    ShardCounters::get(&handle.counters.trades_applied)
}

/// Spawn shard `id` (pinned to `core` when given) on `ws_base`, activate `specs` and
/// subscribe them all.
pub fn start(id: u16, ws_base: &str, specs: &[SymbolSpec], core: Option<usize>) -> FedShard {
    let (tx, klines) = bounded(KLINE_OUT_CAPACITY);
    let sink = KlineSink { tx, updates: true };
    let thread = spawn_fed_shard(id, ws_base, &INTERVALS, specs, sink, core).expect("shard fed");
    FedShard { thread, klines }
}
