//! HTTP/1.1 on the gateway's connection threads (`api-http-N`): reading one request head
//! (bounded size; one read per call, each bounded by the caller's socket timeout) and writing
//! the answer. The head, its query and the response are [`klagg_shards::wire::http`]'s, read
//! with its strict syntax: the API is GET-only and reads no request bodies, so a request
//! announcing a body is refused.

use std::io::{self, Read, Write};

pub use klagg_shards::wire::http::{
    HEAD_MAX_BYTES, HEADERS_MAX, HeadError, Request as HttpRequest, Response as HttpResponse,
    percent_decode, split_target,
};
use klagg_shards::wire::http::{HeadSyntax, parse_head, write_head};

/// Bodies up to this size are written together with the head (one `write`).
const COALESCE_BODY_MAX: usize = 64 * 1024;
/// Headers of every answer, after `Connection`.
const COMMON_HEADERS: [(&str, &str); 1] = [("Access-Control-Allow-Origin", "*")];

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl HttpError {
    /// The HTTP status that answers it (before the connection is closed).
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Head(head) => head.status(),
            HttpError::Io(_) => 400,
        }
    }
}

/// What one read attempt gave.
#[derive(Debug)]
pub enum ReadOutcome {
    Request(HttpRequest),
    /// Nothing complete yet (read timeout): check shutdown and idle time, then call again.
    Pending,
    /// The client closed the connection.
    Closed,
}

/// Read at most once, then parse: a complete head is removed from `buf` (what follows, such as
/// a pipelined request or WebSocket frames, stays); otherwise `Pending`. One read per call, so
/// a client that trickles bytes cannot keep the caller from checking its deadlines.
///
/// # Errors
/// A malformed or oversized head, a request with a body, I/O errors other than a timeout.
pub fn read_request(stream: &mut impl Read, buf: &mut Vec<u8>) -> Result<ReadOutcome, HttpError> {
    if let Some(request) = take_head(buf)? {
        return Ok(ReadOutcome::Request(request));
    }
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(0) => Ok(ReadOutcome::Closed),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(take_head(buf)?.map_or(ReadOutcome::Pending, ReadOutcome::Request))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(ReadOutcome::Pending)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(ReadOutcome::Closed),
        Err(e) => Err(e.into()),
    }
}

/// The complete head at the start of `buf`, removed from it.
fn take_head(buf: &mut Vec<u8>) -> Result<Option<HttpRequest>, HttpError> {
    if let Some((request, used)) = parse_head(buf, HeadSyntax::Strict)? {
        buf.drain(..used);
        return Ok(Some(request));
    }
    if buf.len() >= HEAD_MAX_BYTES {
        return Err(HeadError::TooLarge.into());
    }
    Ok(None)
}

/// Write `response`; `keep_alive` says whether the connection stays open.
///
/// # Errors
/// I/O errors (the client left, or the write timeout passed).
pub fn write_response(
    stream: &mut impl Write,
    response: &HttpResponse,
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(256 + response.body.len().min(COALESCE_BODY_MAX));
    write_head(&mut head, response, keep_alive, &COMMON_HEADERS);
    if response.body.len() <= COALESCE_BODY_MAX {
        head.extend_from_slice(&response.body);
        stream.write_all(&head)?;
    } else {
        stream.write_all(&head)?;
        stream.write_all(&response.body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head_and_keeps_what_follows() {
        let mut buf = b"GET /fapi/v1/klines?symbol=BTCUSDT&interval=1m&x=a%40b%2Fc+d HTTP/1.1\r\n\
            Host: x\r\nConnection: keep-alive\r\n\r\nGET /next"
            .to_vec();
        let mut empty: &[u8] = &[];
        let ReadOutcome::Request(request) = read_request(&mut empty, &mut buf).unwrap() else {
            panic!("no request");
        };
        assert_eq!(request.path, "/fapi/v1/klines");
        assert_eq!(request.param("symbol"), Some("BTCUSDT"));
        assert_eq!(request.param("x"), Some("a@b/c d"));
        assert_eq!(request.header("host"), Some("x"));
        assert!(request.keep_alive);
        assert!(!request.is_websocket_upgrade());
        assert_eq!(buf, b"GET /next");
    }

    #[test]
    fn refuses_bodies_oversized_and_malformed_heads() {
        let mut buf = b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec();
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_request(&mut empty, &mut buf),
            Err(HttpError::Head(HeadError::Body))
        ));
        let mut buf = b"G\x01T / HTTP/1.1\r\n\r\n".to_vec();
        let err = read_request(&mut empty, &mut buf).unwrap_err();
        assert_eq!(err.status(), 400);
        let mut buf = vec![b'a'; HEAD_MAX_BYTES];
        assert!(matches!(
            read_request(&mut empty, &mut buf),
            Err(HttpError::Head(HeadError::TooLarge))
        ));
        let mut buf = b"GET / HTTP/1.0\r\n\r\n".to_vec();
        let ReadOutcome::Request(request) = read_request(&mut empty, &mut buf).unwrap() else {
            panic!("no request");
        };
        assert!(!request.keep_alive, "HTTP/1.0 closes by default");
        let mut buf = b"GET / HTT".to_vec();
        assert!(matches!(
            read_request(&mut empty, &mut buf),
            Ok(ReadOutcome::Closed)
        ));
    }

    #[test]
    fn reads_once_per_call() {
        let mut src: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        let mut trickle = std::io::Read::take(&mut src, 5);
        let mut buf = Vec::new();
        assert!(matches!(
            read_request(&mut trickle, &mut buf),
            Ok(ReadOutcome::Pending)
        ));
        assert_eq!(buf, b"GET /");
    }

    #[test]
    fn writes_status_headers_and_body() {
        let mut out = Vec::new();
        let response =
            HttpResponse::new(400, "application/json", b"{}".to_vec()).with_header("X-Test", "1");
        write_response(&mut out, &response, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("Content-Length: 2\r\nConnection: close\r\n"));
        assert!(text.contains("X-Test: 1\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }
}
