//! Opening the store (main thread at startup; readers reuse the checks): create or verify the
//! database file, its schema version and its WAL mode, and turn every way that can fail into a
//! clear [`StoreError`] before any thread starts. [`Store`] owns the read-write connection until
//! the writer thread takes it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::StoreError;
use super::reader::Reader;

/// The schema this build reads and writes (`PRAGMA user_version`). Version 2 allows the
/// `'repair'` source; version 1 files are migrated when the writer opens them.
pub const SCHEMA_VERSION: i64 = 2;
/// The older schema this build migrates in place.
const SCHEMA_VERSION_V1: i64 = 1;
/// `PRAGMA application_id` of a klagg store (`"klag"` in ASCII): tells our file from other
/// SQLite databases.
pub const APPLICATION_ID: i64 = 0x6B6C_6167;
/// How long a connection waits for another connection's lock before reporting it.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection (the writer and readers use fewer than this).
const STATEMENT_CACHE_CAPACITY: usize = 32;
/// The writer's page cache, in KiB (negative `cache_size` means KiB).
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// The `symbols` table.
macro_rules! symbols_sql {
    () => {
        "CREATE TABLE symbols (
    name        TEXT    NOT NULL PRIMARY KEY,
    price_scale INTEGER NOT NULL CHECK (price_scale BETWEEN 0 AND 18),
    qty_scale   INTEGER NOT NULL CHECK (qty_scale BETWEEN 0 AND 18),
    updated_ms  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"
    };
}

/// The `klines` table (version 2: `'repair'` is a source).
macro_rules! klines_sql {
    () => {
        "CREATE TABLE klines (
    symbol                 TEXT    NOT NULL,
    interval               TEXT    NOT NULL,
    open_time              INTEGER NOT NULL,
    close_time             INTEGER NOT NULL,
    open                   TEXT    NOT NULL,
    high                   TEXT    NOT NULL,
    low                    TEXT    NOT NULL,
    close                  TEXT    NOT NULL,
    volume                 TEXT    NOT NULL,
    quote_volume           TEXT    NOT NULL,
    trade_count            INTEGER NOT NULL,
    taker_buy_volume       TEXT    NOT NULL,
    taker_buy_quote_volume TEXT    NOT NULL,
    first_trade_id         INTEGER NOT NULL,
    last_trade_id          INTEGER NOT NULL,
    closed                 INTEGER NOT NULL CHECK (closed IN (0, 1)),
    source                 TEXT    NOT NULL
                           CHECK (source IN ('live', 'rest', 'flat_fill', 'repair')),
    updated_ms             INTEGER NOT NULL,
    PRIMARY KEY (symbol, interval, open_time)
) STRICT, WITHOUT ROWID;
"
    };
}

const SCHEMA_SQL: &str = concat!(
    symbols_sql!(),
    klines_sql!(),
    "CREATE TABLE venue_gaps (
    symbol      TEXT    NOT NULL,
    interval    TEXT    NOT NULL,
    first_open  INTEGER NOT NULL,
    last_open   INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL,
    PRIMARY KEY (symbol, interval, first_open)
) STRICT, WITHOUT ROWID;
"
);

/// Version 1 → 2: rebuild `klines` with the wider `source` check (SQLite cannot alter a check).
const MIGRATE_V1_SQL: &str = concat!(
    "ALTER TABLE klines RENAME TO klines_v1;\n",
    klines_sql!(),
    "INSERT INTO klines SELECT * FROM klines_v1;\nDROP TABLE klines_v1;\n"
);

/// The tables (and some of their columns) the probe expects.
const EXPECTED_COLUMNS: [(&str, &[&str]); 3] = [
    ("symbols", &["name", "price_scale", "qty_scale"]),
    (
        "klines",
        &[
            "symbol",
            "interval",
            "open_time",
            "close_time",
            "taker_buy_quote_volume",
            "last_trade_id",
            "closed",
            "source",
        ],
    ),
    (
        "venue_gaps",
        &["symbol", "interval", "first_open", "last_open"],
    ),
];

/// How thoroughly [`Store::open_with`] checks an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Also run `PRAGMA quick_check` (reads the whole file: seconds for gigabytes). Without it,
    /// the open reads the header, the schema and one path of the klines tree, which catches a
    /// file that is not a database, a truncated one and a damaged schema, in milliseconds.
    pub quick_check: bool,
}

