//! One WebSocket client of the push thread (`api-ws`): its non-blocking socket, subscriptions,
//! bounded outbound queue of shared frames, read buffer and frame assembly, the incoming
//! message rate, and its closing state. No blocking call: writes stop at `WouldBlock` and
//! resume on the next writable event.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use klagg_shards::kline::Interval;

use super::frame::{self, Frame, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use crate::api::{ApiLimits, StreamKey};

/// Bytes queued for one client before it is closed as too slow.
pub const CLIENT_QUEUE_BYTES_MAX: usize = 1 << 20;
/// Frames queued for one client before it is closed as too slow.
pub const CLIENT_QUEUE_FRAMES_MAX: usize = 8192;
/// The largest message a client may send (a SUBSCRIBE of ~1000 streams fits).
pub const INBOUND_MESSAGE_MAX: usize = 64 * 1024;
/// Incoming messages (text, binary, ping) per second before the client is closed (Binance: 10).
pub const MESSAGES_PER_SECOND_MAX: u32 = 10;
/// Bytes read from one client per turn (the rest waits for the next turn).
pub const READ_BUDGET: usize = 64 * 1024;
/// A closing client is dropped this long after its close frame was queued.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Frames handed to one `writev`.
const WRITE_SLICES: usize = 64;

/// One subscription of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    /// Canonical name (`btcusdt@kline_1m`).
    pub name: String,
    /// `BTCUSDT`.
    pub symbol: String,
    pub interval: Interval,
    /// `None` while the symbol is unknown here (acked, delivered once it is registered).
    pub key: Option<StreamKey>,
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    Close,
}

/// Why the client must go (close code and reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: String,
}

impl Violation {
    pub fn new(code: u16, reason: impl Into<String>) -> Violation {
        Violation {
            code,
            reason: reason.into(),
        }
    }
}

/// The queue refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A WebSocket client.
#[derive(Debug)]
pub struct Client {
    pub stream: mio::net::TcpStream,
    pub peer: Option<SocketAddr>,
    pub combined: bool,
    pub subs: Vec<Sub>,
    out: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    written: usize,
    out_bytes: usize,
    inbuf: Vec<u8>,
    partial: Option<(u8, Vec<u8>)>,
    /// Set when a close frame is queued: the client is dropped once it is written or then.
    pub closing: Option<Instant>,
    /// The socket is finished (drop it now).
    pub dead: bool,
    pub last_heard: Instant,
    pub last_ping: Instant,
    window: (Instant, u32),
    /// Queue and rate limits (defaults unless the pusher sets them).
    pub limits: ApiLimits,
}

impl Client {
    pub fn new(
        stream: mio::net::TcpStream,
        peer: Option<SocketAddr>,
        combined: bool,
        leftover: Vec<u8>,
        now: Instant,
    ) -> Client {
        Client {
            stream,
            peer,
            combined,
            subs: Vec::new(),
            out: VecDeque::new(),
            written: 0,
            out_bytes: 0,
            inbuf: leftover,
            partial: None,
            closing: None,
            dead: false,
            last_heard: now,
            last_ping: now,
            window: (now, 0),
            limits: ApiLimits::default(),
        }
    }

    /// Queue a frame; refused when the client is over its queue limits (too slow).
    ///
    /// # Errors
    /// [`Overflow`]: the caller closes the client.
    pub fn queue(&mut self, frame: Bytes) -> Result<(), Overflow> {
        if self.closing.is_some() || self.dead {
            return Ok(());
        }
        if self.out.len() >= self.limits.client_queue_frames
            || self.out_bytes + frame.len() > self.limits.client_queue_bytes
        {
            return Err(Overflow);
        }
        self.out_bytes += frame.len();
        self.out.push_back(frame);
        Ok(())
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.out_bytes - self.written
    }

