//! Unit tests of the kline book (test thread only).

use super::*;
use crate::kline::event::flat_run_klines;
use crate::kline::model::AggTrade;

const MIN: i64 = 60_000;
/// 2026-01-05 00:00 UTC, a Monday: every interval's period starts here.
const T0: i64 = 1_767_571_200_000;

fn trade(agg_id: i64, time_ms: i64, price: i64, qty: i64, buyer_maker: bool) -> AggTrade {
    AggTrade {
        agg_id,
        price,
        qty,
        first_id: agg_id * 2,
        last_id: agg_id * 2 + 1,
        time_ms,
        buyer_maker,
    }
}

fn book(intervals: &[Interval]) -> KlineBook {
    let mut book = KlineBook::new(intervals, 4);
    book.init_slot(0, &vec![None; intervals.len()]).unwrap();
    book
}

fn drain(book: &mut KlineBook) -> Vec<BookEvent> {
    let mut events = Vec::new();
    book.take_events(&mut events);
    events
}

fn closed(events: &[BookEvent]) -> Vec<(Interval, Kline)> {
    events
        .iter()
        .filter_map(|event| match event {
            BookEvent::Closed {
                interval, kline, ..
            } => Some((*interval, *kline)),
            _ => None,
        })
        .collect()
}

#[test]
fn intervals_are_sorted_shortest_first() {
    let book = KlineBook::new(
        &[Interval::D1, Interval::M1, Interval::Mo1, Interval::S1],
        1,
    );
    assert_eq!(
        book.intervals(),
        &[Interval::S1, Interval::M1, Interval::D1, Interval::Mo1]
    );
}

#[test]
fn a_trade_updates_every_interval() {
    let mut book = book(&[Interval::M1, Interval::H1, Interval::W1]);
    book.apply(0, &trade(1, T0 + 5, 100, 3, false)).unwrap();
    book.apply(0, &trade(2, T0 + 10, 104, 2, true)).unwrap();
    for index in 0..3 {
        let kline = book.current(0, index).unwrap();
        assert_eq!(kline.open_time_ms, T0);
        assert_eq!(
            (kline.open, kline.high, kline.low, kline.close),
            (100, 104, 100, 104)
        );
        assert_eq!((kline.volume, kline.quote_volume), (5, 508));
        assert_eq!(
            (kline.taker_buy_volume, kline.taker_buy_quote_volume),
            (3, 300)
        );
        assert_eq!(kline.trade_count, 4);
        assert_eq!((kline.first_trade_id, kline.last_trade_id), (2, 5));
    }
    assert_eq!(book.current(0, 1).unwrap().close_time_ms, T0 + 60 * MIN - 1);
    assert_eq!(drain(&mut book), vec![BookEvent::Updated { slot: 0 }]);
    assert_eq!(book.stats().trades_applied, 2);
}

#[test]
fn a_later_trade_closes_and_flat_fills_skipped_periods() {
    let mut book = book(&[Interval::M1, Interval::M5]);
    book.apply(0, &trade(1, T0 + 1_000, 100, 1, false)).unwrap();
    drain(&mut book);
    book.apply(0, &trade(2, T0 + 3 * MIN + 7, 90, 1, true))
        .unwrap();
    let events = drain(&mut book);
    let old = Kline::from_trade(Interval::M1, T0, &trade(1, T0 + 1_000, 100, 1, false));
    assert_eq!(
        events,
        vec![
            BookEvent::Closed {
                slot: 0,
                interval: Interval::M1,
                kline: old
            },
            BookEvent::FlatRun {
                slot: 0,
                interval: Interval::M1,
                first_open_ms: T0 + MIN,
                count: 2,
                price: 100
            },
            BookEvent::Updated { slot: 0 },
        ]
    );
    let flats: Vec<Kline> = flat_run_klines(Interval::M1, T0 + MIN, 2, 100).collect();
    assert_eq!(flats[1], Kline::flat(Interval::M1, T0 + 2 * MIN, 100));
    assert_eq!(book.last_closed(0, 0), Some(&flats[1]));
    let five = book.current(0, 1).unwrap();
    assert_eq!(
        (five.open, five.low, five.close, five.volume),
        (100, 90, 90, 2)
    );
    assert_eq!(book.stats().flat_klines_closed, 2);
}

