//! Opening the store at startup (test thread only): corrupt, foreign, unwritable and
//! wrong-version files give clear errors instead of a panic later.

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use klagg::store::{
    OpenOptions, Reader, SCHEMA_VERSION, Source, Store, StoreCmd, StoreError, WriterConfig,
    spawn_writer,
};
use klagg_shards::kline::{Interval, Scales};
use klagg_shards::protocol::SymbolIndex;
use support::TempDir;
use support::store::{MIN, PATIENCE, T0, kline, register};

/// A store with `rows` klines, shut down cleanly (WAL checkpointed into the main file).
fn populated_store(dir: &TempDir, rows: i64) {
    let store = Store::open(dir.db()).unwrap();
    let writer = spawn_writer(store, WriterConfig::default(), crossbeam_channel::never()).unwrap();
    writer
        .send(
            register(1, "BTCUSDT", Scales { price: 2, qty: 3 }),
            PATIENCE,
        )
        .unwrap();
    let klines = (0..rows)
        .map(|i| kline(Interval::M1, T0 + i * MIN, i))
        .collect();
    let backfill = StoreCmd::Backfilled {
        symbol: SymbolIndex(1),
        interval: Interval::M1,
        klines,
        source: Source::Rest,
        request: None,
    };
    writer.send(backfill, PATIENCE).unwrap();
    assert_eq!(writer.shutdown(PATIENCE).unwrap().rows_lost, 0);
}

fn overwrite(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
}

fn garbage(len: usize) -> Vec<u8> {
    // A fixed pseudo-random sequence (xorshift), never a valid SQLite page.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn a_file_of_garbage_is_reported_as_corrupt() {
    let dir = TempDir::new("garbage");
    std::fs::write(dir.db(), garbage(8192)).unwrap();
    let err = Store::open(dir.db()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(text.contains("corrupt or not an SQLite database"), "{text}");
    assert!(
        text.contains("klagg.db"),
        "the message names the file: {text}"
    );
    let err = Reader::open(dir.db()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn a_damaged_header_or_a_truncated_file_is_reported_as_corrupt() {
    let dir = TempDir::new("header");
    populated_store(&dir, 2000);
    let intact = std::fs::read(dir.db()).unwrap();
    overwrite(&dir.db(), 0, b"definitely not sqlite");
    let err = Store::open(dir.db()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");

    std::fs::write(dir.db(), &intact[..1000]).unwrap();
    let _ = std::fs::remove_file(dir.path().join("klagg.db-wal"));
    let err = Store::open(dir.db()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn quick_check_finds_damaged_pages() {
    let dir = TempDir::new("pages");
    populated_store(&dir, 5000);
    let size = std::fs::metadata(dir.db()).unwrap().len();
    assert!(size > 64 * 1024, "database of {size} bytes");
    // Damage the middle of the file (klines leaf pages), not the header or the schema page.
    overwrite(&dir.db(), size / 2, &garbage(16 * 1024));
    let err = Store::open_with(dir.db(), OpenOptions { quick_check: true }).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    eprintln!("{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn an_empty_file_becomes_a_new_store() {
    let dir = TempDir::new("empty");
    std::fs::write(dir.db(), b"").unwrap();
    Store::open(dir.db()).unwrap();
    let reader = Reader::open(dir.db()).unwrap();
    assert!(reader.symbols().unwrap().is_empty());
}

#[test]
fn unwritable_paths_are_reported_at_open() {
    let dir = TempDir::new("unwritable");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let cases = [
        file.join("klagg.db"),                       // the parent is a regular file
        dir.path().join("missing").join("klagg.db"), // the parent does not exist
        dir.path().to_path_buf(),                    // a directory
    ];
    for path in cases {
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{path:?}: {err:?}");
        let text = err.to_string();
        eprintln!("{text}");
        assert!(text.contains("cannot create or open"), "{text}");
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
    }
    let err = Reader::open(dir.path().join("never-created.db")).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
}

#[test]
fn an_unknown_schema_version_is_refused() {
    let dir = TempDir::new("version");
    populated_store(&dir, 10);
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(dir.db()).unwrap_err();
    match &err {
        StoreError::SchemaVersion {
            found, supported, ..
        } => assert_eq!((*found, *supported), (99, SCHEMA_VERSION)),
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        text.contains("schema version 99")
            && text.contains(&format!("version {SCHEMA_VERSION} only")),
        "{text}"
    );
    assert!(matches!(
        Reader::open(dir.db()),
        Err(StoreError::SchemaVersion { found: 99, .. })
    ));
}

#[test]
fn another_applications_database_is_refused() {
    let dir = TempDir::new("foreign");
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.execute_batch("CREATE TABLE klines (x INTEGER); INSERT INTO klines VALUES (1);")
        .unwrap();
    drop(conn);
    let err = Store::open(dir.db()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    // The file was not touched.
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

#[test]
fn a_damaged_schema_is_refused() {
    let dir = TempDir::new("schema");
    populated_store(&dir, 10);
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.execute_batch("DROP TABLE venue_gaps").unwrap();
    drop(conn);
    let err = Store::open(dir.db()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("venue_gaps"), "{err}");
}

#[test]
fn a_store_reopens_with_its_data() {
    let dir = TempDir::new("reopen");
    populated_store(&dir, 300);
    let started = std::time::Instant::now();
    let store = Store::open(dir.db()).unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "open took {took:?}");
    let reader = store.reader().unwrap();
    assert_eq!(reader.count("BTCUSDT", Interval::M1).unwrap(), 300);
}
