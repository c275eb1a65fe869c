//! The engine's kline core, through the replay readers, against real Binance data in
//! `../shared/data` (see its SOURCES.md). Decimals are compared as decimals.

use std::path::PathBuf;
use std::str::FromStr;

use klagg_bench::replay::{ReplaySettings, aggregate_files, scales_from_files};
use klagg_bench::testdata::shared_data;
use klagg_shards::kline::{Fixed, Interval, Kline, Scales};
use rust_decimal::Decimal;

const VIRTUAL_TRADES: &str = "virtual-risk-radar/binance-spot-virtualusdt-aggtrades.json";
const VIRTUAL_KLINES: &str = "virtual-risk-radar/binance-spot-virtualusdt-1s-klines.json";
const BTC_SPOT_CSV: &str = "hjb-pde-team-project/BTCUSDT-aggTrades-2026-01-01.csv";

/// A kline as decimals, independent of the engine's fixed-point representation.
#[derive(Debug, Clone, PartialEq)]
struct DecimalKline {
    open_time: i64,
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: Decimal,
    close_time: i64,
    quote_volume: Decimal,
    count: u64,
    taker_buy_volume: Decimal,
    taker_buy_quote_volume: Decimal,
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|err| panic!("{text:?}: {err}"))
}

fn from_engine(kline: &Kline, scales: Scales) -> DecimalKline {
    let fixed = |value: i128, scale: u8| dec(&Fixed::new(value, scale).to_string());
    DecimalKline {
        open_time: kline.open_time_ms,
        open: fixed(kline.open.into(), scales.price),
        high: fixed(kline.high.into(), scales.price),
        low: fixed(kline.low.into(), scales.price),
        close: fixed(kline.close.into(), scales.price),
        volume: fixed(kline.volume, scales.qty),
        close_time: kline.close_time_ms,
        quote_volume: fixed(kline.quote_volume, scales.quote()),
        count: kline.trade_count,
        taker_buy_volume: fixed(kline.taker_buy_volume, scales.qty),
        taker_buy_quote_volume: fixed(kline.taker_buy_quote_volume, scales.quote()),
    }
}

/// The official klines: REST arrays `[t, "o", "h", "l", "c", "v", T, "q", n, "V", "Q", "0"]`.
fn official(path: &PathBuf) -> Vec<DecimalKline> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    rows.iter()
        .map(|row| {
            let text = |index: usize| dec(row[index].as_str().unwrap());
            DecimalKline {
                open_time: row[0].as_i64().unwrap(),
                open: text(1),
                high: text(2),
                low: text(3),
                close: text(4),
                volume: text(5),
                close_time: row[6].as_i64().unwrap(),
                quote_volume: text(7),
                count: row[8].as_u64().unwrap(),
                taker_buy_volume: text(9),
                taker_buy_quote_volume: text(10),
            }
        })
        .collect()
}

/// Roll official klines up into `interval` with plain decimal arithmetic: prices from the
/// klines with trades (first open, max high, min low, last close), sums added.
fn roll_up(klines: &[DecimalKline], interval: Interval) -> Vec<DecimalKline> {
    let mut out: Vec<DecimalKline> = Vec::new();
    for kline in klines {
        let open_time = interval.open_time(kline.open_time);
        let same = out.last().is_some_and(|last| last.open_time == open_time);
        if !same {
            let close_time = interval.close_time(open_time);
            out.push(DecimalKline {
                open_time,
                close_time,
                ..kline.clone()
            });
            continue;
        }
        let last = out.last_mut().unwrap();
        if kline.count > 0 {
            if last.count == 0 {
                (last.open, last.high, last.low) = (kline.open, kline.high, kline.low);
            }
            last.high = last.high.max(kline.high);
            last.low = last.low.min(kline.low);
        }
        last.close = kline.close;
        last.volume += kline.volume;
        last.quote_volume += kline.quote_volume;
        last.count += kline.count;
        last.taker_buy_volume += kline.taker_buy_volume;
        last.taker_buy_quote_volume += kline.taker_buy_quote_volume;
    }
    out
}

fn replay(file: PathBuf, intervals: &[Interval]) -> (Scales, Vec<Vec<DecimalKline>>) {
    let settings = ReplaySettings {
        intervals: intervals.to_vec(),
        price_scale: None,
        qty_scale: None,
    };
    let output = aggregate_files(&[file], &settings).unwrap();
    assert!(output.gaps.is_empty(), "{:?}", output.gaps);
    let scales = output.scales;
    let klines = intervals
        .iter()
        .map(|interval| {
            output.klines[interval]
                .iter()
                .map(|k| from_engine(k, scales))
                .collect()
        })
        .collect();
    (scales, klines)
}

