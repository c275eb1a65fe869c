//! Support shared by the integration tests (test threads only): temporary directories, free
//! ports, waiting for a condition with a generous bound, and, in submodules, `klagg` as a
//! process ([`cli`]), the engine against the in-process simulator ([`engine`]), simulator
//! klines as engine klines ([`klines`]), the shard harness ([`shards`]), the store rig
//! ([`store`]) and the store's history checks ([`history`]). Each test crate includes it with
//! `mod support;` and uses what it needs.
#![allow(dead_code)]

pub mod cli;
pub mod engine;
pub mod history;
pub mod klines;
pub mod shards;
pub mod store;

use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use klagg_bench::testdata::TempDir;

/// How often [`wait_for`] looks again.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// Poll `check` every `every` until it holds or `limit` passes; the elapsed time when it held.
pub fn wait_until(
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(every);
    }
    None
}

/// Poll `check` until it holds; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(WAIT_POLL);
    }
}

/// A loopback port nobody listens on (just now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET url`.
pub fn get_text(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap()
}

/// The JSON body of `GET url`.
pub fn get_json(url: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(url)).unwrap()
}
