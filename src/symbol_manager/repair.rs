//! Repair planning (pure logic, used by the `history` thread): which closed periods of a symbol
//! must be fetched again from the venue because their live klines may be missing trades, and
//! the pending repair jobs ordered by when they are due.
//!
//! Two events make live klines incomplete:
//! * **A gap.** A shard reported missed trades (`ResyncNeeded`: an aggregate-trade id jumped, e.g.
//!   after a dropped connection). The klines that closed during the outage were already published
//!   and stored as closed live klines. The missed trades lie after the last trade received before
//!   the gap, so the repair starts at the latest stored closed kline *with trades* of the
//!   shortest interval that closed at least [`REPAIR_GAP_MARGIN_MS`] before the report (the last
//!   period known good, included because its end may be missing), and ends with the resync's
//!   activation.
//! * **An activation** (startup, listing, restart, resync). The initial package holds the trades
//!   up to the moment it was taken; trades between then and the stream subscription are not in
//!   the live kline of those periods. The repair covers the package time (less
//!   [`ACTIVATION_SKEW_MS`]) to the activation plus [`ACTIVATION_SETTLE_MS`].
//!
//! Every configured interval the venue serves over REST is repaired over the periods that
//! contain that time range, at most `--repair-max-periods` per interval (the latest; cut repairs
//! are counted). A period is fetched once it closed [`REPAIR_SETTLE_MS`] ago, so periods still
//! open at the activation (a day, a week) are repaired when they close.

use std::collections::BTreeMap;

use klagg_shards::kline::Interval;
use klagg_shards::protocol::SymbolIndex;

use crate::store::StoredKline;
use crate::store::history::{KlineRequest, periods_between, range_requests};

/// A period is repaired once it closed this long ago (the venue's klines are final by then).
pub const REPAIR_SETTLE_MS: i64 = 3_000;
/// Trades after this long past an activation's dispatch are in the live klines (the ack and the
/// stream subscription happened by then).
pub const ACTIVATION_SETTLE_MS: i64 = 3_000;
/// An activation's repair starts this long before its package was taken: a venue clock behind
/// ours may have served the period before as the open one (and the history as closed).
pub const ACTIVATION_SKEW_MS: i64 = 1_000;
/// The last period known good closed at least this long before the gap was reported (the first
/// trade after the gap may belong to the period before the report; clocks differ a little).
pub const REPAIR_GAP_MARGIN_MS: i64 = 5_000;
/// The most repair jobs (symbol × interval) waiting; more are refused and counted.
pub const REPAIR_JOBS_MAX: usize = 65_536;
/// Default of `--repair-max-periods`.
pub const REPAIR_PERIODS_MAX_DEFAULT: u32 = 1000;

/// The periods `first_open_ms..=last_open_ms` of one symbol and interval to fetch again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairJob {
    pub symbol: SymbolIndex,
    pub interval: Interval,
    pub first_open_ms: i64,
    pub last_open_ms: i64,
    /// Not before this epoch ms (the first period has settled).
    pub due_ms: i64,
}

/// One repair's jobs and whether a range was cut to the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairPlan {
    pub jobs: Vec<RepairJob>,
    pub periods: u64,
    pub capped: bool,
}

/// Plan the jobs that repair `symbol` over the time range `start_ms..=end_ms` in `intervals`
/// (those the venue serves over REST), at most `periods_max` periods per interval.
pub fn plan_repair(
    symbol: SymbolIndex,
    intervals: &[Interval],
    start_ms: i64,
    end_ms: i64,
    periods_max: u32,
) -> RepairPlan {
    let mut plan = RepairPlan {
        jobs: Vec::with_capacity(intervals.len()),
        periods: 0,
        capped: false,
    };
    let periods_max = periods_max.max(1);
    for &interval in intervals {
        let last = interval.open_time(end_ms.max(start_ms));
        let mut first = interval.open_time(start_ms);
        let mut periods = periods_between(interval, first, last);
        if periods > u64::from(periods_max) {
            first = step_back(interval, last, periods_max - 1);
            periods = u64::from(periods_max);
            plan.capped = true;
        }
        plan.periods += periods;
        plan.jobs.push(RepairJob {
            symbol,
            interval,
            first_open_ms: first,
            last_open_ms: last,
            due_ms: interval.close_time(first) + REPAIR_SETTLE_MS,
        });
    }
    plan
}

