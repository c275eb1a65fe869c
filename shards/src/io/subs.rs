//! Subscription bookkeeping of one WebSocket connection (owned by its `Connection`, shard
//! thread; pure, no I/O): which symbols the connection should carry, what the server has
//! acknowledged, and the requests in flight. Pending changes are coalesced into `SUBSCRIBE` /
//! `UNSUBSCRIBE` messages with many streams each; acks are matched by request id.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::protocol::SymbolIndex;
use crate::wire::control;

/// Requests in flight per connection before new ones wait (with 5 messages/s and acks in
/// milliseconds, a handful is plenty).
pub const REQUESTS_IN_FLIGHT_MAX: usize = 8;
/// Times a refused SUBSCRIBE is retried before the stream is given up (and counted).
pub const SUBSCRIBE_RETRY_MAX: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    /// Not subscribed on this connection.
    Idle,
    Subscribing(u64),
    Subscribed,
    Unsubscribing(u64),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    want: bool,
    state: SubState,
    retries: u8,
}

#[derive(Debug)]
struct Request {
    id: u64,
    sent_at: Instant,
}

/// One control message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMessage {
    pub id: u64,
    pub json: String,
    pub streams: usize,
}

/// What an ack or error reply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyEffect {
    /// The id was one of ours.
    pub known: bool,
    /// Streams given up after repeated refusals.
    pub given_up: usize,
}

/// The subscriptions of one connection.
#[derive(Debug, Default)]
pub struct SubscriptionSet {
    entries: BTreeMap<SymbolIndex, Entry>,
    requests: Vec<Request>,
    /// Something is waiting to be sent.
    dirty: bool,
}

impl SubscriptionSet {
    /// The connection should carry `symbol`.
    pub fn want(&mut self, symbol: SymbolIndex) {
        let entry = self.entries.entry(symbol).or_insert(Entry {
            want: true,
            state: SubState::Idle,
            retries: 0,
        });
        entry.want = true;
        entry.retries = 0;
        self.dirty |= entry.state != SubState::Subscribed;
    }

    /// The connection should stop carrying `symbol`.
    pub fn unwant(&mut self, symbol: SymbolIndex) {
        if let Some(entry) = self.entries.get_mut(&symbol) {
            entry.want = false;
            if entry.state == SubState::Idle {
                self.entries.remove(&symbol);
            } else {
                self.dirty = true;
            }
        }
    }

    /// True when `symbol` is wanted here.
    pub fn wants(&self, symbol: SymbolIndex) -> bool {
        self.entries.get(&symbol).is_some_and(|entry| entry.want)
    }