#[test]
fn the_clock_closes_and_the_first_trade_resets_the_flat_kline() {
    let mut book = book(&[Interval::M1]);
    book.apply(0, &trade(1, T0 + 1_000, 100, 1, false)).unwrap();
    book.close_due(T0 + MIN - 1);
    assert_eq!(
        closed(&drain(&mut book)).len(),
        0,
        "not due before the close time passed"
    );
    book.close_due(T0 + MIN + 250);
    let events = drain(&mut book);
    assert_eq!(closed(&events).len(), 1);
    assert!(events.contains(&BookEvent::Updated { slot: 0 }));
    assert_eq!(
        book.current(0, 0),
        Some(&Kline::flat(Interval::M1, T0 + MIN, 100))
    );
    book.apply(0, &trade(2, T0 + MIN + 300, 95, 1, true))
        .unwrap();
    let kline = book.current(0, 0).unwrap();
    assert_eq!(
        (kline.open, kline.high, kline.low, kline.close),
        (95, 95, 95, 95)
    );
    // A long silence closes the open period and emits the rest as one flat run.
    book.close_due(T0 + 10 * MIN + 1);
    let events = drain(&mut book);
    assert_eq!(closed(&events).len(), 1);
    assert!(events.contains(&BookEvent::FlatRun {
        slot: 0,
        interval: Interval::M1,
        first_open_ms: T0 + 2 * MIN,
        count: 8,
        price: 95
    }));
    assert_eq!(book.current(0, 0).unwrap().open_time_ms, T0 + 10 * MIN);
}

#[test]
fn a_late_trade_amends_the_last_closed_kline() {
    let mut book = book(&[Interval::M1]);
    book.apply(0, &trade(1, T0 + 1_000, 100, 1, false)).unwrap();
    book.close_due(T0 + MIN + 250);
    drain(&mut book);
    let outcome = book
        .apply(0, &trade(2, T0 + MIN - 10, 120, 2, false))
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Amended);
    let events = drain(&mut book);
    let BookEvent::Corrected { kline, .. } = events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (kline.high, kline.close, kline.volume, kline.trade_count),
        (120, 120, 3, 4)
    );
    // The still flat current kline carries the amended close forward.
    assert_eq!(
        book.current(0, 0),
        Some(&Kline::flat(Interval::M1, T0 + MIN, 120))
    );
    assert_eq!(book.stats().late_amended, 1);
}

#[test]
fn a_trade_older_than_the_last_closed_period_is_dropped_per_interval() {
    let mut book = book(&[Interval::M1, Interval::H1]);
    book.apply(0, &trade(1, T0 + 1_000, 100, 1, false)).unwrap();
    book.apply(0, &trade(2, T0 + 2 * MIN, 101, 1, false))
        .unwrap();
    book.apply(0, &trade(3, T0 + 3 * MIN, 102, 1, false))
        .unwrap();
    drain(&mut book);
    let outcome = book.apply(0, &trade(4, T0 + 2_000, 130, 1, false)).unwrap();
    assert_eq!(outcome, ApplyOutcome::Dropped);
    assert_eq!(book.current(0, 0).unwrap().high, 102, "1m took nothing");
    assert_eq!(book.current(0, 1).unwrap().high, 130, "1h took it");
    assert_eq!(book.stats().late_dropped, 1);
}

