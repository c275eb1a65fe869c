//! The shard's event loop (shard thread): state built inside the pinned thread, then
//! `poll → inbox → connector results → read frames → clock → I/O timers → publish → counters`,
//! each step bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::{Events, Poll, Token, Waker};

use super::clock::{ExchangeClock, local_epoch_ms};
use super::output::Publisher;
use super::{EVENTS_CAPACITY, POLL_TIMEOUT_MAX, ShardConfig, ShardOutputs, SpawnError};
use crate::io::conn::{ReadStats, StreamFailures};
use crate::io::connector::{CONNECT_RESULT_CAPACITY, ConnectRequest, ConnectResult};
use crate::io::{Io, publish_gauges};
use crate::protocol::{
    ShardCmd, ShardCounters, ShardHandle, SymbolActivationState, WorkerCmd, WsCmd,
};
use crate::worker::{Worker, WorkerEvent};

/// The poll token of the waker (inbox commands and connector results).
pub const WAKER: Token = Token(0);
/// How long shutdown waits for the connector thread before leaving it to end by itself.
const CONNECTOR_JOIN_MAX: Duration = Duration::from_millis(200);
/// How long shutdown keeps handing waiting final klines to their consumers (yielding between
/// tries) before it counts the rest as undeliverable.
const SHUTDOWN_FLUSH_MAX: Duration = Duration::from_secs(2);

/// The shard's ends of its connector thread.
#[derive(Debug)]
pub struct ConnectorLink {
    pub request_tx: Sender<ConnectRequest>,
    pub result_rx: Receiver<ConnectResult>,
    pub stop: Arc<AtomicBool>,
    pub join: JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// Everything a shard thread owns.
#[derive(Debug)]
pub struct ShardLoop {
    config: ShardConfig,
    poll: Poll,
    inbox_rx: Receiver<ShardCmd>,
    connector: ConnectorLink,
    worker: Worker,
    io: Io,
    publisher: Publisher,
    counters: Arc<ShardCounters>,
    clock: ExchangeClock,
    events: Vec<WorkerEvent>,
    failures: StreamFailures,
    next_clock_tick: Instant,
    next_heartbeat: Instant,
    inbox_more: bool,
    /// Something changed that the scanned gauges show (commands, connections, acks).
    gauges_dirty: bool,
    totals: ReadStats,
}

/// What a shard thread sets up before it pins itself: the poll, its waker and the connector
/// thread, which so inherits the unpinned CPU set (handshakes and DNS stay off the shard's core).
#[derive(Debug)]
pub struct Prelude {
    poll: Poll,
    waker: Arc<Waker>,
    connector: ConnectorLink,
}

impl Prelude {
    /// # Errors
    /// The poll or waker cannot be created, a bad extra CA, or the connector thread fails.
    pub fn new(config: &ShardConfig) -> Result<Prelude, SpawnError> {
        let poll = Poll::new().map_err(SpawnError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(SpawnError::Poll)?);
        let stop = Arc::new(AtomicBool::new(false));
        let connector = super::spawn_connector(config, Arc::clone(&waker), stop)?;
        Ok(Prelude {
            poll,
            waker,
            connector,
        })
    }
}

impl ShardLoop {
    /// Build the shard's state (on its own, already pinned thread) and its handle.
    pub fn build(
        config: ShardConfig,
        outputs: ShardOutputs,
        prelude: Prelude,
        pin_failed: bool,
    ) -> (ShardLoop, ShardHandle) {
        let Prelude {
            poll,
            waker,
            connector,
        } = prelude;
        let (inbox_tx, inbox_rx, counters) = super::inbox();
        ShardCounters::set(&counters.pin_failed, u64::from(pin_failed));
        let core = config.core.filter(|_| !pin_failed);
        let handle = ShardHandle::new(
            config.id,
            core,
            pin_failed,
            Arc::clone(&counters),
            inbox_tx,
            waker,
        );
        let seed = u64::from(config.id.0) + 1;
        let io = Io::new(config.io.clone(), connector.request_tx.clone(), seed);
        let publisher = Publisher::new(
            config.id,
            outputs.klines,
            outputs.reports,
            config.outbox_pause_depth,
        );
        let now = Instant::now();
        let slots = config.slots_max;
        let shard = ShardLoop {
            worker: Worker::new(&config.worker_config()),
            config,
            poll,
            inbox_rx,
            connector,
            io,
            publisher,
            counters,
            clock: ExchangeClock::default(),
            events: Vec::with_capacity(slots * 4),
            failures: Vec::with_capacity(64),
            next_clock_tick: now,
            next_heartbeat: now,
            inbox_more: false,
            gauges_dirty: true,
            totals: ReadStats::default(),
        };
        (shard, handle)
    }

