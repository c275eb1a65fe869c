//! Fault injection (the schedule runs on the generator thread; the operations are called from
//! there and from `SimHandle` on the caller's thread): the periodic faults of `SimConfig`
//! (`--list-every` … `--duplicate-ids-every`), REST fault state shared with the connection
//! threads, and the operations behind both the flags and the in-process handle's methods.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::config::SimConfig;
use super::hub::MalformedFrame;
use super::market::{Book, Market, SymbolStatus};
use super::rng::SimRng;
use super::{Shared, SimError};

/// A symbol counts as active for `--skip-ids-every` / `--duplicate-ids-every` when it traded
/// within this long (so the fault shows up soon on its stream).
const ACTIVE_WITHIN_MS: i64 = 60_000;

/// Injectable REST faults (atomics: set by the handle and the schedule, read by connection
/// threads).
#[derive(Debug)]
pub struct RestFaults {
    /// Latency added to every response, µs.
    pub latency_us: AtomicU64,
    /// The next this many requests get a 503.
    pub errors_left: AtomicU64,
    /// This share of requests (per million) gets a 503.
    pub error_ppm: AtomicU64,
    rng: Mutex<SimRng>,
}

impl RestFaults {
    /// The start-up state `cfg` asks for.
    pub fn new(cfg: &SimConfig) -> Self {
        RestFaults {
            latency_us: AtomicU64::new(cfg.rest_latency.as_micros() as u64),
            errors_left: AtomicU64::new(0),
            error_ppm: AtomicU64::new(ratio_ppm(cfg.rest_error_ratio)),
            rng: Mutex::new(SimRng::new(cfg.seed ^ 0xE220)),
        }
    }

    /// Latency to add to a response now.
    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }

    /// True when this request should get an injected 5xx.
    pub fn take_error(&self) -> bool {
        let take_one = |left: u64| left.checked_sub(1);
        if self
            .errors_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take_one)
            .is_ok()
        {
            return true;
        }
        let ppm = self.error_ppm.load(Ordering::Relaxed);
        ppm > 0 && self.rng.lock().below(1_000_000) < ppm
    }
}

/// A ratio 0.0–1.0 in parts per million (clamped; NaN is 0).
pub fn ratio_ppm(ratio: f64) -> u64 {
    let r = if ratio.is_nan() { 0.0 } else { ratio };
    (r.clamp(0.0, 1.0) * 1e6).round() as u64
}

/// The faults a run can schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodicFault {
    /// `--list-every`: list a new symbol.
    List,
    /// `--delist-every`: delist a random synthetic trading symbol.
    Delist,
    /// `--disconnect-every`: drop every WebSocket connection.
    Disconnect,
    /// `--rest-error-every`: answer the next REST request with a 503.
    RestError,
    /// `--stall-every`: stall every WebSocket connection for `stall_for`.
    Stall,
    /// `--malformed-every`: send a broken frame to every WebSocket connection.
    Malformed,
    /// `--skip-ids-every`: withhold `fault_ids` aggTrades of an active symbol from the stream.
    SkipIds,
    /// `--duplicate-ids-every`: send `fault_ids` aggTrades of an active symbol twice.
    DuplicateIds,
}

/// When each configured periodic fault fires next.
#[derive(Debug, Default)]
pub struct FaultSchedule {
    /// (fault, period ms, next firing ms)
    entries: Vec<(PeriodicFault, i64, i64)>,
}

impl FaultSchedule {
    /// The periodic faults of `cfg`, each first firing one period after `start_ms`.
    pub fn new(cfg: &SimConfig, start_ms: i64) -> Self {
        use PeriodicFault::*;
        let periods = [
            (List, cfg.list_every),
            (Delist, cfg.delist_every),
            (Disconnect, cfg.disconnect_every),
            (RestError, cfg.rest_error_every),
            (Stall, cfg.stall_every),
            (Malformed, cfg.malformed_every),
            (SkipIds, cfg.skip_ids_every),
            (DuplicateIds, cfg.duplicate_ids_every),
        ];
        let entries = periods
            .into_iter()
            .filter_map(|(fault, every)| {
                let ms = i64::try_from(every?.as_millis()).unwrap_or(i64::MAX).max(1);
                Some((fault, ms, start_ms.saturating_add(ms)))
            })
            .collect();
        FaultSchedule { entries }
    }

    /// The faults due at `now_ms`, each at most once per call, in configuration order. A fault
    /// that fell more than a period behind resumes one period after `now_ms` (no bursts).
    pub fn due(&mut self, now_ms: i64) -> Vec<PeriodicFault> {
        let mut out = Vec::new();
        for (fault, every, next) in &mut self.entries {
            if *next <= now_ms {
                out.push(*fault);
                *next = next.saturating_add(*every);
                if *next <= now_ms {
                    *next = now_ms.saturating_add(*every);
                }
            }
        }
        out
    }
}

