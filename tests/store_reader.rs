//! Store round trips and the klines query semantics of `GET /fapi/v1/klines` (test threads
//! plus the store writer thread).

mod support;

use klagg::store::{KLINES_LIMIT_MAX, Source, StoreCmd, StoreError, WriterConfig};
use klagg_shards::kline::{Interval, Kline, Scales, flat_run_klines};
use klagg_shards::protocol::{KlineMsg, SymbolIndex};
use support::store::{MIN, PATIENCE, Rig, T0, closed, kline, register, update};

fn extreme_klines(interval: Interval) -> Vec<Kline> {
    let big = Kline {
        open_time_ms: T0,
        close_time_ms: interval.close_time(T0),
        open: i64::MAX,
        high: i64::MAX,
        low: 0,
        close: 1,
        volume: i128::MAX,
        quote_volume: i128::MAX - 7,
        taker_buy_volume: i128::MAX / 3,
        taker_buy_quote_volume: 1,
        trade_count: i64::MAX as u64,
        first_trade_id: i64::MAX - 1_000,
        last_trade_id: i64::MAX,
    };
    let tiny = Kline {
        open_time_ms: T0 + MIN,
        close_time_ms: interval.close_time(T0 + MIN),
        open: 1,
        high: 2,
        low: 1,
        close: 2,
        volume: 1,
        quote_volume: 1,
        taker_buy_volume: 0,
        taker_buy_quote_volume: 0,
        trade_count: 1,
        first_trade_id: 0,
        last_trade_id: 0,
    };
    let mut all = vec![big, tiny];
    all.extend(flat_run_klines(interval, T0 + 2 * MIN, 3, 123_456_789));
    all
}

#[test]
fn extreme_values_round_trip_exactly_at_scale_0_and_8() {
    let rig = Rig::new("roundtrip", WriterConfig::default(), 64);
    let symbols = [
        (1, "ZEROUSDT", Scales { price: 0, qty: 0 }),
        (2, "EIGHTUSDT", Scales { price: 8, qty: 8 }),
        (3, "MIXEDUSDT", Scales { price: 18, qty: 0 }),
    ];
    for (index, name, scales) in symbols {
        rig.command(register(index, name, scales));
        for kline in extreme_klines(Interval::M1) {
            rig.klines.send(closed(index, Interval::M1, kline)).unwrap();
        }
    }
    rig.flush();
    let reader = rig.writer.reader().unwrap();
    for (_, name, scales) in symbols {
        assert_eq!(reader.scales(name).unwrap(), Some(scales));
        let stored = reader
            .stored_klines(name, Interval::M1, None, None, None)
            .unwrap();
        let klines: Vec<Kline> = stored.iter().map(|row| row.kline).collect();
        assert_eq!(klines, extreme_klines(Interval::M1), "{name}");
        assert!(
            stored
                .iter()
                .all(|row| row.closed && row.source == Source::Live)
        );
        let flat = stored.last().unwrap().kline;
        assert_eq!(
            (flat.first_trade_id, flat.last_trade_id, flat.trade_count),
            (-1, -1, 0)
        );
    }
    assert_eq!(reader.symbols().unwrap().len(), 3);
}

