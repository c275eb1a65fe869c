//! The kline hub (thread `api-hub`): drains the shards' kline channel into [`LiveKlines`] (for
//! REST) and turns the messages into stream events for the push thread. Final klines (closed,
//! corrected, the last klines of a flat run) are pushed at once as `x:true`; open-kline updates
//! at most every [`UPDATE_INTERVAL_MS`] per stream, the latest one winning. Events are rendered
//! once (raw and combined WebSocket frames) and only for streams that have subscribers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use klagg_shards::kline::{Interval, Kline};
use klagg_shards::protocol::{KlineMsg, SymbolIndex};

use super::render::{self, SymbolNames};
use super::ws::frame;
use super::{ApiCounters, ApiState, StreamKey, UPDATE_INTERVAL_MS};
use crate::clock::epoch_ms;
use crate::shutdown::Shutdown;

/// Messages taken from the kline channel per loop iteration.
const DRAIN_MAX: usize = 4096;
/// The hub wakes at least this often (shutdown, throttled updates).
const IDLE_WAKE: Duration = Duration::from_millis(100);
/// The last klines of a flat run that are pushed (Binance pushes each; a long run after an
/// outage is capped).
pub const FLAT_RUN_PUSH_MAX: u64 = 60;

/// One stream event for the push thread: the same frame in both framings.
#[derive(Debug, Clone)]
pub struct PushEvent {
    pub key: StreamKey,
    /// The WebSocket frame of the raw payload.
    pub raw: Bytes,
    /// The WebSocket frame of `{"stream":…,"data":…}`.
    pub combined: Bytes,
}

#[derive(Debug, Default)]
struct Throttle {
    last_push: Option<Instant>,
    pending: Option<Kline>,
    queued: bool,
}

/// The hub's state.
#[derive(Debug)]
pub struct Hub {
    state: Arc<ApiState>,
    rx: Receiver<KlineMsg>,
    events: Sender<PushEvent>,
    shutdown: Shutdown,
    names: HashMap<SymbolIndex, SymbolNames>,
    streams: HashMap<StreamKey, Throttle>,
    /// Streams with a pending update, oldest first.
    due: Vec<StreamKey>,
    batch: Vec<KlineMsg>,
    sent: bool,
}

impl Hub {
    pub fn new(
        state: Arc<ApiState>,
        rx: Receiver<KlineMsg>,
        events: Sender<PushEvent>,
        shutdown: Shutdown,
    ) -> Hub {
        Hub {
            state,
            rx,
            events,
            shutdown,
            names: HashMap::new(),
            streams: HashMap::new(),
            due: Vec::new(),
            batch: Vec::with_capacity(DRAIN_MAX),
            sent: false,
        }
    }

    /// The thread's loop: ends at shutdown or when every shard is gone.
    pub fn run(mut self) {
        // The thread's event loop: intentionally unbounded; bounded work per iteration.
        while !self.shutdown.is_requested() {
            ApiCounters::beat(&self.state.counters.hub_heartbeat_ms);
            let wait = self.next_due().unwrap_or(IDLE_WAKE).min(IDLE_WAKE);
            match self.rx.recv_timeout(wait) {
                Ok(message) => self.batch.push(message),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while self.batch.len() < DRAIN_MAX {
                match self.rx.try_recv() {
                    Ok(message) => self.batch.push(message),
                    Err(_) => break,
                }
            }
            self.process_batch();
            self.flush_due(Instant::now());
            if std::mem::take(&mut self.sent) {
                self.state.push.wake();
            }
        }
    }

    fn next_due(&self) -> Option<Duration> {
        let first = self.due.first()?;
        let last = self.streams.get(first)?.last_push?;
        let due = last + Duration::from_millis(UPDATE_INTERVAL_MS as u64);
        Some(due.saturating_duration_since(Instant::now()))
    }

    /// Apply the batch to the live klines and push what it means.
    pub fn process_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.state.live.apply(&self.batch);
        ApiCounters::add(&self.state.counters.kline_messages, self.batch.len() as u64);
        let batch = std::mem::take(&mut self.batch);
        let now = Instant::now();
        for message in &batch {
            self.process(message, now);
        }
        self.batch = batch;
        self.batch.clear();
    }

