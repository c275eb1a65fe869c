//! The engine (`klagg::app::start_app`: shards, dispatcher, SymbolManager, watchdog, API)
//! against the in-process simulator over real loopback sockets: startup of 300 symbols,
//! listings during and after startup, a delisting, and resyncs after lost trades and dropped
//! connections with exact klines afterwards. Time bounds are generous (2 noisy cores).

mod support;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};
use klagg::activation_dispatcher::DispatchState;
use klagg::app::{AppExtensions, RunningApp};
use klagg::clock::epoch_ms;
use klagg::config::RunArgs;
use klagg::gateway::{GatewayContext, HttpRequest, HttpResponse, Router};
use klagg::status::StatusBoard;
use klagg_bench::sim::SimHandle;
use klagg_shards::kline::Interval;
use klagg_shards::protocol::{KlineMsg, SymbolIndex, SymbolSpec};
use klagg_shards::shard::KlineSink;
use support::engine::{self, activated_ms, state_of, stop};
use support::klines::{self, Finals};
use support::{get_json, get_text, wait_for};

const PATIENCE: Duration = Duration::from_secs(60);

fn start_sim(symbols: usize, trade_rate: u64) -> SimHandle {
    let config = engine::sim_config(symbols, trade_rate, 7)
        .with_listing_delay(Duration::from_millis(300))
        .with_settle_delay(Duration::from_millis(500));
    engine::start_sim(config)
}

/// Start the engine on `sim` with `intervals`; returns it and a receiver of every kline.
fn start_engine(
    sim: &SimHandle,
    intervals: &str,
    refresh: &str,
) -> (RunningApp, Receiver<KlineMsg>, Receiver<SymbolSpec>) {
    let args = RunArgs {
        exchange_info_refresh: Some(refresh.into()),
        ..engine::args(sim, 2, intervals)
    };
    let (tx, rx) = bounded(1 << 20);
    let (spec_tx, spec_rx) = bounded(4096);
    let extensions = AppExtensions {
        kline_sinks: vec![KlineSink { tx, updates: false }],
        symbol_listeners: vec![spec_tx],
        router: Router::new().get("/test/state", echo_state),
        gateway_state: vec![Arc::new(7u32)],
        ..AppExtensions::default()
    };
    (engine::start(args, |_| {}, extensions), rx, spec_rx)
}

/// A route added by another component, reading its own state from the context.
fn echo_state(ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    let value = ctx.state::<u32>().copied().unwrap_or(0);
    klagg::gateway::json_response(200, value.to_string())
}

#[test]
fn startup_of_300_symbols_serves_first_and_activates_all() {
    let sim = start_sim(300, 300);
    let (app, _klines, specs) = start_engine(&sim, "1m,5m,30m,1h,4h,1d,1w", "60s");
    let status = app.status.clone();
    let early = get_json(&format!("http://{}/api/v1/status", app.listen));
    assert!(early["started_at_ms"].as_i64().unwrap() > 0);
    wait_for("all 300 symbols active", PATIENCE, || {
        status.all_active_ms().is_some()
    });
    assert_eq!(StatusBoard::get(&status.symbols_active), 300);
    assert_eq!(StatusBoard::get(&status.symbols_failed), 0);
    // Every symbol was announced (name and scales) before its activation.
    let announced: Vec<SymbolSpec> = specs.try_iter().collect();
    assert_eq!(announced.len(), 300);
    assert!(
        announced
            .iter()
            .all(|s| app.registry.spec(s.index).as_ref() == Some(s))
    );
    let (first, all) = (
        status.first_active_ms().unwrap(),
        status.all_active_ms().unwrap(),
    );
    assert!(first <= all);
    // Two weight-1 requests per symbol for the default intervals.
    assert_eq!(StatusBoard::get(&status.package_weight), 600);
    let doc = get_json(&format!("http://{}/api/v1/status", app.listen));
    assert_eq!(doc["symbols_active"], 300);
    assert_eq!(doc["symbols"].as_array().unwrap().len(), 300);
    assert!(
        doc["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "active" && s["shard"].is_u64())
    );
    assert_eq!(doc["shards"].as_array().unwrap().len(), 2);
    let added = get_text(&format!("http://{}/test/state", app.listen));
    assert_eq!(added, "7");
    let health = ureq::get(format!("http://{}/health", app.listen))
        .call()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let metrics = get_text(&format!("http://{}/metrics", app.listen));
    assert!(
        metrics.contains("klagg_symbols{state=\"active\"} 300"),
        "{metrics}"
    );
    assert!(metrics.contains("klagg_shard_trades_total{shard=\"1\"}"));
    // Balanced by expected trades, every shard got symbols.
    let per_shard = doc["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbols_active"].as_u64().unwrap());
    assert!(
        per_shard.clone().all(|n| n > 0),
        "{:?}",
        per_shard.collect::<Vec<_>>()
    );
    stop(app);
    sim.shutdown();
}

/// Epoch ms of the first trade of `name` (waits for it).
fn first_trade_ms(sim: &SimHandle, name: &str) -> i64 {
    let mut first = None;
    wait_for(&format!("first trade of {name}"), PATIENCE, || {
        first = sim.trades(name).first().map(|t| t.time_ms);
        first.is_some()
    });
    first.unwrap()
}