/// The open time `steps` periods before `open`.
fn step_back(interval: Interval, open: i64, steps: u32) -> i64 {
    match interval.fixed_ms() {
        Some(len) => open - i64::from(steps) * len,
        None => (0..steps).fold(open, |at, _| interval.open_time(at - 1)),
    }
}

/// What to do with a due job now: the next request (for its settled periods) and the job for
/// the periods after it (due when its last period settled, so a job takes two requests, or a
/// few more beyond the request size), or `Wait` with the time its first period settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairStep {
    Fetch {
        request: KlineRequest,
        rest: Option<RepairJob>,
    },
    Wait(RepairJob),
}

/// The next step of `job` at `now_ms`.
pub fn next_step(job: RepairJob, now_ms: i64) -> RepairStep {
    let interval = job.interval;
    // The latest period that closed at least REPAIR_SETTLE_MS ago.
    let settled = interval.open_time(interval.open_time(now_ms - REPAIR_SETTLE_MS + 1) - 1);
    let last = settled.min(job.last_open_ms);
    let Some(&request) = range_requests(interval, job.first_open_ms, last).first() else {
        return RepairStep::Wait(RepairJob {
            due_ms: interval.close_time(job.first_open_ms) + REPAIR_SETTLE_MS,
            ..job
        });
    };
    // The periods after the request wait until the last of them settled (one more request,
    // not one per period as they close).
    let next_first = interval.next_open(request.end_ms);
    let rest = (next_first <= job.last_open_ms).then(|| RepairJob {
        first_open_ms: next_first,
        due_ms: (interval.close_time(job.last_open_ms) + REPAIR_SETTLE_MS).max(now_ms),
        ..job
    });
    RepairStep::Fetch { request, rest }
}

/// The start of a gap's repair: the open time of the latest closed kline with trades among
/// `rows` (ascending, of the shortest interval, all closing before the margin); the oldest row
/// when none traded; `None` without rows.
pub fn last_known_good(rows: &[StoredKline]) -> Option<i64> {
    rows.iter()
        .rev()
        .find(|row| row.closed && row.kline.trade_count > 0)
        .or(rows.first())
        .map(|row| row.kline.open_time_ms)
}

/// Pending repair jobs by due time (bounded by [`REPAIR_JOBS_MAX`]).
#[derive(Debug, Default)]
pub struct RepairBook {
    jobs: BTreeMap<(i64, u64), RepairJob>,
    sequence: u64,
}

impl RepairBook {
    /// Add a job; false when the book is full.
    pub fn add(&mut self, job: RepairJob) -> bool {
        if self.jobs.len() >= REPAIR_JOBS_MAX {
            return false;
        }
        self.sequence += 1;
        self.jobs.insert((job.due_ms, self.sequence), job);
        true
    }

    /// The earliest job due at `now_ms`, removed.
    pub fn pop_due(&mut self, now_ms: i64) -> Option<RepairJob> {
        let (&key, _) = self.jobs.first_key_value()?;
        if key.0 > now_ms {
            return None;
        }
        self.jobs.remove(&key)
    }

    /// When the earliest job is due.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.jobs.first_key_value().map(|(key, _)| key.0)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Source;
    use klagg_shards::kline::Kline;

    const SEC: i64 = 1_000;
    const MIN: i64 = 60_000;
    /// 2026-01-01 00:00:00 UTC.
    const T0: i64 = 1_767_225_600_000;

