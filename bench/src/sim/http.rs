//! Minimal HTTP/1.1 for the simulator's single listener (runs on each client connection's
//! thread): reads one request head at a time from a keep-alive connection (bounded size),
//! parses the path, query and headers, and writes JSON responses.

use std::io::{self, Read, Write};

/// Largest request head accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body read (and discarded).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One parsed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path without the query, e.g. `/fapi/v1/klines`.
    pub path: String,
    /// Raw target (path and query) as sent.
    pub target: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    /// The client asked to close after this request (or spoke HTTP/1.0).
    pub close: bool,
}

impl Request {
    /// First query value of `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// First header value of `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// True for a WebSocket upgrade request.
    pub fn is_websocket(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }
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
        if let Some(end) = find_head_end(buf) {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let req = parse_head(&head).ok_or_else(|| bad("malformed request head"))?;
            discard_body(stream, buf, &req)?;
            return Ok(ReadOutcome::Request(req));
        }
        if buf.len() > MAX_HEAD_BYTES {
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

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
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

/// Parse a request head (request line and headers, without the blank line).
pub fn parse_head(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let conn = headers
        .iter()
        .find(|(k, _)| k == "connection")
        .map(|(_, v)| v.to_ascii_lowercase());
    let close = version == "HTTP/1.0" || conn.as_deref() == Some("close");
    Some(Request {
        method: method.to_string(),
        path: percent_decode(path),
        target: target.to_string(),
        query: parse_query(query),
        headers,
        close,
    })
}

/// Split and decode `a=1&b=2`.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decode `%XX` escapes and `+` (as space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: String) -> Self {
        Response {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// A Binance error body `{"code":…,"msg":…}`.
    pub fn error(status: u16, code: i32, msg: &str) -> Self {
        Response::json(
            status,
            format!(
                r#"{{"code":{code},"msg":{}}}"#,
                super::render::json_escape(msg)
            ),
        )
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Write `resp` with Content-Length and keep-alive headers.
pub fn write_response(stream: &mut impl Write, resp: &Response, close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len(),
        if close { "close" } else { "keep-alive" }
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(resp.body.as_bytes());
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
        assert!(!r.close);
        let ReadOutcome::Request(r2) = read_request(&mut src, &mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(r2.path, "/fapi/v1/ping");
        assert!(r2.close);
        assert!(matches!(
            read_request(&mut src, &mut buf).unwrap(),
            ReadOutcome::Closed
        ));
    }

    #[test]
    fn decoding() {
        assert_eq!(
            percent_decode("btcusdt%40aggTrade%2Fx"),
            "btcusdt@aggTrade/x"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert!(parse_head("garbage").is_none());
    }
}
