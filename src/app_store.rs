//! The kline store's part in `klagg run` (main thread, at startup and at shutdown): the store is
//! opened first (`run`: a corrupt or unwritable `--db` is one clear error line and exit 1), the
//! writer thread starts before the shards and takes their kline output through one
//! [`KlineSink`] (closed klines and open-kline updates, snapshotted every
//! `--snapshot-interval`), and at shutdown — after the shards and every producer stopped — the
//! writer commits everything, checkpoints and exits.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::bounded;
use klagg_shards::protocol::KLINE_OUT_CAPACITY;
use klagg_shards::shard::KlineSink;
use slog::{Logger, info, warn};

use crate::config::Config;
use crate::health::HealthReporter;
use crate::store::{
    HistoryProgress, Store, StoreError, StoreReporter, StoreView, WriterConfig, WriterHandle,
    spawn_writer,
};
use crate::symbol_manager::history::{HistorySettings, StoreLink};

/// Time kept for the writer at the end of the shutdown deadline.
pub const STORE_SHUTDOWN_RESERVE: Duration = Duration::from_millis(1_500);

/// A running store: the writer and what the other components get from it.
#[derive(Debug)]
pub struct StoreRuntime {
    writer: WriterHandle,
    /// Counters, health, history progress, readers (gateway state, tests).
    pub view: Arc<StoreView>,
    /// For the SymbolManager: registration, history, repairs.
    pub link: StoreLink,
}

/// Start the writer thread on `store`; returns it and the shards' sink into it.
///
/// # Errors
/// The writer thread could not be spawned.
pub fn start(store: Store, config: &Config) -> Result<(StoreRuntime, KlineSink), StoreError> {
    let (tx, rx) = bounded(KLINE_OUT_CAPACITY);
    let writer_config = WriterConfig {
        snapshot_interval: config.store.snapshot_interval,
        ..WriterConfig::default()
    };
    let writer = spawn_writer(store, writer_config, rx)?;
    let progress = Arc::new(HistoryProgress::default());
    let view = Arc::new(StoreView {
        monitor: writer.monitor(),
        progress: progress.clone(),
        history_bars: config.store.history_bars,
    });
    let link = StoreLink {
        commands: writer.sender(),
        db_path: writer.path().to_path_buf(),
        settings: HistorySettings {
            bars: config.store.history_bars,
            weight_percent: config.store.history_weight_percent,
            repair_periods_max: config.store.repair_max_periods,
            repair_activations: config.store.repair_activations,
        },
        progress,
    };
    let runtime = StoreRuntime { writer, view, link };
    Ok((runtime, KlineSink { tx, updates: true }))
}

impl StoreRuntime {
    /// The store's health reporter for the watchdog.
    pub fn reporter(&self) -> Arc<dyn HealthReporter> {
        Arc::new(StoreReporter {
            view: self.view.clone(),
            history: true,
        })
    }

    /// Stop the writer (call after the shards and the SymbolManager threads stopped): it
    /// commits what it received, checkpoints the WAL and exits, within `timeout`.
    pub fn stop(self, timeout: Duration, log: &Logger) {
        match self.writer.shutdown(timeout) {
            Ok(report) if report.rows_lost == 0 && report.error.is_none() => {
                info!(log, "store closed"; "rows_written" => report.rows_written,
                    "batches" => report.batches);
            }
            Ok(report) => {
                warn!(log, "store closed with losses"; "rows_lost" => report.rows_lost,
                    "error" => report.error.unwrap_or_default());
            }
            Err(error) => warn!(log, "store did not close cleanly"; "error" => error.to_string()),
        }
    }
}
