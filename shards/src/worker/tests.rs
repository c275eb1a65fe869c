//! Worker tests: the activation state machine, stable slots, Active-only processing, resync
//! replay, gap and duplicate handling, clock closes, frame routing.

use std::sync::Arc;

use crossbeam_channel::{Receiver, bounded};

use super::*;
use crate::kline::{Kline, Scales};
use crate::parse::{Frame, parse_frame};

const MINUTE: i64 = 60_000;
const T0: i64 = 1_700_000_040_000; // a minute boundary

fn spec(index: u32, name: &str) -> SymbolSpec {
    SymbolSpec {
        index: SymbolIndex(index),
        name: Arc::from(name),
        scales: Scales { price: 2, qty: 3 },
    }
}

fn worker(slots: usize) -> Worker {
    let mut config = WorkerConfig::new(ShardId(0), vec![Interval::S1, Interval::M1], slots);
    config.close_grace_ms = 250;
    Worker::new(&config)
}

fn flat_package(open_ms: i64, price: i64, last_agg_id: Option<i64>) -> InitialSymbolData {
    InitialSymbolData {
        klines: vec![
            Some(Kline::flat(Interval::S1, open_ms, price)),
            Some(Kline::flat(
                Interval::M1,
                Interval::M1.open_time(open_ms),
                price,
            )),
        ],
        taken_at_ms: open_ms,
        last_agg_id,
    }
}

fn activate(
    worker: &mut Worker,
    spec: SymbolSpec,
    data: InitialSymbolData,
    id: u64,
) -> (WorkerAck, Receiver<WorkerAck>) {
    let (ack_tx, ack_rx) = bounded(1);
    let reply = worker
        .process_command(WorkerCmd::ActivateSymbol {
            symbol: spec,
            initial_data: data,
            activation: ActivationId(id),
            ack: ack_tx,
        })
        .expect("activation answers");
    (reply, ack_rx)
}

fn trade(agg_id: i64, price: i64, time_ms: i64) -> AggTrade {
    AggTrade {
        agg_id,
        price,
        qty: 1000,
        first_id: agg_id,
        last_id: agg_id,
        time_ms,
        buyer_maker: false,
    }
}

fn events(worker: &mut Worker) -> Vec<WorkerEvent> {
    let mut out = Vec::new();
    worker.take_events(&mut out);
    out
}

#[test]
fn starts_empty_and_activates_with_an_ack() {
    let mut worker = worker(4);
    assert!(
        worker
            .activation_states()
            .iter()
            .all(|s| *s == SymbolActivationState::Pending)
    );
    assert_eq!(worker.active_count(), 0);
    let (reply, ack_rx) = activate(
        &mut worker,
        spec(7, "BTCUSDT"),
        flat_package(T0, 100, None),
        1,
    );
    assert_eq!(reply.result, Ok(()));
    let ack = ack_rx.try_recv().expect("ack sent");
    assert_eq!(
        (ack.symbol, ack.activation, ack.shard),
        (SymbolIndex(7), ActivationId(1), ShardId(0))
    );
    assert_eq!(
        worker.activation_state(SymbolIndex(7)),
        SymbolActivationState::Active
    );
    assert_eq!(worker.slot_of(SymbolIndex(7)), Some(0));
    assert_eq!(worker.slot_of_name(b"BTCUSDT"), Some(0));
}

#[test]
fn a_bad_package_fails_with_a_reason_and_touches_nothing() {
    let mut worker = worker(4);
    let mut data = flat_package(T0, 100, None);
    data.klines.pop();
    let (reply, _) = activate(&mut worker, spec(1, "ETHUSDT"), data, 1);
    assert!(matches!(reply.result, Err(ActivationError::InitialData(_))));
    assert_eq!(
        worker.activation_state(SymbolIndex(1)),
        SymbolActivationState::Failed
    );
    assert_eq!(
        worker.process_trade(0, &trade(1, 100, T0 + 5)),
        TradeOutcome::NotActive
    );
    let (reply, _) = activate(
        &mut worker,
        spec(2, "bad name"),
        flat_package(T0, 1, None),
        2,
    );
    assert!(matches!(
        reply.result,
        Err(ActivationError::InvalidSpec { .. })
    ));
    assert_eq!(worker.stats().activations_failed, 2);
}

