//! The push thread (`api-ws`): one mio poll over every WebSocket client. It takes new clients
//! from the handshake, answers their control requests, fans the hub's events out into the
//! subscribers' bounded queues and writes them without blocking. A client whose queue is full is
//! closed with 1008 and a reason; other clients and the hub never wait for it. Timers (100 ms
//! tick): pings every [`PING_INTERVAL`], clients silent for [`PONG_TIMEOUT`] closed, closing
//! clients dropped after their linger, subscriptions to symbols registered later resolved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Token};

use super::client::{Client, Incoming, Sub, Violation};
use super::control::{self, Request};
use super::frame::{self, CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY, OP_PING, OP_PONG};
use super::{NewClient, PushParts, WAKER};
use crate::api::hub::PushEvent;
use crate::api::{ApiCounters, ApiState, StreamKey};
use crate::shutdown::Shutdown;

/// The loop's timer tick (and longest poll wait).
const TICK: Duration = Duration::from_millis(100);
/// Server pings this often (Binance: every 3 minutes).
pub const PING_INTERVAL: Duration = Duration::from_secs(180);
/// A client that sent nothing (not even a pong) for this long is closed (Binance: 10 minutes).
pub const PONG_TIMEOUT: Duration = Duration::from_secs(600);
/// Unknown symbols of subscriptions are looked up again this often.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(1);
/// Events fanned out per loop iteration.
const EVENT_DRAIN_MAX: usize = 8192;
/// New clients taken per loop iteration.
const HANDOFF_DRAIN_MAX: usize = 64;
const EVENTS_CAPACITY: usize = 1024;

/// The push thread's state.
#[derive(Debug)]
pub struct Pusher {
    state: Arc<ApiState>,
    poll: Poll,
    new_clients: Receiver<NewClient>,
    events: Receiver<PushEvent>,
    shutdown: Shutdown,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    subscribers: HashMap<StreamKey, Vec<usize>>,
    /// Clients with bytes left to read (their read budget ran out).
    more_to_read: Vec<usize>,
    dirty: Vec<usize>,
    last_tick: Instant,
    last_resolve: Instant,
}

impl Pusher {
    pub fn new(
        state: Arc<ApiState>,
        parts: PushParts,
        events: Receiver<PushEvent>,
        shutdown: Shutdown,
    ) -> Pusher {
        let now = Instant::now();
        Pusher {
            state,
            poll: parts.poll,
            new_clients: parts.clients,
            events,
            shutdown,
            clients: Vec::new(),
            free: Vec::new(),
            subscribers: HashMap::new(),
            more_to_read: Vec::new(),
            dirty: Vec::new(),
            last_tick: now,
            last_resolve: now,
        }
    }

