//! History planning against a real store (test threads plus the store writer thread): an empty
//! store plans the whole window, a restart only the tail and the holes, flat fills are replaced
//! by the venue's klines, periods before a listing are asked for once, and REST klines never
//! replace closed live klines.

mod support;

use klagg::store::{
    HistoryPlan, KlineRequest, Source, StoreCmd, StoreCounters, StoredKline, WriterConfig,
};
use klagg_shards::kline::{Interval, Kline, Scales};
use klagg_shards::protocol::SymbolIndex;
use support::store::{MIN, Rig, T0, closed, kline, register, update};

const BARS: u32 = 1000;
/// The window is T0 … T0 + 999 min; the period at T0 + 1000 min is open.
const NOW: i64 = T0 + 1000 * MIN + 30_000;
/// Seeds of the venue's klines are offset so they differ from the live ones.
const VENUE_SEED: i64 = 7000;

fn venue_kline(open: i64) -> Kline {
    kline(Interval::M1, open, (open - T0) / MIN + VENUE_SEED)
}

/// A fake venue listed at `listed_ms`: the klines of `request`, at most `limit`.
fn venue(request: &KlineRequest, listed_ms: i64) -> Vec<Kline> {
    let first = request.start_ms.max(listed_ms);
    (0..)
        .map(|i| first + i * MIN)
        .take_while(|&open| open <= request.end_ms)
        .take(request.limit as usize)
        .map(venue_kline)
        .collect()
}

fn rig(tag: &str) -> Rig {
    let rig = Rig::new(tag, WriterConfig::default(), 4096);
    rig.command(register(1, "BTCUSDT", Scales { price: 2, qty: 3 }));
    rig.flush();
    rig
}

fn plan(rig: &Rig, now: i64) -> HistoryPlan {
    let reader = rig.writer.reader().unwrap();
    reader
        .plan_history("BTCUSDT", Interval::M1, BARS, now)
        .unwrap()
}

/// Run the plan's requests against the venue and write the answers.
fn execute(rig: &Rig, plan: &HistoryPlan, listed_ms: i64) {
    for request in &plan.requests {
        rig.command(StoreCmd::Backfilled {
            symbol: SymbolIndex(1),
            interval: Interval::M1,
            klines: venue(request, listed_ms),
            source: Source::Rest,
            request: Some(*request),
        });
    }
    rig.flush();
}

/// Flat fills of BTCUSDT's 1m periods `minutes` (after `T0`) at `price`, stored.
fn flat_fills(rig: &Rig, minutes: std::ops::Range<i64>, price: i64) {
    let flats = minutes.map(|i| Kline::flat(Interval::M1, T0 + i * MIN, price));
    rig.command(StoreCmd::Backfilled {
        symbol: SymbolIndex(1),
        interval: Interval::M1,
        klines: flats.collect(),
        source: Source::FlatFill,
        request: None,
    });
    rig.flush();
}

/// BTCUSDT's stored 1m rows opening in `[from, to]`.
fn stored_m1(rig: &Rig, from: i64, to: i64) -> Vec<StoredKline> {
    let reader = rig.writer.reader().unwrap();
    let rows = reader.stored_klines("BTCUSDT", Interval::M1, Some(from), Some(to), None);
    rows.unwrap()
}

fn limits(plan: &HistoryPlan) -> Vec<u32> {
    plan.requests.iter().map(|r| r.limit).collect()
}

#[test]
fn an_empty_store_plans_the_whole_window_then_only_the_tail() {
    let rig = rig("history-empty");
    let first = plan(&rig, NOW);
    assert_eq!(limits(&first), vec![1000]);
    assert_eq!(first.weight(), 5);
    assert_eq!(first.requests[0].start_ms, T0);
    assert_eq!(first.requests[0].end_ms, T0 + 999 * MIN);
    execute(&rig, &first, 0);
    assert!(plan(&rig, NOW).is_complete());
    // Ten minutes later (a restart): only the ten new periods, one request of weight 1.
    let later = plan(&rig, NOW + 10 * MIN);
    assert_eq!(later.missing.len(), 1);
    assert!(later.missing[0].tail);
    assert_eq!(limits(&later), vec![10]);
    assert_eq!(later.weight(), 1);
    assert_eq!(later.requests[0].start_ms, T0 + 1000 * MIN);
    // A long downtime: the window slid past everything stored.
    let much_later = plan(&rig, NOW + 5000 * MIN);
    assert_eq!(much_later.weight(), 5);
}