#[test]
fn slots_are_stable_and_reused_only_after_deactivation() {
    let mut worker = worker(2);
    activate(&mut worker, spec(10, "AUSDT"), flat_package(T0, 1, None), 1);
    activate(&mut worker, spec(11, "BUSDT"), flat_package(T0, 1, None), 2);
    let (reply, _) = activate(&mut worker, spec(12, "CUSDT"), flat_package(T0, 1, None), 3);
    assert_eq!(
        reply.result,
        Err(ActivationError::NoFreeSlot { capacity: 2 })
    );
    worker.process_command(WorkerCmd::DeactivateSymbol {
        symbol: SymbolIndex(10),
    });
    assert_eq!(
        worker.activation_state(SymbolIndex(10)),
        SymbolActivationState::Pending
    );
    assert_eq!(worker.slot_of_name(b"AUSDT"), None);
    assert_eq!(worker.slot_of(SymbolIndex(11)), Some(1));
    let (reply, _) = activate(&mut worker, spec(12, "CUSDT"), flat_package(T0, 1, None), 4);
    assert_eq!(reply.result, Ok(()));
    assert_eq!(worker.slot_of(SymbolIndex(12)), Some(0));
    assert_eq!(worker.slot_of(SymbolIndex(11)), Some(1));
}

#[test]
fn same_name_for_another_symbol_is_refused() {
    let mut worker = worker(2);
    activate(&mut worker, spec(1, "AUSDT"), flat_package(T0, 1, None), 1);
    let (reply, _) = activate(&mut worker, spec(2, "AUSDT"), flat_package(T0, 1, None), 2);
    assert!(matches!(
        reply.result,
        Err(ActivationError::InvalidSpec { .. })
    ));
}

