//! The REST client (blocking ureq; used only on control threads: symbol-manager, backfill-N,
//! new-symbol-detector) and the one request-weight budget every REST caller shares.
//!
//! The budget ([`WeightBudget`]) counts weight in fixed one-minute windows as Binance does,
//! reserves a request's weight before it is sent, follows `X-MBX-USED-WEIGHT-1M` from every
//! response and allows itself `REST_WEIGHT_BUDGET_PERCENT` of the venue's limit (from
//! exchangeInfo). A 429 pauses every caller until `Retry-After` (else the next minute); a 418
//! (IP ban) pauses for `Retry-After` or `REST_BAN_PAUSE_DEFAULT_MS`. Requests have a
//! [`Priority`]: activation packages and exchangeInfo are `High` and may use the whole allowance;
//! the history backfill and repairs are `Low` and may use only their share of it per minute
//! (`--history-weight-percent`), so packages always find room. Transient failures (I/O,
//! 408, 5xx) are retried with capped exponential back-off, `REST_ATTEMPTS_MAX` attempts in all.
//! Every wait is a [`Shutdown::sleep`], so a stop request ends it at once, taken in steps of
//! `REST_WAIT_STEP_MS`: between two steps the client calls its [`WaitBeat`], so a thread whose
//! liveness is judged by a heartbeat (the symbol-manager's exchangeInfo calls) keeps beating
//! while it waits out a pause of up to `REST_PAUSE_MAX_MS` instead of looking hung.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::epoch_ms;
use crate::constants::{
    REST_ATTEMPTS_MAX, REST_BACKOFF_BASE_MS, REST_BACKOFF_MAX_MS, REST_BAN_PAUSE_DEFAULT_MS,
    REST_BODY_MAX_BYTES, REST_PAUSE_MAX_MS, REST_TIMEOUT_MS, REST_WAIT_STEP_MS,
    REST_WEIGHT_BUDGET_PERCENT, REST_WEIGHT_LIMIT_DEFAULT,
};
use crate::shutdown::Shutdown;

const MINUTE_MS: i64 = 60_000;
/// Waits for the budget per request before giving up (each ends at a minute boundary or a
/// pause end, so this is hours of waiting; it only bounds the loop).
const BUDGET_WAITS_MAX: u32 = 1_000;

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("invalid proxy {url:?}: {reason}")]
    Proxy { url: String, reason: String },
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("stopping")]
    Stopped,
}

impl RestError {
    /// Worth another attempt (network trouble, server-side errors, rate limiting).
    pub fn is_retryable(&self) -> bool {
        match self {
            RestError::Transport { .. } => true,
            RestError::Status { status, .. } => matches!(status, 408 | 418 | 429) || *status >= 500,
            _ => false,
        }
    }
}

/// Weight accounting shared by every REST caller (pure; times are arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetState {
    pub limit_per_minute: u64,
    window_start_ms: i64,
    used_in_window: u64,
    /// Weight of `Low` requests in the current window (part of `used_in_window`).
    low_used_in_window: u64,
    paused_until_ms: i64,
}

/// Who may use the weight budget, and how much of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Activation packages, exchangeInfo: the whole allowance.
    High,
    /// History and repairs: at most `share_percent` of the allowance per minute.
    Low { share_percent: u64 },
}

impl BudgetState {
    pub fn new(limit_per_minute: u64) -> BudgetState {
        BudgetState {
            limit_per_minute,
            window_start_ms: 0,
            used_in_window: 0,
            low_used_in_window: 0,
            paused_until_ms: 0,
        }
    }

    fn roll(&mut self, now_ms: i64) {
        let window = now_ms - now_ms.rem_euclid(MINUTE_MS);
        if window != self.window_start_ms {
            self.window_start_ms = window;
            self.used_in_window = 0;
            self.low_used_in_window = 0;
        }
    }

    /// Weight we allow ourselves per minute.
    pub fn allowed(&self) -> u64 {
        self.limit_per_minute * REST_WEIGHT_BUDGET_PERCENT / 100
    }

