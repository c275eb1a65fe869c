//! The kline store as a part of the engine (`start_app` with a store), against the in-process
//! simulator over real loopback sockets: history after startup, every stored closed kline equal
//! to the simulator's (history, activation periods, live periods), a restart that resumes with no
//! hole and fetches only what is missing, and the repair of the klines of an outage. Time bounds
//! are generous (2 noisy cores); the 1m checks wait for whole minutes, so the first test takes
//! one to two minutes.

mod support;

use std::time::Duration;

use klagg::status::StatusBoard;
use klagg::store::StoreCounters;
use klagg_bench::sim::SimHandle;
use klagg_shards::kline::Interval;
use klagg_shards::protocol::KlineMsg;
use support::engine::{activated_ms, stop};
use support::history::{
    PATIENCE, differences, get, holes, now_ms, periods_before, progress, start_engine,
    start_engine_with, start_sim, stored,
};
use support::{TempDir, wait_for};

const INTERVALS: [Interval; 2] = [Interval::S1, Interval::M1];

fn names(sim: &SimHandle) -> Vec<String> {
    sim.symbols().into_iter().map(|s| s.name).collect()
}

/// Waits until every planned repair ran (activation repairs of 1m close within ~63 s).
fn wait_repairs(app: &klagg::app::RunningApp, repairs: u64) {
    let p = progress(app);
    wait_for("repairs planned", PATIENCE, || get(&p.repairs) >= repairs);
    wait_for("repairs done", PATIENCE, || {
        get(&p.repair_jobs_pending) == 0
    });
}

#[test]
fn history_and_every_stored_closed_kline_equal_the_simulator() {
    const BARS: u32 = 30;
    let sim = start_sim(3, 60, 11, Duration::from_secs(40 * 60));
    let dir = TempDir::new("exact");
    let db = dir.db();
    let app = start_engine(&sim, &db, "1s,1m", BARS, |_| {});
    wait_for("all active", PATIENCE, || {
        app.status.all_active_ms().is_some()
    });
    let p = progress(&app);
    wait_for("history", PATIENCE, || p.history_complete());
    let history_done_at = now_ms();
    assert_eq!((get(&p.symbols_total), get(&p.symbols_done)), (3, 3));
    // 30 bars is one request of weight 1 per symbol and interval.
    assert_eq!((get(&p.requests), get(&p.weight)), (6, 6));
    let names = names(&sim);
    let last_activation = names.iter().map(|n| activated_ms(&app, n)).max().unwrap();
    // A whole minute after every activation, closed and stored; every activation repaired.
    let end = Interval::M1.open_time(last_activation) + 2 * 60_000 + 2_000;
    std::thread::sleep(Duration::from_millis(
        u64::try_from(end - now_ms()).unwrap_or(0),
    ));
    wait_repairs(&app, 3);
    std::thread::sleep(Duration::from_millis(1_500));
    let checked_at = now_ms();
    for name in &names {
        let activation = activated_ms(&app, name);
        for interval in INTERVALS {
            // From the first history period to the last closed one: history, the activation
            // period (repaired) and the live periods, all equal to the simulator's.
            let first = periods_before(interval, history_done_at, BARS);
            let last = periods_before(interval, checked_at - 2_000, 1);
            assert!(
                last > interval.open_time(activation),
                "{name} {interval}: no full period"
            );
            let wrong = differences(&db, &sim, name, interval, first, last);
            assert!(wrong.is_empty(), "{name} {interval}: {wrong:?}");
            let rows = stored(&db, name, interval);
            assert!(holes(&rows, interval).is_empty(), "{name} {interval}");
        }
    }
    let counters = app.store.as_ref().unwrap().monitor.counters();
    assert_eq!(StoreCounters::get(&counters.rows_refused), 0);
    eprintln!(
        "history: {} requests, weight {}; repairs: {} requests, weight {}, {} klines corrected, {} confirmed",
        get(&p.requests),
        get(&p.weight),
        get(&p.repair_requests),
        get(&p.repair_weight),
        StoreCounters::get(&counters.rows_repaired),
        StoreCounters::get(&counters.rows_confirmed),
    );
    stop(app);
    sim.shutdown();
}

