//! The NewSymbolDetector (thread `new-symbol-detector`): a blocking tungstenite WebSocket on the
//! `/market` route reading `!miniTicker@arr` (one frame per second listing every symbol that
//! traded). A name the registry does not serve yet (unknown, or announced as PENDING_TRADING)
//! is confirmed with exchangeInfo, registered, backfilled with the same [`PackageBuilder`] as
//! the KlineBackfiller and sent to `activation_tx`. The socket read times out every
//! `DETECTOR_READ_TIMEOUT_MS`, so the heartbeat is written on a timer even when the market is
//! quiet. Reconnects back off exponentially, capped.

use std::collections::HashMap;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde::Deserialize;
use slog::{Logger, info, warn};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::backfiller::{JobKind, PackageBuilder, send_activation};
use super::exchange::{Listing, Ticker24h, parse_exchange_info};
use super::registry::{Lifecycle, RegistryView};
use crate::activation_dispatcher::DispatcherCmd;
use crate::clock::epoch_ms;
use crate::config::SymbolFilter;
use crate::constants::{
    DETECTOR_CONFIRM_BATCH_MAX, DETECTOR_CONFIRM_INTERVAL_MS, DETECTOR_READ_TIMEOUT_MS,
    DETECTOR_RECHECK_MS, DETECTOR_RECONNECT_BASE_MS, DETECTOR_RECONNECT_MAX_MS,
    DETECTOR_SILENCE_MS,
};
use crate::shutdown::Shutdown;
use crate::status::StatusBoard;

const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Names remembered as "asked recently" at most (older ones are forgotten first).
const RECHECK_MAX: usize = 4096;

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Why the connection ended.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("bad WebSocket URL {0:?}")]
    Url(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("stream: {0}")]
    Stream(String),
    #[error("silent for {0} ms")]
    Silent(i64),
}

#[derive(Debug, Deserialize)]
struct MiniTicker<'a> {
    #[serde(borrow)]
    s: &'a str,
}

#[derive(Debug, Deserialize)]
struct Combined<'a> {
    #[serde(borrow)]
    data: Vec<MiniTicker<'a>>,
}

/// The symbol names of a `!miniTicker@arr` frame (combined or raw); `None` if malformed.
pub fn ticker_names(text: &str) -> Option<Vec<&str>> {
    let rows = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<MiniTicker<'_>>>(text).ok()?
    } else {
        serde_json::from_str::<Combined<'_>>(text).ok()?.data
    };
    Some(rows.into_iter().map(|r| r.s).collect())
}

/// The detector's state (its thread owns it).
#[derive(Debug)]
pub struct Detector {
    /// Its `universe_loaded` flag: the detector starts after the startup universe is known.
    pub queue: Arc<super::backfiller::JobQueue>,
    /// WebSocket base (`wss://fstream.binance.com`); the route is appended.
    pub ws_url: String,
    pub registry: RegistryView,
    pub builder: PackageBuilder,
    pub activation_tx: Sender<DispatcherCmd>,
    pub filter: SymbolFilter,
    pub log: Logger,
    pub shutdown: Shutdown,
    /// Names to confirm, in arrival order.
    pub candidates: Vec<String>,
    /// Names exchangeInfo did not confirm: not asked again before the time (epoch ms).
    pub recheck: HashMap<String, i64>,
    pub last_confirm_ms: i64,
}

impl Detector {
    fn status(&self) -> &Arc<StatusBoard> {
        &self.builder.status
    }

    /// The thread body: connect, read, reconnect with back-off, until shutdown.
    pub fn run(mut self) {
        while !self
            .queue
            .universe_loaded
            .load(std::sync::atomic::Ordering::Acquire)
        {
            if self.sleep_beating(50) {
                return;
            }
        }
        let mut failures = 0u32;
        // The thread's event loop: intentionally unbounded; reconnect back-off is capped.
        while !self.shutdown.is_requested() {
            StatusBoard::beat(&self.status().detector_heartbeat_ms, epoch_ms());
            let outcome = self.connect().and_then(|socket| {
                failures = 0;
                self.read_loop(socket)
            });
            self.status()
                .detector_connected
                .store(0, std::sync::atomic::Ordering::Relaxed);
            if let Err(error) = outcome {
                failures += 1;
                StatusBoard::add(&self.status().detector_reconnects, 1);
                warn!(self.log, "miniTicker stream lost, reconnecting"; "error" => error.to_string(), "failures" => failures);
            }
            let backoff =
                (DETECTOR_RECONNECT_BASE_MS << failures.min(10)).min(DETECTOR_RECONNECT_MAX_MS);
            if self.sleep_beating(backoff) {
                return;
            }
        }
    }

