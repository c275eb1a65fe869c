//! The ActivationDispatcher thread (`activation-dispatcher`): owns the routing table and the
//! per-symbol activation state ([`DispatcherCore`]); its inboxes are `activation_rx`
//! ([`DispatcherCmd`], bounded `ACTIVATION_CHANNEL_CAPACITY`) and `ack_rx` ([`WorkerAck`], from
//! every shard). It waits on both with a deadline (the next ack timeout or retry), so a slow or
//! failing activation never blocks the others. It publishes states to the [`StatusBoard`] and
//! logs at ERROR a symbol whose activation failed `1 + ACTIVATION_RETRY_MAX` times.

pub mod core;
pub mod messages;
pub mod routing;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, TrySendError, select};
use klagg_shards::protocol::{ShardCmd, ShardHandle, ShardId, WorkerAck};
use slog::{Logger, error, info, warn};

pub use self::core::DispatcherCore;
pub use self::messages::{
    DispatchCounters, DispatchEvent, DispatchState, DispatcherCmd, ShardLink,
};
use crate::clock::Clock;
use crate::constants::{DISPATCHER_DRAIN_MAX, DISPATCHER_IDLE_WAKE_MS};
use crate::health::{HealthReport, HealthReporter, HealthStatus, heartbeat_report};
use crate::shutdown::Shutdown;
use crate::status::StatusBoard;

/// The real transport: the shards' inboxes.
#[derive(Debug)]
pub struct HandleLink {
    shards: Vec<ShardHandle>,
}

impl HandleLink {
    pub fn new(shards: Vec<ShardHandle>) -> HandleLink {
        HandleLink { shards }
    }
}

impl ShardLink for HandleLink {
    fn try_send(&mut self, shard: ShardId, cmd: ShardCmd) -> Result<(), TrySendError<ShardCmd>> {
        match self.shards.get(usize::from(shard.0)) {
            Some(handle) => handle.try_send(cmd),
            None => Err(TrySendError::Disconnected(cmd)),
        }
    }
}

/// Everything the dispatcher thread needs.
#[derive(Debug)]
pub struct Dispatcher<C: Clock> {
    pub core: DispatcherCore,
    pub link: HandleLink,
    pub activation_rx: Receiver<DispatcherCmd>,
    pub ack_rx: Receiver<WorkerAck>,
    pub clock: C,
    pub status: Arc<StatusBoard>,
    pub log: Logger,
    pub shutdown: Shutdown,
}

impl<C: Clock> Dispatcher<C> {
    /// The thread body: runs until shutdown.
    pub fn run(mut self) {
        info!(self.log, "activation dispatcher started"; "shards" => self.core.routing().shard_count());
        let mut events = Vec::new();
        // The thread's event loop: intentionally unbounded; every step inside is bounded.
        while !self.shutdown.is_requested() {
            self.step(&mut events);
        }
        info!(self.log, "activation dispatcher stopped"; "active" => self.core.active_count());
    }

    /// Wait for one input or the next timer, drain a bounded batch, run timers, publish.
    fn step(&mut self, events: &mut Vec<DispatchEvent>) {
        let now = self.clock.now_ms();
        let mut wake_ms = now + DISPATCHER_IDLE_WAKE_MS;
        if let Some(timer) = self.core.next_timer_ms() {
            wake_ms = wake_ms.min(timer);
        }
        let wait = Duration::from_millis(u64::try_from((wake_ms - now).max(0)).unwrap_or(0));
        select! {
            recv(self.activation_rx) -> cmd => match cmd {
                Ok(cmd) => self.core.handle_cmd(self.clock.now_ms(), cmd, &mut self.link),
                // Every producer is gone (stopping): keep the pace without a busy loop.
                Err(_) => { self.shutdown.sleep(wait); }
            },
            recv(self.ack_rx) -> ack => if let Ok(ack) = ack {
                self.core.handle_ack(self.clock.now_ms(), ack, &mut self.link);
            },
            default(wait) => {},
        }
        self.drain();
        let now = self.clock.now_ms();
        self.core.tick(now, &mut self.link);
        self.core.take_events(events);
        self.publish(now, events);
    }

    fn drain(&mut self) {
        for _ in 0..DISPATCHER_DRAIN_MAX {
            let now = self.clock.now_ms();
            if let Ok(ack) = self.ack_rx.try_recv() {
                self.core.handle_ack(now, ack, &mut self.link);
            } else if let Ok(cmd) = self.activation_rx.try_recv() {
                self.core.handle_cmd(now, cmd, &mut self.link);
            } else {
                return;
            }
        }
    }

    fn publish(&mut self, now_ms: i64, events: &mut Vec<DispatchEvent>) {
        for event in events.drain(..) {
            match event {
                DispatchEvent::State {
                    symbol,
                    state,
                    shard,
                } => {
                    self.status.set_symbol(symbol, state, shard);
                }
                DispatchEvent::Retry {
                    symbol,
                    attempt,
                    reason,
                } => {
                    StatusBoard::add(&self.status.activation_retries, 1);
                    warn!(self.log, "activation attempt failed, retrying";
                        "symbol" => symbol.0, "attempt" => attempt, "reason" => reason);
                }
                DispatchEvent::Failed {
                    symbol,
                    attempts,
                    reason,
                } => {
                    error!(self.log, "activation failed, symbol marked Failed";
                        "symbol" => symbol.0, "attempts" => attempts, "reason" => reason);
                }
            }
        }
        let counters = self.core.counters();
        let shard_count = self.core.routing().shard_count();
        let shards = (0..shard_count).map(|s| ShardId(u16::try_from(s).unwrap_or(u16::MAX)));
        let (backlog, in_flight) = shards.fold((0, 0), |(b, f), s| {
            (b + self.core.backlog(s), f + self.core.in_flight(s))
        });
        StatusBoard::put(&self.status.dispatcher_backlog, backlog as u64);
        StatusBoard::put(&self.status.dispatcher_in_flight, in_flight as u64);
        StatusBoard::put(
            &self.status.activation_queue_depth,
            self.activation_rx.len() as u64,
        );
        StatusBoard::put(&self.status.stale_acks, counters.stale_acks);
        let failed = self.core.failed_count() as u64;
        self.status
            .set_counts(self.core.active_count() as u64, failed);
        StatusBoard::beat(&self.status.dispatcher_heartbeat_ms, now_ms);
    }
}

/// Health of the dispatcher: its heartbeat, failed symbols and backlog.
#[derive(Debug)]
pub struct DispatcherHealth<C: Clock> {
    pub status: Arc<StatusBoard>,
    pub clock: C,
}

impl<C: Clock> HealthReporter for DispatcherHealth<C> {
    fn name(&self) -> &str {
        "activation-dispatcher"
    }

    fn report(&self) -> HealthReport {
        let now = self.clock.now_ms();
        let beat = StatusBoard::heartbeat(&self.status.dispatcher_heartbeat_ms);
        let mut report = heartbeat_report(now, beat, true);
        let failed = StatusBoard::get(&self.status.symbols_failed);
        if failed > 0 {
            report.raise(
                HealthStatus::Warning,
                format!("{failed} symbols failed to activate"),
            );
        }
        report
            .detail("active", StatusBoard::get(&self.status.symbols_active))
            .detail("failed", failed)
            .detail("backlog", StatusBoard::get(&self.status.dispatcher_backlog))
            .detail(
                "in_flight",
                StatusBoard::get(&self.status.dispatcher_in_flight),
            )
            .detail(
                "queue",
                StatusBoard::get(&self.status.activation_queue_depth),
            )
    }
}