    fn process(&mut self, message: &KlineMsg, now: Instant) {
        let key = StreamKey {
            symbol: message.symbol(),
            interval: message.interval(),
        };
        if let KlineMsg::Update { kline, .. } = *message {
            return self.update(key, kline, now);
        }
        // Nobody listens: a flat run is not even expanded.
        if !self.state.interest.any(key) {
            return;
        }
        for kline in message.final_klines(FLAT_RUN_PUSH_MAX) {
            self.final_kline(key, &kline, now);
        }
    }

    fn update(&mut self, key: StreamKey, kline: Kline, now: Instant) {
        if !self.state.interest.any(key) {
            return;
        }
        let throttle = self.streams.entry(key).or_default();
        let ready = throttle
            .last_push
            .is_none_or(|last| now.duration_since(last).as_millis() >= UPDATE_INTERVAL_MS as u128);
        if ready && !throttle.queued {
            throttle.last_push = Some(now);
            throttle.pending = None;
            self.push(key, &kline, false);
            return;
        }
        if throttle.pending.replace(kline).is_some() {
            ApiCounters::add(&self.state.counters.updates_coalesced, 1);
        }
        if !throttle.queued {
            throttle.queued = true;
            self.due.push(key);
        }
    }

    fn final_kline(&mut self, key: StreamKey, kline: &Kline, now: Instant) {
        if !self.state.interest.any(key) {
            return;
        }
        let throttle = self.streams.entry(key).or_default();
        throttle.last_push = Some(now);
        if throttle
            .pending
            .is_some_and(|p| p.open_time_ms <= kline.open_time_ms)
        {
            throttle.pending = None;
        }
        self.push(key, kline, true);
    }

    /// Push pending updates whose throttle window has passed.
    pub fn flush_due(&mut self, now: Instant) {
        let window = Duration::from_millis(UPDATE_INTERVAL_MS as u64);
        let mut keep = Vec::new();
        for key in std::mem::take(&mut self.due) {
            let Some(throttle) = self.streams.get_mut(&key) else {
                continue;
            };
            if throttle.last_push.is_some_and(|last| now < last + window) {
                keep.push(key);
                continue;
            }
            throttle.queued = false;
            if let Some(kline) = throttle.pending.take() {
                throttle.last_push = Some(now);
                self.push(key, &kline, false);
            }
        }
        // Still ordered by due time: kept ones were queued before any re-queued later.
        self.due = keep;
    }

    fn push(&mut self, key: StreamKey, kline: &Kline, closed: bool) {
        let Some(names) = self.names_of(key.symbol) else {
            return;
        };
        let mut raw = String::with_capacity(400);
        render::kline_event(&mut raw, &names, key.interval, kline, closed, epoch_ms());
        let stream = render::stream_name(&names.lower, key.interval);
        let combined = render::combined(&stream, &raw);
        let event = PushEvent {
            key,
            raw: frame::text(raw.as_bytes()),
            combined: frame::text(combined.as_bytes()),
        };
        ApiCounters::add(&self.state.counters.events_rendered, 1);
        match self.events.try_send(event) {
            Ok(()) => self.sent = true,
            Err(TrySendError::Full(_)) => {
                ApiCounters::add(&self.state.counters.events_dropped, 1);
                self.sent = true;
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn names_of(&mut self, symbol: SymbolIndex) -> Option<SymbolNames> {
        if let Some(names) = self.names.get(&symbol) {
            return Some(names.clone());
        }
        let spec = self.state.registry.spec(symbol)?;
        let names = SymbolNames::new(&spec.name, spec.scales);
        self.names.insert(symbol, names.clone());
        Some(names)
    }

    /// Queue a message as if it came from a shard (tests).
    pub fn feed(&mut self, message: KlineMsg) {
        self.batch.push(message);
    }
}

/// The interval of a stream name's suffix, if it is one this process serves.
pub fn served_interval(intervals: &[Interval], name: &str) -> Option<Interval> {
    let interval: Interval = name.parse().ok()?;
    intervals.contains(&interval).then_some(interval)
}
