//! Publisher tests (test thread): final klines wait in order behind a full channel and are
//! never dropped, updates never overtake them, the pause depth, and the counts at shutdown.

use crossbeam_channel::{Receiver, bounded};

use super::*;
use crate::kline::{Interval, Kline};
use crate::worker::WorkerConfig;

const SYMBOL: SymbolIndex = SymbolIndex(3);
const T0_MS: i64 = 1_700_000_040_000;

fn closed(k: i64) -> WorkerEvent {
    let open = T0_MS + k * 1000;
    (
        SYMBOL,
        BookEvent::Closed {
            slot: 0,
            interval: Interval::S1,
            kline: Kline::flat(Interval::S1, open, 100 + k),
        },
    )
}

fn rig(capacity: usize, pause_depth: usize) -> (Publisher, Receiver<KlineMsg>, Worker) {
    let (tx, rx) = bounded(capacity);
    let (reports_tx, _reports_rx) = bounded(1);
    let sinks = vec![KlineSink { tx, updates: true }];
    let publisher = Publisher::new(ShardId(0), sinks, reports_tx, pause_depth);
    let worker = Worker::new(&WorkerConfig::new(ShardId(0), vec![Interval::S1], 4));
    (publisher, rx, worker)
}

fn open_times(rx: &Receiver<KlineMsg>) -> Vec<i64> {
    rx.try_iter()
        .map(|message| match message {
            KlineMsg::Closed { kline, .. } => kline.open_time_ms,
            other => panic!("a closed kline, got {other:?}"),
        })
        .collect()
}

#[test]
fn finals_wait_in_order_behind_a_full_channel_and_pause_the_shard() {
    let (mut publisher, rx, mut worker) = rig(2, 3);
    let mut events: Vec<WorkerEvent> = (0..5).map(closed).collect();
    publisher.publish(&mut events, &mut worker);
    assert_eq!(publisher.depth(), 3, "two sent, three waiting");
    assert!(publisher.paused(), "at the pause depth");
    assert_eq!(publisher.stats().outbox_max, 3);
    // Room for two: the oldest waiting go first, and a later final queues behind the rest.
    assert_eq!(open_times(&rx), vec![T0_MS, T0_MS + 1000]);
    publisher.publish(&mut vec![closed(5)], &mut worker);
    assert_eq!(publisher.depth(), 4);
    publisher.flush();
    assert_eq!(open_times(&rx), vec![T0_MS + 2000, T0_MS + 3000]);
    publisher.flush();
    publisher.flush();
    assert_eq!(open_times(&rx), vec![T0_MS + 4000, T0_MS + 5000]);
    assert!(!publisher.has_pending() && !publisher.paused());
    let stats = publisher.stats();
    assert_eq!((stats.klines_sent, stats.klines_undeliverable), (6, 0));
}

#[test]
fn what_is_left_at_shutdown_is_counted_as_undeliverable() {
    let (mut publisher, _rx, mut worker) = rig(1, 100);
    let mut events: Vec<WorkerEvent> = (0..4).map(closed).collect();
    publisher.publish(&mut events, &mut worker);
    assert_eq!(publisher.depth(), 3);
    publisher.abandon_pending();
    assert!(!publisher.has_pending());
    assert_eq!(publisher.stats().klines_undeliverable, 3);
}

#[test]
fn a_consumer_that_went_away_counts_its_klines_as_undeliverable() {
    let (mut publisher, rx, mut worker) = rig(1, 100);
    drop(rx);
    let mut events: Vec<WorkerEvent> = (0..2).map(closed).collect();
    publisher.publish(&mut events, &mut worker);
    assert_eq!(publisher.stats().klines_undeliverable, 2);
    assert!(!publisher.has_pending());
}

#[test]
fn an_update_never_overtakes_a_waiting_final_kline() {
    let (mut publisher, rx, mut worker) = rig(1, 100);
    let (ack, _ack_rx) = bounded(1);
    worker.process_command(crate::protocol::WorkerCmd::ActivateSymbol {
        symbol: crate::protocol::SymbolSpec {
            index: SYMBOL,
            name: std::sync::Arc::from("BTCUSDT"),
            scales: crate::kline::Scales { price: 2, qty: 3 },
        },
        initial_data: crate::protocol::InitialSymbolData {
            klines: vec![Some(Kline::flat(Interval::S1, T0_MS + 9000, 100))],
            taken_at_ms: T0_MS + 9000,
            last_agg_id: None,
        },
        activation: crate::protocol::ActivationId(1),
        ack,
    });
    let update = (SYMBOL, BookEvent::Updated { slot: 0 });
    let mut events = vec![closed(0), closed(1), update];
    publisher.publish(&mut events, &mut worker);
    assert_eq!(
        publisher.stats().updates_dropped,
        1,
        "dropped, not sent ahead"
    );
    assert_eq!(open_times(&rx), vec![T0_MS]);
    publisher.flush();
    publisher.publish(&mut vec![update], &mut worker);
    let messages: Vec<KlineMsg> = rx.try_iter().collect();
    assert!(
        matches!(messages[..], [KlineMsg::Closed { .. }]),
        "{messages:?}"
    );
    publisher.publish(&mut vec![update], &mut worker);
    assert!(matches!(rx.try_recv(), Ok(KlineMsg::Update { .. })));
}