    /// The wanted symbols (for a replacement connection).
    pub fn wanted(&self) -> impl Iterator<Item = SymbolIndex> + '_ {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.want)
            .map(|(symbol, _)| *symbol)
    }

    pub fn wanted_count(&self) -> usize {
        self.entries.values().filter(|entry| entry.want).count()
    }

    /// `(pending, active)`: wanted but not yet acknowledged, and acknowledged.
    pub fn counts(&self) -> (usize, usize) {
        let mut counts = (0, 0);
        for entry in self.entries.values().filter(|entry| entry.want) {
            if entry.state == SubState::Subscribed {
                counts.1 += 1;
            } else {
                counts.0 += 1;
            }
        }
        counts
    }

    /// Everything wanted is acknowledged and nothing is in flight.
    pub fn settled(&self) -> bool {
        self.requests.is_empty() && !self.dirty && self.counts().0 == 0
    }

    /// Something waits to be sent (and a request slot is free).
    pub fn has_work(&self) -> bool {
        self.dirty && self.requests.len() < REQUESTS_IN_FLIGHT_MAX
    }

    /// When the oldest request in flight was sent.
    pub fn oldest_request(&self) -> Option<Instant> {
        self.requests.iter().map(|request| request.sent_at).min()
    }

    /// The connection was (re)opened: nothing is subscribed on it any more.
    pub fn reset(&mut self) {
        self.requests.clear();
        self.entries.retain(|_, entry| entry.want);
        for entry in self.entries.values_mut() {
            entry.state = SubState::Idle;
        }
        self.dirty = !self.entries.is_empty();
    }

    /// Build the next message: subscriptions first, then unsubscriptions, at most
    /// `streams_max` streams. `name` gives a symbol's stream name.
    pub fn next_message<'n>(
        &mut self,
        id: u64,
        now: Instant,
        streams_max: usize,
        name: impl Fn(SymbolIndex) -> Option<&'n str>,
    ) -> Option<ControlMessage> {
        if !self.has_work() {
            return None;
        }
        let subscribe = self
            .entries
            .values()
            .any(|entry| entry.want && entry.state == SubState::Idle);
        let (method, from, to) = if subscribe {
            ("SUBSCRIBE", SubState::Idle, SubState::Subscribing(id))
        } else {
            (
                "UNSUBSCRIBE",
                SubState::Subscribed,
                SubState::Unsubscribing(id),
            )
        };
        let mut chosen: Vec<&str> = Vec::new();
        for (symbol, entry) in &mut self.entries {
            if chosen.len() == streams_max {
                break;
            }
            if entry.want != subscribe || entry.state != from {
                continue;
            }
            let Some(stream) = name(*symbol) else {
                continue;
            };
            chosen.push(stream);
            entry.state = to;
        }
        self.dirty = self.pending_changes();
        if chosen.is_empty() {
            return None;
        }
        let (json, streams) = (control::request(method, &chosen, id), chosen.len());
        self.requests.push(Request { id, sent_at: now });
        Some(ControlMessage { id, json, streams })
    }

    fn pending_changes(&self) -> bool {
        self.entries.values().any(|entry| {
            (entry.want && entry.state == SubState::Idle)
                || (!entry.want && entry.state == SubState::Subscribed)
        })
    }

    /// `{"result":null,"id":id}` arrived.
    pub fn on_ack(&mut self, id: u64) -> ReplyEffect {
        if !self.take_request(id) {
            return ReplyEffect::default();
        }
        for entry in self.entries.values_mut() {
            match entry.state {
                SubState::Subscribing(request) if request == id => {
                    entry.state = SubState::Subscribed;
                    entry.retries = 0;
                }
                SubState::Unsubscribing(request) if request == id => entry.state = SubState::Idle,
                _ => {}
            }
        }
        self.settle();
        ReplyEffect {
            known: true,
            given_up: 0,
        }
    }

    /// An error reply for `id` arrived: its streams go back to the queue, up to
    /// [`SUBSCRIBE_RETRY_MAX`] times; each stream given up then is passed to `given_up`.
    pub fn on_error(&mut self, id: u64, mut on_given_up: impl FnMut(SymbolIndex)) -> ReplyEffect {
        if !self.take_request(id) {
            return ReplyEffect::default();
        }
        let mut given_up = 0;
        for (&symbol, entry) in &mut self.entries {
            match entry.state {
                SubState::Subscribing(request) if request == id => {
                    entry.state = SubState::Idle;
                    entry.retries += 1;
                    if entry.retries > SUBSCRIBE_RETRY_MAX {
                        entry.want = false;
                        given_up += 1;
                        on_given_up(symbol);
                    }
                }
                SubState::Unsubscribing(request) if request == id => {
                    entry.state = SubState::Subscribed;
                }
                _ => {}
            }
        }
        self.settle();
        ReplyEffect {
            known: true,
            given_up,
        }
    }

    fn take_request(&mut self, id: u64) -> bool {
        let before = self.requests.len();
        self.requests.retain(|request| request.id != id);
        self.requests.len() != before
    }

    fn settle(&mut self) {
        self.entries
            .retain(|_, entry| entry.want || entry.state != SubState::Idle);
        self.dirty = self.pending_changes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(symbol: SymbolIndex) -> Option<&'static str> {
        ["a@aggTrade", "b@aggTrade", "c@aggTrade"]
            .get(symbol.0 as usize)
            .copied()
    }

    #[test]
    fn coalesces_and_matches_acks() {
        let now = Instant::now();
        let mut set = SubscriptionSet::default();
        for index in 0..3 {
            set.want(SymbolIndex(index));
        }
        let message = set.next_message(1, now, 2, name).expect("message");
        assert_eq!(
            message.json,
            r#"{"method":"SUBSCRIBE","params":["a@aggTrade","b@aggTrade"],"id":1}"#
        );
        assert!(set.has_work());
        let second = set.next_message(2, now, 2, name).expect("rest");
        assert_eq!(second.streams, 1);
        assert_eq!(set.counts(), (3, 0));
        assert!(!set.on_ack(99).known);
        assert!(set.on_ack(1).known);
        assert_eq!(set.counts(), (1, 2));
        set.on_ack(2);
        assert!(set.settled());
        set.unwant(SymbolIndex(1));
        let unsub = set.next_message(3, now, 10, name).expect("unsub");
        assert_eq!(
            unsub.json,
            r#"{"method":"UNSUBSCRIBE","params":["b@aggTrade"],"id":3}"#
        );
        set.on_ack(3);
        assert_eq!(set.wanted_count(), 2);
        assert!(set.settled());
    }

    #[test]
    fn reset_requeues_everything_wanted() {
        let now = Instant::now();
        let mut set = SubscriptionSet::default();
        set.want(SymbolIndex(0));
        set.want(SymbolIndex(1));
        set.next_message(1, now, 10, name);
        set.on_ack(1);
        set.reset();
        assert_eq!(set.counts(), (2, 0));
        assert_eq!(
            set.next_message(2, now, 10, name).expect("again").streams,
            2
        );
    }

    #[test]
    fn errors_retry_then_give_up() {
        let now = Instant::now();
        let mut set = SubscriptionSet::default();
        set.want(SymbolIndex(2));
        let (mut given_up, mut symbols) = (0, Vec::new());
        for id in 0..=u64::from(SUBSCRIBE_RETRY_MAX) {
            set.next_message(id, now, 10, name).expect("retry");
            given_up += set.on_error(id, |symbol| symbols.push(symbol)).given_up;
        }
        assert_eq!((given_up, symbols), (1, vec![SymbolIndex(2)]));
        assert!(set.next_message(99, now, 10, name).is_none());
        assert_eq!(set.wanted_count(), 0);
    }
}
