//! The store writer's delivery contract (test threads plus the store writer thread): batching
//! deadlines, snapshots, nothing lost on shutdown, never dropping under a full channel, the
//! source precedence, recovery from failed commits, counters and health.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use klagg::store::{
    Source, Store, StoreCmd, StoreCounters, WriterConfig, spawn_writer, spawn_writer_with,
};
use klagg_shards::kline::{Interval, Kline, Scales};
use klagg_shards::protocol::{KlineMsg, SymbolIndex};
use support::store::{MIN, PATIENCE, Rig, T0, closed, kline, register, update, wait_until};

const SCALES: Scales = Scales { price: 2, qty: 3 };

fn slow_batches() -> WriterConfig {
    WriterConfig {
        batch_deadline: Duration::from_secs(600),
        snapshot_interval: Duration::from_secs(600),
        ..WriterConfig::default()
    }
}

fn count(rig: &Rig, symbol: &str, interval: Interval) -> u64 {
    rig.writer
        .reader()
        .unwrap()
        .count(symbol, interval)
        .unwrap()
}

#[test]
fn a_closed_kline_reaches_disk_within_a_second() {
    let rig = Rig::new("deadline", WriterConfig::default(), 64);
    rig.command(register(1, "BTCUSDT", SCALES));
    let reader = rig.writer.reader().unwrap();
    let mut delays = Vec::new();
    for i in 0..5 {
        // Between batches, so each kline waits for its own deadline.
        std::thread::sleep(Duration::from_millis(250));
        let sent = Instant::now();
        rig.klines
            .send(closed(
                1,
                Interval::M1,
                kline(Interval::M1, T0 + i * MIN, i),
            ))
            .unwrap();
        let seen = wait_until(|| reader.count("BTCUSDT", Interval::M1).unwrap() == i as u64 + 1);
        assert!(seen.is_some(), "kline {i} never reached the database");
        delays.push(sent.elapsed());
    }
    delays.sort();
    eprintln!("closed kline → visible on disk: {delays:?}");
    // The deadline is 200 ms; allow for a noisy 2-core machine.
    assert!(delays[2] < Duration::from_secs(1), "median {:?}", delays[2]);
    assert!(delays[4] < Duration::from_secs(3), "max {:?}", delays[4]);
}

#[test]
fn a_full_batch_is_written_at_once() {
    let config = WriterConfig {
        batch_rows: 100,
        ..slow_batches()
    };
    let rig = Rig::new("batch-rows", config, 256);
    rig.command(register(1, "BTCUSDT", SCALES));
    for i in 0..99 {
        let msg = closed(1, Interval::M1, kline(Interval::M1, T0 + i * MIN, i));
        rig.klines.send(msg).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        count(&rig, "BTCUSDT", Interval::M1),
        0,
        "99 rows wait for the deadline"
    );
    let msg = closed(1, Interval::M1, kline(Interval::M1, T0 + 99 * MIN, 99));
    rig.klines.send(msg).unwrap();
    assert!(wait_until(|| count(&rig, "BTCUSDT", Interval::M1) == 100).is_some());
}

