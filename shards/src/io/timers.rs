//! The I/O timers (shard thread, called once per loop iteration): connect after back-off,
//! abandoned attempts, silence and ack timeouts, forgetting the failures of a healthy
//! connection, pings, paced control messages, rotation before the lifetime limit, and closing
//! a retiring connection once every symbol was handed over or the overlap ran out.

use std::time::{Duration, Instant};

use mio::Registry;
use tungstenite::Message;

use super::backoff::HEALTHY_AFTER;
use super::conn::ConnState;
use super::connector::ConnectRequest;
use super::overlap::Overlap;
use super::{
    CONNECT_DEADLINE, Connection, Io, ROTATION_DEADLINE, ROTATION_DEADLINE_MAX,
    ROTATION_OVERLAP_MAX, deregister, ping,
};
use crate::worker::Worker;

impl Io {
    /// Run every due timer; held trades of an overlap that ended go to `worker`.
    pub fn tick(&mut self, now: Instant, registry: &Registry, worker: &mut Worker) {
        for slot in 0..self.conns.len() {
            let Some(conn) = self.conns[slot].as_ref() else {
                continue;
            };
            match conn.state {
                ConnState::Backoff { until } => {
                    let needed = conn.subs.wanted_count() > 0 && !conn.retiring;
                    if needed && until <= now {
                        self.start_connect(slot, now);
                    }
                }
                ConnState::Connecting { since } => {
                    if now.duration_since(since) > CONNECT_DEADLINE {
                        self.stats.connect_failures += 1;
                        self.fail_attempt(slot, now);
                    }
                }
                ConnState::Open(_) => self.tick_open(slot, now, registry),
            }
        }
        self.flush_ended(worker);
    }

    fn start_connect(&mut self, slot: usize, now: Instant) {
        let generation = self.next_generation;
        let request = ConnectRequest {
            slot,
            generation,
            url: self.url.clone(),
        };
        if self.connect_tx.try_send(request).is_err() {
            // The connector is busy with other slots: try again shortly.
            if let Some(conn) = self.conns[slot].as_mut() {
                conn.state = ConnState::Backoff {
                    until: now + self.config.reconnect_backoff_min,
                };
            }
            return;
        }
        self.next_generation += 1;
        self.changed = true;
        if let Some(conn) = self.conns[slot].as_mut() {
            conn.generation = generation;
            conn.state = ConnState::Connecting { since: now };
        }
    }

