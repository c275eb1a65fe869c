//! HTTP/1.1 as Binance's REST and WebSocket endpoints speak it (pure; called on the API's
//! `api-http-N` threads and on the simulator's connection threads): the request head and its
//! query and header access, percent-decoding, the response and its head, and the WebSocket
//! `101` answer. Reading and writing sockets stays in each server's connection loop.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::SocketAddr;

/// The largest request head (request line and headers) a server accepts.
pub const HEAD_MAX_BYTES: usize = 16 * 1024;
/// The most headers one request may carry ([`HeadSyntax::Strict`]).
pub const HEADERS_MAX: usize = 64;

/// One parsed request head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent (`/fapi/v1/klines?symbol=BTCUSDT`).
    pub target: String,
    /// The path part of the target (not decoded).
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    /// The connection stays open after the answer.
    pub keep_alive: bool,
    /// The client's address, where the server knows it.
    pub peer: Option<SocketAddr>,
}

impl Request {
    /// A GET of `target` (tests and internal callers).
    pub fn get(target: &str) -> Request {
        let (path, query) = split_target(target);
        Request {
            method: "GET".into(),
            target: target.into(),
            path,
            query,
            keep_alive: true,
            ..Request::default()
        }
    }

    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The target as sent (path and query).
    pub fn url(&self) -> &str {
        &self.target
    }

    /// True for a WebSocket opening handshake (`Upgrade: websocket`).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    fn from_head(method: &str, target: &str, headers: Vec<(String, String)>) -> Request {
        let (path, query) = split_target(target);
        Request {
            method: method.to_string(),
            target: target.to_string(),
            path,
            query,
            headers,
            keep_alive: false,
            peer: None,
        }
    }
}

/// How a server reads request heads: the API and the simulator each keep the rules they
/// always had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadSyntax {
    /// The API: httparse (at most [`HEADERS_MAX`] headers, exact errors); the connection stays
    /// open on HTTP/1.1 or `Connection: keep-alive`, and a `Connection` naming `close` ends it;
    /// a request announcing a body is refused ([`HeadError::Body`]).
    Strict,
    /// The simulator: a head ends at the first blank line (`\r\n\r\n`); lines without a colon
    /// are skipped; the connection closes only on HTTP/1.0 or `Connection: close`; a body is
    /// the caller's to read past (`Content-Length`).
    Lenient,
}

/// Why a request head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request head over {HEAD_MAX_BYTES} bytes")]
    TooLarge,
    #[error("request bodies are not accepted")]
    Body,
}

impl HeadError {
    /// The HTTP status that answers it (before the connection is closed).
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Body => 413,
            HeadError::Malformed(_) => 400,
        }
    }
}

/// Parse a complete head at the start of `buf`: the request and the head's length in bytes
/// (what follows, such as a pipelined request or WebSocket frames, is not the head's);
/// `Ok(None)` while the head is incomplete.
///
/// # Errors
/// A malformed head, or ([`HeadSyntax::Strict`]) one that announces a body.
pub fn parse_head(buf: &[u8], syntax: HeadSyntax) -> Result<Option<(Request, usize)>, HeadError> {
    match syntax {
        HeadSyntax::Strict => parse_strict(buf),
        HeadSyntax::Lenient => parse_lenient(buf),
    }
}

fn parse_strict(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut parsed = httparse::Request::new(&mut headers);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).trim().to_string();
            (h.name.to_ascii_lowercase(), value)
        })
        .collect();
    let method = parsed.method.unwrap_or("GET");
    let mut request = Request::from_head(method, parsed.path.unwrap_or("/"), headers);
    request.keep_alive = parsed.version == Some(1);
    if let Some(connection) = request.header("connection") {
        let connection = connection.to_ascii_lowercase();
        if connection.contains("close") {
            request.keep_alive = false;
        } else if connection.contains("keep-alive") {
            request.keep_alive = true;
        }
    }
    let body_len = request.header("content-length").map(str::parse::<u64>);
    if matches!(body_len, Some(Ok(n)) if n > 0)
        || matches!(body_len, Some(Err(_)))
        || request.header("transfer-encoding").is_some()
    {
        return Err(HeadError::Body);
    }
    Ok(Some((request, used)))
}

fn parse_lenient(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version)) = (first.next(), first.next(), first.next())
    else {
        return Err(HeadError::Malformed("no request line".into()));
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut request = Request::from_head(method, target, headers);
    let connection = request.header("connection").map(str::to_ascii_lowercase);
    request.keep_alive = !(version == "HTTP/1.0" || connection.as_deref() == Some("close"));
    Ok(Some((request, end + 4)))
}