#[test]
fn nothing_is_lost_on_shutdown() {
    let rig = Rig::new("shutdown", slow_batches(), 1024);
    rig.command(register(1, "BTCUSDT", SCALES));
    rig.command(register(2, "ETHUSDT", SCALES));
    const N: i64 = 10_000;
    for i in 0..N {
        let msg = closed(
            (i % 2) as u32 + 1,
            Interval::M1,
            kline(Interval::M1, T0 + i * MIN, i),
        );
        rig.klines.send(msg).unwrap();
    }
    rig.klines
        .send(KlineMsg::FlatRun {
            symbol: SymbolIndex(1),
            interval: Interval::M5,
            first_open_ms: T0,
            count: 500,
            price: 4242,
        })
        .unwrap();
    rig.klines
        .send(update(2, Interval::H1, kline(Interval::H1, T0, 1)))
        .unwrap();
    let report = rig.writer.shutdown(PATIENCE).unwrap();
    assert_eq!(report.rows_lost, 0);
    assert_eq!(report.error, None);
    let reader = klagg::store::Reader::open(rig.dir.db()).unwrap();
    assert_eq!(
        reader.count("BTCUSDT", Interval::M1).unwrap(),
        (N / 2) as u64
    );
    assert_eq!(
        reader.count("ETHUSDT", Interval::M1).unwrap(),
        (N / 2) as u64
    );
    assert_eq!(reader.count("BTCUSDT", Interval::M5).unwrap(), 500);
    let open = reader
        .last_stored("ETHUSDT", Interval::H1)
        .unwrap()
        .unwrap();
    assert!(!open.closed);
    assert_eq!(report.rows_written, N as u64 + 500 + 1);
    // The WAL was checkpointed into the main file.
    let wal = rig.dir.path().join("klagg.db-wal");
    assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0);
}