    /// Reserve `weight` now, or say until when to wait.
    ///
    /// # Errors
    /// The time (epoch ms) to try again: the end of a pause or the next minute.
    pub fn try_reserve(&mut self, now_ms: i64, weight: u64) -> Result<(), i64> {
        if now_ms < self.paused_until_ms {
            return Err(self.paused_until_ms);
        }
        self.roll(now_ms);
        // A request heavier than the whole allowance still goes, alone, at a window start.
        let fits = self.used_in_window + weight <= self.allowed() || self.used_in_window == 0;
        if !fits {
            return Err(self.window_start_ms + MINUTE_MS);
        }
        self.used_in_window += weight;
        Ok(())
    }

    /// Reserve `weight` for a request of `priority` now, or say until when to wait. A `Low`
    /// request also needs room in its share (a request heavier than the share goes alone).
    ///
    /// # Errors
    /// The time (epoch ms) to try again: the end of a pause or the next minute.
    pub fn try_reserve_as(
        &mut self,
        now_ms: i64,
        weight: u64,
        priority: Priority,
    ) -> Result<(), i64> {
        let Priority::Low { share_percent } = priority else {
            return self.try_reserve(now_ms, weight);
        };
        if now_ms < self.paused_until_ms {
            return Err(self.paused_until_ms);
        }
        self.roll(now_ms);
        let share = self.allowed() * share_percent.min(100) / 100;
        let share_fits = self.low_used_in_window + weight <= share || self.low_used_in_window == 0;
        if !share_fits {
            return Err(self.window_start_ms + MINUTE_MS);
        }
        self.try_reserve(now_ms, weight)?;
        self.low_used_in_window += weight;
        Ok(())
    }

    /// Weight of `Low` requests in the current window.
    pub fn low_used_in_window(&self) -> u64 {
        self.low_used_in_window
    }

    /// Take the venue's count for the current window (`X-MBX-USED-WEIGHT-1M`).
    pub fn observe(&mut self, now_ms: i64, used: u64) {
        self.roll(now_ms);
        self.used_in_window = self.used_in_window.max(used);
    }

    /// Stop every caller until `until_ms`.
    pub fn pause_until(&mut self, until_ms: i64) {
        self.paused_until_ms = self.paused_until_ms.max(until_ms);
    }

    pub fn used_in_window(&self) -> u64 {
        self.used_in_window
    }

    pub fn paused_until_ms(&self) -> i64 {
        self.paused_until_ms
    }
}

/// Counters of the REST client (any thread reads).
#[derive(Debug, Default)]
pub struct RestCounters {
    /// Weight of every request sent (by the endpoint weight table).
    pub weight_total: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled_waits: AtomicU64,
    pub rate_limited_429: AtomicU64,
    pub banned_418: AtomicU64,
    pub failures: AtomicU64,
    /// Last `X-MBX-USED-WEIGHT-1M` seen.
    pub venue_used_weight: AtomicU64,
}

/// The budget plus its counters, shared by every clone of the client.
#[derive(Debug)]
pub struct WeightBudget {
    state: Mutex<BudgetState>,
    pub counters: RestCounters,
}

impl WeightBudget {
    pub fn new() -> WeightBudget {
        WeightBudget {
            state: Mutex::new(BudgetState::new(REST_WEIGHT_LIMIT_DEFAULT)),
            counters: RestCounters::default(),
        }
    }

    /// Adopt the venue's announced limit.
    pub fn set_limit(&self, limit_per_minute: u64) {
        self.state.lock().limit_per_minute = limit_per_minute.max(1);
    }

    /// A copy of the accounting state.
    pub fn snapshot(&self) -> BudgetState {
        self.state.lock().clone()
    }

    /// True while a 429/418 pause holds every caller.
    pub fn is_paused(&self, now_ms: i64) -> bool {
        self.state.lock().paused_until_ms > now_ms
    }
}

impl Default for WeightBudget {
    fn default() -> Self {
        WeightBudget::new()
    }
}

/// Called with the time (epoch ms) before every attempt and between the steps of every wait of
/// a [`RestClient`]: the calling thread is alive and inside a bounded REST wait.
#[derive(Clone)]
pub struct WaitBeat(Arc<dyn Fn(i64) + Send + Sync>);