/// An opened, verified, writable kline store: the read-write connection, until
/// [`super::spawn_writer`] moves it onto the writer thread.
#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Open (creating if needed) the store at `path` with the default checks.
    ///
    /// # Errors
    /// A clear [`StoreError`]: the file cannot be created or opened, is not writable, is not an
    /// SQLite database or is corrupt, belongs to another application, has another schema
    /// version, is locked, or cannot use WAL mode.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::open_with(path, OpenOptions::default())
    }

    /// [`Store::open`] with explicit [`OpenOptions`].
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| StoreError::Open {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let store = Store { conn, path };
        store.configure().map_err(|e| store.classify(e))?;
        store.check_or_create(options)?;
        store.enable_wal()?;
        store.probe_writable()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new read-only connection on the same file (one per reading thread).
    ///
    /// # Errors
    /// As [`Reader::open`].
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Reader::open(&self.path)
    }

    fn configure(&self) -> Result<(), rusqlite::Error> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        self.conn
            .set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "temp_store", "MEMORY")?;
        self.conn
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        Ok(())
    }

    fn check_or_create(&self, options: OpenOptions) -> Result<(), StoreError> {
        let header = read_header(&self.conn).map_err(|e| self.classify(e))?;
        if header.is_empty_file() {
            return self.create_schema();
        }
        if header.application_id == APPLICATION_ID && header.user_version == SCHEMA_VERSION_V1 {
            self.migrate_v1()?;
        }
        let header = read_header(&self.conn).map_err(|e| self.classify(e))?;
        check_header(&self.path, &header)?;
        probe_schema(&self.conn, &self.path)?;
        if options.quick_check {
            quick_check(&self.conn, &self.path)?;
        }
        Ok(())
    }

    fn create_schema(&self) -> Result<(), StoreError> {
        let run = || -> Result<(), rusqlite::Error> {
            let tx =
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            // Another process may have created it between our check and the lock.
            let (version, tables) = tx.query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), \
                        (SELECT count(*) FROM sqlite_master)",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )?;
            if version == 0 && tables == 0 {
                tx.execute_batch(SCHEMA_SQL)?;
                tx.pragma_update(None, "application_id", APPLICATION_ID)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            tx.commit()
        };
        run().map_err(|e| self.classify(e))?;
        let header = read_header(&self.conn).map_err(|e| self.classify(e))?;
        check_header(&self.path, &header)
    }

    /// Migrate a version-1 store in one transaction (rows are kept as they are).
    fn migrate_v1(&self) -> Result<(), StoreError> {
        let run = || -> Result<(), rusqlite::Error> {
            let tx =
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            if version == SCHEMA_VERSION_V1 {
                tx.execute_batch(MIGRATE_V1_SQL)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            tx.commit()
        };
        run().map_err(|e| self.classify(e))
    }

    fn enable_wal(&self) -> Result<(), StoreError> {
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| self.classify(e))?;
        if mode.eq_ignore_ascii_case("wal") {
            Ok(())
        } else {
            Err(StoreError::NoWal {
                path: self.path.clone(),
                mode,
            })
        }
    }

    /// Take the write lock once: a read-only file, a read-only directory (no `-wal` file) or a
    /// lock held by another process shows up here, at startup.
    fn probe_writable(&self) -> Result<(), StoreError> {
        let run = || -> Result<(), rusqlite::Error> {
            let tx =
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE symbols SET updated_ms = updated_ms WHERE name = ''",
                [],
            )?;
            tx.commit()
        };
        run().map_err(|e| match self.classify(e) {
            StoreError::Sqlite(e) => StoreError::NotWritable {
                path: self.path.clone(),
                detail: e.to_string(),
            },
            other => other,
        })
    }

    fn classify(&self, error: rusqlite::Error) -> StoreError {
        classify(&self.path, error)
    }
}

/// The identity of a database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub application_id: i64,
    pub user_version: i64,
    pub tables: i64,
}

impl Header {
    fn is_empty_file(&self) -> bool {
        self.application_id == 0 && self.user_version == 0 && self.tables == 0
    }
}

