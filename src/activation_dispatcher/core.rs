//! The activation protocol as a pure state machine (owned by the ActivationDispatcher thread, or
//! driven step by step by the deterministic simulation): inputs are commands
//! ([`DispatcherCmd`]), Worker acks and the time; outputs are sends over a [`ShardLink`] and
//! [`DispatchEvent`]s for the shell to log and publish. No clock reads, no blocking, no logging.
//!
//! Invariants (asserted here and checked after every step by the simulation):
//! - a symbol has at most one owner shard while it is activating or active, and keeps it;
//! - `WsCmd::SubscribeOne` is sent only for a symbol whose current attempt was acked Ok;
//! - one request is sent at most `1 + ACTIVATION_RETRY_MAX` times, then the symbol is Failed;
//! - an ack is applied only when it echoes the current `ActivationId` of its symbol and comes
//!   from the owner; late, duplicated or foreign acks are counted and ignored;
//! - a symbol waiting (back-off, full inbox, failed) never holds back other symbols, except that
//!   at most `ACTIVATIONS_IN_FLIGHT_PER_SHARD_MAX` activations per shard await acks at a time.

use std::collections::VecDeque;

use crossbeam_channel::{Sender, TrySendError};
use klagg_shards::protocol::{
    ActivationId, InitialSymbolData, ShardCmd, ShardId, SymbolIndex, SymbolSpec, WorkerAck,
    WorkerCmd, WsCmd,
};

use super::messages::{DispatchCounters, DispatchEvent, DispatchState, DispatcherCmd, ShardLink};
use super::routing::RoutingTable;
use crate::constants::{
    ACTIVATION_ACK_TIMEOUT_MS, ACTIVATION_BACKOFF_BASE_MS, ACTIVATION_BACKOFF_MAX_MS,
    ACTIVATION_RETRY_MAX, ACTIVATIONS_IN_FLIGHT_PER_SHARD_MAX, SYMBOLS_MAX,
};

#[derive(Debug)]
struct Request {
    spec: SymbolSpec,
    initial_data: InitialSymbolData,
    expected_trades_24h: u64,
}

#[derive(Debug)]
struct Slot {
    state: DispatchState,
    request: Option<Request>,
    owner: Option<ShardId>,
    /// The routing weight charged to `owner`.
    weight: u64,
    activation: ActivationId,
    /// Sends of the current request.
    attempts: u32,
    /// Ack deadline (Activating) or retry time (Backoff).
    timer_ms: i64,
    /// When the symbol first became Active (epoch ms).
    activated_ms: Option<i64>,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            state: DispatchState::Unknown,
            request: None,
            owner: None,
            weight: 0,
            activation: ActivationId(0),
            attempts: 0,
            timer_ms: 0,
            activated_ms: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Activate(SymbolIndex, ActivationId),
    Subscribe(SymbolIndex),
    Unsubscribe(SymbolIndex),
    Deactivate(SymbolIndex),
}

#[derive(Debug, Default)]
struct ShardQueue {
    /// Sends for this shard in order; the head waits while the inbox is full.
    outbox: VecDeque<Out>,
    in_flight: usize,
}

/// The dispatcher's state: routing table, per-symbol activation state, per-shard outboxes.
#[derive(Debug)]
pub struct DispatcherCore {
    routing: RoutingTable,
    slots: Vec<Slot>,
    shards: Vec<ShardQueue>,
    ack_tx: Sender<WorkerAck>,
    next_activation: u64,
    active_count: usize,
    failed_count: usize,
    events: Vec<DispatchEvent>,
    counters: DispatchCounters,
}

/// Back-off before the retry that follows failed attempt number `attempt` (1-based).
pub fn backoff_ms(attempt: u32) -> i64 {
    let shift = attempt.saturating_sub(1).min(16);
    (ACTIVATION_BACKOFF_BASE_MS << shift).min(ACTIVATION_BACKOFF_MAX_MS)
}

impl DispatcherCore {
    /// A dispatcher for `shard_count` shards; Workers answer on `ack_tx`.
    pub fn new(shard_count: usize, ack_tx: Sender<WorkerAck>) -> DispatcherCore {
        DispatcherCore {
            routing: RoutingTable::new(shard_count),
            slots: Vec::new(),
            shards: (0..shard_count).map(|_| ShardQueue::default()).collect(),
            ack_tx,
            next_activation: 1,
            active_count: 0,
            failed_count: 0,
            events: Vec::new(),
            counters: DispatchCounters::default(),
        }
    }

