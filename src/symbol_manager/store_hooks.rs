//! The SymbolManager's hooks into the kline store (called on the manager, backfill and
//! detector threads; read by the `history` thread): registering a symbol with the store writer
//! before its first activation, noting gaps, and handing every activation to the history
//! thread's [`Inbox`] (its history after a first activation, its repair).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender};
use klagg_shards::protocol::{SymbolIndex, SymbolSpec};
use parking_lot::{Condvar, Mutex};

use super::backfiller::JobKind;
use crate::clock::epoch_ms;
use crate::constants::SYMBOLS_MAX;
use crate::shutdown::Shutdown;
use crate::store::{HistoryProgress, StoreCmd};

/// One wait for room in the store's command channel, and how many of them.
const STORE_SEND_TIMEOUT_MS: u64 = 1_000;
const STORE_SEND_TRIES: u32 = 30;
/// Activations waiting to be turned into repairs (one per symbol in practice).
const ACTIVATIONS_PENDING_MAX: usize = SYMBOLS_MAX;

/// History and repair settings (`--history-bars`, `--history-weight-percent`,
/// `--repair-max-periods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// Closed klines kept per interval (0: no history backfill).
    pub bars: u32,
    /// Share of the REST weight allowance per minute for history and repairs, in percent.
    pub weight_percent: u64,
    /// The most periods one repair fetches per interval.
    pub repair_periods_max: u32,
    /// Also repair the periods of every activation (not only after gaps).
    pub repair_activations: bool,
}

/// What the SymbolManager needs to drive the store.
#[derive(Debug, Clone)]
pub struct StoreLink {
    pub commands: Sender<StoreCmd>,
    pub db_path: PathBuf,
    pub settings: HistorySettings,
    pub progress: Arc<HistoryProgress>,
}

/// An activation that was sent to the dispatcher, as the history thread learns of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    pub symbol: SymbolIndex,
    pub kind: JobKind,
    /// When the initial package was taken (epoch ms).
    pub taken_at_ms: i64,
    /// When the activation was handed to the dispatcher (epoch ms).
    pub delivered_ms: i64,
    /// For a resync: when the gap was reported.
    pub gap_reported_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct InboxState {
    /// Symbols waiting for history, with the time they were queued.
    history: VecDeque<(SymbolIndex, i64)>,
    /// Every symbol ever queued for history (each once per process).
    seen: HashSet<SymbolIndex>,
    activations: VecDeque<Activation>,
    /// Gaps reported and not yet followed by their resync's activation.
    gaps: HashMap<SymbolIndex, i64>,
    woken: bool,
}

/// The history thread's inbox (bounded: one history entry per symbol, at most
/// `ACTIVATIONS_PENDING_MAX` activations and `SYMBOLS_MAX` gaps).
#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<InboxState>,
    ready: Condvar,
}

impl Inbox {
    /// Wait for new input, at most `timeout`.
    pub(super) fn wait(&self, timeout: Duration) {
        let mut state = self.state.lock();
        if !state.woken {
            let _ = self.ready.wait_for(&mut state, timeout);
        }
        state.woken = false;
    }

    fn wake(&self, state: &mut InboxState) {
        state.woken = true;
        self.ready.notify_one();
    }

    pub(super) fn take_activations(&self) -> Vec<Activation> {
        self.state.lock().activations.drain(..).collect()
    }

    pub(super) fn pop_history(&self) -> Option<(SymbolIndex, i64)> {
        self.state.lock().history.pop_front()
    }

    pub(super) fn requeue_history(&self, entry: (SymbolIndex, i64)) {
        self.state.lock().history.push_back(entry);
    }

    pub(super) fn history_len(&self) -> usize {
        self.state.lock().history.len()
    }
}

/// How the SymbolManager's threads tell the store and the history thread about symbols.
#[derive(Debug, Clone)]
pub struct StoreHooks {
    commands: Sender<StoreCmd>,
    inbox: Arc<Inbox>,
    progress: Arc<HistoryProgress>,
    settings: HistorySettings,
    shutdown: Shutdown,
}

impl StoreHooks {
    pub fn new(link: &StoreLink, shutdown: Shutdown) -> StoreHooks {
        StoreHooks {
            commands: link.commands.clone(),
            inbox: Arc::new(Inbox::default()),
            progress: link.progress.clone(),
            settings: link.settings,
            shutdown,
        }
    }

    /// The history thread's inbox.
    pub fn inbox(&self) -> Arc<Inbox> {
        self.inbox.clone()
    }

    /// Register `spec` with the store writer before its first activation (waits for room in the
    /// command channel, bounded; a failure is counted).
    pub fn register(&self, spec: &SymbolSpec) {
        let cmd = StoreCmd::RegisterSymbol {
            index: spec.index,
            name: spec.name.clone(),
            scales: spec.scales,
        };
        if send_store(&self.commands, cmd, &self.shutdown, &self.progress) {
            HistoryProgress::add(&self.progress.registrations, 1);
        }
    }

    /// A shard reported missed trades of `symbol` at `reported_ms`; its resync follows.
    pub fn gap_reported(&self, symbol: SymbolIndex, reported_ms: i64) {
        let mut state = self.inbox.state.lock();
        if state.gaps.len() >= SYMBOLS_MAX && !state.gaps.contains_key(&symbol) {
            HistoryProgress::add(&self.progress.repair_refused, 1);
            return;
        }
        let earliest = state.gaps.entry(symbol).or_insert(reported_ms);
        *earliest = (*earliest).min(reported_ms);
    }

