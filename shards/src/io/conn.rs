//! One WebSocket connection of a shard (shard thread): its state machine
//! (`Backoff → Connecting → Open → …`), its subscriptions, its timers, the rotation overlap it
//! takes over as a replacement, and the bounded read of frames into the Worker.

use std::io::ErrorKind;
use std::time::Instant;

use tungstenite::Message;

use super::connector::WsStream;
use super::overlap::{Gate, Overlap};
use super::subs::SubscriptionSet;
use crate::parse::{Frame, parse_frame};
use crate::protocol::{ResyncReason, SymbolIndex};
use crate::worker::{FrameTradeError, TradeOutcome, Worker};

/// Where a connection stands.
#[derive(Debug)]
pub enum ConnState {
    /// Waiting to (re)connect at `until`.
    Backoff { until: Instant },
    /// The connector is working on attempt `generation`.
    Connecting { since: Instant },
    /// Established and registered with the shard's poll.
    Open(Box<WsStream>),
}

/// One connection slot.
#[derive(Debug)]
pub struct Connection {
    pub state: ConnState,
    pub subs: SubscriptionSet,
    /// Attempt number of the current/last connect; results of older attempts are ignored.
    pub generation: u64,
    /// Consecutive failed attempts and lost connections (for the back-off), reset once the
    /// connection has stayed open for [`super::backoff::HEALTHY_AFTER`].
    pub failures: u32,
    pub opened_at: Option<Instant>,
    pub last_rx: Instant,
    pub last_ping: Instant,
    pub next_control_at: Instant,
    /// Frames may be waiting (the last read stopped at its budget, or the socket is new).
    pub readable: bool,
    /// tungstenite holds unsent bytes.
    pub want_flush: bool,
    /// Replaced by a newer connection: carries its old streams until the overlap ends.
    pub retiring: bool,
    /// The connection that replaces this one (make-before-break rotation).
    pub replacement: Option<usize>,
    /// As a replacement: the rotation overlap with the retiring connection.
    pub overlap: Option<Overlap>,
}

impl Connection {
    pub fn new(now: Instant) -> Connection {
        Connection {
            state: ConnState::Backoff { until: now },
            subs: SubscriptionSet::default(),
            generation: 0,
            failures: 0,
            opened_at: None,
            last_rx: now,
            last_ping: now,
            next_control_at: now,
            readable: false,
            want_flush: false,
            retiring: false,
            replacement: None,
            overlap: None,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, ConnState::Open(_))
    }

    pub fn ws_mut(&mut self) -> Option<&mut WsStream> {
        match &mut self.state {
            ConnState::Open(ws) => Some(ws),
            _ => None,
        }
    }

