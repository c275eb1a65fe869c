//! The engine (`klagg::app::start_app`) against the in-process simulator over real loopback
//! sockets (test threads): the simulator, the engine's flags and start, its clean stop, and
//! what its status says about a symbol.

use std::time::{Duration, Instant};

use klagg::activation_dispatcher::DispatchState;
use klagg::app::{AppExtensions, RunningApp, start_app};
use klagg::clock::ProcessStart;
use klagg::config::{Config, RunArgs};
use klagg_bench::sim::{Sim, SimConfig, SimHandle};

/// A simulator on an ephemeral loopback port with `symbols` symbols, `trade_rate` trades/s in
/// all and `seed`; more with the `SimConfig::with_*` builders.
pub fn sim_config(symbols: usize, trade_rate: u64, seed: u64) -> SimConfig {
    SimConfig::default()
        .with_listen("127.0.0.1:0".to_string())
        .with_symbols(symbols)
        .with_trade_rate(trade_rate)
        .with_seed(seed)
}

/// Start the simulator.
pub fn start_sim(config: SimConfig) -> SimHandle {
    Sim::start(config).expect("simulator starts")
}

/// `klagg run` flags for the engine on `sim`: the API on an ephemeral port, `shards` shard
/// threads, `intervals`, and 1s klines over REST (the simulator serves them).
pub fn args(sim: &SimHandle, shards: usize, intervals: &str) -> RunArgs {
    RunArgs {
        rest_url: Some(sim.rest_url()),
        ws_url: Some(sim.ws_url()),
        listen: Some("127.0.0.1:0".into()),
        shards: Some(shards),
        intervals: Some(intervals.into()),
        rest_1s: Some(true),
        ..RunArgs::default()
    }
}

/// Resolve `args` with the shards unpinned, let `tweak` adjust the configuration and start the
/// engine with `extensions`. `KLAGG_TEST_LOG=1` shows the engine's log.
pub fn start(
    args: RunArgs,
    tweak: impl FnOnce(&mut Config),
    extensions: AppExtensions,
) -> RunningApp {
    let mut config = args.resolve(&[0, 1]).expect("valid config");
    config.shard_cores = vec![None; config.shard_cores.len()];
    tweak(&mut config);
    let handle = std::env::var_os("KLAGG_TEST_LOG")
        .map(|_| klagg::log::build(klagg::config::LogFormat::Term, slog::Level::Debug));
    let log = handle
        .as_ref()
        .map_or_else(klagg::log::discard, |h| h.root.clone());
    let app = start_app(config, ProcessStart::now(), &log, extensions).expect("engine starts");
    std::mem::forget(handle);
    app
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

/// A symbol's activation state, once it is registered.
pub fn state_of(app: &RunningApp, name: &str) -> Option<DispatchState> {
    let index = app.registry.index(name)?;
    Some(app.status.symbol(index).state)
}

/// Epoch ms of `name`'s (latest) activation.
pub fn activated_ms(app: &RunningApp, name: &str) -> i64 {
    let index = app.registry.index(name).expect("registered");
    let since_start = app.status.symbol(index).activated_ms.expect("activated");
    app.status.start.started_at_ms + since_start
}

/// Trades applied by every shard so far.
pub fn trades_applied(app: &RunningApp) -> u64 {
    app.shards
        .iter()
        .map(|h| h.counters.snapshot().trades_applied)
        .sum()
}
