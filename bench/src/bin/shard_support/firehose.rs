//! Benchmark support (main thread): start a real shard against the simulator's firehose —
//! activate its symbols with empty packages, then subscribe them all in one burst so that
//! the first `SUBSCRIBE` carries every stream (the firehose feeds only the streams it finds
//! subscribed when it starts).

#![allow(dead_code)]

use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};
use klagg_shards::kline::Interval;
use klagg_shards::protocol::{
    ActivationId, InitialSymbolData, KLINE_OUT_CAPACITY, KlineMsg, SHARD_REPORT_CAPACITY, ShardCmd,
    ShardCounters, ShardHandle, ShardId, SymbolSpec, WorkerCmd, WsCmd,
};
use klagg_shards::shard::{KlineSink, ShardConfig, ShardOutputs, ShardThread, spawn_shard};

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

/// Longest wait for one activation's ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// An activation package with no history.
pub fn empty_package() -> InitialSymbolData {
    InitialSymbolData {
        klines: vec![None; INTERVALS.len()],
        taken_at_ms: 0,
        last_agg_id: None,
    }
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
            let symbol = match msg {
                KlineMsg::Update { symbol, .. } | KlineMsg::Closed { symbol, .. } => symbol,
                _ => continue,
            };
            if let Some(flag) = fed.get_mut(symbol.0 as usize) {
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
    let (reports_tx, _reports_rx) = bounded(SHARD_REPORT_CAPACITY);
    let mut config = ShardConfig::new(ShardId(id), INTERVALS.to_vec(), ws_base);
    config.core = core;
    let outputs = ShardOutputs {
        klines: vec![KlineSink { tx, updates: true }],
        reports: reports_tx,
    };
    let thread = spawn_shard(config, outputs).expect("shard starts");
    let (ack_tx, ack_rx) = bounded(specs.len());
    for spec in specs {
        let cmd = WorkerCmd::ActivateSymbol {
            symbol: spec.clone(),
            initial_data: empty_package(),
            activation: ActivationId(1),
            ack: ack_tx.clone(),
        };
        thread
            .handle
            .try_send(ShardCmd::Worker(cmd))
            .expect("inbox");
        ack_rx.recv_timeout(ACK_TIMEOUT).expect("ack");
    }
    for spec in specs {
        let cmd = ShardCmd::Ws(WsCmd::SubscribeOne(spec.index));
        thread.handle.try_send(cmd).expect("inbox");
    }
    FedShard { thread, klines }
}