#[test]
fn listings_during_and_after_startup_go_live_quickly() {
    let sim = start_sim(60, 400);
    let (app, _klines, _specs) = start_engine(&sim, "1m,5m,1h", "60s");
    sim.list_symbol("EARLYUSDT").unwrap();
    wait_for("startup done", PATIENCE, || {
        app.status.all_active_ms().is_some() || StatusBoard::get(&app.status.symbols_active) >= 60
    });
    wait_for("early listing active", PATIENCE, || {
        state_of(&app, "EARLYUSDT") == Some(DispatchState::Active)
    });
    let early_lag = activated_ms(&app, "EARLYUSDT") - first_trade_ms(&sim, "EARLYUSDT");
    sim.list_symbol("LATEUSDT").unwrap();
    wait_for("late listing active", PATIENCE, || {
        state_of(&app, "LATEUSDT") == Some(DispatchState::Active)
    });
    let late_lag = activated_ms(&app, "LATEUSDT") - first_trade_ms(&sim, "LATEUSDT");
    eprintln!(
        "listing → active after first trade: during startup {early_lag} ms, after {late_lag} ms"
    );
    assert!(early_lag <= 3_000, "early listing took {early_lag} ms");
    assert!(late_lag <= 3_000, "late listing took {late_lag} ms");
    stop(app);
    sim.shutdown();
}

#[test]
fn a_delisted_symbol_is_deactivated() {
    let sim = start_sim(20, 200);
    let (app, _klines, _specs) = start_engine(&sim, "1m", "1s");
    wait_for("all active", PATIENCE, || {
        app.status.all_active_ms().is_some()
    });
    let victim = sim.symbols()[5].name.clone();
    sim.delist_symbol(&victim).unwrap();
    wait_for("delisting deactivated", PATIENCE, || {
        state_of(&app, &victim) == Some(DispatchState::Deactivated)
    });
    assert_eq!(StatusBoard::get(&app.status.symbols_total), 19);
    assert!(StatusBoard::get(&app.status.delistings) >= 1);
    stop(app);
    sim.shutdown();
}

/// Every final 1s kline of `name` opening in `[from_ms, to_ms]` equals the simulator's.
fn assert_exact(
    app: &RunningApp,
    sim: &SimHandle,
    finals: &Finals,
    name: &str,
    (from_ms, to_ms): (i64, i64),
) -> usize {
    let index = app.registry.index(name).unwrap();
    let scales = app.registry.scales(index).unwrap();
    let window = (from_ms, to_ms);
    let ours = klines::recorded(finals, index, Interval::S1, window);
    let truth = klines::sim_klines(sim, name, Interval::S1, window, scales);
    klines::assert_same(
        &ours,
        &truth,
        &format!("{name}: 1s periods {from_ms}..={to_ms}"),
    );
    ours.len()
}

#[test]
fn lost_trades_and_dropped_connections_resync_to_exact_klines() {
    let sim = start_sim(6, 1_000);
    let (app, rx, _specs) = start_engine(&sim, "1s,1m", "60s");
    wait_for("all active", PATIENCE, || {
        app.status.all_active_ms().is_some()
    });
    let busy = sim.symbols()[0].name.clone();
    let mut finals = Finals::new();
    let counters = |app: &RunningApp| {
        let snapshots = app.shards.iter().map(|h| h.counters.snapshot());
        snapshots.fold((0, 0), |(t, r), c| (t + c.trades_applied, r + c.reconnects))
    };
    let packages = |app: &RunningApp| StatusBoard::get(&app.status.packages_built);
    let settled = |app: &RunningApp| {
        (0..6).all(|i| app.status.symbol(SymbolIndex(i)).state == DispatchState::Active)
            && StatusBoard::get(&app.status.backfill_queue_depth) == 0
            && StatusBoard::get(&app.status.dispatcher_in_flight) == 0
    };
    // A gap is seen against the last live trade: let some trades arrive first.
    wait_for("live trades", PATIENCE, || counters(&app).0 > 100);
    // Trades withheld from the stream: the shard sees the id jump and asks for a resync, which
    // builds a fresh package (the 7th) and activates the symbol again.
    sim.skip_agg_ids(&busy, 3).unwrap();
    wait_for("resync after a gap", PATIENCE, || {
        StatusBoard::get(&app.status.resyncs) >= 1
    });
    wait_for("resync package", PATIENCE, || packages(&app) >= 7);
    std::thread::sleep(Duration::from_millis(500));
    wait_for("re-activated", PATIENCE, || settled(&app));
    // Every connection dropped: trades published during the reconnect are missed; symbols that
    // traded meanwhile resync through the same path.
    let resyncs_before = StatusBoard::get(&app.status.resyncs);
    assert!(sim.drop_connections() >= 1);
    wait_for("reconnect", PATIENCE, || counters(&app).1 >= 1);
    let drop_resyncs = || StatusBoard::get(&app.status.resyncs) > resyncs_before;
    wait_for("resync after dropped connections", PATIENCE, drop_resyncs);
    std::thread::sleep(Duration::from_millis(1_000));
    wait_for("everything active again", PATIENCE, || settled(&app));
    let settled_at = epoch_ms();
    std::thread::sleep(Duration::from_secs(9));
    for message in rx.try_iter() {
        klines::record(&mut finals, &message);
    }
    // Compare whole seconds after the last re-activation (and before the latest closes).
    let from = (settled_at / 1_000 + 2) * 1_000;
    let to = (epoch_ms() / 1_000 - 3) * 1_000;
    let compared = assert_exact(&app, &sim, &finals, &busy, (from, to));
    assert!(compared >= 1, "compared no kline");
    stop(app);
    sim.shutdown();
}