#[test]
fn stored_text_is_binance_decimal_text() {
    let rig = Rig::new("text", WriterConfig::default(), 64);
    rig.command(register(7, "BTCUSDT", Scales { price: 2, qty: 3 }));
    let kline = Kline {
        open_time_ms: 1_616_338_800_000,
        close_time_ms: 1_616_339_099_999,
        open: 5_721_269,
        high: 5_731_500,
        low: 5_719_619,
        close: 5_730_000,
        volume: 496_263,
        quote_volume: 2_842_551_478_940,
        taker_buy_volume: 273_108,
        taker_buy_quote_volume: 1_564_262_369_718,
        trade_count: 7160,
        first_trade_id: 1,
        last_trade_id: 7160,
    };
    rig.klines.send(closed(7, Interval::M5, kline)).unwrap();
    rig.flush();
    let conn = rusqlite::Connection::open(rig.dir.db()).unwrap();
    let row: (String, String, String, i64) = conn
        .query_row(
            "SELECT open, volume, quote_volume, trade_count FROM klines WHERE symbol = 'BTCUSDT'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "57212.69".into(),
            "496.263".into(),
            "28425514.78940".into(),
            7160
        )
    );
    // A finer tick later reads the old rows exactly; the reader formats with the new scales.
    rig.command(register(7, "BTCUSDT", Scales { price: 3, qty: 3 }));
    rig.flush();
    let reader = rig.writer.reader().unwrap();
    let back = reader
        .klines("BTCUSDT", Interval::M5, None, None, None)
        .unwrap();
    assert_eq!(back[0].open, 57_212_690);
    assert_eq!(back[0].quote_volume, 28_425_514_789_400);
}

/// 20 closed klines at T0 + i·1m (i = 0..20) and the open one at i = 20.
fn rig_with_series() -> Rig {
    let rig = Rig::new("query", WriterConfig::default(), 256);
    rig.command(register(1, "ETHUSDT", Scales { price: 2, qty: 3 }));
    for i in 0..20 {
        let msg = closed(1, Interval::M1, kline(Interval::M1, T0 + i * MIN, i));
        rig.klines.send(msg).unwrap();
    }
    let open = kline(Interval::M1, T0 + 20 * MIN, 20);
    rig.klines.send(update(1, Interval::M1, open)).unwrap();
    rig.flush();
    rig
}

fn opens(klines: &[Kline]) -> Vec<i64> {
    klines.iter().map(|k| (k.open_time_ms - T0) / MIN).collect()
}

#[test]
fn klines_query_follows_binance_semantics() {
    let rig = rig_with_series();
    let reader = rig.writer.reader().unwrap();
    let q = |start: Option<i64>, end: Option<i64>, limit: Option<u32>| {
        let at = |i: i64| T0 + i * MIN;
        let klines = reader
            .klines("ETHUSDT", Interval::M1, start.map(at), end.map(at), limit)
            .unwrap();
        opens(&klines)
    };
    let range = |a: i64, b: i64| (a..=b).collect::<Vec<i64>>();
    // Neither: the most recent `limit`, ascending, including the stored open kline.
    assert_eq!(q(None, None, None), range(0, 20));
    assert_eq!(q(None, None, Some(3)), range(18, 20));
    // Start only: the first `limit` from it (inclusive of the open time).
    assert_eq!(q(Some(5), None, Some(4)), range(5, 8));
    assert_eq!(q(Some(18), None, None), range(18, 20));
    // End only: the latest `limit` up to it (inclusive).
    assert_eq!(q(None, Some(10), Some(3)), range(8, 10));
    assert_eq!(q(None, Some(2), None), range(0, 2));
    // Both: ascending, capped by `limit` from the start.
    assert_eq!(q(Some(3), Some(12), None), range(3, 12));
    assert_eq!(q(Some(3), Some(12), Some(2)), range(3, 4));
    assert_eq!(q(Some(7), Some(7), None), vec![7]);
    assert_eq!(q(Some(12), Some(3), None), Vec::<i64>::new());
    // Outside the stored range.
    assert_eq!(q(Some(30), None, None), Vec::<i64>::new());
    assert_eq!(q(None, Some(-1), None), Vec::<i64>::new());
    // A start inside a period (not an open time) starts at the next open time.
    let mid = reader
        .klines(
            "ETHUSDT",
            Interval::M1,
            Some(T0 + 5 * MIN + 1),
            None,
            Some(2),
        )
        .unwrap();
    assert_eq!(opens(&mid), vec![6, 7]);
    // Limits are clamped to 1..=1500.
    assert_eq!(q(None, None, Some(0)), vec![20]);
    let stored = reader
        .stored_klines("ETHUSDT", Interval::M1, None, None, None)
        .unwrap();
    assert!(
        !stored.last().unwrap().closed,
        "the open kline is stored open"
    );
    assert!(stored[..20].iter().all(|row| row.closed));
    // Other intervals and symbols are separate.
    assert!(
        reader
            .klines("ETHUSDT", Interval::M5, None, None, None)
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        reader.klines("NOPEUSDT", Interval::M1, None, None, None),
        Err(StoreError::UnknownSymbol(_))
    ));
}

