//! HTTP/1.1 on the gateway's connection threads (`api-http-N`): one request head read with
//! httparse (bounded size; the caller's socket timeout bounds the wait), the decoded query
//! string, and the response writer. The API is GET-only and reads no request bodies: a request
//! announcing a body is refused.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// The largest request head (request line and headers) accepted.
pub const HEAD_MAX_BYTES: usize = 16 * 1024;
/// The most headers one request may carry.
pub const HEADERS_MAX: usize = 64;
/// Bodies up to this size are written together with the head (one `write`).
const COALESCE_BODY_MAX: usize = 64 * 1024;

/// One parsed request head.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    /// The request target as sent (`/fapi/v1/klines?symbol=BTCUSDT`).
    pub target: String,
    /// The path part of the target (not decoded).
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    /// The connection stays open after the answer (HTTP/1.1 default, `Connection: close` ends it).
    pub keep_alive: bool,
    pub peer: Option<SocketAddr>,
}

impl HttpRequest {
    /// A GET of `target` (tests and internal callers).
    pub fn get(target: &str) -> HttpRequest {
        let (path, query) = split_target(target);
        HttpRequest {
            method: "GET".into(),
            target: target.into(),
            path,
            query,
            keep_alive: true,
            ..HttpRequest::default()
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
}

/// An answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Cow<'static, [u8]>,
}

impl HttpResponse {
    /// An answer with `status`, a content type and a body.
    pub fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> Self {
        HttpResponse {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Add a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> HttpResponse {
        self.headers.push((name, value.into()));
        self
    }

    /// The body as text (tests).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request head over {HEAD_MAX_BYTES} bytes")]
    TooLarge,
    #[error("request bodies are not accepted")]
    Body,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl HttpError {
    /// The HTTP status that answers it (before the connection is closed).
    pub fn status(&self) -> u16 {
        match self {
            HttpError::TooLarge => 431,
            HttpError::Body => 413,
            _ => 400,
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

/// Read until `buf` holds a complete head; the head's bytes are removed from `buf` (what
/// follows, such as a pipelined request or WebSocket frames, stays).
///
/// # Errors
/// A malformed or oversized head, a request with a body, I/O errors other than a timeout.
pub fn read_request(stream: &mut impl Read, buf: &mut Vec<u8>) -> Result<ReadOutcome, HttpError> {
    loop {
        if let Some((request, used)) = parse_head(buf)? {
            buf.drain(..used);
            return Ok(ReadOutcome::Request(request));
        }
        if buf.len() >= HEAD_MAX_BYTES {
            return Err(HttpError::TooLarge);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(ReadOutcome::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(ReadOutcome::Pending);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(ReadOutcome::Closed),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Parse a complete head at the start of `buf`: the request and the head's length.
fn parse_head(buf: &[u8]) -> Result<Option<(HttpRequest, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut parsed = httparse::Request::new(&mut headers);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    let target = parsed.path.unwrap_or("/").to_string();
    let (path, query) = split_target(&target);
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).trim().to_string();
            (h.name.to_ascii_lowercase(), value)
        })
        .collect();
    let mut request = HttpRequest {
        method: parsed.method.unwrap_or("GET").to_string(),
        target,
        path,
        query,
        headers,
        keep_alive: parsed.version == Some(1),
        peer: None,
    };
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
        return Err(HttpError::Body);
    }
    Ok(Some((request, used)))
}

/// Split a target into its path and decoded query parameters.
pub fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect();
    (path.to_string(), query)
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

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
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
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\
         Access-Control-Allow-Origin: *\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        connection,
    );
    for (name, value) in &response.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.extend_from_slice(b"\r\n");
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
            Err(HttpError::Body)
        ));
        let mut buf = b"G\x01T / HTTP/1.1\r\n\r\n".to_vec();
        let err = read_request(&mut empty, &mut buf).unwrap_err();
        assert_eq!(err.status(), 400);
        let mut buf = vec![b'a'; HEAD_MAX_BYTES];
        assert!(matches!(
            read_request(&mut empty, &mut buf),
            Err(HttpError::TooLarge)
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
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("%41%zz%4"), "A%zz%4");
        assert_eq!(percent_decode("btcusdt%40kline_1m"), "btcusdt@kline_1m");
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
