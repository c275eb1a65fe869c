//! Property tests of the kline core (test thread only): random trade sequences aggregated at a
//! small interval and rolled up equal the same trades aggregated directly at larger intervals,
//! every field.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::book::KlineBook;
use super::event::BookEvent;
use super::interval::Interval;
use super::model::{AggTrade, Kline};
use super::series::ClosedSeries;

/// 2025-12-31 23:58:00 UTC: sequences cross minute, day, week, month and year boundaries.
const START_MS: i64 = 1_767_225_480_000;

/// Time steps between consecutive trades: mostly close together, sometimes long silences.
fn step_ms(long_gaps: bool) -> impl Strategy<Value = i64> {
    let longest = if long_gaps { 40 * 86_400_000 } else { 90_000 };
    prop_oneof![
        12 => 0i64..2_000,
        6 => 0i64..300_000,
        1 => 0i64..=longest,
    ]
}

fn trades(long_gaps: bool) -> impl Strategy<Value = Vec<AggTrade>> {
    let one = (
        step_ms(long_gaps),
        1i64..50_000,
        0i64..5_000,
        0i64..4,
        any::<bool>(),
    );
    prop::collection::vec(one, 1..300).prop_map(|raw| {
        let (mut time, mut trade_id) = (START_MS, 1_000i64);
        raw.into_iter()
            .enumerate()
            .map(|(index, (step, price, qty, extra, buyer_maker))| {
                time += step;
                let first_id = trade_id;
                trade_id += extra + 1;
                let agg_id = 500 + index as i64;
                AggTrade {
                    agg_id,
                    price,
                    qty,
                    first_id,
                    last_id: trade_id - 1,
                    time_ms: time,
                    buyer_maker,
                }
            })
            .collect()
    })
}

/// Every kline of each interval, in time order, from first to last trade (flat runs expanded).
fn aggregate(intervals: &[Interval], trades: &[AggTrade]) -> BTreeMap<Interval, Vec<Kline>> {
    let mut book = KlineBook::new(intervals, 1);
    book.init_slot(0, &vec![None; intervals.len()]).unwrap();
    let mut series = ClosedSeries::default();
    let mut events = Vec::new();
    for trade in trades {
        book.apply(0, trade).unwrap();
        book.take_events(&mut events);
        collect(&mut series, events.drain(..));
    }
    book.finish_slot(0);
    book.take_events(&mut events);
    collect(&mut series, events.drain(..));
    series.into_map()
}

/// Record kline events; in-order trades never produce corrections or gaps.
fn collect(series: &mut ClosedSeries, events: impl Iterator<Item = BookEvent>) {
    for event in events {
        let unexpected = matches!(event, BookEvent::Corrected { .. } | BookEvent::Gap { .. });
        assert!(!unexpected, "unexpected {event:?}");
        series.record(&event);
    }
}

/// Roll lower-interval klines up into `interval` with `Kline::absorb`.
fn roll_up(lower: &[Kline], interval: Interval) -> Vec<Kline> {
    let mut out: Vec<Kline> = Vec::new();
    for kline in lower {
        let open = interval.open_time(kline.open_time_ms);
        match out.last_mut() {
            Some(last) if last.open_time_ms == open => assert!(last.absorb(kline)),
            _ => out.push(Kline {
                open_time_ms: open,
                close_time_ms: interval.close_time(open),
                ..*kline
            }),
        }
    }
    out
}

fn check_roll_ups(
    base: Interval,
    larger: &[Interval],
    trades: &[AggTrade],
) -> Result<(), TestCaseError> {
    let lower = aggregate(&[base], trades).remove(&base).unwrap();
    let direct = aggregate(larger, trades);
    for interval in larger {
        let rolled = roll_up(&lower, *interval);
        let expected = &direct[interval];
        prop_assert_eq!(rolled.len(), expected.len(), "{} kline count", interval);
        for (got, want) in rolled.iter().zip(expected) {
            prop_assert_eq!(got, want, "{} kline at {}", interval, want.open_time_ms);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn seconds_roll_up_to_minutes_and_hours(trades in trades(false)) {
        check_roll_ups(
            Interval::S1,
            &[Interval::M1, Interval::M3, Interval::M5, Interval::M15, Interval::H1],
            &trades,
        )?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn minutes_roll_up_to_days_weeks_and_months(trades in trades(true)) {
        check_roll_ups(
            Interval::M1,
            &[
                Interval::M30, Interval::H2, Interval::H4, Interval::H6, Interval::H8,
                Interval::H12, Interval::D1, Interval::D3, Interval::W1, Interval::Mo1,
            ],
            &trades,
        )?;
    }
}
