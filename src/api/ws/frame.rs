//! WebSocket framing (RFC 6455; pure, used by the `api-hub` and `api-ws` threads): server
//! frames are encoded once (FIN, unmasked) and shared by every client that gets them; client
//! frames are parsed from a connection's read buffer (masked, bounded size).

use bytes::Bytes;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes used here.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// A server frame with `opcode` and `payload`.
pub fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = Vec::with_capacity(len + 10);
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// A text frame, shareable.
pub fn text(payload: &[u8]) -> Bytes {
    Bytes::from(encode(OP_TEXT, payload))
}

/// A close frame with a code and a reason (cut to the 123 bytes a control frame allows).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    Bytes::from(encode(OP_CLOSE, &payload))
}

/// One frame from a client, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Why a client frame was refused (the connection is closed with the code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("client frames must be masked")]
    Unmasked,
    #[error("reserved bits set")]
    Reserved,
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("control frames must be final and at most 125 bytes")]
    Control,
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(u64),
}

impl FrameError {
    /// The close code that answers it.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLarge(_) => CLOSE_TOO_BIG,
            _ => CLOSE_PROTOCOL,
        }
    }
}

/// Parse one client frame at the start of `buf`: the frame and the bytes it used, or `None`
/// while it is incomplete. Payloads over `max_payload` are refused.
///
/// # Errors
/// A frame that breaks the protocol (unmasked, reserved bits, bad opcode, oversized).
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let (fin, opcode) = (first & 0x80 != 0, first & 0x0F);
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(FrameError::Opcode(opcode));
    }
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, mut at) = match second & 0x7F {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(bytes), 10)
        }
        126 | 127 => return Ok(None),
        small => (u64::from(small), 2),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err(FrameError::Control);
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooLarge(len));
    }
    let len = len as usize;
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload = buf[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        at + len,
    )))
}

#[cfg(test)]
pub(crate) fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 65_535 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_length_form() {
        assert_eq!(encode(OP_TEXT, b"hi"), vec![0x81, 2, b'h', b'i']);
        let medium = encode(OP_TEXT, &[b'a'; 300]);
        assert_eq!(&medium[..4], &[0x81, 126, 1, 44]);
        let big = encode(OP_BINARY, &vec![0u8; 70_000]);
        assert_eq!(&big[..2], &[0x82, 127]);
        assert_eq!(big.len(), 70_010);
        let closing = close(1008, &"x".repeat(200));
        assert_eq!(closing.len(), 2 + 2 + 123);
        assert_eq!(&closing[2..4], &1008u16.to_be_bytes());
    }

    #[test]
    fn parses_masked_frames_and_waits_for_more() {
        for len in [5usize, 200, 70_000] {
            let payload = vec![b'z'; len];
            let wire = client_frame(OP_TEXT, true, &payload);
            assert_eq!(parse(&wire[..wire.len() - 1], 100_000), Ok(None));
            let (frame, used) = parse(&wire, 100_000).unwrap().unwrap();
            assert_eq!((frame.fin, frame.opcode, used), (true, OP_TEXT, wire.len()));
            assert_eq!(frame.payload, payload);
        }
        assert_eq!(parse(&[0x81], 10), Ok(None));
    }

    #[test]
    fn refuses_protocol_errors() {
        assert_eq!(
            parse(&[0x81, 0x02, b'h', b'i'], 10),
            Err(FrameError::Unmasked)
        );
        assert_eq!(parse(&[0xC1, 0x80], 10), Err(FrameError::Reserved));
        assert_eq!(parse(&[0x83, 0x80], 10), Err(FrameError::Opcode(3)));
        let ping = client_frame(OP_PING, false, b"");
        assert_eq!(parse(&ping, 10), Err(FrameError::Control));
        let big = client_frame(OP_TEXT, true, &[0; 20]);
        assert_eq!(parse(&big, 10), Err(FrameError::TooLarge(20)));
        assert_eq!(FrameError::TooLarge(1).close_code(), CLOSE_TOO_BIG);
    }
}
