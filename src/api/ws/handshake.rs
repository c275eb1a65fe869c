//! The WebSocket opening handshake (on the gateway's connection thread `api-http-N`): route the
//! path (`/market/ws`, `/market/ws/<stream>/…`, `/market/stream?streams=…`; the same without
//! `/market`), validate the streams, reserve a connection slot, answer 101 and hand the socket to
//! the push thread. Parts of a `/ws/…` path without an `@` are connection labels, not streams
//! (ccxt opens `/market/ws/0`), and are ignored as Binance does. Refusals are HTTP answers with
//! a Binance-style JSON body: 400 for a bad stream, 404 for an unknown path, 503 when the
//! connection limit, in all or per client address, is reached.

use std::io::Write;
use std::net::TcpStream;

use super::NewClient;
use super::control::{self, KlineStream};
use crate::api::{ApiCounters, ApiState};
use crate::gateway::http::{self, HttpRequest, HttpResponse};
use crate::gateway::slots::SlotRefusal;
use crate::gateway::{GatewayContext, error_response};

/// A routed handshake: raw or combined framing and the streams of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub combined: bool,
    pub streams: Vec<KlineStream>,
}

/// Route a handshake's path and query.
///
/// # Errors
/// The HTTP answer that refuses it (unknown path, invalid or too many streams).
pub fn route(request: &HttpRequest, api: &ApiState) -> Result<Route, HttpResponse> {
    let path = request
        .path
        .strip_prefix("/market")
        .unwrap_or(&request.path);
    let (combined, names): (bool, Vec<String>) = match path {
        "/ws" | "/ws/" => (false, Vec::new()),
        "/stream" | "/stream/" => {
            let list = request.param("streams").unwrap_or("");
            (true, split_streams(list))
        }
        _ => match path.strip_prefix("/ws/") {
            // Path parts that are no stream name at all (ccxt connects to `/ws/0`, `/ws/1`, …
            // as connection labels, which Binance ignores) are ignored too.
            Some(list) => {
                let names = split_streams(&http::percent_decode(list));
                (
                    false,
                    names.into_iter().filter(|n| n.contains('@')).collect(),
                )
            }
            None => {
                return Err(error_response(
                    404,
                    -1000,
                    "Unknown WebSocket path; use /market/ws, /market/ws/<stream> or /market/stream?streams=<stream>/<stream>.",
                ));
            }
        },
    };
    let max = api.limits.streams_per_client;
    if names.len() > max {
        let msg = format!("Too many streams (limit {max} per connection).");
        return Err(error_response(400, 2, &msg));
    }
    let mut streams: Vec<KlineStream> = Vec::with_capacity(names.len());
    for name in &names {
        let stream = control::kline_stream(name, &api.intervals)
            .map_err(|e| error_response(400, 2, &format!("{e} ({name})")))?;
        if !streams.iter().any(|s| s.name == stream.name) {
            streams.push(stream);
        }
    }
    Ok(Route { combined, streams })
}

fn split_streams(list: &str) -> Vec<String> {
    list.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The upgrade handler of the WebSocket routes.
pub fn upgrade(
    ctx: &GatewayContext,
    request: HttpRequest,
    mut stream: TcpStream,
    leftover: Vec<u8>,
) {
    let refuse = |stream: &mut TcpStream, answer: HttpResponse| {
        let _ = http::write_response(stream, &answer, false);
    };
    let Some(api) = ctx.state::<ApiState>() else {
        return refuse(
            &mut stream,
            error_response(503, -1000, "The stream API is not running."),
        );
    };
    let route = match route(&request, api) {
        Ok(route) => route,
        Err(answer) => return refuse(&mut stream, answer),
    };
    let Some(key) = request.header("sec-websocket-key") else {
        return refuse(
            &mut stream,
            error_response(400, -1000, "Missing Sec-WebSocket-Key."),
        );
    };
    let (max, per_client) = (api.limits.ws_connections, api.limits.ws_per_client);
    if let Err(refusal) = api.push.reserve(request.peer, max, per_client) {
        ApiCounters::add(&api.counters.ws_refused, 1);
        let msg = match refusal {
            SlotRefusal::Full(limit) => format!("Too many WebSocket connections (limit {limit})."),
            SlotRefusal::PerClient(limit) => {
                ApiCounters::add(&api.counters.ws_refused_per_client, 1);
                format!("Too many WebSocket connections from your address (limit {limit}).")
            }
        };
        return refuse(&mut stream, error_response(503, -1003, &msg));
    }
    let head = klagg_shards::wire::http::switching_protocols(key);
    if stream.write_all(head.as_bytes()).is_err() || stream.set_nonblocking(true).is_err() {
        api.push.release(request.peer);
        return;
    }
    let client = NewClient {
        stream,
        peer: request.peer,
        combined: route.combined,
        streams: route.streams,
        leftover,
    };
    if let Err(client) = api.push.hand_off(client) {
        api.push.release(client.peer);
        ApiCounters::add(&api.counters.ws_refused, 1);
        drop(client);
    }
}