    /// Handle one command from `activation_tx`, then send what can be sent.
    pub fn handle_cmd(&mut self, now_ms: i64, cmd: DispatcherCmd, link: &mut impl ShardLink) {
        match cmd {
            DispatcherCmd::ActivateSymbol {
                symbol,
                initial_data,
                expected_trades_24h,
            } => self.activate(symbol, initial_data, expected_trades_24h),
            DispatcherCmd::DeactivateSymbol { symbol } => self.deactivate(symbol),
        }
        self.flush(now_ms, link);
    }

    fn activate(&mut self, spec: SymbolSpec, initial_data: InitialSymbolData, expected: u64) {
        let index = spec.index;
        if !self.ensure_slot(index) {
            self.counters.refused += 1;
            return;
        }
        self.counters.requests += 1;
        self.leave_in_flight(index);
        let owner = match self.slots[index.0 as usize].owner {
            Some(owner) => owner,
            None => {
                let owner = self.routing.assign(expected);
                let slot = &mut self.slots[index.0 as usize];
                slot.owner = Some(owner);
                slot.weight = expected;
                owner
            }
        };
        let slot = &mut self.slots[index.0 as usize];
        slot.request = Some(Request {
            spec,
            initial_data,
            expected_trades_24h: expected,
        });
        slot.attempts = 0;
        self.enqueue_attempt(index, owner);
    }

    fn deactivate(&mut self, index: SymbolIndex) {
        let Some(slot) = self.slots.get(index.0 as usize) else {
            return;
        };
        let Some(owner) = slot.owner else {
            return;
        };
        self.leave_in_flight(index);
        let queue = &mut self.shards[usize::from(owner.0)];
        queue.outbox.push_back(Out::Unsubscribe(index));
        queue.outbox.push_back(Out::Deactivate(index));
        self.counters.deactivations += 1;
        self.release_owner(index);
        self.set_state(index, DispatchState::Deactivated);
        self.slots[index.0 as usize].request = None;
    }

    /// Handle one ack from a Worker, then send what can be sent.
    pub fn handle_ack(&mut self, now_ms: i64, ack: WorkerAck, link: &mut impl ShardLink) {
        let current = self.slots.get(ack.symbol.0 as usize).is_some_and(|slot| {
            slot.state == DispatchState::Activating
                && slot.activation == ack.activation
                && slot.owner == Some(ack.shard)
        });
        if !current {
            self.counters.stale_acks += 1;
            return;
        }
        self.leave_in_flight(ack.symbol);
        match ack.result {
            Ok(()) => {
                self.counters.acks_ok += 1;
                let slot = &mut self.slots[ack.symbol.0 as usize];
                slot.activated_ms.get_or_insert(now_ms);
                // Seed decision 4: the subscription is queued only now, after the Ok ack.
                self.shards[usize::from(ack.shard.0)]
                    .outbox
                    .push_back(Out::Subscribe(ack.symbol));
                self.set_state(ack.symbol, DispatchState::Active);
            }
            Err(error) => {
                self.counters.acks_err += 1;
                self.attempt_failed(now_ms, ack.symbol, error.to_string());
            }
        }
        self.flush(now_ms, link);
    }

    /// Expire ack deadlines, start due retries and send what can be sent.
    pub fn tick(&mut self, now_ms: i64, link: &mut impl ShardLink) {
        for index in 0..self.slots.len() {
            let symbol = SymbolIndex(u32::try_from(index).unwrap_or(u32::MAX));
            let slot = &self.slots[index];
            if slot.timer_ms > now_ms {
                continue;
            }
            match slot.state {
                DispatchState::Activating => {
                    self.counters.timeouts += 1;
                    self.leave_in_flight(symbol);
                    self.attempt_failed(now_ms, symbol, "ack timeout".to_string());
                }
                DispatchState::Backoff => {
                    let owner = slot.owner.expect("a symbol in back-off has an owner");
                    self.enqueue_attempt(symbol, owner);
                }
                _ => {}
            }
        }
        self.flush(now_ms, link);
    }