#[test]
fn gaps_are_reported_and_duplicates_ignored() {
    let mut book = book(&[Interval::M1]);
    book.apply(0, &trade(10, T0, 100, 1, false)).unwrap();
    assert_eq!(
        book.apply(0, &trade(10, T0, 100, 1, false)),
        Ok(ApplyOutcome::Duplicate)
    );
    assert_eq!(
        book.apply(0, &trade(9, T0, 100, 1, false)),
        Ok(ApplyOutcome::Duplicate)
    );
    book.apply(0, &trade(13, T0 + 1, 100, 1, false)).unwrap();
    let events = drain(&mut book);
    assert_eq!(
        events[0],
        BookEvent::Gap {
            slot: 0,
            expected_agg_id: 11,
            received_agg_id: 13
        }
    );
    assert_eq!(book.current(0, 0).unwrap().volume, 2);
    assert_eq!((book.stats().duplicates, book.stats().gaps), (2, 1));
    assert_eq!(book.last_agg_id(0), Some(13));
}

#[test]
fn initial_packages_are_validated_and_replace_state() {
    let mut book = KlineBook::new(&[Interval::M1, Interval::H1], 2);
    assert_eq!(
        book.apply(0, &trade(1, T0, 1, 1, false)),
        Err(BookError::SlotNotLive { slot: 0 })
    );
    assert!(matches!(
        book.apply(7, &trade(1, T0, 1, 1, false)),
        Err(BookError::SlotOutOfRange { .. })
    ));
    assert_eq!(
        book.init_slot(0, &[None]),
        Err(BookError::InitialLength {
            given: 1,
            expected: 2
        })
    );
    let misaligned = Kline::flat(Interval::M1, T0 + 1, 5);
    assert!(matches!(
        book.init_slot(0, &[Some(misaligned), None]),
        Err(BookError::InvalidInitial { .. })
    ));
    assert!(!book.is_live(0));
    let mut broken = Kline::flat(Interval::M1, T0, 5);
    broken.high = 4;
    assert!(book.init_slot(0, &[Some(broken), None]).is_err());

    let minute = Kline::from_trade(Interval::M1, T0, &trade(1, T0 + 5, 50, 2, false));
    let hour = Kline::from_trade(Interval::H1, T0, &trade(1, T0 + 5, 50, 2, false));
    book.init_slot(0, &[Some(minute), Some(hour)]).unwrap();
    book.apply(0, &trade(2, T0 + 10, 55, 1, true)).unwrap();
    assert_eq!(book.current(0, 1).unwrap().volume, 3);
    assert!(book.last_agg_id(0).is_some());
    // Re-activation replaces everything in one step.
    book.init_slot(0, &[Some(minute), None]).unwrap();
    assert_eq!(book.current(0, 0), Some(&minute));
    assert_eq!(book.current(0, 1), None);
    assert_eq!(book.last_agg_id(0), None);
    book.clear_slot(0);
    assert!(!book.is_live(0));
}

#[test]
fn an_overflowing_trade_is_refused_without_change() {
    let mut book = KlineBook::new(&[Interval::M1, Interval::H1], 1);
    let mut huge = Kline::from_trade(Interval::H1, T0, &trade(1, T0, 1, 1, false));
    huge.quote_volume = i128::MAX - 5;
    huge.volume = 10;
    book.init_slot(
        0,
        &[
            Some(Kline::from_trade(
                Interval::M1,
                T0,
                &trade(1, T0, 1, 1, false),
            )),
            Some(huge),
        ],
    )
    .unwrap();
    let before = (*book.current(0, 0).unwrap(), *book.current(0, 1).unwrap());
    let result = book.apply(0, &trade(2, T0 + 1, 1_000, 1_000, false));
    assert_eq!(result, Err(BookError::Overflow { agg_id: 2 }));
    assert_eq!(
        (*book.current(0, 0).unwrap(), *book.current(0, 1).unwrap()),
        before
    );
    // The same on the slow path (a new minute).
    let result = book.apply(0, &trade(2, T0 + MIN + 1, 1_000, 1_000, false));
    assert_eq!(result, Err(BookError::Overflow { agg_id: 2 }));
    assert_eq!(book.current(0, 0).unwrap().open_time_ms, T0);
    assert_eq!(book.stats().refused, 2);
    assert!(matches!(
        book.apply(0, &trade(3, T0, -1, 1, false)),
        Err(BookError::InvalidTrade { .. })
    ));
}

