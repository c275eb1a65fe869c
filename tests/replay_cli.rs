//! `klagg replay` end to end (test thread, runs the built binary): the acceptance check of the
//! foundation issue against real data, and bad-input behaviour.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::str::FromStr;

use klagg_bench::testdata::shared_data;
use rust_decimal::Decimal;

fn klagg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klagg"))
        .args(args)
        .output()
        .expect("run klagg")
}

/// Every field of a kline row as decimals (integers too), the trailing `ignore` dropped.
fn decimals(fields: &[&str]) -> Vec<Decimal> {
    fields[..11]
        .iter()
        .map(|field| Decimal::from_str(field).unwrap())
        .collect()
}

#[test]
fn replay_prints_the_360_official_1s_klines() {
    let trades = shared_data("virtual-risk-radar/binance-spot-virtualusdt-aggtrades.json");
    let klines = shared_data("virtual-risk-radar/binance-spot-virtualusdt-1s-klines.json");
    let (Some(trades), Some(klines)) = (trades, klines) else {
        return;
    };
    let output = klagg(&["replay", "--intervals", "1s", trades.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 360);
    let official: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(klines).unwrap()).unwrap();
    for (row, want) in rows.iter().zip(&official) {
        assert_eq!(row.len(), 12);
        let want: Vec<String> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string().replace('"', ""))
            .collect();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_eq!(decimals(row), decimals(&want), "kline at {}", row[0]);
    }
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("klagg-replay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_input_names_file_line_and_field_and_prints_nothing() {
    let file = temp_file(
        "bad.csv",
        "1,10.5,2,1,1,1700000000000,false\n2,10.x,2,2,2,1700000000100,false\n",
    );
    let output = klagg(&["replay", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "no partial output");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("bad.csv:2: field `price`"), "{stderr}");
}

#[test]
fn gaps_are_an_error_unless_allowed() {
    let file = temp_file(
        "gap.csv",
        "1,10.5,2,1,1,1700000000000,false\n5,10.5,2,5,5,1700000000100,true\n",
    );
    let output = klagg(&["replay", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected id 2, got 5"));
    let output = klagg(&["replay", "--allow-gaps", "--header", file.to_str().unwrap()]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        2,
        "header and one 1m kline: {stdout}"
    );
}

#[test]
fn bad_flags_are_refused() {
    let output = klagg(&["replay", "--intervals", "1x", "f.csv"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown interval \"1x\""));
    let output = klagg(&["replay", "--intervals", "1m,5m", "f.csv"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("need --out-dir"));
}

#[test]
fn trades_out_of_time_order_are_an_error_unless_allowed() {
    // The second trade is 100 s before the first: too old for the open minute and no minute
    // has closed yet, so it cannot be aggregated.
    let file = temp_file(
        "late.csv",
        "1,100.5,1,1,1,1704067260000,false\n2,100.6,1,2,2,1704067160000,false\n\
         3,100.7,1,3,3,1704067265000,false\n",
    );
    let output = klagg(&["replay", "--symbol", "X", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "no partial output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("late.csv:2"), "{stderr}");
    let output = klagg(&["replay", "--allow-gaps", file.to_str().unwrap()]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
}

#[test]
fn a_last_id_below_the_first_names_the_field() {
    let file = temp_file("ids.csv", "1,100.5,1,5,4,1704067260000,false\n");
    let output = klagg(&["replay", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ids.csv:1: field `last_trade_id`"),
        "{stderr}"
    );
}

#[test]
fn out_dir_gets_one_complete_file_per_interval() {
    let file = temp_file(
        "BTCUSDT-aggTrades-2024-01-01.csv",
        "1,100.5,1,1,1,1704067200000,false\n2,100.6,2,2,2,1704067261000,true\n\
         3,100.7,1,3,3,1704067501000,false\n",
    );
    let dir = file.with_file_name("out");
    let _ = std::fs::remove_dir_all(&dir);
    let output = klagg(&[
        "replay",
        "--intervals",
        "1m,5m",
        "--header",
        "--out-dir",
        dir.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let lines = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .lines()
            .count()
    };
    // Header + minutes 00:00 … 00:05 (flat ones between); header + 00:00 and 00:05.
    assert_eq!(lines("BTCUSDT-1m.csv"), 7);
    assert_eq!(lines("BTCUSDT-5m.csv"), 3);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no partial files left: {names:?}");
}

#[test]
fn a_sum_overflow_is_an_error_even_when_no_interval_holds_the_others() {
    // 1w and 1M do not nest; the week of 2024-01-29 overflows while neither month does.
    let big = i64::MAX;
    let file = temp_file(
        "ovf.csv",
        &format!(
            "1,{big},{big},1,1,1706659200000,false\n2,{big},{big},2,2,1706745600000,false\n\
             3,{big},{big},3,3,1706832000000,false\n"
        ),
    );
    let dir = file.with_file_name("ovf-out");
    let _ = std::fs::remove_dir_all(&dir);
    let output = klagg(&[
        "replay",
        "--symbol",
        "OVF",
        "--intervals",
        "1w,1M",
        "--out-dir",
        dir.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ovf.csv:3") && stderr.contains("overflow"),
        "{stderr}"
    );
    assert!(!dir.join("OVF-1w.csv").exists());
}
