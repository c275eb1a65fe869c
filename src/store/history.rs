//! History planning (pure logic, run on the control thread that backfills, with a [`Reader`]):
//! which closed klines of a symbol and interval must be fetched from the venue so the store
//! holds the last `history_bars` periods, and the cheapest `GET /fapi/v1/klines` requests for
//! them by the venue's weight table.
//!
//! A period of the window is satisfied by a closed `live` or `rest` row, or by a recorded venue
//! gap (the venue has no kline there). Everything else is missing: absent rows (the tail since
//! the last stored kline and interior holes), `flat_fill` rows (to be replaced by the venue's)
//! and stale open snapshots (the process stopped before the period closed). The current, open
//! period is never planned: the live engine owns it.

use klagg_shards::kline::Interval;

use super::reader::{KLINES_LIMIT_MAX, PeriodState, Reader};
use super::{Source, StoreError};

/// Closed klines per interval kept in the store by default (`--history-bars`).
pub const HISTORY_BARS_DEFAULT: u32 = 1000;
/// The request size with the lowest weight per kline: 499 klines for weight 2.
pub const CHEAPEST_LIMIT: u32 = 499;
/// The largest request size of weight 1.
const LIMIT_WEIGHT_1_MAX: u32 = 99;

/// The request weight of `GET /fapi/v1/klines` by `limit`: `[1,100)` → 1, `[100,500)` → 2,
/// `[500,1000]` → 5, above → 10.
pub const fn klines_request_weight(limit: u32) -> u32 {
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}

/// One planned `GET /fapi/v1/klines` request: `startTime = start_ms`, `endTime = end_ms` (both
/// open times of periods to fetch), `limit` = the number of periods in between, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KlineRequest {
    pub start_ms: i64,
    pub end_ms: i64,
    pub limit: u32,
}

impl KlineRequest {
    /// The request's weight.
    pub const fn weight(&self) -> u32 {
        klines_request_weight(self.limit)
    }
}

/// The closed periods the store should hold: open times `first_open_ms..=last_open_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryWindow {
    pub first_open_ms: i64,
    pub last_open_ms: i64,
    pub periods: u64,
}

/// A maximal run of missing periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingRange {
    pub first_open_ms: i64,
    pub last_open_ms: i64,
    pub periods: u64,
    /// Periods without any row.
    pub absent: u64,
    /// Periods with a `flat_fill` row.
    pub flat_fills: u64,
    /// Periods with an open row whose period is over.
    pub stale_open: u64,
    /// The run ends at the window's last period (the tail since the last stored kline).
    pub tail: bool,
}

/// What to fetch for one symbol and interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPlan {
    pub symbol: String,
    pub interval: Interval,
    /// `None` when `history_bars` is 0.
    pub window: Option<HistoryWindow>,
    pub missing: Vec<MissingRange>,
    pub requests: Vec<KlineRequest>,
}

impl HistoryPlan {
    /// Total request weight of the plan.
    pub fn weight(&self) -> u32 {
        self.requests.iter().map(KlineRequest::weight).sum()
    }

    /// Nothing to fetch.
    pub fn is_complete(&self) -> bool {
        self.requests.is_empty()
    }
}

/// The last `bars` closed periods at `now_ms` (the period containing `now_ms` is open).
pub fn history_window(interval: Interval, bars: u32, now_ms: i64) -> Option<HistoryWindow> {
    if bars == 0 {
        return None;
    }
    let current = interval.open_time(now_ms);
    let last_open_ms = interval.open_time(current - 1);
    let first_open_ms = match interval.fixed_ms() {
        Some(len) => current - i64::from(bars) * len,
        None => (1..bars).fold(last_open_ms, |open, _| interval.open_time(open - 1)),
    };
    Some(HistoryWindow {
        first_open_ms,
        last_open_ms,
        periods: u64::from(bars),
    })
}

/// The request limits that cover `periods` consecutive periods at the lowest total weight, with
/// the fewest requests among those: 499-kline requests (weight 2), then the rest in one request
/// (weight 1 below 100, else 2).
pub fn cheapest_limits(periods: u64) -> Vec<u32> {
    let full = periods / u64::from(CHEAPEST_LIMIT);
    let rest = (periods % u64::from(CHEAPEST_LIMIT)) as u32;
    let mut limits = vec![CHEAPEST_LIMIT; full as usize];
    if rest > 0 {
        limits.push(rest);
    }
    limits
}

/// The total weight of [`cheapest_limits`].
pub fn cheapest_weight(periods: u64) -> u64 {
    cheapest_limits(periods)
        .iter()
        .map(|&limit| u64::from(klines_request_weight(limit)))
        .sum()
}

/// What a period needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Satisfied,
    Absent,
    FlatFill,
    StaleOpen,
}

fn need_of(state: Option<&PeriodState>, in_venue_gap: bool) -> Need {
    match state {
        None if in_venue_gap => Need::Satisfied,
        None => Need::Absent,
        Some(state) if state.source == Source::FlatFill => Need::FlatFill,
        Some(state) if !state.closed => Need::StaleOpen,
        Some(_) => Need::Satisfied,
    }
}

