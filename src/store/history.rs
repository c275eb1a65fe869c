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
/// The most closed klines per interval the planner keeps (a bound on its loops).
pub const HISTORY_BARS_MAX: u32 = 1_000_000;
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

/// The last `bars` closed periods at `now_ms` (the period containing `now_ms` is open);
/// `bars` is capped at [`HISTORY_BARS_MAX`].
pub fn history_window(interval: Interval, bars: u32, now_ms: i64) -> Option<HistoryWindow> {
    if bars == 0 {
        return None;
    }
    let bars = bars.min(HISTORY_BARS_MAX);
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

/// The request limits that cover `periods` consecutive periods at the lowest total weight and,
/// among those, with the fewest requests; largest first.
///
/// An optimal plan never holds a request above 1000 (1500 for 10 costs more than 3 × 499 for
/// 7), two of 500..=1000 (2 × 1000 for 10 > 4 × 499 + 4 for 9) or two below 100 (one of ≤ 198
/// costs the same, in one request). So it is: at most one request of up to 1000, at most one of
/// up to 99, and 499-kline requests (the cheapest per kline) for the rest; the four shapes are
/// compared. A brute-force search checks this in the tests.
pub fn cheapest_limits(periods: u64) -> Vec<u32> {
    let mut best: Option<(u64, Vec<u32>)> = None;
    for (big, small) in [(false, false), (false, true), (true, false), (true, true)] {
        let Some(limits) = shaped_limits(periods, big, small) else {
            continue;
        };
        let weight = limits_weight(&limits);
        let better = best.as_ref().is_none_or(|(best_weight, best_limits)| {
            (weight, limits.len()) < (*best_weight, best_limits.len())
        });
        if better {
            best = Some((weight, limits));
        }
    }
    best.map(|(_, limits)| limits).unwrap_or_default()
}

/// Cover `periods` with an optional request of up to 1000, an optional one of up to 99, and
/// 499-kline requests; `None` when an optional request would be empty.
fn shaped_limits(periods: u64, big: bool, small: bool) -> Option<Vec<u32>> {
    let mut rest = periods;
    let mut limits = Vec::with_capacity(usize::try_from(periods / 499 + 2).unwrap_or(0));
    for (wanted, size) in [(big, 1000u64), (small, u64::from(LIMIT_WEIGHT_1_MAX))] {
        if wanted {
            if rest == 0 {
                return None;
            }
            let limit = rest.min(size);
            limits.push(limit as u32);
            rest -= limit;
        }
    }
    while rest > 0 {
        let limit = rest.min(u64::from(CHEAPEST_LIMIT));
        limits.push(limit as u32);
        rest -= limit;
    }
    limits.sort_unstable_by(|a, b| b.cmp(a));
    Some(limits)
}

fn limits_weight(limits: &[u32]) -> u64 {
    limits
        .iter()
        .map(|&limit| u64::from(klines_request_weight(limit)))
        .sum()
}

/// The total weight of [`cheapest_limits`].
pub fn cheapest_weight(periods: u64) -> u64 {
    limits_weight(&cheapest_limits(periods))
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

/// The cheapest requests for the periods `first_open_ms..=last_open_ms` of `interval` (both
/// open times, aligned), in order; none when the range is empty. Used for repairs.
pub fn range_requests(
    interval: Interval,
    first_open_ms: i64,
    last_open_ms: i64,
) -> Vec<KlineRequest> {
    if first_open_ms > last_open_ms {
        return Vec::new();
    }
    let periods = periods_between(interval, first_open_ms, last_open_ms);
    let run = MissingRange {
        first_open_ms,
        last_open_ms,
        periods,
        absent: periods,
        flat_fills: 0,
        stale_open: 0,
        tail: false,
    };
    plan_requests(interval, &[(run, 0)])
}

/// The number of periods of `interval` in `first_open_ms..=last_open_ms` (open times).
pub fn periods_between(interval: Interval, first_open_ms: i64, last_open_ms: i64) -> u64 {
    if first_open_ms > last_open_ms {
        return 0;
    }
    match interval.fixed_ms() {
        Some(len) => u64::try_from((last_open_ms - first_open_ms) / len + 1).unwrap_or(0),
        None => {
            let mut count = 1u64;
            let mut open = first_open_ms;
            while open < last_open_ms && count <= u64::from(HISTORY_BARS_MAX) {
                open = interval.next_open(open);
                count += 1;
            }
            count
        }
    }
}

/// The open time `steps` periods after `open`.
pub fn nth_open(interval: Interval, open: i64, steps: u64) -> i64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    /// 2026-01-01 00:00:00 UTC plus 30 s: the 1m period opening at `NOW_OPEN` is open.
    const NOW_OPEN: i64 = 1_767_225_600_000;
    const NOW: i64 = NOW_OPEN + 30_000;

    fn state(open_time_ms: i64, closed: bool, source: Source) -> PeriodState {
        PeriodState {
            open_time_ms,
            closed,
            source,
        }
    }

    fn closed_live(opens: impl Iterator<Item = i64>) -> Vec<PeriodState> {
        opens.map(|open| state(open, true, Source::Live)).collect()
    }

    fn plan(bars: u32, states: &[PeriodState], gaps: &[(i64, i64)]) -> HistoryPlan {
        let window = history_window(Interval::M1, bars, NOW);
        plan_from_states("BTCUSDT", Interval::M1, window, states, gaps)
    }

    /// Every planned period is fetched exactly once and the requests are well formed.
    fn assert_requests_cover(plan: &HistoryPlan, opens: &[i64]) {
        let mut fetched = Vec::new();
        for request in &plan.requests {
            assert!((1..=KLINES_LIMIT_MAX).contains(&request.limit));
            let count = (request.end_ms - request.start_ms) / MIN + 1;
            assert_eq!(count, i64::from(request.limit), "{request:?}");
            fetched.extend((0..count).map(|i| request.start_ms + i * MIN));
        }
        for open in opens {
            assert!(fetched.contains(open), "period {open} not fetched");
        }
        let mut unique = fetched.clone();
        unique.dedup();
        assert_eq!(unique.len(), fetched.len(), "a period is fetched twice");
    }

    #[test]
    fn range_requests_cover_a_range_cheapest() {
        assert!(range_requests(Interval::M1, NOW_OPEN, NOW_OPEN - MIN).is_empty());
        let one = range_requests(Interval::M1, NOW_OPEN, NOW_OPEN);
        assert_eq!(one.len(), 1);
        assert_eq!(
            (one[0].start_ms, one[0].end_ms, one[0].limit),
            (NOW_OPEN, NOW_OPEN, 1)
        );
        let first = NOW_OPEN - 1099 * MIN;
        let many = range_requests(Interval::M1, first, NOW_OPEN);
        let opens: Vec<i64> = (0..1100).map(|i| first + i * MIN).collect();
        let plan = HistoryPlan {
            symbol: String::new(),
            interval: Interval::M1,
            window: None,
            missing: Vec::new(),
            requests: many,
        };
        assert_requests_cover(&plan, &opens);
        assert_eq!(plan.weight(), u32::try_from(cheapest_weight(1100)).unwrap());
        assert_eq!(periods_between(Interval::M1, first, NOW_OPEN), 1100);
        assert_eq!(
            periods_between(Interval::Mo1, 1_759_276_800_000, 1_764_547_200_000),
            3
        );
    }

    #[test]
    fn window_ends_before_the_open_period() {
        let window = history_window(Interval::M1, 1000, NOW).unwrap();
        assert_eq!(window.last_open_ms, NOW_OPEN - MIN);
        assert_eq!(window.first_open_ms, NOW_OPEN - 1000 * MIN);
        assert_eq!(history_window(Interval::M1, 0, NOW), None);
        // Months step back through the calendar: 2025-12, 2025-11, 2025-10.
        let months = history_window(Interval::Mo1, 3, NOW).unwrap();
        assert_eq!(months.last_open_ms, 1_764_547_200_000);
        assert_eq!(months.first_open_ms, 1_759_276_800_000);
        // A week window opens on Mondays.
        let weeks = history_window(Interval::W1, 2, NOW).unwrap();
        assert_eq!(
            Interval::W1.open_time(weeks.first_open_ms),
            weeks.first_open_ms
        );
    }

    #[test]
    fn weights_follow_the_venue_table() {
        let table = [(1, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5)];
        for (limit, weight) in table {
            assert_eq!(klines_request_weight(limit), weight, "limit {limit}");
        }
        assert_eq!(klines_request_weight(1001), 10);
        assert_eq!(klines_request_weight(1500), 10);
    }

    /// Brute force: the lowest (weight, request count) covering `periods` with any request
    /// sizes up to 1500.
    fn optimal(max: usize) -> Vec<(u64, u64)> {
        let mut best = vec![(0u64, 0u64); max + 1];
        for periods in 1..=max {
            best[periods] = (1..=periods.min(1500))
                .map(|limit| {
                    let (weight, count) = best[periods - limit];
                    (
                        weight + u64::from(klines_request_weight(limit as u32)),
                        count + 1,
                    )
                })
                .min()
                .unwrap();
        }
        best
    }

    #[test]
    fn cheapest_limits_are_optimal() {
        let best = optimal(6000);
        for periods in 0..=6000u64 {
            let limits = cheapest_limits(periods);
            assert_eq!(limits.iter().map(|&l| u64::from(l)).sum::<u64>(), periods);
            let weight = cheapest_weight(periods);
            assert_eq!(
                (weight, limits.len() as u64),
                best[periods as usize],
                "{periods} periods: {limits:?}"
            );
        }
        assert_eq!(cheapest_limits(499), vec![499]);
        assert_eq!(cheapest_weight(499), 2);
        assert_eq!(cheapest_limits(1000), vec![1000]);
        assert_eq!(cheapest_weight(1000), 5);
        assert_eq!(cheapest_limits(1100), vec![499, 499, 102]);
        assert_eq!(cheapest_weight(1100), 6);
        assert_eq!(cheapest_limits(1499), vec![1000, 499]);
        assert_eq!(cheapest_limits(1500), vec![499, 499, 499, 3]);
        assert_eq!(cheapest_weight(1500), 7);
    }

    #[test]
    fn an_empty_store_fetches_the_whole_window() {
        let plan = plan(1000, &[], &[]);
        assert_eq!(plan.missing.len(), 1);
        let run = plan.missing[0];
        assert_eq!((run.periods, run.absent, run.tail), (1000, 1000, true));
        // One request of 1000 costs 5, like 499 + 499 + 2, in one round trip.
        let limits: Vec<u32> = plan.requests.iter().map(|r| r.limit).collect();
        assert_eq!(limits, vec![1000]);
        assert_eq!(plan.weight(), 5);
        assert_eq!(plan.requests[0].start_ms, NOW_OPEN - 1000 * MIN);
        assert_eq!(plan.requests[0].end_ms, NOW_OPEN - MIN);
        let bigger = plan_from_states(
            "X",
            Interval::M1,
            history_window(Interval::M1, 2000, NOW),
            &[],
            &[],
        );
        let limits: Vec<u32> = bigger.requests.iter().map(|r| r.limit).collect();
        assert_eq!(limits, vec![499, 499, 499, 499, 4]);
        assert_eq!(bigger.weight(), 9);
        let all: Vec<i64> = (1..=1000).map(|i| NOW_OPEN - i * MIN).collect();
        assert_requests_cover(&plan, &all);
    }

    #[test]
    fn a_restart_fetches_only_the_tail() {
        // Stored up to 100 periods ago; the last 99 periods are missing, plus a stale open row.
        let first = NOW_OPEN - 1000 * MIN;
        let mut states = closed_live((0..900).map(|i| first + i * MIN));
        states.push(state(first + 900 * MIN, false, Source::Live));
        let plan = plan(1000, &states, &[]);
        assert_eq!(plan.missing.len(), 1);
        let run = plan.missing[0];
        assert_eq!(run.first_open_ms, first + 900 * MIN);
        assert_eq!((run.periods, run.absent, run.stale_open), (100, 99, 1));
        assert!(run.tail);
        assert_eq!(plan.requests.len(), 1);
        assert_eq!(plan.requests[0].limit, 100);
        assert_eq!(plan.weight(), 2);
    }

    #[test]
    fn interior_holes_and_flat_fills_are_fetched() {
        let first = NOW_OPEN - 1000 * MIN;
        let mut states: Vec<PeriodState> = Vec::new();
        for i in 0..1000 {
            let open = first + i * MIN;
            match i {
                200..=209 => {}                                                // hole
                600..=619 => states.push(state(open, true, Source::FlatFill)), // flat fills
                _ => states.push(state(
                    open,
                    true,
                    if i % 2 == 0 {
                        Source::Live
                    } else {
                        Source::Rest
                    },
                )),
            }
        }
        let plan = plan(1000, &states, &[]);
        assert_eq!(plan.missing.len(), 2);
        assert_eq!((plan.missing[0].absent, plan.missing[0].tail), (10, false));
        assert_eq!(plan.missing[1].flat_fills, 20);
        // Fetching 10 + 20 apart costs 2; one span of 420 would cost 2 too: merged, fewer requests.
        assert_eq!(plan.requests.len(), 1);
        assert_eq!(plan.weight(), 2);
        let wanted: Vec<i64> = (200..210)
            .chain(600..620)
            .map(|i| first + i * MIN)
            .collect();
        assert_requests_cover(&plan, &wanted);
    }

    #[test]
    fn far_apart_holes_are_fetched_apart() {
        let first = NOW_OPEN - 1000 * MIN;
        let states = closed_live(
            (0..1000)
                .filter(|i| *i != 10 && *i != 990)
                .map(|i| first + i * MIN),
        );
        let plan = plan(1000, &states, &[]);
        assert_eq!(plan.missing.len(), 2);
        assert_eq!(plan.requests.len(), 2);
        assert_eq!(plan.weight(), 2);
        assert_eq!(plan.requests[0].start_ms, first + 10 * MIN);
        assert_eq!(plan.requests[1].limit, 1);
    }

    #[test]
    fn complete_history_and_venue_gaps_need_nothing() {
        let first = NOW_OPEN - 1000 * MIN;
        // Listed 300 periods into the window: the venue said it has nothing before.
        let states = closed_live((300..1000).map(|i| first + i * MIN));
        let gaps = [(first - 5000 * MIN, first + 299 * MIN)];
        let plan = plan(1000, &states, &gaps);
        assert!(plan.is_complete(), "{plan:?}");
        assert!(plan.missing.is_empty());
        assert_eq!(plan.weight(), 0);
        // Rows outside the window do not matter.
        let mut outside = closed_live((0..1000).map(|i| first + i * MIN));
        outside.insert(0, state(first - MIN, false, Source::FlatFill));
        assert!(
            plan_from_states(
                "X",
                Interval::M1,
                history_window(Interval::M1, 1000, NOW),
                &outside,
                &[]
            )
            .is_complete()
        );
    }

    #[test]
    fn months_are_planned_through_the_calendar() {
        let window = history_window(Interval::Mo1, 14, NOW);
        let plan = plan_from_states("BTCUSDT", Interval::Mo1, window, &[], &[]);
        assert_eq!(plan.requests.len(), 1);
        let request = plan.requests[0];
        assert_eq!(request.limit, 14);
        // 2024-11-01 … 2025-12-01.
        assert_eq!(request.start_ms, 1_730_419_200_000);
        assert_eq!(request.end_ms, 1_764_547_200_000);
    }
}