/// A producer with a bounded channel keeps what does not fit and sends it later (the shard
/// outbox's contract). The database is locked meanwhile, so the channel fills.
#[test]
fn nothing_is_dropped_when_the_channel_is_full() {
    let config = WriterConfig {
        pending_rows_max: 1000,
        batch_rows: 500,
        ..WriterConfig::default()
    };
    let rig = Rig::new("full", config, 16);
    rig.command(register(1, "BTCUSDT", SCALES));
    rig.flush();
    let blocker = rusqlite::Connection::open(rig.dir.db()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    const N: i64 = 20_000;
    let producer = {
        let klines = rig.klines.clone();
        std::thread::spawn(move || {
            let mut outbox: VecDeque<KlineMsg> = (0..N)
                .map(|i| closed(1, Interval::M1, kline(Interval::M1, T0 + i * MIN, i)))
                .collect();
            let mut full = 0u64;
            while let Some(msg) = outbox.pop_front() {
                match klines.try_send(msg) {
                    Ok(()) => {}
                    Err(TrySendError::Full(msg)) => {
                        full += 1;
                        outbox.push_front(msg);
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(TrySendError::Disconnected(_)) => panic!("writer gone"),
                }
            }
            full
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    blocker.execute_batch("COMMIT").unwrap();
    let full = producer.join().unwrap();
    assert!(full > 0, "the channel never filled up");
    let report = rig.writer.shutdown(PATIENCE).unwrap();
    assert_eq!(report.rows_lost, 0);
    let reader = klagg::store::Reader::open(rig.dir.db()).unwrap();
    assert_eq!(reader.count("BTCUSDT", Interval::M1).unwrap(), N as u64);
    eprintln!("producer found the channel full {full} times; {report:?}");
}

#[test]
fn open_klines_are_coalesced_into_periodic_snapshots() {
    let config = WriterConfig {
        snapshot_interval: Duration::from_millis(300),
        ..WriterConfig::default()
    };
    let rig = Rig::new("snapshots", config, 4096);
    rig.command(register(1, "BTCUSDT", SCALES));
    rig.flush();
    for seed in 0..1000 {
        rig.klines
            .send(update(1, Interval::M1, kline(Interval::M1, T0, seed)))
            .unwrap();
    }
    // An older period's update arriving late does not replace the newer snapshot.
    rig.klines
        .send(update(1, Interval::M1, kline(Interval::M1, T0 - MIN, 5)))
        .unwrap();
    let reader = rig.writer.reader().unwrap();
    let latest = || reader.last_stored("BTCUSDT", Interval::M1).unwrap();
    assert!(wait_until(|| latest().is_some_and(|row| row.kline.open == 1000 + 999)).is_some());
    let written = StoreCounters::get(&rig.writer.counters().snapshots_written);
    assert!(written <= 5, "{written} snapshots for 1000 updates");
    assert_eq!(reader.count("BTCUSDT", Interval::M1).unwrap(), 1);
    // Closing the period replaces the snapshot; a stale snapshot never reopens it.
    rig.klines
        .send(update(1, Interval::M1, kline(Interval::M1, T0, 1)))
        .unwrap();
    rig.klines
        .send(closed(1, Interval::M1, kline(Interval::M1, T0, 2000)))
        .unwrap();
    rig.flush();
    rig.klines
        .send(update(1, Interval::M1, kline(Interval::M1, T0, 3)))
        .unwrap();
    rig.flush();
    let row = latest().unwrap();
    assert!(row.closed);
    assert_eq!(row.kline.open, 1000 + 2000);
}

fn backfill(symbol: u32, klines: Vec<Kline>, source: Source) -> StoreCmd {
    StoreCmd::Backfilled {
        symbol: SymbolIndex(symbol),
        interval: Interval::M1,
        klines,
        source,
        request: None,
    }
}

/// A write to one period, or the stored result: (source, closed, seed of the kline).
type Step = (Source, bool, i64);

/// Apply `steps` to one period, in order, and return what is stored.
fn outcome(rig: &Rig, period: i64, steps: &[Step]) -> Step {
    let open = T0 + period * MIN;
    for &(source, is_closed, seed) in steps {
        let value = kline(Interval::M1, open, seed);
        match (source, is_closed) {
            (Source::Live, true) => rig.klines.send(closed(1, Interval::M1, value)).unwrap(),
            (Source::Live, false) => rig.klines.send(update(1, Interval::M1, value)).unwrap(),
            _ => rig.command(backfill(1, vec![value], source)),
        }
        rig.flush();
    }
    let reader = rig.writer.reader().unwrap();
    let rows = reader
        .stored_klines("BTCUSDT", Interval::M1, Some(open), Some(open), None)
        .unwrap();
    (rows[0].source, rows[0].closed, rows[0].kline.open - 1000)
}

#[test]
fn source_precedence_does_not_depend_on_arrival_order() {
    use Source::{FlatFill, Live, Rest};
    let rig = Rig::new("precedence", WriterConfig::default(), 64);
    rig.command(register(1, "BTCUSDT", SCALES));
    let cases: [(&[Step], Step); 10] = [
        (&[(FlatFill, true, 1), (Rest, true, 2)], (Rest, true, 2)),
        (&[(Rest, true, 2), (FlatFill, true, 1)], (Rest, true, 2)),
        (&[(Live, true, 3), (Rest, true, 2)], (Live, true, 3)),
        (&[(Rest, true, 2), (Live, true, 3)], (Live, true, 3)),
        (&[(Live, false, 4), (Rest, true, 2)], (Rest, true, 2)),
        (&[(Rest, true, 2), (Live, false, 4)], (Rest, true, 2)),
        (&[(FlatFill, true, 1), (Live, false, 4)], (Live, false, 4)),
        (&[(Live, true, 3), (Live, true, 5)], (Live, true, 5)),
        (&[(Live, true, 3), (FlatFill, true, 1)], (Live, true, 3)),
        (&[(Rest, true, 2), (Rest, true, 6)], (Rest, true, 6)),
    ];
    for (period, (steps, expected)) in cases.iter().enumerate() {
        assert_eq!(
            outcome(&rig, period as i64, steps),
            *expected,
            "case {period}: {steps:?}"
        );
    }
    // Cases 1, 2, 5 and 8 keep the stored row.
    assert_eq!(StoreCounters::get(&rig.writer.counters().rows_kept), 4);
}

#[test]
fn repairs_replace_closed_live_klines_confirm_equal_ones_and_are_published() {
    let dir = support::TempDir::new("repair");
    let (corrections_tx, corrections) = crossbeam_channel::bounded(16);
    let store = Store::open(dir.db()).unwrap();
    let writer = spawn_writer_with(
        store,
        WriterConfig::default(),
        crossbeam_channel::never(),
        vec![corrections_tx],
    )
    .unwrap();
    let send = |cmd| writer.send(cmd, PATIENCE).unwrap();
    send(register(1, "BTCUSDT", SCALES));
    let (p0, p1) = (T0, T0 + MIN);
    for open in [p0, p1] {
        send(StoreCmd::Klines(closed(
            1,
            Interval::M1,
            kline(Interval::M1, open, 3),
        )));
    }
    // The venue's p0 differs (the live kline missed trades); its p1 is the same, without ids.
    let mut same = kline(Interval::M1, p1, 3);
    (same.first_trade_id, same.last_trade_id) = (-1, -1);
    let repair = |klines| StoreCmd::Backfilled {
        symbol: SymbolIndex(1),
        interval: Interval::M1,
        klines,
        source: Source::Repair,
        request: None,
    };
    send(repair(vec![kline(Interval::M1, p0, 9), same]));
    writer.flush(PATIENCE).unwrap();
    // A later live close or REST kline does not undo the repair.
    send(StoreCmd::Klines(closed(
        1,
        Interval::M1,
        kline(Interval::M1, p0, 5),
    )));
    send(backfill(1, vec![kline(Interval::M1, p0, 6)], Source::Rest));
    writer.flush(PATIENCE).unwrap();
    let reader = writer.reader().unwrap();
    let rows = reader
        .stored_klines("BTCUSDT", Interval::M1, Some(p0), Some(p1), None)
        .unwrap();
    assert_eq!((rows[0].source, rows[0].kline.open), (Source::Repair, 1009));
    assert_eq!(
        (rows[1].source, rows[1].kline.first_trade_id),
        (Source::Live, 300)
    );
    let counters = writer.counters();
    assert_eq!(StoreCounters::get(&counters.rows_repaired), 1);
    assert_eq!(StoreCounters::get(&counters.rows_confirmed), 1);
    assert_eq!(StoreCounters::get(&counters.corrections_sent), 1);
    let published: Vec<KlineMsg> = corrections.try_iter().collect();
    assert_eq!(
        published,
        vec![KlineMsg::Corrected {
            symbol: SymbolIndex(1),
            interval: Interval::M1,
            kline: kline(Interval::M1, p0, 9),
        }]
    );
    drop(reader);
    writer.shutdown(PATIENCE).unwrap();
}

#[test]
fn backfilled_klines_that_are_still_open_are_skipped() {
    let rig = Rig::new("backfill-open", WriterConfig::default(), 64);
    rig.command(register(1, "BTCUSDT", SCALES));
    let future = kline(Interval::M1, Interval::M1.open_time(i64::MAX / 2), 1);
    let past = kline(Interval::M1, T0, 1);
    let unaligned = kline(Interval::M1, T0 + 7, 1);
    rig.command(backfill(1, vec![past, future, unaligned], Source::Rest));
    rig.flush();
    assert_eq!(count(&rig, "BTCUSDT", Interval::M1), 1);
    let counters = rig.writer.counters();
    assert_eq!(StoreCounters::get(&counters.backfill_open_skipped), 1);
    assert_eq!(StoreCounters::get(&counters.rows_refused), 1);
}

#[test]
fn failed_commits_keep_the_batch_and_retry() {
    let config = WriterConfig {
        retry_delay: Duration::from_millis(100),
        ..WriterConfig::default()
    };
    let rig = Rig::new("retry", config, 64);
    rig.command(register(1, "BTCUSDT", SCALES));
    rig.flush();
    let side = rusqlite::Connection::open(rig.dir.db()).unwrap();
    side.execute_batch("ALTER TABLE klines RENAME TO klines_away")
        .unwrap();
    for i in 0..10 {
        let msg = closed(1, Interval::M1, kline(Interval::M1, T0 + i * MIN, i));
        rig.klines.send(msg).unwrap();
    }
    let failing = wait_until(|| !rig.writer.health(wall_ms()).healthy);
    assert!(
        failing.is_some(),
        "the failed commit did not show in health"
    );
    let health = rig.writer.health(wall_ms());
    assert!(
        health.write_error.as_deref().unwrap().contains("klines"),
        "{health:?}"
    );
    assert!(health.pending_rows > 0 || health.write_error.is_some());
    side.execute_batch("ALTER TABLE klines_away RENAME TO klines")
        .unwrap();
    assert!(wait_until(|| rig.writer.health(wall_ms()).healthy).is_some());
    rig.flush();
    assert_eq!(count(&rig, "BTCUSDT", Interval::M1), 10);
    assert!(StoreCounters::get(&rig.writer.counters().batch_errors) >= 1);
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn registrations_racing_their_first_klines_are_not_refused() {
    let rig = Rig::new("race", WriterConfig::default(), 4096);
    for index in 0..300u32 {
        rig.command(register(index, &format!("S{index}USDT"), SCALES));
        rig.klines
            .send(closed(index, Interval::M1, kline(Interval::M1, T0, 1)))
            .unwrap();
    }
    rig.flush();
    let reader = rig.writer.reader().unwrap();
    for index in 0..300u32 {
        assert_eq!(
            reader
                .count(&format!("S{index}USDT"), Interval::M1)
                .unwrap(),
            1
        );
    }
    assert_eq!(StoreCounters::get(&rig.writer.counters().rows_refused), 0);
}

#[test]
fn klines_of_unregistered_symbols_are_refused_and_reported() {
    let rig = Rig::new("unregistered", WriterConfig::default(), 64);
    rig.klines
        .send(closed(99, Interval::M1, kline(Interval::M1, T0, 1)))
        .unwrap();
    rig.command(backfill(98, vec![kline(Interval::M1, T0, 1)], Source::Rest));
    let counters = rig.writer.counters();
    assert!(wait_until(|| StoreCounters::get(&counters.rows_refused) == 2).is_some());
    let health = rig.writer.health(wall_ms());
    assert!(health.healthy, "a refusal is reported, not a write failure");
    assert!(
        health
            .last_refused
            .unwrap()
            .contains("unregistered symbol index")
    );
}

#[test]
fn counters_and_health_describe_the_writer() {
    let rig = Rig::new("health", WriterConfig::default(), 64);
    let idle = rig.writer.health(wall_ms());
    assert!(idle.healthy, "an idle writer is healthy: {idle:?}");
    assert_eq!(idle.last_write_ms, None);
    rig.command(register(1, "BTCUSDT", SCALES));
    for i in 0..50 {
        let msg = closed(1, Interval::M1, kline(Interval::M1, T0 + i * MIN, i));
        rig.klines.send(msg).unwrap();
    }
    rig.flush();
    let health = rig.writer.health(wall_ms());
    assert!(health.healthy && health.detail == "ok", "{health:?}");
    assert!(health.last_write_ms.unwrap() > 0);
    let counters = rig.writer.counters();
    assert_eq!(StoreCounters::get(&counters.rows_written), 50);
    assert!(StoreCounters::get(&counters.batches) >= 1);
    assert!(
        StoreCounters::get(&counters.max_batch_us) >= StoreCounters::get(&counters.last_batch_us)
    );
    // Far in the future the heartbeat is stale.
    assert!(!rig.writer.health(wall_ms() + 60_000).healthy);
}

#[test]
fn dropping_every_command_sender_flushes_and_stops() {
    let dir = support::TempDir::new("drop");
    let store = klagg::store::Store::open(dir.db()).unwrap();
    let (klines, receiver) = crossbeam_channel::bounded(64);
    let writer = spawn_writer(store, slow_batches(), receiver).unwrap();
    writer
        .send(register(1, "BTCUSDT", SCALES), PATIENCE)
        .unwrap();
    klines
        .send(closed(1, Interval::M1, kline(Interval::M1, T0, 1)))
        .unwrap();
    let reader = writer.reader().unwrap();
    drop(writer);
    assert!(wait_until(|| reader.count("BTCUSDT", Interval::M1).unwrap() == 1).is_some());
}
