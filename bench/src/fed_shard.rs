//! A real shard fed by the simulator's firehose (the caller's thread sets it up; the shard runs
//! on its own): every symbol activated with an empty package, then all subscribed in one
//! burst, so that the first `SUBSCRIBE` carries every stream — the firehose feeds only the
//! streams it finds subscribed when it starts. Used by the shard benchmarks and the API's
//! fan-out benchmark.

use std::time::Duration;

use crossbeam_channel::bounded;
use klagg_shards::kline::Interval;
use klagg_shards::protocol::{
    ActivationId, InitialSymbolData, SHARD_REPORT_CAPACITY, ShardCmd, ShardId, SymbolSpec,
    WorkerCmd, WsCmd,
};
use klagg_shards::shard::{KlineSink, ShardConfig, ShardOutputs, ShardThread, spawn_shard};

/// Longest wait for one activation's ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// An activation package with no history for `intervals` intervals.
pub fn empty_package(intervals: usize) -> InitialSymbolData {
    InitialSymbolData {
        klines: vec![None; intervals],
        taken_at_ms: 0,
        last_agg_id: None,
    }
}

/// Spawn shard `id` on `ws_base` (pinned to `core` when given) aggregating `intervals`, its
/// klines into `sink`; activate `specs`, then subscribe them all.
///
/// # Errors
/// The shard does not start, its inbox is full, or an activation is not acked in time.
pub fn spawn_fed_shard(
    id: u16,
    ws_base: &str,
    intervals: &[Interval],
    specs: &[SymbolSpec],
    sink: KlineSink,
    core: Option<usize>,
) -> Result<ShardThread, String> {
    let (reports_tx, _reports_rx) = bounded(SHARD_REPORT_CAPACITY);
    let mut config = ShardConfig::new(ShardId(id), intervals.to_vec(), ws_base);
    config.core = core;
    let outputs = ShardOutputs {
        klines: vec![sink],
        reports: reports_tx,
    };
    let shard = spawn_shard(config, outputs).map_err(|e| e.to_string())?;
    let send = |cmd| shard.handle.try_send(cmd).map_err(|_| "shard inbox full");
    let (ack_tx, ack_rx) = bounded(specs.len());
    for spec in specs {
        send(ShardCmd::Worker(WorkerCmd::ActivateSymbol {
            symbol: spec.clone(),
            initial_data: empty_package(intervals.len()),
            activation: ActivationId(1),
            ack: ack_tx.clone(),
        }))?;
        ack_rx.recv_timeout(ACK_TIMEOUT).map_err(|_| "no ack")?;
    }
    for spec in specs {
        send(ShardCmd::Ws(WsCmd::SubscribeOne(spec.index)))?;
    }
    Ok(shard)
}