/// The broken frame a periodic `--malformed-every` sends the `n`-th time: truncated aggTrade
/// JSON, non-JSON text and a binary frame in turn.
pub fn malformed_kind(n: u64) -> MalformedFrame {
    match n % 3 {
        0 => MalformedFrame::TruncatedJson,
        1 => MalformedFrame::NotJson,
        _ => MalformedFrame::Binary,
    }
}

/// A random trading symbol that traded within the last minute (else any trading symbol).
pub fn pick_active(market: &Market, rng: &mut SimRng, now_ms: i64) -> Option<String> {
    let trading: Vec<&Book> = market
        .books
        .iter()
        .filter(|b| b.status == SymbolStatus::Trading)
        .collect();
    let active: Vec<&Book> = trading
        .iter()
        .copied()
        .filter(|b| {
            b.trades
                .back()
                .is_some_and(|t| t.time_ms >= now_ms - ACTIVE_WITHIN_MS)
        })
        .collect();
    let pool = if active.is_empty() { trading } else { active };
    if pool.is_empty() {
        return None;
    }
    Some(
        pool[rng.below(pool.len() as u64) as usize]
            .spec
            .name
            .clone(),
    )
}

/// Drop one WebSocket connection (`Some(id)`) or all, without a close frame; returns how many.
pub fn drop_connections(shared: &Shared, conn: Option<u64>) -> usize {
    shared
        .hub
        .with_ctl(conn, |c| c.kill.store(true, Ordering::Relaxed))
}

/// Keep one connection (`Some(id)`) or all open but silent until `until_ms`; returns how many.
pub fn stall_connections(shared: &Shared, conn: Option<u64>, until_ms: i64) -> usize {
    shared.hub.with_ctl(conn, |c| {
        c.stall_until_ms.store(until_ms, Ordering::Relaxed)
    })
}

/// Answer the next `count` REST requests with 503 `{"code":-1001,…}`.
pub fn inject_rest_errors(shared: &Shared, count: u64) {
    shared.faults.errors_left.store(count, Ordering::Relaxed);
}

/// Send a broken frame to one connection (`Some(id)`) or all; returns how many got it.
pub fn send_malformed(shared: &Shared, conn: Option<u64>, frame: &MalformedFrame) -> usize {
    shared.hub.send_malformed(conn, frame)
}

/// Withhold (`duplicate == false`) or duplicate the next `n` aggTrades of `symbol` on the stream.
pub fn disturb_agg_ids(
    shared: &Shared,
    symbol: &str,
    n: u64,
    duplicate: bool,
) -> Result<(), SimError> {
    let mut m = shared.market.lock();
    let idx = m
        .find(symbol)
        .ok_or_else(|| SimError::UnknownSymbol(symbol.to_string()))?;
    let b = &mut m.books[idx];
    match duplicate {
        true => b.dup_pending += n,
        false => b.skip_pending += n,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_fires_each_fault_once_per_period_without_bursts() {
        let ms = Duration::from_millis;
        let cfg = SimConfig::default()
            .with_rest_error_every(Some(ms(100)))
            .with_stall_every(Some(ms(250)))
            .with_skip_ids_every(Some(ms(1000)));
        let mut s = FaultSchedule::new(&cfg, 10_000);
        assert!(s.due(10_099).is_empty());
        assert_eq!(s.due(10_100), vec![PeriodicFault::RestError]);
        assert!(s.due(10_150).is_empty());
        assert_eq!(
            s.due(10_250),
            vec![PeriodicFault::RestError, PeriodicFault::Stall]
        );
        // Far behind: each fires once, then resumes a period after now.
        assert_eq!(
            s.due(15_000),
            vec![
                PeriodicFault::RestError,
                PeriodicFault::Stall,
                PeriodicFault::SkipIds
            ]
        );
        assert!(s.due(15_099).is_empty());
        assert_eq!(s.due(15_100), vec![PeriodicFault::RestError]);
        assert!(
            FaultSchedule::new(&SimConfig::default(), 0)
                .due(i64::MAX)
                .is_empty()
        );
    }

    #[test]
    fn malformed_kinds_rotate_and_ratios_clamp() {
        assert_eq!(malformed_kind(0), MalformedFrame::TruncatedJson);
        assert_eq!(malformed_kind(1), MalformedFrame::NotJson);
        assert_eq!(malformed_kind(5), MalformedFrame::Binary);
        assert_eq!(ratio_ppm(0.25), 250_000);
        assert_eq!(ratio_ppm(2.0), 1_000_000);
        assert_eq!(ratio_ppm(f64::NAN), 0);
    }
}