    /// Queue a close frame (after dropping queued frames not yet started) and stop queueing.
    pub fn begin_close(&mut self, code: u16, reason: &str, now: Instant) {
        if self.closing.is_some() {
            return;
        }
        let keep = usize::from(self.written > 0);
        while self.out.len() > keep {
            if let Some(dropped) = self.out.pop_back() {
                self.out_bytes -= dropped.len();
            }
        }
        let close = frame::close(code, reason);
        self.out_bytes += close.len();
        self.out.push_back(close);
        self.closing = Some(now + CLOSE_LINGER);
    }

    /// Write queued frames until the socket is full or the queue empty. A closing client whose
    /// close frame is out is marked dead.
    ///
    /// # Errors
    /// The connection failed (the caller drops the client).
    pub fn write(&mut self) -> io::Result<usize> {
        let mut total = 0;
        // Bounded by the queue (each iteration writes at least one byte or stops).
        while !self.out.is_empty() {
            let n = {
                let mut slices = Vec::with_capacity(WRITE_SLICES.min(self.out.len()));
                for (i, frame) in self.out.iter().take(WRITE_SLICES).enumerate() {
                    let start = if i == 0 { self.written } else { 0 };
                    slices.push(IoSlice::new(&frame[start..]));
                }
                match self.stream.write_vectored(&slices) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            total += n;
            self.consume(n);
        }
        if self.out.is_empty() && self.closing.is_some() {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
            self.dead = true;
        }
        Ok(total)
    }

    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.out.front() else {
                return;
            };
            let left = front.len() - self.written;
            if n >= left {
                n -= left;
                self.out_bytes -= front.len();
                self.written = 0;
                self.out.pop_front();
            } else {
                self.written += n;
                return;
            }
        }
    }

    /// Read what the socket has, up to [`READ_BUDGET`]; true when the budget ran out (more
    /// may wait). EOF marks the client dead.
    ///
    /// # Errors
    /// The connection failed.
    pub fn read(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 8192];
        let mut total = 0;
        while total < READ_BUDGET {
            if self.inbuf.len() > INBOUND_MESSAGE_MAX + 16 {
                return Ok(true); // parse first; the frame check refuses oversized ones
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.dead = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Forget what was read (a closing client's input is not looked at).
    pub fn discard_input(&mut self) {
        self.inbuf.clear();
        self.partial = None;
    }

    /// The next complete message in the read buffer.
    ///
    /// # Errors
    /// A protocol violation, an oversized message, or too many messages per second.
    pub fn next_message(&mut self, now: Instant) -> Result<Option<Incoming>, Violation> {
        // Bounded by the buffer: each frame consumes bytes.
        loop {
            let parsed = frame::parse(&self.inbuf, INBOUND_MESSAGE_MAX)
                .map_err(|e| Violation::new(e.close_code(), e.to_string()))?;
            let Some((frame, used)) = parsed else {
                return Ok(None);
            };
            self.inbuf.drain(..used);
            self.last_heard = now;
            if let Some(message) = self.assemble(frame)? {
                if !matches!(message, Incoming::Pong | Incoming::Close) {
                    self.count_message(now)?;
                }
                return Ok(Some(message));
            }
        }
    }

    fn assemble(&mut self, frame: Frame) -> Result<Option<Incoming>, Violation> {
        let protocol = |what: &str| Violation::new(frame::CLOSE_PROTOCOL, what);
        match frame.opcode {
            OP_PING => return Ok(Some(Incoming::Ping(frame.payload))),
            OP_PONG => return Ok(Some(Incoming::Pong)),
            OP_CLOSE => return Ok(Some(Incoming::Close)),
            OP_CONTINUATION => {
                let Some((_, data)) = self.partial.as_mut() else {
                    return Err(protocol("continuation without a message"));
                };
                if data.len() + frame.payload.len() > INBOUND_MESSAGE_MAX {
                    return Err(Violation::new(frame::CLOSE_TOO_BIG, "message too big"));
                }
                data.extend_from_slice(&frame.payload);
            }
            _ => {
                if self.partial.is_some() {
                    return Err(protocol("new message inside a fragmented one"));
                }
                self.partial = Some((frame.opcode, frame.payload));
            }
        }
        if !frame.fin {
            return Ok(None);
        }
        let Some((opcode, data)) = self.partial.take() else {
            return Ok(None);
        };
        match opcode {
            OP_TEXT => String::from_utf8(data)
                .map(|text| Some(Incoming::Text(text)))
                .map_err(|_| Violation::new(1007, "text message is not UTF-8")),
            OP_BINARY => Ok(Some(Incoming::Binary)),
            _ => Err(protocol("bad opcode")),
        }
    }

    fn count_message(&mut self, now: Instant) -> Result<(), Violation> {
        if now.duration_since(self.window.0) >= Duration::from_secs(1) {
            self.window = (now, 0);
        }
        self.window.1 += 1;
        let max = self.limits.messages_per_second;
        if self.window.1 > max {
            return Err(Violation::new(
                frame::CLOSE_POLICY,
                format!("too many requests: over {max} messages in one second"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ws::frame::client_frame;

    /// A connected pair: the server side as a mio stream, the client side blocking.
    fn pair() -> (Client, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let stream = mio::net::TcpStream::from_std(server);
        (
            Client::new(stream, None, false, Vec::new(), Instant::now()),
            peer,
        )
    }

    #[test]
    fn queues_in_order_and_refuses_beyond_the_limit() {
        let (mut client, mut peer) = pair();
        client.queue(frame::text(b"one")).unwrap();
        client.queue(frame::text(b"two")).unwrap();
        assert_eq!(client.queued_bytes(), 10);
        assert_eq!(client.write().unwrap(), 10);
        let mut got = [0u8; 10];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\x81\x03one\x81\x03two");
        let big = Bytes::from(vec![0u8; CLIENT_QUEUE_BYTES_MAX / 2 + 1]);
        client.queue(big.clone()).unwrap();
        assert_eq!(client.queue(big.clone()), Err(Overflow));
        client.begin_close(1008, "too slow", Instant::now());
        assert_eq!(client.queue(big), Ok(()), "ignored while closing");
        // The frame not yet started was dropped; only the close frame is left.
        assert_eq!(client.queued_bytes(), 2 + 2 + 8);
        client.write().unwrap();
        assert!(client.dead);
    }

    #[test]
    fn assembles_fragments_and_limits_the_rate() {
        let (mut client, mut peer) = pair();
        let now = Instant::now();
        peer.write_all(&client_frame(OP_TEXT, false, b"hel"))
            .unwrap();
        peer.write_all(&client_frame(OP_PING, true, b"p")).unwrap();
        peer.write_all(&client_frame(OP_CONTINUATION, true, b"lo"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!client.read().unwrap());
        assert_eq!(
            client.next_message(now),
            Ok(Some(Incoming::Ping(b"p".to_vec())))
        );
        assert_eq!(
            client.next_message(now),
            Ok(Some(Incoming::Text("hello".into())))
        );
        assert_eq!(client.next_message(now), Ok(None));
        for _ in 0..MESSAGES_PER_SECOND_MAX {
            peer.write_all(&client_frame(OP_TEXT, true, b"x")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        client.read().unwrap();
        let mut results = Vec::new();
        while let Some(result) = client.next_message(now).transpose() {
            let stop = result.is_err();
            results.push(result);
            if stop {
                break;
            }
        }
        let violation = results.last().unwrap().clone().unwrap_err();
        assert_eq!(violation.code, frame::CLOSE_POLICY);
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        client.read().unwrap();
        assert!(client.dead);
    }

    #[test]
    fn protocol_errors_are_violations() {
        let (mut client, mut peer) = pair();
        peer.write_all(&client_frame(OP_CONTINUATION, true, b"x"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        client.read().unwrap();
        let violation = client.next_message(Instant::now()).unwrap_err();
        assert_eq!(violation.code, frame::CLOSE_PROTOCOL);
    }
}
