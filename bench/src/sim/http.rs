//! HTTP/1.1 for the simulator's single listener (runs on each client connection's thread): reads
//! one request head at a time from a keep-alive connection (bounded size), skips any body, and
//! writes JSON responses. The head, its query and the response are
//! [`klagg_shards::wire::http`]'s, read with its lenient syntax; the simulator routes on the
//! percent-decoded path.

use std::io::{self, Read, Write};

use klagg_shards::wire::http::{
    HEAD_MAX_BYTES, HeadSyntax, parse_head, percent_decode, write_head,
};
pub use klagg_shards::wire::http::{Request, Response};

/// Largest request body read (and discarded).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The content type of every answer.
const CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// A JSON response.
pub fn json(status: u16, body: String) -> Response {
    Response::new(status, CONTENT_TYPE, body.into_bytes())
}

/// A Binance error body `{"code":…,"msg":…}`.
pub fn error(status: u16, code: i32, msg: &str) -> Response {
    json(status, klagg_shards::wire::rest::error_body(code, msg))
}

/// Outcome of reading a request.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A request; `buf` keeps any bytes after it.
    Request(Request),
    /// The peer closed cleanly between requests.
    Closed,
    /// No complete request yet (read timed out); call again.
    Pending,
}

/// Read the next request head from `stream`, buffering in `buf` across calls.
pub fn read_request(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<ReadOutcome> {
    loop {
        let head = parse_head(buf, HeadSyntax::Lenient).map_err(|e| bad(&e.to_string()))?;
        if let Some((mut req, used)) = head {
            buf.drain(..used);
            req.path = percent_decode(&req.path);
            discard_body(stream, buf, &req)?;
            return Ok(ReadOutcome::Request(req));
        }
        if buf.len() > HEAD_MAX_BYTES {
            return Err(bad("request head too large"));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(ReadOutcome::Closed),
            Ok(0) => return Err(bad("connection closed mid-request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => return Ok(ReadOutcome::Pending),
            Err(e) => return Err(e),
        }
    }
}

/// True for the errors a read timeout produces.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn discard_body(stream: &mut impl Read, buf: &mut Vec<u8>, req: &Request) -> io::Result<()> {
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if len > MAX_BODY_BYTES {
        return Err(bad("request body too large"));
    }
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(bad("connection closed mid-body")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    buf.drain(..len);
    Ok(())
}

/// Write `resp` with Content-Length and keep-alive headers.
pub fn write_response(stream: &mut impl Write, resp: &Response, close: bool) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(256 + resp.body.len());
    write_head(&mut bytes, resp, !close, &[]);
    bytes.extend_from_slice(&resp.body);
    stream.write_all(&bytes)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_keeps_leftovers() {
        let raw = b"GET /fapi/v1/klines?symbol=BTCUSDT&interval=1m HTTP/1.1\r\nHost: x\r\n\r\nGET /fapi/v1/ping HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut src = &raw[..];
        let mut buf = Vec::new();
        let ReadOutcome::Request(r) = read_request(&mut src, &mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(r.path, "/fapi/v1/klines");
        assert_eq!(r.param("interval"), Some("1m"));
        assert!(r.keep_alive);
        let ReadOutcome::Request(r2) = read_request(&mut src, &mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(r2.path, "/fapi/v1/ping");
        assert!(!r2.keep_alive);
        assert!(matches!(
            read_request(&mut src, &mut buf).unwrap(),
            ReadOutcome::Closed
        ));
    }

    #[test]
    fn routes_on_the_decoded_path_and_skips_bodies() {
        let raw = b"POST /ws/btcusdt%40aggTrade HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.0\r\n\r\n";
        let mut src = &raw[..];
        let mut buf = Vec::new();
        let ReadOutcome::Request(r) = read_request(&mut src, &mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(r.path, "/ws/btcusdt@aggTrade");
        assert_eq!(r.target, "/ws/btcusdt%40aggTrade");
        let ReadOutcome::Request(r2) = read_request(&mut src, &mut buf).unwrap() else {
            panic!()
        };
        assert_eq!((r2.path.as_str(), r2.keep_alive), ("/x", false));
    }
}