#[test]
fn an_overflow_is_refused_when_no_interval_holds_all_the_others() {
    // 1w and 1M do not nest: the week of 2024-01-29 spans both months. The week's sum overflows
    // though neither month's does.
    let mut book = KlineBook::new(&[Interval::W1, Interval::Mo1], 1);
    book.init_slot(0, &[None, None]).unwrap();
    let day = 86_400_000;
    let jan31 = 19_753 * day; // 2024-01-31
    let big = i64::MAX;
    book.apply(0, &trade(1, jan31, big, big, false)).unwrap();
    book.apply(0, &trade(2, jan31 + day, big, big, false))
        .unwrap(); // 1M rolls: slow path
    let before = (*book.current(0, 0).unwrap(), *book.current(0, 1).unwrap());
    // Fast path: both klines are open and the trade falls inside both.
    let result = book.apply(0, &trade(3, jan31 + 2 * day, big, big, false));
    assert_eq!(result, Err(BookError::Overflow { agg_id: 3 }));
    assert_eq!(
        (*book.current(0, 0).unwrap(), *book.current(0, 1).unwrap()),
        before
    );
}

#[test]
fn updated_events_are_coalesced_and_come_last() {
    let mut book = KlineBook::new(&[Interval::M1], 3);
    for slot in 0..3 {
        book.init_slot(slot, &[None]).unwrap();
    }
    book.apply(2, &trade(1, T0, 100, 1, false)).unwrap();
    book.apply(0, &trade(1, T0, 100, 1, false)).unwrap();
    book.apply(2, &trade(2, T0 + 1, 100, 1, false)).unwrap();
    book.apply(2, &trade(3, T0 + MIN, 100, 1, false)).unwrap();
    let events = drain(&mut book);
    assert!(matches!(events[0], BookEvent::Closed { slot: 2, .. }));
    assert_eq!(
        &events[1..],
        &[
            BookEvent::Updated { slot: 2 },
            BookEvent::Updated { slot: 0 }
        ]
    );
    assert!(!book.has_events());
    assert!(drain(&mut book).is_empty());
}

#[test]
fn finishing_a_slot_closes_what_is_open() {
    let mut book = book(&[Interval::S1, Interval::M1]);
    book.apply(0, &trade(1, T0 + 1_500, 100, 1, false)).unwrap();
    drain(&mut book);
    book.finish_slot(0);
    let klines = closed(&drain(&mut book));
    assert_eq!(klines.len(), 2);
    assert_eq!(klines[0].1.open_time_ms, T0 + 1_000);
    assert_eq!(book.current(0, 0), None);
}

#[test]
fn months_and_weeks_roll_on_the_calendar() {
    let mut book = book(&[Interval::W1, Interval::Mo1]);
    // 2026-01-31 23:59:59.999 (Saturday) then 2026-02-02 00:00 (Monday).
    let jan_31_end = T0 + 26 * 24 * 60 * MIN + 24 * 60 * MIN - 1;
    book.apply(0, &trade(1, jan_31_end, 100, 1, false)).unwrap();
    book.apply(0, &trade(2, jan_31_end + 1 + 24 * 60 * MIN, 101, 1, false))
        .unwrap();
    let klines = closed(&drain(&mut book));
    assert_eq!(klines.len(), 2);
    assert_eq!(klines[0].0, Interval::W1);
    assert_eq!(
        klines[1].1.open_time_ms,
        T0 - 4 * 24 * 60 * MIN,
        "January opens on the 1st"
    );
    assert_eq!(klines[1].1.close_time_ms, jan_31_end);
}