impl std::fmt::Debug for WaitBeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitBeat")
    }
}

/// A blocking REST client for one venue. Cheap to clone; clones share the agent and budget.
#[derive(Debug, Clone)]
pub struct RestClient {
    agent: ureq::Agent,
    base_url: String,
    pub budget: Arc<WeightBudget>,
    shutdown: Shutdown,
    beat: Option<WaitBeat>,
}

/// What one attempt gave.
enum Attempt {
    Done(Vec<u8>),
    /// Retry (true: after the rate-limit pause only; false: after a back-off), for this reason.
    Retry(bool, String),
    Fail(RestError),
}

impl RestClient {
    /// A client for `base_url` (`https://fapi.binance.com`), through `proxy` when given.
    ///
    /// # Errors
    /// The proxy URL is invalid.
    pub fn new(
        base_url: &str,
        proxy: Option<&str>,
        shutdown: Shutdown,
    ) -> Result<RestClient, RestError> {
        RestClient::with_budget(base_url, proxy, Arc::new(WeightBudget::new()), shutdown)
    }

    /// A client sharing an existing weight budget (every REST caller of the process shares one).
    ///
    /// # Errors
    /// The proxy URL is invalid.
    pub fn with_budget(
        base_url: &str,
        proxy: Option<&str>,
        budget: Arc<WeightBudget>,
        shutdown: Shutdown,
    ) -> Result<RestClient, RestError> {
        let proxy = proxy
            .map(|url| {
                ureq::Proxy::new(url).map_err(|e| RestError::Proxy {
                    url: url.to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(REST_TIMEOUT_MS)))
            .max_idle_connections_per_host(8)
            .proxy(proxy)
            .user_agent("klagg")
            .build();
        Ok(RestClient {
            agent: config.into(),
            base_url: base_url.trim_end_matches('/').to_string(),
            budget,
            shutdown,
            beat: None,
        })
    }

    /// This client (sharing agent and budget) calling `beat` before every attempt and between
    /// the `REST_WAIT_STEP_MS` steps of every wait, e.g. to keep the caller's heartbeat fresh.
    #[must_use]
    pub fn with_wait_beat(mut self, beat: impl Fn(i64) + Send + Sync + 'static) -> RestClient {
        self.beat = Some(WaitBeat(Arc::new(beat)));
        self
    }

    /// Sleep `ms` in steps of at most `REST_WAIT_STEP_MS`, beating before each. True when a
    /// stop was requested (the wait ends at once).
    fn wait(&self, ms: u64) -> bool {
        let mut left = ms;
        // Bounded: `ms / REST_WAIT_STEP_MS + 1` steps.
        loop {
            self.beat_now();
            let step = left.min(REST_WAIT_STEP_MS);
            if self.shutdown.sleep(Duration::from_millis(step)) {
                return true;
            }
            left -= step;
            if left == 0 {
                self.beat_now();
                return false;
            }
        }
    }

    fn beat_now(&self) {
        if let Some(WaitBeat(beat)) = &self.beat {
            beat(epoch_ms());
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET base + path_query`, which costs `weight`, with budget, pauses and retries.
    ///
    /// # Errors
    /// A non-retryable HTTP status, retries exhausted, or shutdown.
    pub fn get(&self, path_query: &str, weight: u64) -> Result<Vec<u8>, RestError> {
        self.get_as(path_query, weight, Priority::High)
    }

    /// [`RestClient::get`] with an explicit budget [`Priority`].
    ///
    /// # Errors
    /// As [`RestClient::get`].
    pub fn get_as(
        &self,
        path_query: &str,
        weight: u64,
        priority: Priority,
    ) -> Result<Vec<u8>, RestError> {
        let url = format!("{}{}", self.base_url, path_query);
        let mut last = String::new();
        for attempt in 1..=REST_ATTEMPTS_MAX {
            self.reserve(weight, priority)?;
            if attempt > 1 {
                self.budget.counters.retries.fetch_add(1, Ordering::Relaxed);
            }
            self.beat_now();
            match self.attempt(&url) {
                Attempt::Done(body) => return Ok(body),
                Attempt::Fail(error) => {
                    self.budget
                        .counters
                        .failures
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(error);
                }
                Attempt::Retry(pause_decides, reason) => {
                    last = reason;
                    // After a 429/418 the budget's pause is the wait; else back off.
                    let wait_ms = if pause_decides {
                        0
                    } else {
                        backoff_ms(attempt)
                    };
                    if attempt < REST_ATTEMPTS_MAX && self.wait(wait_ms) {
                        return Err(RestError::Stopped);
                    }
                }
            }
        }
        self.budget
            .counters
            .failures
            .fetch_add(1, Ordering::Relaxed);
        Err(RestError::Exhausted {
            url,
            attempts: REST_ATTEMPTS_MAX,
            last,
        })
    }

    /// Wait until the budget has room for `weight`, then reserve it.
    fn reserve(&self, weight: u64, priority: Priority) -> Result<(), RestError> {
        for _ in 0..BUDGET_WAITS_MAX {
            let now = epoch_ms();
            let verdict = self
                .budget
                .state
                .lock()
                .try_reserve_as(now, weight, priority);
            match verdict {
                Ok(()) => {
                    let counters = &self.budget.counters;
                    counters.weight_total.fetch_add(weight, Ordering::Relaxed);
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(until_ms) => {
                    self.budget
                        .counters
                        .throttled_waits
                        .fetch_add(1, Ordering::Relaxed);
                    // A little past the boundary: our minute and the venue's differ by skew.
                    let wait = u64::try_from(until_ms - now).unwrap_or(0) + 20;
                    if self.wait(wait) {
                        return Err(RestError::Stopped);
                    }
                }
            }
        }
        Err(RestError::Stopped)
    }

    fn attempt(&self, url: &str) -> Attempt {
        let mut response = match self.agent.get(url).call() {
            Ok(response) => response,
            Err(error) => return Attempt::Retry(false, format!("{url}: {error}")),
        };
        let now = epoch_ms();
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(used) = header("x-mbx-used-weight-1m") {
            self.budget
                .counters
                .venue_used_weight
                .store(used, Ordering::Relaxed);
            self.budget.state.lock().observe(now, used);
        }
        let retry_after_ms = header("retry-after").map(|s| s.saturating_mul(1_000));
        let body = response
            .body_mut()
            .with_config()
            .limit(REST_BODY_MAX_BYTES)
            .read_to_vec();
        self.classify(url, status, retry_after_ms, now, body)
    }

    fn classify(
        &self,
        url: &str,
        status: u16,
        retry_after_ms: Option<u64>,
        now_ms: i64,
        body: Result<Vec<u8>, ureq::Error>,
    ) -> Attempt {
        let body = match body {
            Ok(body) => body,
            Err(error) => return Attempt::Retry(false, format!("{url}: body: {error}")),
        };
        let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        match status {
            200..=299 => Attempt::Done(body),
            429 | 418 => {
                let default_ms = if status == 418 {
                    REST_BAN_PAUSE_DEFAULT_MS
                } else {
                    u64::try_from(MINUTE_MS - now_ms.rem_euclid(MINUTE_MS)).unwrap_or(1_000)
                };
                let pause = retry_after_ms.unwrap_or(default_ms).min(REST_PAUSE_MAX_MS);
                let counter = if status == 418 {
                    &self.budget.counters.banned_418
                } else {
                    &self.budget.counters.rate_limited_429
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.budget
                    .state
                    .lock()
                    .pause_until(now_ms + i64::try_from(pause).unwrap_or(i64::MAX / 2));
                // The wait happens in `reserve`, which sees the pause.
                Attempt::Retry(true, format!("{url}: HTTP {status}: {}", text()))
            }
            408 | 500..=599 => Attempt::Retry(false, format!("{url}: HTTP {status}: {}", text())),
            _ => Attempt::Fail(RestError::Status {
                url: url.to_string(),
                status,
                body: text(),
            }),
        }
    }
}

/// Back-off before attempt `attempt + 1` (1-based `attempt`), capped.
pub fn backoff_ms(attempt: u32) -> u64 {
    (REST_BACKOFF_BASE_MS << attempt.saturating_sub(1).min(16)).min(REST_BACKOFF_MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_fixed_minutes_and_waits_for_the_next() {
        let mut budget = BudgetState::new(100); // allowance 90
        let t = 1_000 * MINUTE_MS + 5_000;
        for _ in 0..90 {
            budget.try_reserve(t, 1).unwrap();
        }
        assert_eq!(budget.try_reserve(t, 1), Err(1_001 * MINUTE_MS));
        assert!(budget.try_reserve(1_001 * MINUTE_MS, 1).is_ok());
        assert_eq!(budget.used_in_window(), 1);
    }

    #[test]
    fn low_priority_stays_within_its_share() {
        let mut budget = BudgetState::new(100); // allowance 90
        let t = 3 * MINUTE_MS;
        let low = Priority::Low { share_percent: 50 };
        for _ in 0..45 {
            budget.try_reserve_as(t, 1, low).unwrap();
        }
        assert_eq!(budget.try_reserve_as(t, 1, low), Err(4 * MINUTE_MS));
        // Packages still find the rest of the allowance.
        for _ in 0..45 {
            budget.try_reserve_as(t, 1, Priority::High).unwrap();
        }
        assert!(budget.try_reserve(t, 1).is_err());
        assert_eq!(budget.low_used_in_window(), 45);
        budget.try_reserve_as(4 * MINUTE_MS, 60, low).unwrap();
        assert_eq!(
            budget.low_used_in_window(),
            60,
            "a heavy request goes alone"
        );
        assert!(budget.try_reserve_as(4 * MINUTE_MS, 1, low).is_err());
        // Packages used up the window: history waits even with its share untouched.
        let mut full = BudgetState::new(100);
        full.try_reserve(t, 90).unwrap();
        assert!(full.try_reserve_as(t, 1, low).is_err());
        assert_eq!(full.low_used_in_window(), 0);
    }

    #[test]
    fn venue_count_and_pauses_win() {
        let mut budget = BudgetState::new(100);
        let t = 7 * MINUTE_MS;
        budget.observe(t, 89);
        assert!(budget.try_reserve(t, 1).is_ok());
        assert!(budget.try_reserve(t, 1).is_err());
        budget.pause_until(t + 90_000);
        assert_eq!(budget.try_reserve(t + 60_000, 1), Err(t + 90_000));
        assert!(budget.try_reserve(t + 90_000, 1).is_ok());
        // A request heavier than the allowance goes alone at a window start.
        let mut small = BudgetState::new(10);
        assert!(small.try_reserve(t, 40).is_ok());
        assert!(small.try_reserve(t, 1).is_err());
    }

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        let status = |status| RestError::Status {
            url: String::new(),
            status,
            body: String::new(),
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(
            RestError::Transport {
                url: String::new(),
                reason: String::new()
            }
            .is_retryable()
        );
        assert!(!RestError::Stopped.is_retryable());
        assert_eq!(backoff_ms(1), REST_BACKOFF_BASE_MS);
        assert_eq!(backoff_ms(40), REST_BACKOFF_MAX_MS);
    }

    #[test]
    fn long_waits_beat_in_steps_and_end_at_once_on_shutdown() {
        let beats = Arc::new(AtomicU64::new(0));
        let counted = beats.clone();
        let shutdown = Shutdown::new();
        let client = RestClient::new("http://127.0.0.1:1", None, shutdown.clone())
            .unwrap()
            .with_wait_beat(move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
            });
        assert!(!client.wait(2 * REST_WAIT_STEP_MS + 100));
        // A beat before each of the three steps and one at the end.
        assert_eq!(beats.load(Ordering::Relaxed), 4);
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            shutdown.request(crate::shutdown::StopReason::Signal);
        });
        let started = std::time::Instant::now();
        assert!(client.wait(REST_PAUSE_MAX_MS));
        assert!(started.elapsed() < Duration::from_secs(2));
        stopper.join().unwrap();
    }

    #[test]
    fn bad_proxy_is_a_clear_error() {
        let err = RestClient::new("http://127.0.0.1:1", Some("::not a url::"), Shutdown::new())
            .unwrap_err();
        assert!(err.to_string().contains("invalid proxy"), "{err}");
    }
}