/// The last closed kline of every symbol and interval in the store.
fn last_closed(db: &std::path::Path, names: &[String]) -> Vec<(String, Interval, i64)> {
    let mut out = Vec::new();
    for name in names {
        for interval in INTERVALS {
            let rows = stored(db, name, interval);
            let last = rows.iter().rev().find(|r| r.closed).unwrap();
            out.push((name.clone(), interval, last.kline.open_time_ms));
        }
    }
    out
}

#[test]
fn a_restart_resumes_with_no_hole_and_fetches_only_what_is_missing() {
    const BARS: u32 = 100;
    let sim = start_sim(3, 60, 12, Duration::from_secs(110 * 60));
    let dir = TempDir::new("restart");
    let db = dir.db();
    let no_activation_repairs = |c: &mut klagg::config::Config| c.store.repair_activations = false;
    let app = start_engine(&sim, &db, "1s,1m", BARS, no_activation_repairs);
    wait_for("all active", PATIENCE, || {
        app.status.all_active_ms().is_some()
    });
    wait_for("history", PATIENCE, || progress(&app).history_complete());
    // 100 bars: one request per symbol and interval, of weight 2 (weight 1 in the rare case
    // that the live engine already stored the last period of the window).
    let p = progress(&app);
    let (requests, weight, missing) = (get(&p.requests), get(&p.weight), get(&p.periods_missing));
    eprintln!(
        "first run: history planned {missing} periods in {requests} requests of weight {weight}"
    );
    assert_eq!(requests, 6);
    assert!((9..=12).contains(&weight), "weight {weight}");
    assert!((6 * 98..=6 * 100).contains(&missing), "{missing} periods");
    std::thread::sleep(Duration::from_secs(2));
    stop(app);
    let names = names(&sim);
    let left = last_closed(&db, &names);
    std::thread::sleep(Duration::from_secs(4));
    let app = start_engine(&sim, &db, "1s,1m", BARS, no_activation_repairs);
    wait_for("all active again", PATIENCE, || {
        app.status.all_active_ms().is_some()
    });
    let p = progress(&app);
    wait_for("history after the restart", PATIENCE, || {
        p.history_complete()
    });
    std::thread::sleep(Duration::from_millis(1_500));
    let mut downtime_periods = 0;
    for (name, interval, last) in &left {
        let first_missing = interval.next_open(*last);
        let before_activation = periods_before(*interval, activated_ms(&app, name), 1);
        if first_missing <= before_activation {
            downtime_periods +=
                (before_activation - first_missing) / interval.fixed_ms().unwrap() + 1;
        }
        // The downtime came from the venue and equals the simulator's.
        let wrong = differences(&db, &sim, name, *interval, first_missing, before_activation);
        assert!(wrong.is_empty(), "{name} {interval}: {wrong:?}");
        let rows = stored(&db, name, *interval);
        assert!(
            holes(&rows, *interval).is_empty(),
            "{name} {interval}: a hole"
        );
        let last_row = rows.last().unwrap().kline.open_time_ms;
        assert!(
            last_row >= periods_before(*interval, now_ms(), 2),
            "{name} {interval}"
        );
    }
    // Only the tail was fetched: at most one weight-1 request per symbol and interval, for
    // the downtime periods (and a period or two the live engine had not stored yet).
    let (requests, weight, missing) = (get(&p.requests), get(&p.weight), get(&p.periods_missing));
    eprintln!(
        "restart: {downtime_periods} downtime periods; history planned {missing} periods in \
         {requests} requests of weight {weight}"
    );
    assert!(
        requests <= 6 && weight == requests,
        "{requests} requests, weight {weight}"
    );
    let missing = i64::try_from(missing).unwrap();
    assert!(
        missing >= downtime_periods,
        "{missing} < {downtime_periods}"
    );
    assert!(
        missing <= downtime_periods + 12,
        "{missing} periods planned"
    );
    stop(app);
    sim.shutdown();
}

