//! `klagg run` with its kline store, as a process: a corrupt, foreign or unwritable `--db` is one
//! clear `klagg run: error: …` line and exit code 1 before anything starts; with `--venue sim`
//! the store fills (history, live klines), its gauges are on `/metrics`, and after a clean stop
//! the database holds closed klines of every symbol.

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use klagg::store::Reader;
use klagg_shards::kline::Interval;
use support::cli::{get, run_sim, wait_output};
use support::{TempDir, free_port};

/// `klagg run --venue sim --db db` with a quiet log.
fn run_with_db(db: &Path, extra: &[&str]) -> Child {
    let quiet = ["--listen", "127.0.0.1:0", "--log-level", "error", "--db"];
    let flags = quiet.iter().map(OsStr::new).chain([db.as_os_str()]);
    run_sim(3, flags.chain(extra.iter().map(OsStr::new)))
}

/// Exit code 1 and exactly one stderr line, which starts with `klagg run: error:`.
fn assert_one_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("klagg run: error: "), "{stderr}");
    stderr
}

#[test]
fn a_bad_database_is_one_clear_line_and_exit_1() {
    let temp = TempDir::new("store-cli-bad");
    let dir = temp.path();
    let corrupt = dir.join("corrupt.db");
    std::fs::write(&corrupt, vec![0x5a; 8192]).unwrap();
    let foreign = dir.join("foreign.db");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT);")
        .unwrap();
    drop(conn);
    let missing_dir = dir.join("no-such-dir").join("klagg.db");
    let cases = [
        (corrupt, "corrupt or not an SQLite database"),
        (foreign, "not a klagg kline store"),
        (missing_dir, "cannot create or open the database file"),
    ];
    for (db, expected) in cases {
        let (output, elapsed) = wait_output(run_with_db(&db, &[]), Duration::from_secs(20));
        let line = assert_one_error_line(&output);
        assert!(line.contains(expected), "{}: {line}", db.display());
        assert!(line.contains(&db.display().to_string()), "{line}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
}

#[test]
fn the_store_fills_and_survives_a_clean_stop() {
    let temp = TempDir::new("store-cli-fill");
    let dir = temp.path();
    let db = dir.join("klagg.db");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let flags = [
        "--listen",
        &listen,
        "--log-level",
        "error",
        "--run-for",
        "8s",
    ];
    let more = ["--intervals", "1s,1m", "--history-bars", "5", "--db"];
    let flags = flags.iter().chain(&more).map(OsStr::new);
    let child = run_sim(3, flags.chain([db.as_os_str()]));
    let until = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let text = get(port, "/metrics").unwrap_or_default();
        if text.contains("klagg_history_symbols_done_total 3") {
            break text;
        }
        assert!(Instant::now() < until, "history did not complete: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for metric in [
        "klagg_store_queue_depth",
        "klagg_store_rows_written_total",
        "klagg_store_batches_total",
        "klagg_store_last_batch_us",
        "klagg_store_rows_refused_total 0",
        "klagg_history_weight_total",
        "klagg_repair_weight_total",
    ] {
        assert!(metrics.contains(metric), "{metric} missing: {metrics}");
    }
    // The watchdog reports every second.
    loop {
        let health = get(port, "/health").unwrap_or_default();
        if health.contains("\"store\"") {
            break;
        }
        assert!(Instant::now() < until, "no store in /health: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (output, _) = wait_output(child, Duration::from_secs(30));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reader = Reader::open(&db).unwrap();
    let symbols = reader.symbols().unwrap();
    assert_eq!(symbols.len(), 3);
    for symbol in symbols {
        // The simulator has two minutes of history: 1m has fewer than 5 bars.
        for (interval, least) in [(Interval::S1, 5), (Interval::M1, 2)] {
            let rows = reader
                .stored_klines(&symbol.name, interval, None, None, Some(1500))
                .unwrap();
            let closed = rows.iter().filter(|r| r.closed).count();
            assert!(
                closed >= least,
                "{} {interval}: {closed} closed klines",
                symbol.name
            );
        }
    }
    drop(reader);
}