    /// `symbol`'s activation (built from a package taken at `taken_at_ms`) went to the
    /// dispatcher: queue its repair, and its history after a first activation.
    pub fn activated(&self, symbol: SymbolIndex, kind: JobKind, taken_at_ms: i64) {
        let mut state = self.inbox.state.lock();
        let gap_reported_ms = match kind {
            JobKind::Resync => state.gaps.remove(&symbol),
            _ => None,
        };
        if gap_reported_ms.is_some() || self.settings.repair_activations {
            if state.activations.len() < ACTIVATIONS_PENDING_MAX {
                state.activations.push_back(Activation {
                    symbol,
                    kind,
                    taken_at_ms,
                    delivered_ms: epoch_ms(),
                    gap_reported_ms,
                });
            } else {
                HistoryProgress::add(&self.progress.repair_refused, 1);
            }
        }
        if kind != JobKind::Resync && self.settings.bars > 0 && state.seen.insert(symbol) {
            state.history.push_back((symbol, epoch_ms()));
            HistoryProgress::add(&self.progress.symbols_total, 1);
        }
        self.inbox.wake(&mut state);
    }
}

/// Send to the store writer, waiting for room (bounded tries; stops early at shutdown).
pub(super) fn send_store(
    tx: &Sender<StoreCmd>,
    mut cmd: StoreCmd,
    shutdown: &Shutdown,
    progress: &HistoryProgress,
) -> bool {
    for _ in 0..STORE_SEND_TRIES {
        match tx.send_timeout(cmd, Duration::from_millis(STORE_SEND_TIMEOUT_MS)) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(back)) if !shutdown.is_requested() => cmd = back,
            Err(_) => break,
        }
    }
    HistoryProgress::add(&progress.store_send_failures, 1);
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use klagg_shards::kline::Scales;

    fn hooks(settings: HistorySettings) -> (StoreHooks, crossbeam_channel::Receiver<StoreCmd>) {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let link = StoreLink {
            commands: tx,
            db_path: PathBuf::from("unused.db"),
            settings,
            progress: Arc::new(HistoryProgress::default()),
        };
        (StoreHooks::new(&link, Shutdown::new()), rx)
    }

    const SETTINGS: HistorySettings = HistorySettings {
        bars: 10,
        weight_percent: 50,
        repair_periods_max: 100,
        repair_activations: false,
    };

    #[test]
    fn activations_queue_history_once_and_gaps_go_with_their_resync() {
        let (hooks, _rx) = hooks(SETTINGS);
        let (a, b) = (SymbolIndex(1), SymbolIndex(2));
        hooks.activated(a, JobKind::Startup, 100);
        hooks.activated(a, JobKind::Listing, 200);
        hooks.activated(b, JobKind::Resync, 300);
        let inbox = hooks.inbox();
        assert_eq!(
            inbox.history_len(),
            1,
            "once per symbol; not after a resync"
        );
        assert_eq!(HistoryProgress::get(&hooks.progress.symbols_total), 1);
        assert!(
            inbox.take_activations().is_empty(),
            "activation repairs are off"
        );
        hooks.gap_reported(b, 5_000);
        hooks.gap_reported(b, 4_000);
        hooks.gap_reported(b, 6_000);
        hooks.activated(b, JobKind::Resync, 7_000);
        let repairs = inbox.take_activations();
        assert_eq!(repairs.len(), 1);
        assert_eq!((repairs[0].symbol, repairs[0].kind), (b, JobKind::Resync));
        assert_eq!(
            repairs[0].gap_reported_ms,
            Some(4_000),
            "the earliest report"
        );
        assert_eq!(repairs[0].taken_at_ms, 7_000);
        hooks.activated(b, JobKind::Resync, 8_000);
        assert!(inbox.take_activations().is_empty(), "the gap was taken");
        assert_eq!(inbox.pop_history().map(|(s, _)| s), Some(a));
        inbox.wait(Duration::from_millis(1));
    }

    #[test]
    fn activation_repairs_and_no_history_when_asked() {
        let settings = HistorySettings {
            bars: 0,
            repair_activations: true,
            ..SETTINGS
        };
        let (hooks, _rx) = hooks(settings);
        hooks.activated(SymbolIndex(3), JobKind::Startup, 100);
        let inbox = hooks.inbox();
        assert_eq!(inbox.history_len(), 0);
        let repairs = inbox.take_activations();
        assert_eq!(repairs.len(), 1);
        assert_eq!(repairs[0].gap_reported_ms, None);
        assert!(repairs[0].delivered_ms >= repairs[0].taken_at_ms);
    }

    #[test]
    fn registration_reaches_the_writer_or_is_counted() {
        let (hooks, rx) = hooks(SETTINGS);
        let spec = SymbolSpec {
            index: SymbolIndex(9),
            name: Arc::from("BTCUSDT"),
            scales: Scales { price: 2, qty: 3 },
        };
        hooks.register(&spec);
        match rx.try_recv() {
            Ok(StoreCmd::RegisterSymbol { index, name, .. }) => {
                assert_eq!((index, &*name), (SymbolIndex(9), "BTCUSDT"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(HistoryProgress::get(&hooks.progress.registrations), 1);
        drop(rx);
        hooks.register(&spec);
        assert_eq!(HistoryProgress::get(&hooks.progress.store_send_failures), 1);
    }
}