/// Wait until the stored closed klines of every symbol in `[from, to]` equal the simulator's.
fn wait_exact(
    db: &std::path::Path,
    sim: &SimHandle,
    names: &[String],
    interval: Interval,
    from: i64,
    to: i64,
) {
    let until = std::time::Instant::now() + PATIENCE;
    loop {
        let wrong: Vec<_> = names
            .iter()
            .map(|n| (n, differences(db, sim, n, interval, from, to)))
            .filter(|(_, wrong)| !wrong.is_empty())
            .collect();
        if wrong.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{interval} klines {from}..={to} not repaired: {wrong:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The symbols whose lost trades the shard can see: a live trade between their subscription
/// (a second after activation) and the stall, and a trade during the stall.
fn detectable(app: &klagg::app::RunningApp, sim: &SimHandle, stalled_at: i64) -> Vec<String> {
    let traded = |name: &str, from: i64, to: i64| {
        sim.trades(name)
            .iter()
            .any(|t| from <= t.time_ms && t.time_ms < to)
    };
    names(sim)
        .into_iter()
        .filter(|n| traded(n, activated_ms(app, n) + 1_000, stalled_at - 200))
        .filter(|n| traded(n, stalled_at + 200, stalled_at + 2_800))
        .collect()
}

#[test]
fn the_klines_of_an_outage_are_repaired_to_the_simulators() {
    let sim = start_sim(3, 300, 13, Duration::from_secs(30 * 60));
    let dir = TempDir::new("repair");
    let db = dir.db();
    // Only gaps are repaired here, so every correction counted is the outage's.
    let (corrections_tx, corrections) = crossbeam_channel::bounded(4096);
    let no_activation_repairs = |c: &mut klagg::config::Config| c.store.repair_activations = false;
    let app = start_engine_with(
        &sim,
        &db,
        "1s,1m",
        10,
        no_activation_repairs,
        vec![corrections_tx],
    );
    wait_for("all active", PATIENCE, || {
        app.status.all_active_ms().is_some()
    });
    let p = progress(&app);
    wait_for("history", PATIENCE, || p.history_complete());
    // Live trades first: a gap is seen against the last live trade.
    std::thread::sleep(Duration::from_secs(6));
    // Every connection silent for 3 s: the trades meanwhile are lost, the 1s klines of the
    // outage close without them (published and stored as closed live klines), and the first
    // trade after it shows the gap.
    let stalled_at = now_ms();
    assert!(sim.stall_connections(Duration::from_secs(3)) >= 1);
    wait_for("a resync", PATIENCE, || {
        StatusBoard::get(&app.status.resyncs) >= 1
    });
    wait_for("a repair after the gap", PATIENCE, || {
        get(&p.repair_gaps) >= 1
    });
    std::thread::sleep(Duration::from_secs(3));
    let names = detectable(&app, &sim, stalled_at);
    assert!(names.len() >= 2, "{names:?}");
    let counters = app.store.as_ref().unwrap().monitor.counters();
    let from = Interval::S1.open_time(stalled_at) - 1_000;
    let to = Interval::S1.open_time(stalled_at) + 4_000;
    wait_exact(&db, &sim, &names, Interval::S1, from, to);
    let repaired = StoreCounters::get(&counters.rows_repaired);
    assert!(repaired >= 3, "only {repaired} klines were corrected");
    // The WebSocket API is told each corrected kline, as a shard's late-trade correction.
    let told: Vec<KlineMsg> = corrections.try_iter().collect();
    assert!(
        told.len() as u64 >= repaired,
        "{} of {repaired}",
        told.len()
    );
    for message in &told {
        let KlineMsg::Corrected {
            symbol,
            interval,
            kline,
        } = message
        else {
            panic!("{message:?}");
        };
        let name = app.registry.name(*symbol).unwrap();
        let truth = support::history::truth(
            &sim,
            &name,
            *interval,
            kline.open_time_ms,
            kline.open_time_ms,
        );
        assert_eq!(
            (kline.open, kline.close, kline.trade_count),
            (truth[0].open, truth[0].close, truth[0].trade_count)
        );
    }
    // The minute of the outage is repaired once it closed.
    let (first, last) = (
        Interval::M1.open_time(stalled_at),
        Interval::M1.open_time(stalled_at + 3_000),
    );
    wait_exact(&db, &sim, &names, Interval::M1, first, last);
    eprintln!(
        "repair: {} gap repairs, {} requests, weight {}, {} periods, {} klines corrected, {} confirmed",
        get(&p.repair_gaps),
        get(&p.repair_requests),
        get(&p.repair_weight),
        get(&p.repair_periods),
        StoreCounters::get(&counters.rows_repaired),
        StoreCounters::get(&counters.rows_confirmed),
    );
    stop(app);
    sim.shutdown();
}