pub(crate) fn read_header(conn: &Connection) -> Result<Header, rusqlite::Error> {
    conn.query_row(
        "SELECT (SELECT application_id FROM pragma_application_id), \
                (SELECT user_version FROM pragma_user_version), \
                (SELECT count(*) FROM sqlite_master)",
        [],
        |row| {
            Ok(Header {
                application_id: row.get(0)?,
                user_version: row.get(1)?,
                tables: row.get(2)?,
            })
        },
    )
}

/// Refuse another application's database and an unknown schema version.
pub(crate) fn check_header(path: &Path, header: &Header) -> Result<(), StoreError> {
    if header.application_id != APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            detail: format!(
                "application_id is {:#x}, expected {APPLICATION_ID:#x}, with {} schema objects",
                header.application_id, header.tables
            ),
        });
    }
    if header.user_version != SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            path: path.to_path_buf(),
            found: header.user_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Check the expected tables and columns exist and read one path of the klines tree.
pub(crate) fn probe_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    for (table, columns) in EXPECTED_COLUMNS {
        let present = table_columns(conn, table).map_err(|e| classify(path, e))?;
        if let Some(missing) = columns.iter().find(|c| !present.iter().any(|p| p == *c)) {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("table {table} lacks column {missing} (damaged schema)"),
            });
        }
    }
    conn.query_row(
        "SELECT count(*) FROM (SELECT open_time FROM klines \
         ORDER BY symbol DESC, interval DESC, open_time DESC LIMIT 1)",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map_err(|e| classify(path, e))?;
    Ok(())
}

fn table_columns(conn: &Connection, table: &str) -> Result<Vec<String>, rusqlite::Error> {
    let mut statement = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = statement.query_map([table], |row| row.get::<_, String>(0))?;
    names.collect()
}

fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut statement = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(|e| classify(path, e))?;
    let lines: Vec<String> = statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect)
        .map_err(|e| classify(path, e))?;
    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("quick_check: {}", lines.join("; ").replace('\n', "; ")),
    })
}

/// Map SQLite's result codes onto the startup errors an operator can act on.
pub(crate) fn classify(path: &Path, error: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    let detail = error.to_string();
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt { path, detail }
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            StoreError::Open { path, detail }
        }
        Some(ErrorCode::ReadOnly) => StoreError::NotWritable { path, detail },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Locked { path, detail }
        }
        _ => StoreError::Sqlite(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use klagg_bench::testdata::TempDir;

    #[test]
    fn creates_then_reopens() {
        let dir = TempDir::new("schema-create");
        let store = Store::open(dir.db()).unwrap();
        let header = read_header(&store.conn).unwrap();
        assert_eq!(header.application_id, APPLICATION_ID);
        assert_eq!(header.user_version, SCHEMA_VERSION);
        assert_eq!(header.tables, 3);
        drop(store);
        let again = Store::open_with(dir.db(), OpenOptions { quick_check: true }).unwrap();
        let mode: String = again
            .conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = again
            .conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
    }

    #[test]
    fn a_version_1_store_is_migrated_with_its_rows() {
        let dir = TempDir::new("schema-v1");
        let conn = Connection::open(dir.db()).unwrap();
        let v1 = SCHEMA_SQL.replace(", 'repair')", ")");
        conn.execute_batch(&v1).unwrap();
        conn.execute_batch(
            "INSERT INTO symbols VALUES ('BTCUSDT', 2, 3, 0);
             INSERT INTO klines VALUES ('BTCUSDT', '1m', 0, 59999, '1.00', '1.00', '1.00',
               '1.00', '0', '0', 0, '0', '0', -1, -1, 1, 'live', 0);",
        )
        .unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);
        let store = Store::open(dir.db()).unwrap();
        assert_eq!(
            read_header(&store.conn).unwrap().user_version,
            SCHEMA_VERSION
        );
        store
            .conn
            .execute("UPDATE klines SET source = 'repair'", [])
            .unwrap();
        let reader = store.reader().unwrap();
        let rows = reader
            .stored_klines(
                "BTCUSDT",
                klagg_shards::kline::Interval::M1,
                None,
                None,
                None,
            )
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source, crate::store::Source::Repair);
    }

    #[test]
    fn refuses_a_foreign_database() {
        let dir = TempDir::new("schema-foreign");
        let conn = Connection::open(dir.db()).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT);")
            .unwrap();
        drop(conn);
        let err = Store::open(dir.db()).unwrap_err();
        assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("not a klagg kline store"), "{err}");
    }
}