    fn tick_open(&mut self, slot: usize, now: Instant, registry: &Registry) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let silent = now.duration_since(conn.last_rx) > self.config.silence_timeout;
        let ack_late = conn
            .subs
            .oldest_request()
            .is_some_and(|sent| now.duration_since(sent) > self.config.ack_timeout);
        if silent || ack_late {
            self.lose(slot, registry, now);
            return;
        }
        if conn.retiring {
            self.tick_retiring(slot, now, registry);
            return;
        }
        let age = conn
            .opened_at
            .map_or(Duration::ZERO, |at| now.duration_since(at));
        if age >= HEALTHY_AFTER {
            conn.failures = 0;
        }
        let rotating = conn.replacement.is_some() || conn.overlap.is_some();
        if !rotating && age >= self.config.max_connection_lifetime {
            self.start_rotation(slot, now, registry);
            return;
        }
        if self.send_due(slot, now).is_err() {
            self.lose(slot, registry, now);
        }
    }

    /// Ping, the next paced control message, and any pending flush.
    fn send_due(&mut self, slot: usize, now: Instant) -> Result<(), tungstenite::Error> {
        let id = self.next_request_id;
        let streams_max = self.config.streams_per_connection;
        let names = &self.names;
        let Some(conn) = self.conns[slot].as_mut() else {
            return Ok(());
        };
        if now.duration_since(conn.last_ping) >= self.config.ping_interval {
            conn.last_ping = now;
            conn.send(ping())?;
        }
        if conn.subs.has_work() && now >= conn.next_control_at {
            let name = |symbol| names.get(&symbol).map(|name| &**name);
            if let Some(message) = conn.subs.next_message(id, now, streams_max, name) {
                self.next_request_id += 1;
                self.stats.subscribe_messages += 1;
                conn.next_control_at = now + self.control_interval;
                conn.send(Message::Text(message.json.into()))?;
            }
        }
        if conn.want_flush {
            conn.flush()?;
        }
        Ok(())
    }

    /// Make-before-break: a new connection takes over every stream; this one keeps delivering
    /// until each symbol was handed over (see [`super::overlap`]).
    fn start_rotation(&mut self, slot: usize, now: Instant, registry: &Registry) {
        self.stats.rotations += 1;
        let wanted: Vec<_> = self.conns[slot]
            .as_ref()
            .map(|conn| conn.subs.wanted().collect())
            .unwrap_or_default();
        if wanted.is_empty() {
            self.close(slot, registry);
            return;
        }
        let Ok(replacement) = self.allocate(now) else {
            // No slot for a replacement: fall back to break-before-make.
            self.lose(slot, registry, now);
            return;
        };
        for &symbol in &wanted {
            if let Some(conn) = self.conns[replacement].as_mut() {
                conn.subs.want(symbol);
            }
            self.owner.insert(symbol, replacement);
        }
        if let Some(conn) = self.conns[replacement].as_mut() {
            conn.overlap = Some(Overlap::new(slot, wanted, now));
        }
        if let Some(conn) = self.conns[slot].as_mut() {
            conn.retiring = true;
            conn.replacement = Some(replacement);
        }
    }

    fn tick_retiring(&mut self, slot: usize, now: Instant, registry: &Registry) {
        if self.overlap_done(slot, now) {
            self.close(slot, registry);
        } else if let Some(conn) = self.conns[slot].as_mut()
            && conn.want_flush
            && conn.flush().is_err()
        {
            self.lose(slot, registry, now);
        }
    }

    /// True when the retiring connection in `slot` is no longer needed: every symbol was
    /// handed over, or the overlap ran out ([`ROTATION_OVERLAP_MAX`] after the replacement
    /// settled, [`ROTATION_DEADLINE`] after the rotation started while the replacement is open,
    /// [`ROTATION_DEADLINE_MAX`] in any case), or there is no overlap.
    fn overlap_done(&mut self, slot: usize, now: Instant) -> bool {
        let next = self.conns[slot].as_ref().and_then(|conn| conn.replacement);
        let Some(next) = next.and_then(|next| self.conns.get_mut(next)?.as_mut()) else {
            return true;
        };
        let settled = next.is_open() && next.subs.settled();
        let open = next.is_open();
        let Some(overlap) = next.overlap.as_mut().filter(|overlap| overlap.from == slot) else {
            return true;
        };
        if settled && overlap.settled_at.is_none() {
            overlap.settled_at = Some(now);
        }
        let overlap_over = overlap
            .settled_at
            .is_some_and(|at| now.duration_since(at) >= ROTATION_OVERLAP_MAX);
        let elapsed = now.duration_since(overlap.started);
        let deadline = (open && elapsed >= ROTATION_DEADLINE) || elapsed >= ROTATION_DEADLINE_MAX;
        (open && overlap.switched_all()) || overlap_over || deadline
    }

    /// Close a connection for good (a polite close frame, best effort) and free its slot; a
    /// retiring connection's overlap ends.
    pub fn close(&mut self, slot: usize, registry: &Registry) {
        self.changed = true;
        if self
            .conns
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|conn| conn.retiring)
        {
            self.end_overlap(slot);
        }
        let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        deregister(&mut conn, registry);
        if let Some(ws) = conn.ws_mut() {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
    }

    /// Close every connection (shutdown).
    pub fn close_all(&mut self, registry: &Registry) {
        for slot in 0..self.conns.len() {
            self.close(slot, registry);
        }
    }

    /// The earliest instant a timer needs the loop (None: nothing scheduled).
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.conns
            .iter()
            .flatten()
            .filter_map(|conn| conn_deadline(self, conn, now))
            .min()
    }
}

/// How often a retiring connection checks whether its replacement is settled.
const RETIRING_CHECK: Duration = Duration::from_millis(20);

fn conn_deadline(io: &Io, conn: &Connection, now: Instant) -> Option<Instant> {
    if conn.retiring {
        return Some((conn.last_rx + io.config.silence_timeout).min(now + RETIRING_CHECK));
    }
    match &conn.state {
        ConnState::Backoff { until } => (conn.subs.wanted_count() > 0).then_some(*until),
        ConnState::Connecting { since } => Some(*since + CONNECT_DEADLINE),
        ConnState::Open(_) => {
            let config = &io.config;
            let mut deadline =
                (conn.last_rx + config.silence_timeout).min(conn.last_ping + config.ping_interval);
            if let Some(opened) = conn.opened_at {
                deadline = deadline.min(opened + config.max_connection_lifetime);
            }
            if conn.subs.has_work() {
                deadline = deadline.min(conn.next_control_at);
            }
            if let Some(sent) = conn.subs.oldest_request() {
                deadline = deadline.min(sent + config.ack_timeout);
            }
            Some(deadline)
        }
    }
}