    /// Run until `Shutdown` or until every handle is dropped.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        // The shard's event loop: intentionally unbounded (it is the thread's life); each
        // iteration's work is bounded, and it ends on Shutdown or a closed inbox.
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(error) = self.poll.poll(&mut events, Some(timeout))
                && error.kind() != std::io::ErrorKind::Interrupted
            {
                break;
            }
            let started = Instant::now();
            for event in &events {
                if event.token() != WAKER {
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    self.io.on_event(event.token(), readable);
                }
            }
            let flow = self.iteration(started);
            self.note_iteration(started);
            if flow == Flow::Exit {
                break;
            }
        }
        self.shutdown();
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if self.config.busy_poll
            || self.inbox_more
            || self.io.has_readable() && !self.publisher.paused()
        {
            return Duration::ZERO;
        }
        let mut deadline = self.next_clock_tick.min(self.next_heartbeat);
        if let Some(io) = self.io.next_deadline(now) {
            deadline = deadline.min(io);
        }
        if self.publisher.has_pending() {
            // Consumers drain on their own schedule: look again soon.
            deadline = deadline.min(now + Duration::from_millis(1));
        }
        deadline
            .saturating_duration_since(now)
            .min(POLL_TIMEOUT_MAX)
    }

    fn iteration(&mut self, now: Instant) -> Flow {
        let flow = self.drain_inbox(now);
        self.drain_connector(now);
        let paused = self.publisher.paused();
        if paused {
            ShardCounters::add(&self.counters.backpressure_pauses, 1);
        } else if self.io.has_readable() {
            self.read(now);
        }
        if !paused && now >= self.next_clock_tick {
            let exchange_now = self.clock.now(local_epoch_ms());
            self.worker.process_clock_tick(exchange_now);
            self.next_clock_tick = now + self.config.clock_tick;
        }
        self.io.tick(now, self.poll.registry(), &mut self.worker);
        self.gauges_dirty |= self.io.take_changed();
        self.worker.take_events(&mut self.events);
        self.publisher.publish(&mut self.events, &mut self.worker);
        self.publisher.flush();
        if now >= self.next_heartbeat {
            self.heartbeat(now);
        }
        flow
    }

    fn drain_inbox(&mut self, now: Instant) -> Flow {
        self.inbox_more = false;
        for _ in 0..self.config.inbox_drain_max {
            match self.inbox_rx.try_recv() {
                Ok(ShardCmd::Shutdown) | Err(TryRecvError::Disconnected) => return Flow::Exit,
                Ok(ShardCmd::Worker(cmd)) => {
                    self.gauges_dirty = true;
                    self.on_worker_cmd(cmd);
                }
                Ok(ShardCmd::Ws(cmd)) => {
                    self.gauges_dirty = true;
                    self.on_ws_cmd(cmd, now);
                }
                Err(TryRecvError::Empty) => return Flow::Continue,
            }
        }
        self.inbox_more = true;
        Flow::Continue
    }

    fn on_worker_cmd(&mut self, cmd: WorkerCmd) {
        match &cmd {
            // A delisted symbol's stream is of no further use.
            WorkerCmd::DeactivateSymbol { symbol } => self.io.unsubscribe(*symbol),
            // A (re)activation replaces the symbol's state: trades held for it are stale.
            WorkerCmd::ActivateSymbol { symbol, .. } => self.io.on_activated(symbol.index),
        }
        self.worker.process_command(cmd);
    }

    fn on_ws_cmd(&mut self, cmd: WsCmd, now: Instant) {
        match cmd {
            WsCmd::SubscribeOne(symbol) => {
                let active = self.worker.activation_state(symbol) == SymbolActivationState::Active;
                let name = self.worker.spec(symbol).map(|spec| Arc::clone(&spec.name));
                let subscribed = match (active, name) {
                    (true, Some(name)) => self.io.subscribe(symbol, &name, now).is_ok(),
                    _ => false,
                };
                if !subscribed {
                    ShardCounters::add(&self.counters.subscribe_refused, 1);
                }
            }
            WsCmd::UnsubscribeOne(symbol) => self.io.unsubscribe(symbol),
        }
    }

    fn drain_connector(&mut self, now: Instant) {
        for _ in 0..CONNECT_RESULT_CAPACITY {
            match self.connector.result_rx.try_recv() {
                Ok(result) => {
                    self.gauges_dirty = true;
                    self.io.on_connect_result(result, self.poll.registry(), now);
                }
                Err(_) => return,
            }
        }
    }

    fn read(&mut self, now: Instant) {
        let registry = self.poll.registry();
        let stats = self
            .io
            .read_ready(&mut self.worker, registry, now, &mut self.failures);
        if stats.last_event_time_ms != 0 {
            self.clock
                .observe(stats.last_event_time_ms, local_epoch_ms());
        }
        for (symbol, reason) in std::mem::take(&mut self.failures) {
            if let Some(slot) = self.worker.slot_of(symbol) {
                self.publisher
                    .request_resync(&mut self.worker, slot, symbol, reason);
            }
        }
        self.gauges_dirty |= stats.acks > 0 || stats.lost || stats.control_errors > 0;
        accumulate(&mut self.totals, &stats);
    }

    fn heartbeat(&mut self, now: Instant) {
        ShardCounters::set(&self.counters.heartbeat_ms, local_epoch_ms().max(0) as u64);
        self.next_heartbeat = now + self.config.heartbeat_interval;
        self.gauges_dirty = true;
    }

    fn note_iteration(&mut self, started: Instant) {
        let elapsed = started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        let counters = &self.counters;
        ShardCounters::add(&counters.loop_iterations, 1);
        ShardCounters::raise(&counters.busiest_iteration_ns, elapsed);
        super::run_counters::publish(self);
        if std::mem::take(&mut self.gauges_dirty) {
            super::run_counters::publish_gauges(self);
        }
    }

    fn shutdown(mut self) {
        let deadline = Instant::now() + SHUTDOWN_FLUSH_MAX;
        loop {
            self.publisher.flush();
            if !self.publisher.has_pending() {
                break;
            }
            if Instant::now() >= deadline {
                self.publisher.abandon_pending();
                break;
            }
            std::thread::yield_now();
        }
        super::run_counters::publish(&self);
        super::run_counters::publish_gauges(&self);
        self.io.close_all(self.poll.registry());
        self.connector.stop.store(true, Ordering::Relaxed);
        let ConnectorLink {
            request_tx, join, ..
        } = self.connector;
        drop(request_tx);
        drop(self.io);
        // The connector may sit in a DNS lookup or handshake (seconds): it stops by itself
        // after that, holding nothing, so the shard does not wait for it past a moment.
        let deadline = Instant::now() + CONNECTOR_JOIN_MAX;
        while !join.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if join.is_finished() {
            let _ = join.join();
        }
    }
}

fn accumulate(totals: &mut ReadStats, stats: &ReadStats) {
    totals.frames += stats.frames;
    totals.bytes += stats.bytes;
    totals.parse_errors += stats.parse_errors;
    totals.other_frames += stats.other_frames;
    totals.unknown_symbol += stats.unknown_symbol;
}

/// Field access for the counters publisher (kept in its own module for size).
impl ShardLoop {
    pub(super) fn parts(&self) -> (&Worker, &Io, &Publisher, &Arc<ShardCounters>, &ReadStats) {
        (
            &self.worker,
            &self.io,
            &self.publisher,
            &self.counters,
            &self.totals,
        )
    }
}

pub(super) fn publish_io_gauges(io: &Io, counters: &Arc<ShardCounters>) {
    publish_gauges(io, counters);
}