#[test]
fn trades_build_klines_and_the_clock_closes_them() {
    let mut worker = worker(2);
    activate(
        &mut worker,
        spec(1, "AUSDT"),
        flat_package(T0, 100, None),
        1,
    );
    assert_eq!(
        worker.process_trade(0, &trade(1, 101, T0 + 10)),
        TradeOutcome::Book(ApplyOutcome::Applied)
    );
    worker.process_trade(0, &trade(2, 103, T0 + 20));
    worker.process_clock_tick(T0 + 1000 + 100); // within the grace: nothing closes
    let got = events(&mut worker);
    assert!(
        got.iter()
            .all(|(_, e)| matches!(e, BookEvent::Updated { .. }))
    );
    worker.process_clock_tick(T0 + 1000 + 300);
    let got = events(&mut worker);
    let closed: Vec<_> = got
        .iter()
        .filter_map(|(symbol, e)| match e {
            BookEvent::Closed {
                interval, kline, ..
            } => Some((*symbol, *interval, *kline)),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 1);
    let (symbol, interval, kline) = closed[0];
    assert_eq!((symbol, interval), (SymbolIndex(1), Interval::S1));
    assert_eq!(
        (kline.open, kline.high, kline.close, kline.trade_count),
        (101, 103, 103, 2)
    );
    assert_eq!(kline.volume, 2000);
}

#[test]
fn initial_last_agg_id_skips_included_trades_and_detects_a_jump() {
    let mut worker = worker(2);
    activate(
        &mut worker,
        spec(1, "AUSDT"),
        flat_package(T0, 100, Some(50)),
        1,
    );
    assert_eq!(
        worker.process_trade(0, &trade(49, 100, T0 + 1)),
        TradeOutcome::Book(ApplyOutcome::Duplicate)
    );
    assert_eq!(worker.stats().initial_duplicates, 1);
    worker.process_trade(0, &trade(51, 100, T0 + 2));
    assert!(
        !events(&mut worker)
            .iter()
            .any(|(_, e)| matches!(e, BookEvent::Gap { .. }))
    );

    activate(
        &mut worker,
        spec(2, "BUSDT"),
        flat_package(T0, 100, Some(50)),
        2,
    );
    worker.process_trade(1, &trade(55, 100, T0 + 2));
    let gaps: Vec<_> = events(&mut worker)
        .into_iter()
        .filter(|(_, e)| matches!(e, BookEvent::Gap { .. }))
        .collect();
    assert_eq!(
        gaps,
        [(
            SymbolIndex(2),
            BookEvent::Gap {
                slot: 1,
                expected_agg_id: 51,
                received_agg_id: 55
            }
        )]
    );
    assert!(worker.note_resync_requested(1));
    assert!(!worker.note_resync_requested(1));
}

#[test]
fn resync_replaces_state_in_one_step_and_replays_later_trades() {
    let mut worker = worker(2);
    activate(
        &mut worker,
        spec(1, "AUSDT"),
        flat_package(T0, 100, Some(0)),
        1,
    );
    for id in 1..=3 {
        worker.process_trade(0, &trade(id, 100 + id, T0 + id));
    }
    // A gap: trades 4..=5 were missed; 6 and 7 arrive.
    worker.process_trade(0, &trade(6, 106, T0 + 6));
    worker.process_trade(0, &trade(7, 107, T0 + 7));
    events(&mut worker);
    // Fresh package taken after trade 5 (containing 1..=5); 6 and 7 come from the ring.
    let mut package = flat_package(T0, 100, Some(5));
    let mut s1 = Kline::flat(Interval::S1, T0, 100);
    for id in 1..=5 {
        let t = trade(id, 100 + id, T0 + id);
        s1.apply(&t, i128::from(t.price) * i128::from(t.qty));
    }
    package.klines[0] = Some(s1);
    let (reply, _) = activate(&mut worker, spec(1, "AUSDT"), package, 2);
    assert_eq!(reply.result, Ok(()));
    assert_eq!(worker.slot_of(SymbolIndex(1)), Some(0));
    assert_eq!(worker.stats().replayed, 2);
    let current = worker.book().current(0, 0).expect("open 1s kline");
    assert_eq!(current.trade_count, 7);
    assert_eq!((current.open, current.high, current.close), (101, 107, 107));
    // The stream goes on without a gap.
    worker.process_trade(0, &trade(8, 108, T0 + 8));
    assert!(
        !events(&mut worker)
            .iter()
            .any(|(_, e)| matches!(e, BookEvent::Gap { .. }))
    );
    assert_eq!(worker.book().current(0, 0).expect("open").trade_count, 8);
}

#[test]
fn frames_are_routed_by_name() {
    let mut worker = worker(2);
    activate(
        &mut worker,
        spec(3, "BTCUSDT"),
        flat_package(T0, 100, None),
        1,
    );
    let frame = format!(
        r#"{{"stream":"btcusdt@aggTrade","data":{{"e":"aggTrade","E":{e},"s":"BTCUSDT","a":9,"p":"1.05","q":"2.000","f":1,"l":2,"T":{t},"m":true}}}}"#,
        e = T0 + 12,
        t = T0 + 10
    );
    let Ok(Frame::Trade(raw)) = parse_frame(frame.as_bytes()) else {
        panic!("trade frame");
    };
    assert_eq!(
        worker.process_raw_trade(&raw).expect("routed"),
        TradeOutcome::Book(ApplyOutcome::Applied)
    );
    let kline = worker.book().current(0, 1).expect("1m");
    assert_eq!(
        (kline.close, kline.volume, kline.trade_count),
        (105, 2000, 2)
    );
    let other = frame.replace("\"s\":\"BTCUSDT\"", "\"s\":\"ETHUSDT\"");
    let Ok(Frame::Trade(raw)) = parse_frame(other.as_bytes()) else {
        panic!("trade frame");
    };
    assert!(matches!(
        worker.process_raw_trade(&raw),
        Err(FrameTradeError::UnknownSymbol)
    ));
    let bad = frame.replace("\"p\":\"1.05\"", "\"p\":\"1.055\"");
    let Ok(Frame::Trade(raw)) = parse_frame(bad.as_bytes()) else {
        panic!("trade frame");
    };
    assert!(matches!(
        worker.process_raw_trade(&raw),
        Err(FrameTradeError::Parse(_))
    ));
}

#[test]
fn deactivated_symbols_ignore_trades_and_ticks() {
    let mut worker = worker(1);
    activate(
        &mut worker,
        spec(1, "AUSDT"),
        flat_package(T0, 100, None),
        1,
    );
    worker.process_trade(0, &trade(1, 100, T0 + 1));
    worker.process_command(WorkerCmd::DeactivateSymbol {
        symbol: SymbolIndex(1),
    });
    assert_eq!(
        worker.process_trade(0, &trade(2, 100, T0 + 2)),
        TradeOutcome::NotActive
    );
    worker.process_clock_tick(T0 + 10 * MINUTE);
    assert!(
        events(&mut worker)
            .iter()
            .all(|(_, e)| matches!(e, BookEvent::Updated { .. }))
    );
    assert!(!worker.book().is_live(0));
    assert_eq!(worker.stats().trades_not_active, 1);
}

#[test]
fn a_full_ack_channel_is_counted_not_blocking() {
    let mut worker = worker(2);
    let (ack_tx, _ack_rx) = bounded(1);
    for id in 0..2 {
        worker.process_command(WorkerCmd::ActivateSymbol {
            symbol: spec(id, if id == 0 { "AUSDT" } else { "BUSDT" }),
            initial_data: flat_package(T0, 1, None),
            activation: ActivationId(u64::from(id)),
            ack: ack_tx.clone(),
        });
    }
    assert_eq!(worker.stats().acks_failed, 1);
}

#[test]
fn expected_agg_id_follows_the_package_then_the_book() {
    let mut w = worker(2);
    assert_eq!(w.expected_agg_id(b"BTCUSDT"), None, "not held");
    activate(
        &mut w,
        spec(3, "BTCUSDT"),
        flat_package(T0, 100, Some(41)),
        1,
    );
    let btc = SymbolIndex(3);
    assert_eq!(w.expected_agg_id(b"BTCUSDT"), Some((btc, Some(42))));
    let outcome = w.process_symbol_trade(btc, &trade(42, 100, T0 + 1));
    assert!(matches!(outcome, TradeOutcome::Book(_)), "{outcome:?}");
    assert_eq!(w.next_agg_id(btc), Some(Some(43)));
    activate(&mut w, spec(4, "ETHUSDT"), flat_package(T0, 100, None), 2);
    assert_eq!(
        w.next_agg_id(SymbolIndex(4)),
        Some(None),
        "nothing known yet"
    );
    assert_eq!(w.next_agg_id(SymbolIndex(9)), None);
    assert_eq!(
        w.process_symbol_trade(SymbolIndex(9), &trade(1, 100, T0)),
        TradeOutcome::NotActive
    );
    assert!(w.convert_trade(SymbolIndex(9), &raw_trade()).is_err());
    let converted = w.convert_trade(btc, &raw_trade()).expect("converts");
    assert_eq!((converted.agg_id, converted.price), (43, 10_050));
}

fn raw_trade() -> RawAggTrade<'static> {
    const FRAME: &str = r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1700000040002,"s":"BTCUSDT","a":43,"p":"100.50","q":"0.010","f":43,"l":43,"T":1700000040001,"m":false}}"#;
    match parse_frame(FRAME.as_bytes()) {
        Ok(Frame::Trade(raw)) => raw,
        other => panic!("not a trade: {other:?}"),
    }
}
