//! The store writer's handle (held by the control plane, used from any control thread):
//! starting the writer thread, sending it commands with a timeout, flushing, shutting down, and
//! reading its counters and health.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, bounded};
use klagg_shards::protocol::KlineMsg;

use super::reader::Reader;
use super::schema::Store;
use super::stats::{StoreCounters, StoreHealth, WriterReport, WriterShared};
use super::writer::{STORE_CMD_CAPACITY, StoreCmd, Writer, WriterConfig};
use super::{StoreError, wall_clock_ms};

/// Start the writer thread. It takes the store's connection, the shards' kline channel
/// (`bounded(KLINE_OUT_CAPACITY)`; pass `crossbeam_channel::never()` for none) and creates its
/// command channel ([`STORE_CMD_CAPACITY`]).
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn_writer(
    store: Store,
    config: WriterConfig,
    klines: Receiver<KlineMsg>,
) -> Result<WriterHandle, StoreError> {
    spawn_writer_with(store, config, klines, Vec::new())
}

/// [`spawn_writer`] with corrections listeners: each gets every kline a repair changed, as
/// `KlineMsg::Corrected`, after its commit (`try_send`; a full listener misses it, counted).
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn_writer_with(
    store: Store,
    config: WriterConfig,
    klines: Receiver<KlineMsg>,
    corrections: Vec<Sender<KlineMsg>>,
) -> Result<WriterHandle, StoreError> {
    let (commands_tx, commands) = bounded(STORE_CMD_CAPACITY);
    let (report_tx, report) = bounded(1);
    let shared = Arc::new(WriterShared::default());
    // Healthy from the start: the first beat of the loop may come a moment later.
    let now_ms = u64::try_from(wall_clock_ms()).unwrap_or(0);
    StoreCounters::set(&shared.counters.heartbeat_ms, now_ms);
    let path = store.path().to_path_buf();
    let writer = Writer::new(
        store,
        config,
        commands,
        klines,
        Arc::clone(&shared),
        corrections,
    );
    let guard = StopGuard(Arc::clone(&shared));
    let thread = std::thread::Builder::new()
        .name("store-writer".to_string())
        .spawn(move || {
            let _guard = guard;
            let _ = report_tx.send(writer.run());
        })
        .map_err(StoreError::Spawn)?;
    Ok(WriterHandle {
        commands: commands_tx,
        shared,
        report,
        thread: Some(thread),
        path,
    })
}

/// Marks the writer stopped when its thread ends, also by a panic.
struct StopGuard(Arc<WriterShared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
    }
}

/// How other threads use a running writer. Dropping it drops one command sender: the writer
/// stops (flushing) once every sender is gone; call [`WriterHandle::shutdown`] to stop it and
/// learn the outcome.
#[derive(Debug)]
pub struct WriterHandle {
    commands: Sender<StoreCmd>,
    shared: Arc<WriterShared>,
    report: Receiver<WriterReport>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl WriterHandle {
    /// A sender for the command channel (clone it into the control-plane threads).
    pub fn sender(&self) -> Sender<StoreCmd> {
        self.commands.clone()
    }

    /// Send a command, waiting at most `timeout` for room (the never-drop contract: on
    /// `Timeout` the caller still owns what it meant to send and retries later).
    ///
    /// # Errors
    /// [`StoreError::Timeout`] with the channel still full, [`StoreError::WriterGone`].
    pub fn send(&self, cmd: StoreCmd, timeout: Duration) -> Result<(), StoreError> {
        self.commands
            .send_timeout(cmd, timeout)
            .map_err(|error| match error {
                SendTimeoutError::Timeout(_) => StoreError::Timeout {
                    what: "take a command",
                    waited_ms: millis(timeout),
                },
                SendTimeoutError::Disconnected(_) => StoreError::WriterGone,
            })
    }

    /// Commit everything received so far and wait for it (at most `timeout` in all).
    ///
    /// # Errors
    /// [`StoreError::Timeout`] (for example while the database is failing),
    /// [`StoreError::WriterGone`].
    pub fn flush(&self, timeout: Duration) -> Result<(), StoreError> {
        let started = Instant::now();
        let (done, flushed) = bounded(1);
        self.send(StoreCmd::Flush { done }, timeout)?;
        let left = timeout.saturating_sub(started.elapsed());
        flushed.recv_timeout(left).map_err(|error| match error {
            RecvTimeoutError::Timeout => StoreError::Timeout {
                what: "flush",
                waited_ms: millis(timeout),
            },
            RecvTimeoutError::Disconnected => StoreError::WriterGone,
        })
    }

    /// Stop the writer: everything received is committed, then the thread exits and reports.
    ///
    /// # Errors
    /// [`StoreError::Timeout`] when the writer did not finish within `timeout` (the thread is
    /// left to finish on its own), [`StoreError::WriterGone`] when it died without a report.
    pub fn shutdown(mut self, timeout: Duration) -> Result<WriterReport, StoreError> {
        let started = Instant::now();
        match self.send(StoreCmd::Shutdown, timeout) {
            Ok(()) | Err(StoreError::WriterGone) => {}
            Err(error) => return Err(error),
        }
        let left = timeout.saturating_sub(started.elapsed());
        let report = self
            .report
            .recv_timeout(left)
            .map_err(|error| match error {
                RecvTimeoutError::Timeout => StoreError::Timeout {
                    what: "shut down",
                    waited_ms: millis(timeout),
                },
                RecvTimeoutError::Disconnected => StoreError::WriterGone,
            })?;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        Ok(report)
    }

    /// A cloneable view of the writer (counters, health, path) that outlives this handle.
    pub fn monitor(&self) -> super::monitor::StoreMonitor {
        super::monitor::StoreMonitor::new(Arc::clone(&self.shared), self.path.clone())
    }

    /// The writer's counters (for /metrics).
    pub fn counters(&self) -> &StoreCounters {
        &self.shared.counters
    }

    /// A health snapshot at wall-clock time `now_ms` (for the watchdog's HealthReporter).
    pub fn health(&self, now_ms: i64) -> StoreHealth {
        self.shared.health(now_ms)
    }

    /// Messages waiting in the command channel.
    pub fn commands_len(&self) -> usize {
        self.commands.len()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new read-only connection to the store.
    ///
    /// # Errors
    /// As [`Reader::open`].
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Reader::open(&self.path)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use klagg_bench::testdata::TempDir;

    #[test]
    fn a_stopped_writer_is_reported_gone() {
        let dir = TempDir::new("handle-gone");
        let store = Store::open(dir.db()).unwrap();
        let writer = spawn_writer(store, WriterConfig::default(), crossbeam_channel::never());
        let writer = writer.unwrap();
        let wait = Duration::from_secs(20);
        writer.flush(wait).unwrap();
        writer.sender().send(StoreCmd::Shutdown).unwrap();
        let started = Instant::now();
        while writer.health(crate::store::wall_clock_ms()).detail != "store writer stopped" {
            assert!(started.elapsed() < wait, "the writer did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(writer.flush(wait), Err(StoreError::WriterGone)));
        assert!(matches!(
            writer.send(StoreCmd::Shutdown, wait),
            Err(StoreError::WriterGone)
        ));
        let report = writer.shutdown(wait).unwrap();
        assert_eq!((report.rows_written, report.rows_lost), (0, 0));
        assert!(dir.path().join("klagg.db").exists());
    }
}