    /// The thread's loop until shutdown.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        // The thread's event loop: intentionally unbounded; bounded work per iteration.
        while !self.shutdown.is_requested() {
            ApiCounters::beat(&self.state.counters.push_heartbeat_ms);
            let wait = if self.more_to_read.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                break;
            }
            let now = Instant::now();
            for event in &events {
                if event.token() == WAKER {
                    continue;
                }
                let slot = event.token().0 - 1;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(slot, now);
                }
                if event.is_writable() {
                    self.mark_dirty(slot);
                }
            }
            for slot in std::mem::take(&mut self.more_to_read) {
                self.read(slot, now);
            }
            self.accept_clients(now);
            self.fan_out(now);
            self.flush();
            self.timers(now);
            self.reap();
        }
        self.close_all();
    }

    fn client(&mut self, slot: usize) -> Option<&mut Client> {
        self.clients.get_mut(slot).and_then(Option::as_mut)
    }

    fn mark_dirty(&mut self, slot: usize) {
        self.dirty.push(slot);
    }

    fn accept_clients(&mut self, now: Instant) {
        for _ in 0..HANDOFF_DRAIN_MAX {
            let Ok(new) = self.new_clients.try_recv() else {
                return;
            };
            self.add_client(new, now);
        }
    }

    fn add_client(&mut self, new: NewClient, now: Instant) {
        let stream = mio::net::TcpStream::from_std(new.stream);
        let mut client = Client::new(stream, new.peer, new.combined, new.leftover, now);
        client.limits = self.state.limits;
        let slot = self.free.pop().unwrap_or(self.clients.len());
        if self
            .poll
            .registry()
            .register(
                &mut client.stream,
                Token(slot + 1),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.state.push.release(client.peer);
            return;
        }
        if slot == self.clients.len() {
            self.clients.push(Some(client));
        } else {
            self.clients[slot] = Some(client);
        }
        let counters = &self.state.counters;
        ApiCounters::add(&counters.ws_clients, 1);
        ApiCounters::add(&counters.ws_clients_total, 1);
        for stream in new.streams {
            self.subscribe_one(slot, stream);
        }
        self.handle_input(slot, now);
    }

    /// Read from the socket and handle the complete messages.
    fn read(&mut self, slot: usize, now: Instant) {
        let Some(client) = self.client(slot) else {
            return;
        };
        let more = match client.read() {
            Ok(more) => more,
            Err(_) => {
                client.dead = true;
                false
            }
        };
        if client.closing.is_some() {
            client.discard_input();
            return;
        }
        if more {
            self.more_to_read.push(slot);
        }
        self.handle_input(slot, now);
    }

    fn handle_input(&mut self, slot: usize, now: Instant) {
        // Bounded by the read buffer (each message consumes bytes).
        loop {
            let Some(client) = self.client(slot) else {
                return;
            };
            if client.closing.is_some() || client.dead {
                return;
            }
            match client.next_message(now) {
                Ok(None) => return,
                Ok(Some(message)) => self.on_message(slot, message, now),
                Err(violation) => {
                    self.violation(slot, &violation, now);
                    return;
                }
            }
        }
    }

    fn violation(&mut self, slot: usize, violation: &Violation, now: Instant) {
        let counters = &self.state.counters;
        if violation.code == CLOSE_POLICY {
            ApiCounters::add(&counters.ws_closed_rate, 1);
        } else {
            ApiCounters::add(&counters.ws_closed_protocol, 1);
        }
        if let Some(client) = self.client(slot) {
            client.begin_close(violation.code, &violation.reason, now);
        }
        self.mark_dirty(slot);
    }

    fn on_message(&mut self, slot: usize, message: Incoming, now: Instant) {
        match message {
            Incoming::Text(text) => self.control(slot, &text),
            Incoming::Ping(payload) => {
                let pong = bytes::Bytes::from(frame::encode(OP_PONG, &payload));
                self.send(slot, pong, now);
            }
            Incoming::Close => {
                if let Some(client) = self.client(slot) {
                    client.begin_close(CLOSE_NORMAL, "", now);
                }
                self.mark_dirty(slot);
            }
            Incoming::Pong | Incoming::Binary => {}
        }
    }

    /// Queue a frame for one client (closing it when it is too slow).
    fn send(&mut self, slot: usize, frame: bytes::Bytes, now: Instant) {
        let Some(client) = self.client(slot) else {
            return;
        };
        if client.queue(frame).is_err() {
            self.too_slow(slot, now);
        }
        self.mark_dirty(slot);
    }

    fn reply(&mut self, slot: usize, text: &str) {
        self.send(slot, frame::text(text.as_bytes()), Instant::now());
    }

    fn too_slow(&mut self, slot: usize, now: Instant) {
        ApiCounters::add(&self.state.counters.ws_closed_slow, 1);
        let limits = self.state.limits;
        let reason = format!(
            "client too slow: over {} bytes or {} frames queued",
            limits.client_queue_bytes, limits.client_queue_frames
        );
        let Some(client) = self.client(slot) else {
            return;
        };
        client.begin_close(CLOSE_POLICY, &reason, now);
    }

    fn control(&mut self, slot: usize, text: &str) {
        ApiCounters::add(&self.state.counters.ws_requests, 1);
        let request = match control::parse(text) {
            Ok(request) => request,
            Err(reply) => {
                ApiCounters::add(&self.state.counters.ws_request_errors, 1);
                self.reply(slot, &reply);
                return;
            }
        };
        let reply = match request {
            Request::Subscribe { id, streams } => self.subscribe(slot, id, &streams),
            Request::Unsubscribe { id, streams } => self.unsubscribe(slot, id, &streams),
            Request::List { id } => {
                let names: Vec<&str> = self
                    .clients
                    .get(slot)
                    .and_then(Option::as_ref)
                    .map(|c| c.subs.iter().map(|s| s.name.as_str()).collect())
                    .unwrap_or_default();
                control::result_list(id, &names)
            }
            Request::SetCombined { id, value } => {
                if let Some(client) = self.client(slot) {
                    client.combined = value;
                }
                control::result_null(id)
            }
            Request::GetCombined { id } => {
                let combined = self.client(slot).is_some_and(|c| c.combined);
                control::result_bool(id, combined)
            }
        };
        self.reply(slot, &reply);
    }

    fn subscribe(&mut self, slot: usize, id: u64, names: &[String]) -> String {
        let mut wanted: Vec<control::KlineStream> = Vec::with_capacity(names.len());
        for name in names {
            match control::kline_stream(name, &self.state.intervals) {
                Ok(stream) => wanted.push(stream),
                Err(error) => {
                    ApiCounters::add(&self.state.counters.ws_request_errors, 1);
                    return control::error(2, &error.to_string(), Some(id));
                }
            }
        }
        let max = self.state.limits.streams_per_client;
        let Some(client) = self.client(slot) else {
            return control::result_null(id);
        };
        // New streams in the request's order (the order LIST_SUBSCRIPTIONS shows).
        let mut fresh: Vec<control::KlineStream> = Vec::with_capacity(wanted.len());
        for stream in wanted {
            let known = client.subs.iter().any(|s| s.name == stream.name)
                || fresh.iter().any(|s| s.name == stream.name);
            if !known {
                fresh.push(stream);
            }
        }
        if client.subs.len() + fresh.len() > max {
            ApiCounters::add(&self.state.counters.ws_request_errors, 1);
            let msg = format!("Invalid request: too many streams (limit {max} per connection)");
            return control::error(2, &msg, Some(id));
        }
        for stream in fresh {
            self.subscribe_one(slot, stream);
        }
        control::result_null(id)
    }

    fn subscribe_one(&mut self, slot: usize, stream: control::KlineStream) {
        let key = self
            .state
            .registry
            .index(&stream.symbol)
            .map(|symbol| StreamKey {
                symbol,
                interval: stream.interval,
            });
        let Some(client) = self.client(slot) else {
            return;
        };
        if client.subs.iter().any(|s| s.name == stream.name) {
            return;
        }
        client.subs.push(Sub {
            name: stream.name,
            symbol: stream.symbol,
            interval: stream.interval,
            key,
        });
        ApiCounters::add(&self.state.counters.ws_subscriptions, 1);
        if let Some(key) = key {
            self.attach(slot, key);
        }
    }

    fn attach(&mut self, slot: usize, key: StreamKey) {
        self.subscribers.entry(key).or_default().push(slot);
        self.state.interest.add(key);
    }

    fn detach(&mut self, slot: usize, key: StreamKey) {
        if let Some(list) = self.subscribers.get_mut(&key) {
            list.retain(|&s| s != slot);
            if list.is_empty() {
                self.subscribers.remove(&key);
            }
        }
        self.state.interest.remove(key);
    }

    fn unsubscribe(&mut self, slot: usize, id: u64, names: &[String]) -> String {
        let mut canonical = Vec::with_capacity(names.len());
        for name in names {
            match control::kline_stream(name, &self.state.intervals) {
                Ok(stream) => canonical.push(stream.name),
                // Streams never subscribed (other kinds or intervals) are simply not there.
                Err(control::StreamError::Invalid) => {
                    return control::error(2, "Invalid request: invalid stream", Some(id));
                }
                Err(_) => {}
            }
        }
        let Some(client) = self.client(slot) else {
            return control::result_null(id);
        };
        let mut removed = Vec::new();
        client.subs.retain(|sub| {
            let keep = !canonical.contains(&sub.name);
            if !keep {
                removed.push(sub.key);
            }
            keep
        });
        let counter = &self.state.counters.ws_subscriptions;
        counter.fetch_sub(removed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for key in removed.into_iter().flatten() {
            self.detach(slot, key);
        }
        control::result_null(id)
    }

    /// Queue the hub's events for their subscribers.
    fn fan_out(&mut self, now: Instant) {
        let mut slow = Vec::new();
        for _ in 0..EVENT_DRAIN_MAX {
            let Ok(event) = self.events.try_recv() else {
                break;
            };
            let Some(slots) = self.subscribers.get(&event.key) else {
                continue;
            };
            for &slot in slots {
                let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
                    continue;
                };
                let frame = if client.combined {
                    event.combined.clone()
                } else {
                    event.raw.clone()
                };
                if client.queue(frame).is_err() {
                    slow.push(slot);
                }
                self.dirty.push(slot);
            }
            ApiCounters::add(&self.state.counters.ws_frames_sent, slots.len() as u64);
        }
        for slot in slow {
            self.too_slow(slot, now);
        }
    }

    /// Write what the dirty clients have queued.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let mut bytes = 0;
        for slot in dirty.drain(..) {
            let Some(client) = self.client(slot) else {
                continue;
            };
            match client.write() {
                Ok(n) => bytes += n,
                Err(_) => client.dead = true,
            }
        }
        self.dirty = dirty;
        ApiCounters::add(&self.state.counters.ws_bytes_sent, bytes as u64);
    }

    fn timers(&mut self, now: Instant) {
        if now.duration_since(self.last_tick) < TICK {
            return;
        }
        self.last_tick = now;
        let ping = bytes::Bytes::from(frame::encode(OP_PING, b""));
        for slot in 0..self.clients.len() {
            let Some(client) = self.client(slot) else {
                continue;
            };
            if client.closing.is_some_and(|deadline| now >= deadline) {
                client.dead = true;
            } else if now.duration_since(client.last_heard) >= PONG_TIMEOUT {
                client.begin_close(CLOSE_POLICY, "no pong within 600 s", now);
                ApiCounters::add(&self.state.counters.ws_closed_idle, 1);
                self.mark_dirty(slot);
            } else if now.duration_since(client.last_ping) >= PING_INTERVAL {
                client.last_ping = now;
                self.send(slot, ping.clone(), now);
            }
        }
        if now.duration_since(self.last_resolve) >= RESOLVE_INTERVAL {
            self.last_resolve = now;
            self.resolve();
        }
    }

    /// Look up symbols that were unknown when they were subscribed.
    fn resolve(&mut self) {
        let mut found = Vec::new();
        for (slot, client) in self.clients.iter_mut().enumerate() {
            let Some(client) = client.as_mut() else {
                continue;
            };
            for sub in client.subs.iter_mut().filter(|s| s.key.is_none()) {
                if let Some(symbol) = self.state.registry.index(&sub.symbol) {
                    let key = StreamKey {
                        symbol,
                        interval: sub.interval,
                    };
                    sub.key = Some(key);
                    found.push((slot, key));
                }
            }
        }
        for (slot, key) in found {
            self.attach(slot, key);
        }
    }

    /// Drop dead clients.
    fn reap(&mut self) {
        for slot in 0..self.clients.len() {
            if !self.clients[slot].as_ref().is_some_and(|c| c.dead) {
                continue;
            }
            let Some(mut client) = self.clients[slot].take() else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut client.stream);
            let counters = &self.state.counters;
            let subs = client.subs.len() as u64;
            counters
                .ws_subscriptions
                .fetch_sub(subs, std::sync::atomic::Ordering::Relaxed);
            counters
                .ws_clients
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            for key in client.subs.iter().filter_map(|s| s.key) {
                self.detach(slot, key);
            }
            self.more_to_read.retain(|&s| s != slot);
            self.state.push.release(client.peer);
            self.free.push(slot);
        }
    }

    /// At shutdown: a going-away close to every client, one write attempt each.
    fn close_all(&mut self) {
        let now = Instant::now();
        for client in self.clients.iter_mut().flatten() {
            client.begin_close(CLOSE_GOING_AWAY, "server shutting down", now);
            let _ = client.write();
            client.dead = true;
        }
        self.reap();
    }
}