/// Split a target into its path and decoded query parameters.
pub fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (path.to_string(), parse_query(query))
}

/// Split and decode `a=1&b=2`.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// Decode `%XX` escapes and `+` (invalid escapes are kept as they are).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers after the standard ones, in order.
    pub headers: Vec<(&'static str, String)>,
    pub body: Cow<'static, [u8]>,
}

impl Response {
    /// An answer with `status`, a content type and a body.
    pub fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Add a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The body as text (tests).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The reason phrase of the statuses the servers answer with.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Append `response`'s head to `out`: the status line, `Content-Type`, `Content-Length`,
/// `Connection` (`keep-alive` or `close`), the server's `common` headers, the response's own
/// headers and the blank line.
pub fn write_head(
    out: &mut Vec<u8>,
    response: &Response,
    keep_alive: bool,
    common: &[(&str, &str)],
) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        connection,
    );
    let own = response.headers.iter().map(|(n, v)| (*n, v.as_str()));
    for (name, value) in common.iter().copied().chain(own) {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The `101 Switching Protocols` answer to a WebSocket opening handshake with `key`
/// (`Sec-WebSocket-Key`).
pub fn switching_protocols(key: &str) -> String {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
        parse_head(buf, HeadSyntax::Strict)
    }

    #[test]
    fn strict_heads_and_where_they_end() {
        let buf = b"GET /ws?streams=a%40kline_1m/b HTTP/1.1\r\nUpgrade: WebSocket\r\n\r\n\x81";
        let (request, used) = strict(buf).unwrap().unwrap();
        assert_eq!(
            (request.path.as_str(), request.url()),
            ("/ws", "/ws?streams=a%40kline_1m/b")
        );
        assert_eq!(request.param("streams"), Some("a@kline_1m/b"));
        assert!(request.keep_alive && request.is_websocket_upgrade());
        assert_eq!(&buf[used..], b"\x81");
        assert_eq!(strict(b"GET / HTT").unwrap(), None);
        assert_eq!(Request::get("/x?a=1").param("a"), Some("1"));
    }

    #[test]
    fn strict_refuses_bodies_and_malformed_heads() {
        let body = strict(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(body.unwrap_err(), HeadError::Body);
        let chunked = strict(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(chunked.unwrap_err().status(), 413);
        let err = strict(b"G\x01T / HTTP/1.1\r\n\r\n").unwrap_err();
        assert_eq!(err.status(), 400);
        let (request, _) = strict(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!request.keep_alive, "HTTP/1.0 closes by default");
    }

    #[test]
    fn lenient_heads() {
        let lenient = |buf: &[u8]| parse_head(buf, HeadSyntax::Lenient);
        let buf = b"GET /ws/a%40b?x=1 HTTP/1.1\r\nno colon here\r\nConnection: Close\r\n\r\nrest";
        let (request, used) = lenient(buf).unwrap().unwrap();
        assert_eq!(
            (request.path.as_str(), request.param("x")),
            ("/ws/a%40b", Some("1"))
        );
        assert!(!request.keep_alive);
        assert_eq!(&buf[used..], b"rest");
        let (request, _) = lenient(b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(request.keep_alive);
        assert!(
            !lenient(b"GET / HTTP/1.0\r\n\r\n")
                .unwrap()
                .unwrap()
                .0
                .keep_alive
        );
        assert!(lenient(b"garbage\r\n\r\n").is_err());
        assert_eq!(lenient(b"GET / HTTP/1.1\r\n").unwrap(), None);
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("%41%zz%4"), "A%zz%4");
        assert_eq!(percent_decode("btcusdt%40kline_1m"), "btcusdt@kline_1m");
        assert_eq!(
            percent_decode("btcusdt%40aggTrade%2Fx"),
            "btcusdt@aggTrade/x"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(
            parse_query("a=1&&b"),
            [("a".into(), "1".into()), ("b".into(), String::new())]
        );
    }

    #[test]
    fn writes_status_headers_and_blank_line() {
        let mut out = Vec::new();
        let response =
            Response::new(400, "application/json", b"{}".to_vec()).with_header("X-Test", "1");
        write_head(
            &mut out,
            &response,
            false,
            &[("Access-Control-Allow-Origin", "*")],
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
             Connection: close\r\nAccess-Control-Allow-Origin: *\r\nX-Test: 1\r\n\r\n"
        );
        assert!(
            switching_protocols("dGhlIHNhbXBsZSBub25jZQ==")
                .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
        );
    }
}
