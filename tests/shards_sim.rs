//! The data plane against the in-process simulator over real loopback sockets: exact klines,
//! subscribe-after-ack ordering, and an empty shard's heartbeat.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use klagg_bench::sim::{SimConfig, SubKind};
use klagg_shards::kline::Interval;
use klagg_shards::protocol::{
    KlineMsg, ShardCmd, ShardCounters, ShardId, ShardReport, SymbolIndex, WsCmd,
};
use klagg_shards::shard::{ShardConfig, ShardOutputs, ShardThread, spawn_shard};
use support::shards::Harness;

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[test]
fn two_shards_fifty_symbols_closed_klines_equal_rest_for_1s_and_1m() {
    let sim_config = SimConfig::default()
        .with_symbols(50)
        .with_trade_rate(400)
        .with_seed(7);
    let mut h = Harness::start(sim_config, 2, &[Interval::S1, Interval::M1], |_| {});
    h.activate_all(50);
    let first_acks = h.acked_at.clone();
    // A symbol that was never activated must not be subscribed.
    h.send(0, ShardCmd::Ws(WsCmd::SubscribeOne(SymbolIndex(999))));
    // Run across a minute boundary (and its grace) so that 1m klines close too, and for at
    // least 15 s: a trade missed between a symbol's package and its subscription shows as a
    // gap only at the symbol's next trade, so a short run can end before a quiet symbol has
    // revealed (and resynced) it.
    let now = epoch_ms();
    let mut to_boundary = 60_000 - now.rem_euclid(60_000);
    if to_boundary < 15_000 {
        to_boundary += 60_000;
    }
    let run_ms = (to_boundary + 1_500) as u64;
    h.pump(Duration::from_millis(run_ms));

    let compared = h.assert_exact();
    eprintln!("compared {compared:?}, resyncs {}", h.resyncs);
    // Only an activation's own gap (trades between the package and the subscription) may
    // need a resync, and the resync replays what arrived meanwhile: at most one per symbol.
    assert!(h.resyncs <= 50, "a resync storm: {} resyncs", h.resyncs);
    assert!(compared[&Interval::S1] >= 50 * 3, "{compared:?}");
    assert!(
        compared.get(&Interval::M1).copied().unwrap_or(0) >= 50,
        "{compared:?}"
    );

    let log = h.sim.subscription_log();
    let mut subscribed = 0;
    for event in log.iter().filter(|e| e.kind == SubKind::Subscribe) {
        for stream in &event.streams {
            let name = stream.split('@').next().expect("name").to_uppercase();
            let acked = first_acks
                .get(&name)
                .unwrap_or_else(|| panic!("{name} never acked"));
            assert!(event.at > *acked, "{stream} subscribed before its ack");
            subscribed += 1;
        }
    }
    assert!(subscribed >= 50, "{subscribed} streams subscribed");
    for (index, shard) in h.shards.iter().enumerate() {
        let counters = shard.handle.health().counters;
        assert!(counters.trades_applied > 0, "shard {index}: {counters:?}");
        assert_eq!(counters.subscriptions_active, 25, "shard {index}");
        assert_eq!(counters.parse_errors, 0, "shard {index}");
        assert_eq!(counters.symbols_active, 25);
        assert!(counters.subscribe_messages >= 1);
    }
    let refused = &h.shards[0].handle.counters.subscribe_refused;
    assert_eq!(ShardCounters::get(refused), 1);
    h.stop();
}

/// A shard with no symbols, pinned to `core`, heartbeating every 20 ms; with its output ends.
fn bare_shard(id: u16, core: usize) -> (ShardThread, Receiver<KlineMsg>, Receiver<ShardReport>) {
    let (klines_tx, klines_rx) = crossbeam_channel::bounded(16);
    let (reports_tx, reports_rx) = crossbeam_channel::bounded(16);
    let mut config = ShardConfig::new(ShardId(id), vec![Interval::M1], "ws://127.0.0.1:9");
    config.heartbeat_interval = Duration::from_millis(20);
    config.core = Some(core);
    let outputs = ShardOutputs {
        klines: vec![klagg_shards::shard::KlineSink {
            tx: klines_tx,
            updates: true,
        }],
        reports: reports_tx,
    };
    let shard = spawn_shard(config, outputs).expect("starts (a failed pin included)");
    (shard, klines_rx, reports_rx)
}