    /// Sleep in heartbeat-sized steps; true when stopping.
    fn sleep_beating(&self, ms: u64) -> bool {
        let mut left = ms;
        while left > 0 {
            let step = left.min(DETECTOR_READ_TIMEOUT_MS);
            if self.shutdown.sleep(Duration::from_millis(step)) {
                return true;
            }
            StatusBoard::beat(&self.status().detector_heartbeat_ms, epoch_ms());
            left -= step;
        }
        false
    }

    fn connect(&self) -> Result<Socket, DetectorError> {
        let url = format!("{}/market/stream?streams=!miniTicker@arr", self.ws_url);
        let (host, port) =
            host_port(&self.ws_url).ok_or_else(|| DetectorError::Url(self.ws_url.clone()))?;
        let address = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| DetectorError::Connect(e.to_string()))?
            .next()
            .ok_or_else(|| DetectorError::Connect(format!("{host} has no address")))?;
        let stream =
            TcpStream::connect_timeout(&address, Duration::from_millis(CONNECT_TIMEOUT_MS))
                .map_err(|e| DetectorError::Connect(e.to_string()))?;
        let timeout = Some(Duration::from_millis(CONNECT_TIMEOUT_MS));
        stream
            .set_read_timeout(timeout)
            .map_err(|e| DetectorError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (socket, _) = tungstenite::client_tls(url.as_str(), stream)
            .map_err(|e| DetectorError::Connect(e.to_string()))?;
        set_read_timeout(&socket, Duration::from_millis(DETECTOR_READ_TIMEOUT_MS))
            .map_err(|e| DetectorError::Connect(e.to_string()))?;
        self.status()
            .detector_connected
            .store(1, std::sync::atomic::Ordering::Relaxed);
        info!(self.log, "new-symbol detector connected"; "url" => url);
        Ok(socket)
    }

    fn read_loop(&mut self, mut socket: Socket) -> Result<(), DetectorError> {
        let mut last_frame_ms = epoch_ms();
        while !self.shutdown.is_requested() {
            let now = epoch_ms();
            StatusBoard::beat(&self.status().detector_heartbeat_ms, now);
            if now - last_frame_ms > DETECTOR_SILENCE_MS {
                return Err(DetectorError::Silent(now - last_frame_ms));
            }
            match socket.read() {
                Ok(Message::Text(text)) => {
                    last_frame_ms = now;
                    StatusBoard::add(&self.status().detector_frames, 1);
                    self.on_frame(text.as_str());
                }
                Ok(Message::Close(_)) => {
                    return Err(DetectorError::Stream("closed by the venue".into()));
                }
                Ok(_) => last_frame_ms = now,
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                Err(e) => return Err(DetectorError::Stream(e.to_string())),
            }
            // Pongs queued by tungstenite go out here.
            match socket.flush() {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                Err(e) => return Err(DetectorError::Stream(e.to_string())),
            }
            self.confirm_due(epoch_ms());
        }
        let _ = socket.close(None);
        Ok(())
    }

    /// Collect names we do not serve yet.
    pub fn on_frame(&mut self, text: &str) {
        let Some(names) = ticker_names(text) else {
            return;
        };
        let now = epoch_ms();
        let registry = self.registry.read();
        for name in names {
            let known = match registry.index(name) {
                Some(index) => registry
                    .get(index)
                    .is_some_and(|e| e.lifecycle != Lifecycle::Pending),
                None => registry.is_excluded(name),
            };
            let waiting = self.recheck.get(name).is_some_and(|&until| until > now);
            let listed = self.candidates.iter().any(|c| c == name);
            if !known && !waiting && !listed && self.candidates.len() < DETECTOR_CONFIRM_BATCH_MAX {
                self.candidates.push(name.to_string());
            }
        }
    }

    /// Confirm the candidates with one exchangeInfo call, at most every
    /// `DETECTOR_CONFIRM_INTERVAL_MS`, then backfill and activate the confirmed ones.
    pub fn confirm_due(&mut self, now_ms: i64) {
        if self.candidates.is_empty()
            || now_ms - self.last_confirm_ms < DETECTOR_CONFIRM_INTERVAL_MS
        {
            return;
        }
        self.last_confirm_ms = now_ms;
        let candidates = std::mem::take(&mut self.candidates);
        let info = match self
            .builder
            .rest
            .get("/fapi/v1/exchangeInfo", 1)
            .map_err(|e| e.to_string())
            .and_then(|b| parse_exchange_info(&b).map_err(|e| e.to_string()))
        {
            Ok(info) => info,
            Err(error) => {
                warn!(self.log, "exchangeInfo confirmation failed"; "error" => error);
                self.candidates = candidates;
                return;
            }
        };
        if self.recheck.len() > RECHECK_MAX {
            self.recheck.retain(|_, until| *until > now_ms);
        }
        for name in candidates {
            let listing = info.find(&name).map(|s| (s.listing(now_ms), s.scales()));
            match listing {
                Some((Listing::Trading, Ok(scales))) if self.allowed(&name) => {
                    self.list(&name, scales)
                }
                Some((Listing::Excluded, _)) => self.registry.write().exclude(&name),
                Some(_) if !self.allowed(&name) => self.registry.write().exclude(&name),
                _ => {
                    self.recheck.insert(name, now_ms + DETECTOR_RECHECK_MS);
                }
            }
        }
    }