    #[test]
    fn a_repair_covers_the_periods_of_its_time_range_per_interval() {
        let start = T0 + 10 * MIN + 12_500;
        let end = T0 + 12 * MIN + 3_200;
        let plan = plan_repair(
            SymbolIndex(3),
            &[Interval::S1, Interval::M1],
            start,
            end,
            1000,
        );
        assert!(!plan.capped);
        let seconds = plan.jobs[0];
        assert_eq!(seconds.first_open_ms, T0 + 10 * MIN + 12 * SEC);
        assert_eq!(seconds.last_open_ms, T0 + 12 * MIN + 3 * SEC);
        assert_eq!(
            seconds.due_ms,
            seconds.first_open_ms + SEC - 1 + REPAIR_SETTLE_MS
        );
        let minutes = plan.jobs[1];
        assert_eq!(
            (minutes.first_open_ms, minutes.last_open_ms),
            (T0 + 10 * MIN, T0 + 12 * MIN)
        );
        assert_eq!(plan.periods, 112 + 3);
        let capped = plan_repair(SymbolIndex(3), &[Interval::S1], start, end, 100);
        assert!(capped.capped);
        assert_eq!(capped.jobs[0].last_open_ms, seconds.last_open_ms);
        assert_eq!(
            capped.jobs[0].first_open_ms,
            seconds.last_open_ms - 99 * SEC
        );
        let months = plan_repair(
            SymbolIndex(1),
            &[Interval::Mo1],
            T0,
            T0 + 200 * 86_400_000,
            2,
        );
        assert!(months.capped);
        assert_eq!(months.jobs[0].first_open_ms, 1_780_272_000_000); // 2026-06-01
        assert_eq!(months.jobs[0].last_open_ms, 1_782_864_000_000); // 2026-07-01
    }

    #[test]
    fn steps_fetch_settled_periods_and_wait_for_the_rest() {
        let job = RepairJob {
            symbol: SymbolIndex(0),
            interval: Interval::M1,
            first_open_ms: T0,
            last_open_ms: T0 + 2 * MIN,
            due_ms: 0,
        };
        // At T0 + 2 min + 4 s the first two minutes have settled, the third is open.
        let now = T0 + 2 * MIN + 4 * SEC;
        let RepairStep::Fetch { request, rest } = next_step(job, now) else {
            panic!("expected a fetch");
        };
        assert_eq!(
            (request.start_ms, request.end_ms, request.limit),
            (T0, T0 + MIN, 2)
        );
        let rest = rest.unwrap();
        assert_eq!(rest.first_open_ms, T0 + 2 * MIN);
        assert_eq!(rest.due_ms, T0 + 3 * MIN - 1 + REPAIR_SETTLE_MS);
        assert_eq!(
            next_step(rest, now),
            RepairStep::Wait(RepairJob {
                due_ms: rest.due_ms,
                ..rest
            })
        );
        // Settled exactly at its due time.
        let RepairStep::Fetch { request, rest } = next_step(rest, rest.due_ms) else {
            panic!("expected a fetch");
        };
        assert_eq!(
            (request.start_ms, request.limit, rest),
            (T0 + 2 * MIN, 1, None)
        );
    }

    fn row(open: i64, trades: u64, closed: bool) -> StoredKline {
        let mut kline = Kline::flat(Interval::S1, open, 5);
        kline.trade_count = trades;
        StoredKline {
            kline,
            closed,
            source: Source::Live,
        }
    }

    #[test]
    fn the_last_period_known_good_is_the_latest_with_trades() {
        assert_eq!(last_known_good(&[]), None);
        let rows = [
            row(1, 4, true),
            row(2, 3, true),
            row(3, 0, true),
            row(4, 2, false),
        ];
        assert_eq!(last_known_good(&rows), Some(2));
        let quiet = [row(7, 0, true), row(8, 0, true)];
        assert_eq!(last_known_good(&quiet), Some(7));
    }

    #[test]
    fn the_book_pops_by_due_time_and_is_bounded() {
        let mut book = RepairBook::default();
        let job = |due_ms| RepairJob {
            symbol: SymbolIndex(0),
            interval: Interval::M1,
            first_open_ms: 0,
            last_open_ms: 0,
            due_ms,
        };
        assert!(book.add(job(30)) && book.add(job(10)) && book.add(job(10)));
        assert_eq!(book.next_due_ms(), Some(10));
        assert_eq!(book.pop_due(5), None);
        assert_eq!(book.pop_due(10).map(|j| j.due_ms), Some(10));
        assert_eq!(book.pop_due(10).map(|j| j.due_ms), Some(10));
        assert_eq!(book.pop_due(29), None);
        assert_eq!(book.len(), 1);
        while book.len() < REPAIR_JOBS_MAX {
            assert!(book.add(job(1)));
        }
        assert!(!book.add(job(1)));
        assert!(!book.is_empty());
    }
}
