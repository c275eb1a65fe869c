//! The kline store's part in `klagg run` (main thread, at startup and at shutdown): the store is
//! opened first (`run`: a corrupt or unwritable `--db` is one clear error line and exit 1), the
//! writer thread starts before the shards and takes their kline output through one
//! [`KlineSink`] (closed klines and open-kline updates, snapshotted every
//! `--snapshot-interval`), and at shutdown — after the shards and every producer stopped — the
//! writer commits everything, checkpoints and exits; a close that lost rows is reported to
//! `klagg run`, which exits with code 3.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use klagg_shards::protocol::{KLINE_OUT_CAPACITY, KlineMsg};
use klagg_shards::shard::KlineSink;
use slog::{Logger, info, warn};

use crate::config::{Config, ConfigError, RunArgs, invalid, parse_duration};
use crate::health::HealthReporter;
use crate::store::{HISTORY_BARS_DEFAULT, HISTORY_BARS_MAX};
use crate::store::{
    HistoryProgress, Store, StoreError, StoreReporter, StoreView, WriterConfig, WriterHandle,
    spawn_writer_with,
};
use crate::symbol_manager::history::{HISTORY_WEIGHT_PERCENT_DEFAULT, HistorySettings, StoreLink};
use crate::symbol_manager::repair::REPAIR_PERIODS_MAX_DEFAULT;

/// Time kept for the writer at the end of the shutdown deadline.
pub const STORE_SHUTDOWN_RESERVE: Duration = Duration::from_millis(1_500);

/// Settings of the kline store (`--history-bars`, `--history-weight-percent`,
/// `--snapshot-interval`, `--repair-max-periods`, `--repair-activations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    pub history_bars: u32,
    pub history_weight_percent: u64,
    pub snapshot_interval: Duration,
    pub repair_max_periods: u32,
    pub repair_activations: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            history_bars: HISTORY_BARS_DEFAULT,
            history_weight_percent: HISTORY_WEIGHT_PERCENT_DEFAULT,
            snapshot_interval: Duration::from_secs(1),
            repair_max_periods: REPAIR_PERIODS_MAX_DEFAULT,
            repair_activations: true,
        }
    }
}

impl StoreSettings {
    /// The store settings of `args` (defaults for what they leave out), validated.
    ///
    /// # Errors
    /// A value out of range, naming its flag.
    pub fn resolve(args: &RunArgs) -> Result<StoreSettings, ConfigError> {
        let defaults = StoreSettings::default();
        let history_bars = args.history_bars.unwrap_or(defaults.history_bars);
        if history_bars > HISTORY_BARS_MAX {
            return Err(invalid(
                "history-bars",
                format!("must be 0..={HISTORY_BARS_MAX}"),
            ));
        }
        let percent = args
            .history_weight_percent
            .unwrap_or(defaults.history_weight_percent);
        if !(1..=100).contains(&percent) {
            return Err(invalid("history-weight-percent", "must be 1..=100"));
        }
        let snapshot_interval = match args.snapshot_interval.as_deref() {
            Some(text) => parse_duration("snapshot-interval", text)?,
            None => defaults.snapshot_interval,
        };
        if snapshot_interval < Duration::from_millis(100)
            || snapshot_interval > Duration::from_secs(60)
        {
            return Err(invalid("snapshot-interval", "must be 100ms..=60s"));
        }
        let repair_max_periods = args
            .repair_max_periods
            .unwrap_or(defaults.repair_max_periods);
        if repair_max_periods == 0 || repair_max_periods > HISTORY_BARS_MAX {
            return Err(invalid(
                "repair-max-periods",
                format!("must be 1..={HISTORY_BARS_MAX}"),
            ));
        }
        Ok(StoreSettings {
            history_bars,
            history_weight_percent: percent,
            snapshot_interval,
            repair_max_periods,
            repair_activations: args
                .repair_activations
                .unwrap_or(defaults.repair_activations),
        })
    }
}

/// A running store: the writer and what the other components get from it.
#[derive(Debug)]
pub struct StoreRuntime {
    writer: WriterHandle,
    /// Counters, health, history progress, readers (gateway state, tests).
    pub view: Arc<StoreView>,
    /// For the SymbolManager: registration, history, repairs.
    pub link: StoreLink,
}

/// Start the writer thread on `store` (telling `corrections` every kline a repair changed);
/// returns it and the shards' sink into it.
///
/// # Errors
/// The writer thread could not be spawned.
pub fn start(
    store: Store,
    config: &Config,
    corrections: Vec<Sender<KlineMsg>>,
) -> Result<(StoreRuntime, KlineSink), StoreError> {
    let (tx, rx) = bounded(KLINE_OUT_CAPACITY);
    let writer_config = WriterConfig {
        snapshot_interval: config.store.snapshot_interval,
        ..WriterConfig::default()
    };
    let writer = spawn_writer_with(store, writer_config, rx, corrections)?;
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
    /// commits what it received, checkpoints the WAL and exits, within `timeout`. Returns what
    /// went wrong when the close lost rows or failed (`klagg run` then exits with code 3).
    pub fn stop(self, timeout: Duration, log: &Logger) -> Option<String> {
        match self.writer.shutdown(timeout) {
            Ok(report) if report.rows_lost == 0 && report.error.is_none() => {
                info!(log, "store closed"; "rows_written" => report.rows_written,
                    "batches" => report.batches);
                None
            }
            Ok(report) => {
                let error = report.error.unwrap_or_default();
                warn!(log, "store closed with losses"; "rows_lost" => report.rows_lost,
                    "error" => &error);
                let mut problem = format!("the store lost {} rows at shutdown", report.rows_lost);
                if !error.is_empty() {
                    problem.push_str(&format!(" ({error})"));
                }
                Some(problem)
            }
            Err(error) => {
                warn!(log, "store did not close cleanly"; "error" => error.to_string());
                Some(format!("the store did not close cleanly: {error}"))
            }
        }
    }
}