    fn allowed(&self, name: &str) -> bool {
        self.filter
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n == name))
    }

    /// Register (or promote) a confirmed listing, build its package and activate it.
    fn list(&mut self, name: &str, scales: klagg_shards::kline::Scales) {
        let claimed = {
            let mut registry = self.registry.write();
            let index = match registry.insert(
                name,
                scales,
                Lifecycle::Backfilling,
                Ticker24h::default(),
            ) {
                Ok(index) => index,
                Err(error) => {
                    warn!(self.log, "new listing not registered"; "symbol" => name, "error" => error.to_string());
                    return;
                }
            };
            let fresh = registry
                .get(index)
                .is_some_and(|e| e.lifecycle == Lifecycle::Backfilling);
            let promoted = registry.transition(
                index,
                &[Lifecycle::Pending, Lifecycle::Queued],
                Lifecycle::Backfilling,
            );
            let total = registry.serving_count() as u64;
            StatusBoard::put(&self.status().symbols_total, total);
            (fresh || promoted)
                .then(|| registry.get(index).map(|e| e.spec()))
                .flatten()
        };
        let Some(spec) = claimed else {
            return; // the exchangeInfo refresh or a backfill thread got there first
        };
        StatusBoard::add(&self.status().listings, 1);
        info!(self.log, "new listing confirmed"; "symbol" => name, "index" => spec.index.0);
        match self.builder.build(&spec) {
            Ok(initial_data) => {
                self.registry.write().transition(
                    spec.index,
                    &[Lifecycle::Backfilling],
                    Lifecycle::Sent,
                );
                self.builder.announce(&spec);
                let (symbol, taken_at_ms) = (spec.index, initial_data.taken_at_ms);
                let cmd = DispatcherCmd::ActivateSymbol {
                    symbol: spec,
                    initial_data,
                    expected_trades_24h: 0,
                };
                if send_activation(&self.activation_tx, cmd, &self.shutdown) {
                    self.builder
                        .activated(symbol, JobKind::Listing, taken_at_ms);
                }
            }
            Err(error) => {
                warn!(self.log, "new listing backfill failed; the refresh will retry"; "symbol" => name, "error" => error.to_string());
                self.registry.write().transition(
                    spec.index,
                    &[Lifecycle::Backfilling],
                    Lifecycle::Queued,
                );
            }
        }
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn set_read_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.set_read_timeout(Some(timeout)),
        MaybeTlsStream::Rustls(stream) => stream.sock.set_read_timeout(Some(timeout)),
        _ => Ok(()),
    }
}

/// Host and port of a `ws://` / `wss://` URL (default ports 80 / 443).
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (default_port, rest) = if let Some(rest) = url.strip_prefix("wss://") {
        (443, rest)
    } else {
        (80, url.strip_prefix("ws://")?)
    };
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => Some((
            host.trim_matches(['[', ']']).to_string(),
            port.parse().ok()?,
        )),
        _ => Some((authority.to_string(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticker_frames_combined_and_raw() {
        let combined = r#"{"stream":"!miniTicker@arr","data":[{"e":"24hrMiniTicker","E":1,"s":"BTCUSDT","c":"1"},{"s":"NEWUSDT"}]}"#;
        assert_eq!(ticker_names(combined), Some(vec!["BTCUSDT", "NEWUSDT"]));
        assert_eq!(
            ticker_names(r#"[{"s":"ETHUSDT","q":"1"}]"#),
            Some(vec!["ETHUSDT"])
        );
        assert_eq!(ticker_names("{\"result\":null,\"id\":1}"), None);
        assert_eq!(ticker_names("not json"), None);
    }

    #[test]
    fn host_and_port_from_urls() {
        assert_eq!(
            host_port("wss://fstream.binance.com"),
            Some(("fstream.binance.com".into(), 443))
        );
        assert_eq!(
            host_port("ws://127.0.0.1:9000/x"),
            Some(("127.0.0.1".into(), 9000))
        );
        assert_eq!(host_port("ws://localhost"), Some(("localhost".into(), 80)));
        assert_eq!(host_port("http://x"), None);
        assert_eq!(host_port("ws://"), None);
    }
}
