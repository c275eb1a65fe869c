//! The WebSocket side of the API: the handshake on the gateway's connection threads
//! ([`handshake`]), the push thread `api-ws` ([`pusher`]) that owns every client after it, the
//! framing ([`frame`]), the control protocol ([`control`]) and a client's state ([`client`]).
//! This module holds the hand-off between them: a bounded channel of new clients plus the push
//! thread's mio waker, and the open connections, in all and per client address (reserved at the
//! handshake, given back by the push thread when the client leaves).

pub mod client;
pub mod control;
pub mod frame;
pub mod handshake;
pub mod pusher;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use mio::{Poll, Token, Waker};

pub use control::KlineStream;
pub use pusher::Pusher;

use super::HANDOFF_CAPACITY;
use crate::gateway::slots::{ClientSlots, SlotRefusal, client_key};

/// The push thread's waker token.
pub const WAKER: Token = Token(0);

/// A client that completed the handshake, for the push thread.
#[derive(Debug)]
pub struct NewClient {
    /// The socket, non-blocking.
    pub stream: TcpStream,
    pub peer: Option<SocketAddr>,
    pub combined: bool,
    /// Streams named in the URL (validated).
    pub streams: Vec<KlineStream>,
    /// Bytes read after the handshake's head (frames the client sent at once).
    pub leftover: Vec<u8>,
}

/// How other threads reach the push thread.
#[derive(Debug)]
pub struct PushHandle {
    tx: Sender<NewClient>,
    waker: Arc<Waker>,
    slots: ClientSlots,
}

impl PushHandle {
    /// Take a connection slot for a client at `peer`: at most `max` in all and `per_client`
    /// per client address.
    ///
    /// # Errors
    /// Which limit is reached.
    pub fn reserve(
        &self,
        peer: Option<SocketAddr>,
        max: usize,
        per_client: usize,
    ) -> Result<(), SlotRefusal> {
        self.slots.take(client_key(peer), max, per_client)
    }

    /// Give back the slot of the client at `peer` (it left or never arrived).
    pub fn release(&self, peer: Option<SocketAddr>) {
        self.slots.give_back(client_key(peer));
    }

    /// Connections open (or reserved).
    pub fn open(&self) -> usize {
        self.slots.open()
    }

    /// Connections open (or reserved) of the client at `peer`.
    pub fn open_of(&self, peer: Option<SocketAddr>) -> usize {
        self.slots.held_by(client_key(peer))
    }

    /// Hand a client to the push thread.
    ///
    /// # Errors
    /// The channel is full or the push thread is gone: the client comes back.
    pub fn hand_off(&self, client: NewClient) -> Result<(), NewClient> {
        match self.tx.try_send(client) {
            Ok(()) => {
                self.wake();
                Ok(())
            }
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => Err(c),
        }
    }

    /// Wake the push thread (new events or clients).
    pub fn wake(&self) {
        // A failed wake means the poll is gone: the thread is exiting.
        let _ = self.waker.wake();
    }
}

/// What the push thread starts with.
#[derive(Debug)]
pub struct PushParts {
    pub poll: Poll,
    pub clients: Receiver<NewClient>,
}

impl PushParts {
    /// The poll, its waker and the hand-off channel.
    ///
    /// # Errors
    /// The poll or waker could not be created.
    pub fn new() -> std::io::Result<(PushHandle, PushParts)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, clients) = bounded(HANDOFF_CAPACITY);
        let handle = PushHandle {
            tx,
            waker,
            slots: ClientSlots::default(),
        };
        Ok((handle, PushParts { poll, clients }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_in_all_and_per_client() {
        let (handle, _parts) = PushParts::new().unwrap();
        let peer = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        let other = Some(SocketAddr::from(([10, 0, 0, 1], 9)));
        for port in 0..2 {
            assert_eq!(handle.reserve(peer(port), 3, 2), Ok(()));
        }
        assert_eq!(
            handle.reserve(peer(5), 3, 2),
            Err(SlotRefusal::PerClient(2))
        );
        assert_eq!(handle.reserve(other, 3, 2), Ok(()));
        assert_eq!(handle.reserve(None, 3, 2), Err(SlotRefusal::Full(3)));
        handle.release(peer(1));
        assert_eq!((handle.open(), handle.open_of(peer(7))), (2, 1));
        assert_eq!(handle.reserve(peer(1), 3, 2), Ok(()));
    }
}
