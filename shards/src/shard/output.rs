//! The shard's outputs (shard thread): turns the Worker's events into [`KlineMsg`]s for the
//! store and the API and [`ShardReport`]s for the control plane, over bounded channels.
//!
//! Final klines (closed, flat runs, corrected) are never dropped: what a full channel refuses
//! waits in that output's outbox, in order, and later messages queue behind it. When the
//! outboxes together exceed the pause depth, the shard stops reading frames and closing on the
//! clock until they drain (backpressure reaches the socket instead of memory). Open-kline
//! updates are coalesced per loop iteration and may be dropped under backpressure (counted).

use std::collections::VecDeque;

use crossbeam_channel::{Sender, TrySendError};

use crate::kline::BookEvent;
use crate::protocol::{KlineMsg, ResyncReason, ShardId, ShardReport, SymbolIndex};
use crate::worker::{Worker, WorkerEvent};

/// Reports waiting for room in the report channel (one per symbol at most is pending in
/// practice, as a symbol is reported once per activation).
pub const REPORTS_PENDING_MAX: usize = 65_536;

/// One output of a shard (the store, the API, a test).
#[derive(Debug, Clone)]
pub struct KlineSink {
    pub tx: Sender<KlineMsg>,
    /// Also send open-kline updates (the store only needs final klines).
    pub updates: bool,
}

#[derive(Debug)]
struct SinkState {
    sink: KlineSink,
    outbox: VecDeque<KlineMsg>,
    gone: bool,
}

/// Counters of the publisher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub updates_sent: u64,
    pub updates_dropped: u64,
    pub klines_sent: u64,
    pub klines_undeliverable: u64,
    pub outbox_max: u64,
    pub resyncs_requested: u64,
    pub reports_dropped: u64,
}

/// Outputs of one shard.
#[derive(Debug)]
pub struct Publisher {
    shard: ShardId,
    sinks: Vec<SinkState>,
    reports_tx: Sender<ShardReport>,
    reports_pending: VecDeque<ShardReport>,
    pause_depth: usize,
    stats: PublishStats,
}

impl Publisher {
    pub fn new(
        shard: ShardId,
        sinks: Vec<KlineSink>,
        reports_tx: Sender<ShardReport>,
        pause_depth: usize,
    ) -> Publisher {
        Publisher {
            shard,
            sinks: sinks
                .into_iter()
                .map(|sink| SinkState {
                    sink,
                    outbox: VecDeque::new(),
                    gone: false,
                })
                .collect(),
            reports_tx,
            reports_pending: VecDeque::new(),
            pause_depth,
            stats: PublishStats::default(),
        }
    }

    pub fn stats(&self) -> PublishStats {
        self.stats
    }

    /// Messages waiting in the outboxes.
    pub fn depth(&self) -> usize {
        self.sinks.iter().map(|sink| sink.outbox.len()).sum()
    }

    /// True when reading and clock closes should wait for the outboxes to drain.
    pub fn paused(&self) -> bool {
        self.depth() >= self.pause_depth
    }

    /// Publish the events (drained from the Worker, in order) and clear `events`.
    pub fn publish(&mut self, events: &mut Vec<WorkerEvent>, worker: &mut Worker) {
        for (symbol, event) in events.drain(..) {
            match event {
                BookEvent::Updated { slot } => self.publish_update(symbol, slot, worker),
                BookEvent::Closed {
                    interval, kline, ..
                } => self.send_final(KlineMsg::Closed {
                    symbol,
                    interval,
                    kline,
                }),
                BookEvent::FlatRun {
                    interval,
                    first_open_ms,
                    count,
                    price,
                    ..
                } => self.send_final(KlineMsg::FlatRun {
                    symbol,
                    interval,
                    first_open_ms,
                    count,
                    price,
                }),
                BookEvent::Corrected {
                    interval, kline, ..
                } => {
                    self.send_final(KlineMsg::Corrected {
                        symbol,
                        interval,
                        kline,
                    });
                }
                BookEvent::Gap {
                    slot,
                    expected_agg_id,
                    received_agg_id,
                } => {
                    let reason = ResyncReason::Gap {
                        expected_agg_id,
                        received_agg_id,
                    };
                    self.request_resync(worker, slot, symbol, reason);
                }
            }
        }
        let depth = self.depth() as u64;
        self.stats.outbox_max = self.stats.outbox_max.max(depth);
    }