#[test]
fn limits_cap_at_1500_and_default_to_500() {
    let rig = Rig::new("limits", WriterConfig::default(), 64);
    rig.command(register(1, "SOLUSDT", Scales { price: 3, qty: 0 }));
    let klines: Vec<Kline> = (0..1600)
        .map(|i| kline(Interval::M1, T0 + i * MIN, i))
        .collect();
    rig.command(StoreCmd::Backfilled {
        symbol: SymbolIndex(1),
        interval: Interval::M1,
        klines,
        source: Source::Rest,
        request: None,
    });
    rig.flush();
    let reader = rig.writer.reader().unwrap();
    let latest = |limit| {
        reader
            .klines("SOLUSDT", Interval::M1, None, None, limit)
            .unwrap()
    };
    assert_eq!(latest(None).len(), 500);
    assert_eq!(opens(&latest(None))[0], 1100);
    assert_eq!(latest(Some(1500)).len(), KLINES_LIMIT_MAX as usize);
    assert_eq!(latest(Some(5000)).len(), 1500);
    let from_start = reader
        .klines("SOLUSDT", Interval::M1, Some(T0), None, Some(1500))
        .unwrap();
    assert_eq!(opens(&from_start)[1499], 1499);
    assert_eq!(reader.count("SOLUSDT", Interval::M1).unwrap(), 1600);
    assert_eq!(reader.count("SOLUSDT", Interval::H1).unwrap(), 0);
    let last = reader
        .last_stored("SOLUSDT", Interval::M1)
        .unwrap()
        .unwrap();
    assert_eq!(last.kline.open_time_ms, T0 + 1599 * MIN);
    assert_eq!(last.source, Source::Rest);
    assert!(rig.writer.shutdown(PATIENCE).unwrap().rows_lost == 0);
}

#[test]
fn last_stored_and_last_closed_differ_by_the_open_kline() {
    let rig = rig_with_series();
    let reader = rig.writer.reader().unwrap();
    let last = reader
        .last_stored("ETHUSDT", Interval::M1)
        .unwrap()
        .unwrap();
    assert_eq!(
        (last.kline.open_time_ms, last.closed),
        (T0 + 20 * MIN, false)
    );
    let last_closed = reader
        .last_closed("ETHUSDT", Interval::M1)
        .unwrap()
        .unwrap();
    assert_eq!(last_closed.kline.open_time_ms, T0 + 19 * MIN);
    assert_eq!(reader.last_stored("ETHUSDT", Interval::H1).unwrap(), None);
}

#[test]
fn a_reader_reads_beside_the_writer_while_it_writes() {
    let rig = rig_with_series();
    let reader = rig.writer.reader().unwrap();
    for i in 21..200 {
        rig.klines
            .send(closed(
                1,
                Interval::M1,
                kline(Interval::M1, T0 + i * MIN, i),
            ))
            .unwrap();
        let latest = reader
            .klines("ETHUSDT", Interval::M1, None, None, Some(1))
            .unwrap();
        assert_eq!(latest.len(), 1);
    }
    rig.flush();
    assert_eq!(reader.count("ETHUSDT", Interval::M1).unwrap(), 200);
    let msg = KlineMsg::Corrected {
        symbol: SymbolIndex(1),
        interval: Interval::M1,
        kline: kline(Interval::M1, T0 + 199 * MIN, 9999),
    };
    rig.klines.send(msg).unwrap();
    rig.flush();
    let last = reader
        .last_stored("ETHUSDT", Interval::M1)
        .unwrap()
        .unwrap();
    assert_eq!(last.kline.open, 1000 + 9999);
}