#[test]
fn interior_holes_and_stale_open_klines_are_planned() {
    let rig = rig("history-holes");
    for i in (0..999).filter(|i| !(400..410).contains(i)) {
        let open = T0 + i * MIN;
        rig.klines
            .send(closed(1, Interval::M1, kline(Interval::M1, open, i)))
            .unwrap();
    }
    // The process stopped while 999 was open: its snapshot is stale.
    rig.klines
        .send(update(
            1,
            Interval::M1,
            kline(Interval::M1, T0 + 999 * MIN, 1),
        ))
        .unwrap();
    rig.flush();
    let missing_plan = plan(&rig, NOW + MIN);
    // Hole 400..409, and the tail: the stale 999 plus the new 1000.
    let ranges: Vec<(i64, u64, bool)> = missing_plan
        .missing
        .iter()
        .map(|m| ((m.first_open_ms - T0) / MIN, m.periods, m.tail))
        .collect();
    assert_eq!(ranges, vec![(400, 10, false), (999, 2, true)]);
    assert_eq!(missing_plan.missing[1].stale_open, 1);
    assert_eq!(missing_plan.weight(), 2);
    execute(&rig, &missing_plan, 0);
    assert!(plan(&rig, NOW + MIN).is_complete());
    let stale = stored_m1(&rig, T0 + 999 * MIN, T0 + 999 * MIN);
    assert_eq!((stale[0].source, stale[0].closed), (Source::Rest, true));
    assert_eq!(stale[0].kline, venue_kline(T0 + 999 * MIN));
}

#[test]
fn flat_fills_are_replaced_by_the_venues_klines() {
    let rig = rig("history-flat");
    execute(&rig, &plan(&rig, NOW), 0);
    // Overwrite nothing: flat fills only fill holes. So make a hole first, then fill it flat.
    let conn = rusqlite::Connection::open(rig.dir.db()).unwrap();
    conn.execute(
        "DELETE FROM klines WHERE open_time BETWEEN ?1 AND ?2",
        [T0 + 500 * MIN, T0 + 529 * MIN],
    )
    .unwrap();
    flat_fills(&rig, 500..530, 4242);
    let with_flats = plan(&rig, NOW);
    assert_eq!(with_flats.missing.len(), 1);
    assert_eq!(with_flats.missing[0].flat_fills, 30);
    assert_eq!(limits(&with_flats), vec![30]);
    execute(&rig, &with_flats, 0);
    assert!(plan(&rig, NOW).is_complete());
    let rows = stored_m1(&rig, T0 + 500 * MIN, T0 + 529 * MIN);
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().all(|row| row.source == Source::Rest));
    assert!(
        rows.iter()
            .all(|row| row.kline == venue_kline(row.kline.open_time_ms))
    );
}

#[test]
fn periods_before_a_listing_are_asked_for_once() {
    let rig = rig("history-listing");
    let listed = T0 + 700 * MIN;
    let first = plan(&rig, NOW);
    execute(&rig, &first, listed);
    let reader = rig.writer.reader().unwrap();
    assert_eq!(reader.count("BTCUSDT", Interval::M1).unwrap(), 300);
    assert_eq!(
        reader.venue_gaps("BTCUSDT", Interval::M1, T0, NOW).unwrap(),
        vec![(T0, listed - MIN)]
    );
    assert!(
        plan(&rig, NOW).is_complete(),
        "the venue has nothing before its listing"
    );
    assert_eq!(limits(&plan(&rig, NOW + 3 * MIN)), vec![3]);
    let counters = rig.writer.counters();
    assert_eq!(StoreCounters::get(&counters.venue_gaps_recorded), 1);
}

#[test]
fn flat_fills_where_the_venue_has_no_klines_are_removed() {
    let rig = rig("history-flat-gap");
    flat_fills(&rig, 0..50, 1);
    // The venue lists at 20: the flat fills before it do not exist there.
    execute(&rig, &plan(&rig, NOW), T0 + 20 * MIN);
    let reader = rig.writer.reader().unwrap();
    let first = reader
        .klines("BTCUSDT", Interval::M1, None, None, Some(1500))
        .unwrap()[0];
    assert_eq!(first.open_time_ms, T0 + 20 * MIN);
    assert!(plan(&rig, NOW).is_complete());
}

#[test]
fn rest_klines_never_replace_closed_live_klines() {
    let rig = rig("history-live-wins");
    // Live klines everywhere except a few scattered holes: the plan fetches one merged span.
    let holes = [100, 130, 160, 190, 220];
    for i in (0..1000).filter(|i| !holes.contains(i)) {
        let open = T0 + i * MIN;
        rig.klines
            .send(closed(1, Interval::M1, kline(Interval::M1, open, i)))
            .unwrap();
    }
    rig.flush();
    let merged = plan(&rig, NOW);
    assert_eq!(merged.missing.len(), 5);
    assert_eq!(merged.requests.len(), 1, "{merged:?}");
    assert_eq!(merged.weight(), 2);
    execute(&rig, &merged, 0);
    assert!(plan(&rig, NOW).is_complete());
    let rows = stored_m1(&rig, T0 + 100 * MIN, T0 + 220 * MIN);
    assert_eq!(rows.len(), 121);
    for row in rows {
        let i = (row.kline.open_time_ms - T0) / MIN;
        let expected = if holes.contains(&i) {
            Source::Rest
        } else {
            Source::Live
        };
        assert_eq!(row.source, expected, "period {i}");
    }
    assert_eq!(StoreCounters::get(&rig.writer.counters().rows_kept), 116);
}