/// The missing runs of `window`, given the stored periods (ascending) and the venue gaps.
/// Each run carries its period indexes in the window (for request merging).
fn missing_runs(
    interval: Interval,
    window: &HistoryWindow,
    states: &[PeriodState],
    venue_gaps: &[(i64, i64)],
) -> Vec<(MissingRange, u64)> {
    let mut runs: Vec<(MissingRange, u64)> = Vec::new();
    let mut states = states.iter().peekable();
    let mut open = window.first_open_ms;
    for index in 0..window.periods {
        while states.next_if(|state| state.open_time_ms < open).is_some() {}
        let state = states.next_if(|state| state.open_time_ms == open);
        let in_gap = venue_gaps.iter().any(|&(a, b)| a <= open && open <= b);
        let need = need_of(state, in_gap);
        if need != Need::Satisfied {
            extend_runs(&mut runs, open, index, need);
        }
        open = interval.next_open(open);
    }
    for (run, _) in &mut runs {
        run.tail = run.last_open_ms == window.last_open_ms;
    }
    runs
}

fn extend_runs(runs: &mut Vec<(MissingRange, u64)>, open: i64, index: u64, need: Need) {
    let contiguous = runs
        .last()
        .is_some_and(|(run, first_index)| first_index + run.periods == index);
    if !contiguous {
        let empty = MissingRange {
            first_open_ms: open,
            last_open_ms: open,
            periods: 0,
            absent: 0,
            flat_fills: 0,
            stale_open: 0,
            tail: false,
        };
        runs.push((empty, index));
    }
    let (run, _) = runs.last_mut().expect("a run was just ensured");
    run.last_open_ms = open;
    run.periods += 1;
    match need {
        Need::Absent => run.absent += 1,
        Need::FlatFill => run.flat_fills += 1,
        Need::StaleOpen => run.stale_open += 1,
        Need::Satisfied => {}
    }
}

/// Plan the requests for the missing runs: neighbouring runs are fetched as one span when that
/// costs no more weight than fetching them apart (re-fetched stored periods are harmless: the
/// precedence rule keeps closed live rows), then each span is cut by [`cheapest_limits`].
fn plan_requests(interval: Interval, runs: &[(MissingRange, u64)]) -> Vec<KlineRequest> {
    // Spans as (first open, first index, last index) in window periods.
    let mut spans: Vec<(i64, u64, u64)> = Vec::new();
    for (run, first_index) in runs {
        let last_index = first_index + run.periods - 1;
        if let Some(span) = spans.last_mut() {
            let apart = cheapest_weight(span.2 - span.1 + 1) + cheapest_weight(run.periods);
            let merged = cheapest_weight(last_index - span.1 + 1);
            if merged <= apart {
                span.2 = last_index;
                continue;
            }
        }
        spans.push((run.first_open_ms, *first_index, last_index));
    }
    let mut requests = Vec::new();
    for (first_open, first_index, last_index) in spans {
        let mut start = first_open;
        for limit in cheapest_limits(last_index - first_index + 1) {
            let end = nth_open(interval, start, u64::from(limit) - 1);
            requests.push(KlineRequest {
                start_ms: start,
                end_ms: end,
                limit,
            });
            start = interval.next_open(end);
        }
    }
    requests
}

/// The open time `steps` periods after `open`.
fn nth_open(interval: Interval, open: i64, steps: u64) -> i64 {
    match interval.fixed_ms() {
        Some(len) => open + i64::try_from(steps).unwrap_or(i64::MAX / len) * len,
        None => (0..steps).fold(open, |at, _| interval.next_open(at)),
    }
}

/// Plan from what the store holds (pure: the reader's answers are the inputs).
pub fn plan_from_states(
    symbol: &str,
    interval: Interval,
    window: Option<HistoryWindow>,
    states: &[PeriodState],
    venue_gaps: &[(i64, i64)],
) -> HistoryPlan {
    let runs = window
        .map(|window| missing_runs(interval, &window, states, venue_gaps))
        .unwrap_or_default();
    HistoryPlan {
        symbol: symbol.to_string(),
        interval,
        window,
        requests: plan_requests(interval, &runs),
        missing: runs.into_iter().map(|(run, _)| run).collect(),
    }
}

impl Reader {
    /// Plan the history backfill of `symbol` and `interval`: keep the last `history_bars`
    /// closed periods at exchange time `now_ms` (an unknown symbol plans the whole window).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn plan_history(
        &self,
        symbol: &str,
        interval: Interval,
        history_bars: u32,
        now_ms: i64,
    ) -> Result<HistoryPlan, StoreError> {
        let window = history_window(interval, history_bars, now_ms);
        let (states, gaps) = match window {
            Some(w) => (
                self.period_states(symbol, interval, w.first_open_ms, w.last_open_ms)?,
                self.venue_gaps(symbol, interval, w.first_open_ms, w.last_open_ms)?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(plan_from_states(symbol, interval, window, &states, &gaps))
    }
}

// The request sizes must stay within the venue's maximum.
const _: () = assert!(CHEAPEST_LIMIT <= KLINES_LIMIT_MAX && LIMIT_WEIGHT_1_MAX < CHEAPEST_LIMIT);
const _: () = assert!(klines_request_weight(LIMIT_WEIGHT_1_MAX) == 1);
const _: () = assert!(klines_request_weight(CHEAPEST_LIMIT) == 2);