    /// The earliest time `tick` has work (an ack deadline or a retry), if any.
    pub fn next_timer_ms(&self) -> Option<i64> {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, DispatchState::Activating | DispatchState::Backoff))
            .map(|s| s.timer_ms)
            .min()
    }

    /// True when some shard has sends waiting (full inbox or in-flight cap).
    pub fn has_backlog(&self) -> bool {
        self.shards.iter().any(|q| !q.outbox.is_empty())
    }

    /// Take the events since the last call.
    pub fn take_events(&mut self, out: &mut Vec<DispatchEvent>) {
        out.append(&mut self.events);
    }

    pub fn counters(&self) -> DispatchCounters {
        self.counters
    }

    pub fn state(&self, symbol: SymbolIndex) -> DispatchState {
        self.slots
            .get(symbol.0 as usize)
            .map_or(DispatchState::Unknown, |s| s.state)
    }

    /// The shard that owns the symbol while it is activating or active.
    pub fn owner(&self, symbol: SymbolIndex) -> Option<ShardId> {
        self.slots.get(symbol.0 as usize).and_then(|s| s.owner)
    }

    /// Sends of the symbol's current request so far.
    pub fn attempts(&self, symbol: SymbolIndex) -> u32 {
        self.slots.get(symbol.0 as usize).map_or(0, |s| s.attempts)
    }

    /// When the symbol first became Active (epoch ms).
    pub fn activated_ms(&self, symbol: SymbolIndex) -> Option<i64> {
        self.slots
            .get(symbol.0 as usize)
            .and_then(|s| s.activated_ms)
    }

    /// The current attempt's id (what a valid ack must echo).
    pub fn current_activation(&self, symbol: SymbolIndex) -> Option<ActivationId> {
        let slot = self.slots.get(symbol.0 as usize)?;
        (slot.state == DispatchState::Activating).then_some(slot.activation)
    }

    pub fn active_count(&self) -> usize {
        self.active_count
    }

    /// Symbols whose last request failed every attempt.
    pub fn failed_count(&self) -> usize {
        self.failed_count
    }

    pub fn routing(&self) -> &RoutingTable {
        &self.routing
    }

    /// Activations awaiting an ack on `shard`.
    pub fn in_flight(&self, shard: ShardId) -> usize {
        self.shards[usize::from(shard.0)].in_flight
    }

    /// Sends waiting for `shard`.
    pub fn backlog(&self, shard: ShardId) -> usize {
        self.shards[usize::from(shard.0)].outbox.len()
    }

    fn ensure_slot(&mut self, index: SymbolIndex) -> bool {
        let index = index.0 as usize;
        if index >= SYMBOLS_MAX {
            return false;
        }
        while self.slots.len() <= index {
            self.slots.push(Slot::new());
        }
        true
    }

    fn enqueue_attempt(&mut self, index: SymbolIndex, owner: ShardId) {
        let activation = ActivationId(self.next_activation);
        self.next_activation += 1;
        self.slots[index.0 as usize].activation = activation;
        self.shards[usize::from(owner.0)]
            .outbox
            .push_back(Out::Activate(index, activation));
        self.set_state(index, DispatchState::Queued);
    }

    /// If the symbol has an attempt awaiting its ack, stop counting it (it was answered, timed
    /// out or superseded; a later ack for it is stale).
    fn leave_in_flight(&mut self, index: SymbolIndex) {
        let slot = &self.slots[index.0 as usize];
        if slot.state == DispatchState::Activating {
            let owner = slot.owner.expect("an activating symbol has an owner");
            let queue = &mut self.shards[usize::from(owner.0)];
            assert!(queue.in_flight > 0, "in-flight count underflow");
            queue.in_flight -= 1;
            // Leave Activating so the attempt cannot be counted twice.
            self.slots[index.0 as usize].state = DispatchState::Queued;
        }
    }

    fn attempt_failed(&mut self, now_ms: i64, index: SymbolIndex, reason: String) {
        let attempts = self.slots[index.0 as usize].attempts;
        assert!(attempts >= 1, "a failed attempt was sent");
        assert!(attempts <= 1 + ACTIVATION_RETRY_MAX, "retry cap exceeded");
        if attempts > ACTIVATION_RETRY_MAX {
            self.counters.failed += 1;
            let owner = self.slots[index.0 as usize].owner;
            if let Some(owner) = owner {
                // A late Ok may still have installed state in the Worker: clear it.
                self.shards[usize::from(owner.0)]
                    .outbox
                    .push_back(Out::Deactivate(index));
            }
            self.release_owner(index);
            self.set_state(index, DispatchState::Failed);
            self.slots[index.0 as usize].request = None;
            self.events.push(DispatchEvent::Failed {
                symbol: index,
                attempts,
                reason,
            });
            return;
        }
        self.slots[index.0 as usize].timer_ms = now_ms + backoff_ms(attempts);
        self.set_state(index, DispatchState::Backoff);
        self.events.push(DispatchEvent::Retry {
            symbol: index,
            attempt: attempts,
            reason,
        });
    }

    fn release_owner(&mut self, index: SymbolIndex) {
        let slot = &mut self.slots[index.0 as usize];
        if let Some(owner) = slot.owner.take() {
            self.routing.release(owner, slot.weight);
            slot.weight = 0;
        }
    }

    fn set_state(&mut self, index: SymbolIndex, state: DispatchState) {
        let slot = &mut self.slots[index.0 as usize];
        let before = slot.state;
        slot.state = state;
        match before {
            DispatchState::Active => self.active_count -= 1,
            DispatchState::Failed => self.failed_count -= 1,
            _ => {}
        }
        match state {
            DispatchState::Active => self.active_count += 1,
            DispatchState::Failed => self.failed_count += 1,
            _ => {}
        }
        self.events.push(DispatchEvent::State {
            symbol: index,
            state,
            shard: slot.owner,
        });
    }

    fn flush(&mut self, now_ms: i64, link: &mut impl ShardLink) {
        for shard in 0..self.shards.len() {
            self.flush_shard(
                now_ms,
                ShardId(u16::try_from(shard).unwrap_or(u16::MAX)),
                link,
            );
        }
    }

    /// Send the head of the shard's outbox until it is empty, the inbox is full, or the
    /// in-flight cap holds back the next activation.
    fn flush_shard(&mut self, now_ms: i64, shard: ShardId, link: &mut impl ShardLink) {
        // Bounded: each iteration pops one entry or stops.
        loop {
            let Some(&head) = self.shards[usize::from(shard.0)].outbox.front() else {
                return;
            };
            let Some(cmd) = self.build(shard, head) else {
                self.shards[usize::from(shard.0)].outbox.pop_front();
                continue;
            };
            if matches!(head, Out::Activate(..))
                && self.shards[usize::from(shard.0)].in_flight
                    >= ACTIVATIONS_IN_FLIGHT_PER_SHARD_MAX
            {
                return;
            }
            match link.try_send(shard, cmd) {
                Ok(()) => {
                    self.shards[usize::from(shard.0)].outbox.pop_front();
                    self.sent(now_ms, shard, head);
                }
                Err(TrySendError::Full(_)) => {
                    self.counters.inbox_full += 1;
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.counters.shard_gone += 1;
                    self.shards[usize::from(shard.0)].outbox.pop_front();
                    if let Out::Activate(index, _) = head {
                        self.slots[index.0 as usize].attempts += 1;
                        self.attempt_failed(now_ms, index, format!("shard {} exited", shard.0));
                    }
                }
            }
        }
    }

    /// The command for an outbox entry, or `None` when the entry is stale (superseded attempt,
    /// symbol no longer active on this shard).
    fn build(&self, shard: ShardId, out: Out) -> Option<ShardCmd> {
        match out {
            Out::Activate(index, activation) => {
                let slot = &self.slots[index.0 as usize];
                let current = slot.state == DispatchState::Queued
                    && slot.activation == activation
                    && slot.owner == Some(shard);
                let request = slot.request.as_ref().filter(|_| current)?;
                Some(ShardCmd::Worker(WorkerCmd::ActivateSymbol {
                    symbol: request.spec.clone(),
                    initial_data: request.initial_data.clone(),
                    activation,
                    ack: self.ack_tx.clone(),
                }))
            }
            Out::Subscribe(index) => {
                let slot = &self.slots[index.0 as usize];
                let active = slot.state == DispatchState::Active && slot.owner == Some(shard);
                active.then_some(ShardCmd::Ws(WsCmd::SubscribeOne(index)))
            }
            Out::Unsubscribe(index) => Some(ShardCmd::Ws(WsCmd::UnsubscribeOne(index))),
            Out::Deactivate(index) => Some(ShardCmd::Worker(WorkerCmd::DeactivateSymbol {
                symbol: index,
            })),
        }
    }

    fn sent(&mut self, now_ms: i64, shard: ShardId, out: Out) {
        match out {
            Out::Activate(index, _) => {
                let slot = &mut self.slots[index.0 as usize];
                slot.attempts += 1;
                assert!(
                    slot.attempts <= 1 + ACTIVATION_RETRY_MAX,
                    "retry cap exceeded"
                );
                slot.timer_ms = now_ms + ACTIVATION_ACK_TIMEOUT_MS;
                self.shards[usize::from(shard.0)].in_flight += 1;
                self.counters.sends += 1;
                self.set_state(index, DispatchState::Activating);
            }
            Out::Subscribe(index) => {
                assert_eq!(self.slots[index.0 as usize].state, DispatchState::Active);
                self.counters.subscribes += 1;
            }
            Out::Unsubscribe(_) | Out::Deactivate(_) => {}
        }
    }

    /// The expected 24 h trades of the symbol's current request.
    pub fn expected_trades(&self, symbol: SymbolIndex) -> Option<u64> {
        let slot = self.slots.get(symbol.0 as usize)?;
        slot.request.as_ref().map(|r| r.expected_trades_24h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;
    use klagg_shards::kline::Scales;
    use klagg_shards::protocol::ActivationError;
    use std::sync::Arc;

    /// Records every send; refuses with Full while `full` is set.
    #[derive(Default)]
    struct RecordingLink {
        sent: Vec<(ShardId, ShardCmd)>,
        full: bool,
    }

    impl ShardLink for RecordingLink {
        fn try_send(
            &mut self,
            shard: ShardId,
            cmd: ShardCmd,
        ) -> Result<(), TrySendError<ShardCmd>> {
            if self.full {
                return Err(TrySendError::Full(cmd));
            }
            self.sent.push((shard, cmd));
            Ok(())
        }
    }

    fn request(index: u32, expected: u64) -> DispatcherCmd {
        DispatcherCmd::ActivateSymbol {
            symbol: SymbolSpec {
                index: SymbolIndex(index),
                name: Arc::from(format!("S{index}USDT")),
                scales: Scales { price: 2, qty: 3 },
            },
            initial_data: InitialSymbolData {
                klines: vec![None],
                taken_at_ms: 0,
                last_agg_id: None,
            },
            expected_trades_24h: expected,
        }
    }

    fn last_activation(link: &RecordingLink) -> (ShardId, SymbolIndex, ActivationId) {
        link.sent
            .iter()
            .rev()
            .find_map(|(shard, cmd)| match cmd {
                ShardCmd::Worker(WorkerCmd::ActivateSymbol {
                    symbol, activation, ..
                }) => Some((*shard, symbol.index, *activation)),
                _ => None,
            })
            .unwrap()
    }

    fn ack(shard: ShardId, symbol: SymbolIndex, activation: ActivationId, ok: bool) -> WorkerAck {
        WorkerAck {
            shard,
            symbol,
            activation,
            result: if ok {
                Ok(())
            } else {
                Err(ActivationError::Busy(symbol))
            },
        }
    }

    fn core() -> DispatcherCore {
        let (ack_tx, _ack_rx) = bounded(16);
        DispatcherCore::new(2, ack_tx)
    }

    #[test]
    fn subscribes_only_after_the_ok_ack() {
        let mut core = core();
        let mut link = RecordingLink::default();
        core.handle_cmd(0, request(0, 10), &mut link);
        assert_eq!(link.sent.len(), 1);
        assert_eq!(core.state(SymbolIndex(0)), DispatchState::Activating);
        let (shard, symbol, activation) = last_activation(&link);
        core.handle_ack(5, ack(shard, symbol, activation, true), &mut link);
        assert_eq!(core.state(symbol), DispatchState::Active);
        assert!(matches!(
            link.sent[1].1,
            ShardCmd::Ws(WsCmd::SubscribeOne(SymbolIndex(0)))
        ));
        // A duplicate ack changes nothing.
        core.handle_ack(6, ack(shard, symbol, activation, true), &mut link);
        assert_eq!(link.sent.len(), 2);
        assert_eq!(core.counters().stale_acks, 1);
        assert_eq!(core.activated_ms(symbol), Some(5));
        assert_eq!(core.active_count(), 1);
    }

    #[test]
    fn fails_after_five_retries_and_ignores_late_acks() {
        let mut core = core();
        let mut link = RecordingLink::default();
        core.handle_cmd(0, request(3, 0), &mut link);
        let mut now = 0;
        let mut first = None;
        for attempt in 1..=6 {
            let (shard, symbol, activation) = last_activation(&link);
            first.get_or_insert((shard, symbol, activation));
            assert_eq!(core.attempts(symbol), attempt);
            core.handle_ack(now, ack(shard, symbol, activation, false), &mut link);
            now += ACTIVATION_BACKOFF_MAX_MS;
            core.tick(now, &mut link);
        }
        assert_eq!(core.state(SymbolIndex(3)), DispatchState::Failed);
        assert_eq!(core.owner(SymbolIndex(3)), None);
        let (shard, symbol, activation) = first.unwrap();
        core.handle_ack(now, ack(shard, symbol, activation, true), &mut link);
        assert_eq!(core.state(symbol), DispatchState::Failed);
        let mut events = Vec::new();
        core.take_events(&mut events);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, DispatchEvent::Failed { attempts: 6, .. }))
        );
        assert!(
            !link
                .sent
                .iter()
                .any(|(_, c)| matches!(c, ShardCmd::Ws(WsCmd::SubscribeOne(_))))
        );
    }

    #[test]
    fn timeout_retries_and_full_inbox_waits() {
        let mut core = core();
        let mut link = RecordingLink {
            full: true,
            ..RecordingLink::default()
        };
        core.handle_cmd(0, request(1, 0), &mut link);
        assert_eq!(core.state(SymbolIndex(1)), DispatchState::Queued);
        assert_eq!(core.counters().inbox_full, 1);
        link.full = false;
        core.tick(1, &mut link);
        assert_eq!(core.state(SymbolIndex(1)), DispatchState::Activating);
        core.tick(1 + ACTIVATION_ACK_TIMEOUT_MS, &mut link);
        assert_eq!(core.state(SymbolIndex(1)), DispatchState::Backoff);
        assert_eq!(core.counters().timeouts, 1);
        core.tick(1 + ACTIVATION_ACK_TIMEOUT_MS + backoff_ms(1), &mut link);
        assert_eq!(core.attempts(SymbolIndex(1)), 2);
    }

    #[test]
    fn deactivation_unsubscribes_then_forgets() {
        let mut core = core();
        let mut link = RecordingLink::default();
        core.handle_cmd(0, request(0, 0), &mut link);
        let (shard, symbol, activation) = last_activation(&link);
        core.handle_ack(1, ack(shard, symbol, activation, true), &mut link);
        core.handle_cmd(2, DispatcherCmd::DeactivateSymbol { symbol }, &mut link);
        assert_eq!(core.state(symbol), DispatchState::Deactivated);
        assert_eq!(core.owner(symbol), None);
        assert_eq!(core.active_count(), 0);
        let tail: Vec<_> = link.sent[link.sent.len() - 2..]
            .iter()
            .map(|(_, c)| c)
            .collect();
        assert!(matches!(tail[0], ShardCmd::Ws(WsCmd::UnsubscribeOne(_))));
        assert!(matches!(
            tail[1],
            ShardCmd::Worker(WorkerCmd::DeactivateSymbol { .. })
        ));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1), ACTIVATION_BACKOFF_BASE_MS);
        assert_eq!(backoff_ms(2), 2 * ACTIVATION_BACKOFF_BASE_MS);
        assert_eq!(backoff_ms(30), ACTIVATION_BACKOFF_MAX_MS);
    }
}
