//! The connector (its own helper thread per shard, `shard-NN-connect`): performs the blocking
//! TCP connect, TLS handshake and WebSocket handshake with timeouts, then sets the socket
//! non-blocking and hands the established connection to its shard over a bounded channel and
//! the shard's mio waker. It owns nothing else; it exits when the shard drops its request
//! sender or sets the stop flag.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Connector, WebSocket};

/// A WebSocket over a (possibly TLS-wrapped) std TCP stream, non-blocking once handed over.
pub type WsStream = WebSocket<MaybeTlsStream<TcpStream>>;

/// Requests queued to the connector (one per connection slot at most, so small).
pub const CONNECT_REQUEST_CAPACITY: usize = 64;
/// Results waiting for the shard.
pub const CONNECT_RESULT_CAPACITY: usize = 64;
/// TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TLS + WebSocket handshake timeout (as socket read/write timeouts).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// tungstenite's outgoing buffer bound (control messages only; far below this).
const WRITE_BUFFER_MAX: usize = 1 << 20;
/// Largest frame accepted (aggTrade frames are ~200 bytes).
const MESSAGE_SIZE_MAX: usize = 1 << 20;

/// Open connection `slot` (attempt `generation`) to `url`.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub slot: usize,
    pub generation: u64,
    pub url: String,
}

/// The outcome of a [`ConnectRequest`].
#[derive(Debug)]
pub enum ConnectResult {
    Connected {
        slot: usize,
        generation: u64,
        ws: Box<WsStream>,
    },
    Failed {
        slot: usize,
        generation: u64,
        error: ConnectError,
    },
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad URL: {0}")]
    Url(String),
    #[error("no address for {0}")]
    Resolve(String),
    #[error("TCP connect failed: {0}")]
    Tcp(std::io::Error),
    #[error("TLS/WebSocket handshake failed: {0}")]
    Handshake(String),
}

/// The tungstenite settings of shard connections.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_write_buffer_size(WRITE_BUFFER_MAX)
        .max_message_size(Some(MESSAGE_SIZE_MAX))
        .max_frame_size(Some(MESSAGE_SIZE_MAX))
}

/// The connector thread's body: serve requests until the channel closes or `stop` is set.
pub fn run_connector(
    requests: &Receiver<ConnectRequest>,
    results: &Sender<ConnectResult>,
    waker: &mio::Waker,
    tls: &Arc<rustls::ClientConfig>,
    stop: &AtomicBool,
) {
    // Bounded by the channel: ends when the shard drops its sender.
    for request in requests.iter() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let result = match connect(&request.url, tls) {
            Ok(ws) => ConnectResult::Connected {
                slot: request.slot,
                generation: request.generation,
                ws: Box::new(ws),
            },
            Err(error) => ConnectResult::Failed {
                slot: request.slot,
                generation: request.generation,
                error,
            },
        };
        // The shard drains results every iteration; a full channel means it is gone or
        // stuck, and the connection attempt is then moot.
        if results.try_send(result).is_err() {
            return;
        }
        let _ = waker.wake();
    }
}

/// Blocking connect + handshakes; the returned stream is non-blocking.
///
/// # Errors
/// Bad URL, resolution, TCP or handshake failure.
pub fn connect(url: &str, tls: &Arc<rustls::ClientConfig>) -> Result<WsStream, ConnectError> {
    let request = url
        .into_client_request()
        .map_err(|error| ConnectError::Url(error.to_string()))?;
    let uri = request.uri();
    let host = uri.host().ok_or_else(|| ConnectError::Url(url.into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let default_port = if uri.scheme_str() == Some("wss") {
        443
    } else {
        80
    };
    let port = uri.port_u16().unwrap_or(default_port);
    let address = (host, port)
        .to_socket_addrs()
        .map_err(|_| ConnectError::Resolve(host.into()))?
        .next()
        .ok_or_else(|| ConnectError::Resolve(host.into()))?;
    let tcp = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(ConnectError::Tcp)?;
    let setup = |tcp: &TcpStream| -> std::io::Result<()> {
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        tcp.set_write_timeout(Some(HANDSHAKE_TIMEOUT))
    };
    setup(&tcp).map_err(ConnectError::Tcp)?;
    let connector = Connector::Rustls(Arc::clone(tls));
    let (ws, _response) =
        tungstenite::client_tls_with_config(request, tcp, Some(ws_config()), Some(connector))
            .map_err(|error| ConnectError::Handshake(error.to_string()))?;
    let tcp = tcp_of(&ws).ok_or_else(|| ConnectError::Handshake("unknown stream kind".into()))?;
    let unblock = |tcp: &TcpStream| -> std::io::Result<()> {
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(None)?;
        tcp.set_nonblocking(true)
    };
    unblock(tcp).map_err(ConnectError::Tcp)?;
    Ok(ws)
}

/// The TCP socket under a WebSocket (for mio registration and socket options).
pub fn tcp_of(ws: &WsStream) -> Option<&TcpStream> {
    match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => Some(tcp),
        MaybeTlsStream::Rustls(tls) => Some(tls.get_ref()),
        _ => None,
    }
}
