//! Binance's wire formats shared by the shard I/O, the API and the simulator (pure: no I/O, no
//! threads, no clock; each function runs on its caller's thread and owns nothing): the WebSocket
//! control protocol ([`control`]: the shard I/O's requests, the servers' parsing and replies),
//! HTTP/1.1 request heads and responses ([`http`]), REST error bodies and parameter checks
//! ([`rest`]) and the exchangeInfo body ([`exinfo`]); also the durations both command lines
//! take ([`duration`]). The client side of the market-data frames is [`crate::parse`].
//!
//! Where the engine's API and the simulator answer differently on purpose (the simulator accepts
//! any stream name, the API only kline streams), the shared code takes the difference as a
//! parameter and each server keeps its own answer.

pub mod control;
pub mod duration;
pub mod exinfo;
pub mod http;
pub mod rest;

/// `s` as a JSON string literal, quotes included (error messages echo client input).
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}
