//! The I/O timers (shard thread, called once per loop iteration): connect after back-off,
//! abandoned attempts, silence and ack timeouts, forgetting the failures of a healthy
//! connection, pings, paced control messages, rotation before the lifetime limit, and closing
//! a retired connection once its replacement is settled.

use std::time::{Duration, Instant};

use mio::Registry;
use tungstenite::Message;

use super::backoff::HEALTHY_AFTER;
use super::conn::ConnState;
use super::connector::ConnectRequest;
use super::{CONNECT_DEADLINE, Connection, Io, ROTATION_DEADLINE, deregister, ping};

impl Io {
    /// Run every due timer.
    pub fn tick(&mut self, now: Instant, registry: &Registry) {
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
        if conn.replacement.is_none() && age >= self.config.max_connection_lifetime {
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
    /// until the new one has them all acknowledged.
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
        for symbol in wanted {
            if let Some(conn) = self.conns[replacement].as_mut() {
                conn.subs.want(symbol);
            }
            self.owner.insert(symbol, replacement);
        }
        if let Some(conn) = self.conns[slot].as_mut() {
            conn.retiring = true;
            conn.replacement = Some(replacement);
        }
    }

    fn tick_retiring(&mut self, slot: usize, now: Instant, registry: &Registry) {
        let Some(conn) = self.conns[slot].as_ref() else {
            return;
        };
        let started = conn.opened_at.unwrap_or(now) + self.config.max_connection_lifetime;
        let replacement_ready = conn
            .replacement
            .and_then(|next| self.conns.get(next).and_then(Option::as_ref))
            .is_none_or(|next| next.is_open() && next.subs.settled());
        if replacement_ready || now.duration_since(started) > ROTATION_DEADLINE {
            self.close(slot, registry);
        } else if let Some(conn) = self.conns[slot].as_mut()
            && conn.want_flush
            && conn.flush().is_err()
        {
            self.lose(slot, registry, now);
        }
    }

    /// Close a connection for good (a polite close frame, best effort) and free its slot.
    pub fn close(&mut self, slot: usize, registry: &Registry) {
        self.changed = true;
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