    /// Queue a message and try to send it now; a blocked socket keeps it for the next flush.
    ///
    /// # Errors
    /// The connection broke (the caller drops it).
    pub fn send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        let Some(ws) = self.ws_mut() else {
            return Ok(());
        };
        ws.write(message)?;
        self.flush()
    }

    /// Push buffered bytes out; `WouldBlock` leaves them for the next writable event.
    ///
    /// # Errors
    /// The connection broke.
    pub fn flush(&mut self) -> Result<(), tungstenite::Error> {
        let Some(ws) = self.ws_mut() else {
            return Ok(());
        };
        match ws.flush() {
            Ok(()) => {
                self.want_flush = false;
                Ok(())
            }
            Err(tungstenite::Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => {
                self.want_flush = true;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

/// What one bounded read did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    pub frames: u64,
    pub bytes: u64,
    pub trades: u64,
    pub other_frames: u64,
    pub parse_errors: u64,
    pub unknown_symbol: u64,
    pub acks: u64,
    pub control_errors: u64,
    pub given_up: u64,
    /// Replacement trades held back during a rotation overlap.
    pub held: u64,
    /// Held trades dropped at the overlap's bound.
    pub held_dropped: u64,
    /// `E` of the last trade read (0: none).
    pub last_event_time_ms: i64,
    /// The connection broke or was closed by the server.
    pub lost: bool,
}

/// Symbols whose stream failed (unparsable frames, a subscription given up), with why.
pub type StreamFailures = Vec<(SymbolIndex, ResyncReason)>;

/// Read at most `budget` frames from `conn` into `worker`, trades through `gate` during a
/// rotation overlap. Leaves `conn.readable` set when the budget ran out before the socket
/// would block.
pub fn read_frames(
    conn: &mut Connection,
    worker: &mut Worker,
    budget: usize,
    now: Instant,
    failures: &mut StreamFailures,
    mut gate: Option<Gate<'_>>,
) -> ReadStats {
    let mut stats = ReadStats::default();
    let ConnState::Open(ws) = &mut conn.state else {
        conn.readable = false;
        return stats;
    };
    let mut got_any = false;
    let mut blocked = false;
    for _ in 0..budget {
        let message = match ws.read() {
            Ok(message) => message,
            Err(tungstenite::Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => {
                blocked = true;
                break;
            }
            Err(_) => {
                (stats.lost, blocked) = (true, true);
                break;
            }
        };
        got_any = true;
        match message {
            Message::Text(text) => {
                stats.frames += 1;
                stats.bytes += text.len() as u64;
                let (subs, retiring) = (&mut conn.subs, conn.retiring);
                handle_text(
                    text.as_bytes(),
                    subs,
                    retiring,
                    worker,
                    &mut stats,
                    failures,
                    gate.as_mut(),
                );
            }
            Message::Binary(bytes) => {
                stats.frames += 1;
                stats.bytes += bytes.len() as u64;
                stats.parse_errors += 1;
            }
            Message::Close(_) => {
                (stats.lost, blocked) = (true, true);
                break;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    conn.readable = !blocked;
    if got_any {
        conn.last_rx = now;
    }
    if let Some(gate) = gate {
        (stats.held, stats.held_dropped) = (gate.stats.held, gate.stats.held_dropped);
    }
    stats
}

#[inline]
fn handle_text(
    bytes: &[u8],
    subs: &mut SubscriptionSet,
    retiring: bool,
    worker: &mut Worker,
    stats: &mut ReadStats,
    failures: &mut StreamFailures,
    gate: Option<&mut Gate<'_>>,
) {
    match parse_frame(bytes) {
        Ok(Frame::Trade(raw)) => match gated_trade(worker, &raw, gate) {
            None => stats.last_event_time_ms = raw.event_time_ms,
            Some(Ok(outcome)) => {
                if matches!(outcome, TradeOutcome::Book(_)) {
                    stats.trades += 1;
                }
                stats.last_event_time_ms = raw.event_time_ms;
            }
            Some(Err(FrameTradeError::UnknownSymbol)) => stats.unknown_symbol += 1,
            Some(Err(FrameTradeError::Parse(_))) => {
                stats.parse_errors += 1;
                if let Some(spec) = worker
                    .slot_of_name(raw.symbol)
                    .and_then(|slot| worker.symbol_at(slot))
                {
                    failures.push((spec.index, ResyncReason::ParseErrors));
                }
            }
        },
        Ok(Frame::Ack { id }) => {
            stats.acks += 1;
            subs.on_ack(id);
        }
        Ok(Frame::Error { id: Some(id), .. }) => {
            stats.control_errors += 1;
            // A stream the venue keeps refusing: the control plane activates the symbol again
            // (not on a retiring connection: its streams moved to the replacement).
            let effect = subs.on_error(id, |symbol| {
                if !retiring {
                    failures.push((symbol, ResyncReason::SubscriptionLost));
                }
            });
            stats.given_up += effect.given_up as u64;
        }
        Ok(Frame::Error { id: None, .. }) => stats.control_errors += 1,
        Ok(Frame::Reply { .. } | Frame::Other) => stats.other_frames += 1,
        Err(_) => stats.parse_errors += 1,
    }
}

/// A trade frame to the worker, through the rotation gate when there is one (`None`: held or
/// dropped by the gate).
#[inline]
fn gated_trade(
    worker: &mut Worker,
    raw: &crate::parse::RawAggTrade<'_>,
    gate: Option<&mut Gate<'_>>,
) -> Option<Result<TradeOutcome, FrameTradeError>> {
    match gate {
        Some(gate) => gate.process(worker, raw),
        None => Some(worker.process_raw_trade(raw)),
    }
}