#[test]
fn virtual_usdt_trades_rebuild_all_360_official_1s_klines() {
    let (Some(trades), Some(klines)) = (shared_data(VIRTUAL_TRADES), shared_data(VIRTUAL_KLINES))
    else {
        return;
    };
    let official = official(&klines);
    assert_eq!(official.len(), 360);
    let (scales, ours) = replay(trades, &[Interval::S1]);
    assert_eq!(
        scales,
        Scales { price: 8, qty: 8 },
        "decimal places as written in the data"
    );
    assert_eq!(ours[0].len(), 360);
    for (got, want) in ours[0].iter().zip(&official) {
        assert_eq!(got, want, "1s kline at {}", want.open_time);
    }
    let empty = official.iter().filter(|k| k.count == 0).count();
    assert_eq!(empty, 254, "the flat seconds are covered too");
}

#[test]
fn virtual_usdt_minutes_equal_roll_ups_of_the_official_seconds() {
    let (Some(trades), Some(klines)) = (shared_data(VIRTUAL_TRADES), shared_data(VIRTUAL_KLINES))
    else {
        return;
    };
    let official = official(&klines);
    let (_, ours) = replay(trades, &[Interval::M1, Interval::M5]);
    for (index, interval) in [Interval::M1, Interval::M5].into_iter().enumerate() {
        let expected = roll_up(&official, interval);
        assert_eq!(ours[index], expected, "{interval}");
    }
    assert_eq!(ours[0].len(), 6);
    assert_eq!(ours[1].len(), 2);
    // The 03:41 minute, as derived in SOURCES.md.
    let minute = &ours[0][1];
    assert_eq!(
        (minute.open, minute.high, minute.low, minute.close),
        (dec("0.7463"), dec("0.7463"), dec("0.7448"), dec("0.7457"))
    );
    assert_eq!(
        (minute.volume, minute.quote_volume, minute.count),
        (dec("12766.4"), dec("9519.24107"), 126)
    );
    assert_eq!(
        (minute.taker_buy_volume, minute.taker_buy_quote_volume),
        (dec("8783.4"), dec("6548.33279"))
    );
}

#[test]
fn spot_btc_csv_in_microseconds_aggregates_the_first_minute() {
    let Some(file) = shared_data(BTC_SPOT_CSV) else {
        return;
    };
    let (_, ours) = replay(file, &[Interval::M1]);
    assert_eq!(ours[0].len(), 13, "12 complete minutes and a partial 00:12");
    let first = &ours[0][0];
    assert_eq!(first.open_time, 1_767_225_600_000);
    assert_eq!(
        (first.open, first.high, first.low, first.close),
        (
            dec("87648.21"),
            dec("87648.22"),
            dec("87632.74"),
            dec("87648.00")
        )
    );
    assert_eq!(
        (first.volume, first.quote_volume, first.count),
        (dec("4.08049"), dec("357625.776862"), 1193)
    );
    assert_eq!(
        (first.taker_buy_volume, first.taker_buy_quote_volume),
        (dec("1.79879"), dec("157651.5149507"))
    );
}

#[test]
fn given_decimal_places_that_are_too_few_are_an_error_naming_the_field() {
    let Some(file) = shared_data(VIRTUAL_TRADES) else {
        return;
    };
    assert_eq!(
        scales_from_files(std::slice::from_ref(&file)).unwrap(),
        Scales { price: 8, qty: 8 }
    );
    let settings = ReplaySettings {
        intervals: vec![Interval::M1],
        price_scale: Some(2),
        qty_scale: Some(1),
    };
    let err = aggregate_files(&[file], &settings).unwrap_err().to_string();
    assert!(
        err.contains("binance-spot-virtualusdt-aggtrades.json:2: field `price`"),
        "{err}"
    );
    assert!(err.contains("beyond 2 decimal places"), "{err}");
}

#[test]
fn files_out_of_time_order_are_refused() {
    let dir = std::env::temp_dir().join(format!("klagg-replay-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (late, early) = (dir.join("late.csv"), dir.join("early.csv"));
    std::fs::write(&late, "2,1.5,1,2,2,1700000060000,false\n").unwrap();
    std::fs::write(&early, "1,1.5,1,1,1,1700000000000,false\n").unwrap();
    let settings = ReplaySettings {
        intervals: vec![Interval::M1],
        price_scale: None,
        qty_scale: None,
    };
    let err = aggregate_files(&[late.clone(), early.clone()], &settings)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("early.csv:1: files are not in time order"),
        "{err}"
    );
    let output = aggregate_files(&[early, late], &settings).unwrap();
    assert_eq!(output.klines[&Interval::M1].len(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}