#[test]
fn an_empty_shard_heartbeats_and_stays_healthy() {
    // A core this process may run on (CI may hand it a restricted set).
    let allowed = core_affinity::get_core_ids().expect("core ids");
    let (shard, _klines, _reports) = bare_shard(3, allowed[0].id);
    let first = shard.handle.health();
    std::thread::sleep(Duration::from_millis(300));
    let later = shard.handle.health();
    assert_eq!(later.shard, ShardId(3));
    assert!(
        later.heartbeat_ms > first.heartbeat_ms,
        "{first:?} → {later:?}"
    );
    assert!(later.is_alive(epoch_ms() as u64, 1_000));
    assert_eq!(later.counters.connections_open, 0);
    assert_eq!(later.counters.reconnects, 0);
    assert!(later.counters.loop_iterations >= 5);
    assert!(!later.pin_failed, "an allowed core: pinned");
    assert_eq!(later.counters.pin_failed, 0);
    shard.handle.try_send(ShardCmd::Shutdown).expect("inbox");
    let name = shard.join.thread().name().map(str::to_owned);
    assert_eq!(name.as_deref(), Some("shard-03"));
    shard.join.join().expect("clean exit");
}

#[test]
fn subscriptions_are_coalesced_paced_and_spread_over_connections() {
    let symbols = 250;
    let sim_config = SimConfig::default()
        .with_symbols(symbols)
        .with_trade_rate(200)
        .with_seed(5);
    let mut h = Harness::start(sim_config, 1, &[Interval::M1], |config| {
        config.io.streams_per_connection = 200;
        config.io.control_messages_per_sec = 5;
    });
    h.activate_all(symbols);
    h.wait_for("all streams subscribed", |h| {
        h.shards[0].handle.health().counters.subscriptions_active == symbols as u64
    });
    let mut per_connection: Vec<usize> = h
        .sim
        .connections()
        .iter()
        .map(|c| c.streams.len())
        .collect();
    per_connection.sort_unstable();
    assert_eq!(per_connection, [50, 200], "streams per connection");
    let log = h.sim.subscription_log();
    let subscribes: Vec<_> = log
        .iter()
        .filter(|e| e.kind == SubKind::Subscribe)
        .collect();
    assert!(subscribes.iter().all(|e| e.accepted));
    // Coalesced: far fewer messages than streams.
    assert!(
        subscribes.len() * 5 <= symbols,
        "{} messages",
        subscribes.len()
    );
    // Paced: at most 5 control messages in any second on one connection.
    for event in &subscribes {
        let burst = subscribes
            .iter()
            .filter(|other| other.conn_id == event.conn_id)
            .filter(|other| {
                other.at >= event.at && other.at.duration_since(event.at) < Duration::from_secs(1)
            })
            .count();
        assert!(
            burst <= 5,
            "{burst} messages within a second on connection {}",
            event.conn_id
        );
    }
    h.stop();
}

#[test]
fn a_failed_pin_is_reported_and_the_shard_runs_unpinned() {
    // A core the machine lacks, and one no CPU set can even name.
    for core in [1000, 100_000] {
        let (shard, _klines, _reports) = bare_shard(4, core);
        std::thread::sleep(Duration::from_millis(100));
        let health = shard.handle.health();
        assert!(health.pin_failed, "core {core}: {health:?}");
        assert_eq!(health.counters.pin_failed, 1);
        assert!(health.is_alive(epoch_ms() as u64, 1_000));
        shard.handle.try_send(ShardCmd::Shutdown).expect("inbox");
        shard.join.join().expect("clean exit");
    }
}
