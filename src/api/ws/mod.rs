//! The WebSocket side of the API: the handshake on the gateway's connection threads
//! ([`handshake`]), the push thread `api-ws` ([`pusher`]) that owns every client after it, the
//! framing ([`frame`]), the control protocol ([`control`]) and a client's state ([`client`]).
//! This module holds the hand-off between them: a bounded channel of new clients plus the push
//! thread's mio waker, and the count of open connections (reserved at the handshake).

pub mod client;
pub mod control;
pub mod frame;
pub mod handshake;
pub mod pusher;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use mio::{Poll, Token, Waker};

pub use control::KlineStream;
pub use pusher::Pusher;

use super::HANDOFF_CAPACITY;

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
    open: AtomicUsize,
}

impl PushHandle {
    /// Take a connection slot; false when `max` are open.
    pub fn reserve(&self, max: usize) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Give a slot back (the client left or never arrived).
    pub fn release(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// Connections open (or reserved).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
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
            open: AtomicUsize::new(0),
        };
        Ok((handle, PushParts { poll, clients }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded() {
        let (handle, _parts) = PushParts::new().unwrap();
        for _ in 0..3 {
            assert!(handle.reserve(3));
        }
        assert!(!handle.reserve(3));
        handle.release();
        assert_eq!(handle.open(), 2);
        assert!(handle.reserve(3));
    }
}