    /// Ask the control plane to re-synchronise `symbol` (once per activation).
    pub fn request_resync(
        &mut self,
        worker: &mut Worker,
        slot: u32,
        symbol: SymbolIndex,
        reason: ResyncReason,
    ) {
        if !worker.note_resync_requested(slot) {
            return;
        }
        self.stats.resyncs_requested += 1;
        let report = ShardReport::ResyncNeeded {
            shard: self.shard,
            symbol,
            reason,
        };
        if !self.reports_pending.is_empty() {
            self.queue_report(report);
            return;
        }
        match self.reports_tx.try_send(report) {
            Ok(()) => {}
            Err(TrySendError::Full(report)) => self.queue_report(report),
            Err(TrySendError::Disconnected(_)) => self.stats.reports_dropped += 1,
        }
    }

    fn queue_report(&mut self, report: ShardReport) {
        if self.reports_pending.len() < REPORTS_PENDING_MAX {
            self.reports_pending.push_back(report);
        } else {
            self.stats.reports_dropped += 1;
        }
    }

    fn publish_update(&mut self, symbol: SymbolIndex, slot: u32, worker: &Worker) {
        if worker.symbol_at(slot).map(|spec| spec.index) != Some(symbol) {
            return; // the slot changed hands since the event; the update is moot
        }
        let book = worker.book();
        for (index, &interval) in book.intervals().iter().enumerate() {
            let Some(kline) = book.current(slot, index) else {
                continue;
            };
            let message = KlineMsg::Update {
                symbol,
                interval,
                kline: *kline,
            };
            for state in self.sinks.iter_mut().filter(|s| s.sink.updates && !s.gone) {
                // An update must not overtake a final kline waiting in the outbox.
                if !state.outbox.is_empty() {
                    self.stats.updates_dropped += 1;
                    continue;
                }
                match state.sink.tx.try_send(message) {
                    Ok(()) => self.stats.updates_sent += 1,
                    Err(TrySendError::Full(_)) => self.stats.updates_dropped += 1,
                    Err(TrySendError::Disconnected(_)) => state.gone = true,
                }
            }
        }
    }

    fn send_final(&mut self, message: KlineMsg) {
        for state in &mut self.sinks {
            if state.gone {
                self.stats.klines_undeliverable += 1;
                continue;
            }
            if !state.outbox.is_empty() {
                state.outbox.push_back(message);
                continue;
            }
            match state.sink.tx.try_send(message) {
                Ok(()) => self.stats.klines_sent += 1,
                Err(TrySendError::Full(message)) => state.outbox.push_back(message),
                Err(TrySendError::Disconnected(_)) => {
                    state.gone = true;
                    self.stats.klines_undeliverable += 1;
                }
            }
        }
    }

    /// Move waiting messages and reports into their channels as far as they have room.
    pub fn flush(&mut self) {
        for state in &mut self.sinks {
            while let Some(&message) = state.outbox.front() {
                match state.sink.tx.try_send(message) {
                    Ok(()) => {
                        state.outbox.pop_front();
                        self.stats.klines_sent += 1;
                    }
                    Err(TrySendError::Full(_)) => break,
                    Err(TrySendError::Disconnected(_)) => {
                        state.gone = true;
                        self.stats.klines_undeliverable += state.outbox.len() as u64;
                        state.outbox.clear();
                    }
                }
            }
        }
        while let Some(report) = self.reports_pending.pop_front() {
            match self.reports_tx.try_send(report) {
                Ok(()) => {}
                Err(TrySendError::Full(report)) => {
                    self.reports_pending.push_front(report);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.stats.reports_dropped += 1 + self.reports_pending.len() as u64;
                    self.reports_pending.clear();
                }
            }
        }
    }

    /// Give up on everything still waiting (shutdown past its deadline), counting it: final
    /// klines as undeliverable, reports as dropped.
    pub fn abandon_pending(&mut self) {
        for state in &mut self.sinks {
            self.stats.klines_undeliverable += state.outbox.len() as u64;
            state.outbox.clear();
        }
        self.stats.reports_dropped += self.reports_pending.len() as u64;
        self.reports_pending.clear();
    }

    /// True when something waits to be flushed.
    pub fn has_pending(&self) -> bool {
        self.depth() > 0 || !self.reports_pending.is_empty()
    }
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
