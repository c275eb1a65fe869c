//! The initial package plan (pure; used by the KlineBackfiller and the NewSymbolDetector
//! threads): which `klines` requests build a symbol's `InitialSymbolData` with the least weight,
//! and how the latest kline of every configured interval is composed exactly from them.
//!
//! Every request stays below 100 klines (weight 1). The shortest configured interval that the
//! venue serves over REST is fetched; each longer interval is composed from the coarsest fetched
//! interval that tiles it (its period boundaries are boundaries of the finer one) in at most 99
//! klines, with `Kline::absorb`; an interval no fetch can cover becomes a fetch itself. For the
//! default `1m,5m,30m,1h,4h,1d,1w` that is two requests: `1m` (limit 60: 1m, 5m, 30m, 1h) and
//! `4h` (limit 42: 4h, 1d, 1w). Intervals without REST klines (1s on Binance futures) get
//! `None` and start at the first live trade.

use klagg_shards::kline::{Interval, Kline};

use crate::constants::KLINES_WEIGHT1_LIMIT_MAX;

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;
/// The longest calendar month.
const MONTH_MAX_MS: i64 = 31 * DAY_MS;

/// One `GET /fapi/v1/klines` request of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    pub interval: Interval,
    /// Below 100: weight 1.
    pub limit: u32,
}

/// The requests for one symbol and, per configured interval, the request it is composed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagePlan {
    pub fetches: Vec<Fetch>,
    /// Per configured interval (shortest first): its interval and the index of its fetch, or
    /// `None` when the venue has no REST klines for it.
    pub targets: Vec<(Interval, Option<usize>)>,
}

/// Why a package could not be composed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("{interval} klines out of order or misaligned")]
    Misaligned { interval: Interval },
    #[error("{interval} roll-up overflows")]
    Overflow { interval: Interval },
    #[error("expected {expected} responses, got {given}")]
    ResponseCount { expected: usize, given: usize },
}

/// The longest period of `interval` in ms.
fn period_max_ms(interval: Interval) -> i64 {
    interval.fixed_ms().unwrap_or(MONTH_MAX_MS)
}

/// True when every period boundary of `target` is a boundary of `base` (so `target` is an
/// exact union of `base` klines).
pub fn tiles(base: Interval, target: Interval) -> bool {
    let Some(base_ms) = base.fixed_ms() else {
        return base == target;
    };
    if base > target {
        return false;
    }
    match target {
        // Weeks open on Mondays (epoch + 4 days); months on the 1st (a day boundary).
        Interval::W1 => (4 * DAY_MS) % base_ms == 0 && WEEK_MS % base_ms == 0,
        Interval::Mo1 => DAY_MS % base_ms == 0,
        _ => target.fixed_ms().is_some_and(|t| t % base_ms == 0),
    }
}

/// `base` klines needed at most to cover one `target` period.
pub fn periods(base: Interval, target: Interval) -> u32 {
    let base_ms = base.fixed_ms().unwrap_or(MONTH_MAX_MS);
    let count = (period_max_ms(target) + base_ms - 1) / base_ms;
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Plan the requests for `intervals` (shortest first). `rest_has_1s`: the venue serves 1s
/// klines over REST.
pub fn plan(intervals: &[Interval], rest_has_1s: bool) -> PackagePlan {
    let mut fetches: Vec<Fetch> = Vec::new();
    let mut targets = Vec::with_capacity(intervals.len());
    for &target in intervals {
        if target == Interval::S1 && !rest_has_1s {
            targets.push((target, None));
            continue;
        }
        // The coarsest existing fetch that tiles the target within a weight-1 limit.
        let reuse = (0..fetches.len()).rev().find(|&i| {
            let base = fetches[i].interval;
            tiles(base, target) && periods(base, target) <= KLINES_WEIGHT1_LIMIT_MAX
        });
        let index = reuse.unwrap_or_else(|| {
            fetches.push(Fetch {
                interval: target,
                limit: 1,
            });
            fetches.len() - 1
        });
        let fetch = &mut fetches[index];
        fetch.limit = fetch.limit.max(periods(fetch.interval, target));
        targets.push((target, Some(index)));
    }
    debug_assert!(fetches.iter().all(|f| f.limit <= KLINES_WEIGHT1_LIMIT_MAX));
    PackagePlan { fetches, targets }
}

impl PackagePlan {
    /// Request weight of the plan (every request is below 100 klines: weight 1).
    pub fn weight(&self) -> u64 {
        self.fetches.len() as u64
    }

    /// Compose the latest kline of every target from the responses (one per fetch, ascending
    /// open times, the last one possibly still open). An empty response (no trades yet) gives
    /// `None`.
    ///
    /// # Errors
    /// Wrong number of responses, misaligned or unordered klines, or an overflowing roll-up.
    pub fn compose(&self, responses: &[Vec<Kline>]) -> Result<Vec<Option<Kline>>, ComposeError> {
        if responses.len() != self.fetches.len() {
            return Err(ComposeError::ResponseCount {
                expected: self.fetches.len(),
                given: responses.len(),
            });
        }
        self.targets
            .iter()
            .map(|&(target, source)| match source {
                None => Ok(None),
                Some(index) => {
                    compose_latest(target, self.fetches[index].interval, &responses[index])
                }
            })
            .collect()
    }
}

/// The latest `target` kline from ascending `base` klines.
fn compose_latest(
    target: Interval,
    base: Interval,
    klines: &[Kline],
) -> Result<Option<Kline>, ComposeError> {
    let Some(last) = klines.last() else {
        return Ok(None);
    };
    let open_ms = target.open_time(last.open_time_ms);
    let start = klines.partition_point(|k| k.open_time_ms < open_ms);
    let mut previous_open = i64::MIN;
    let mut rolled: Option<Kline> = None;
    for kline in &klines[start..] {
        if kline.open_time_ms <= previous_open
            || base.open_time(kline.open_time_ms) != kline.open_time_ms
        {
            return Err(ComposeError::Misaligned { interval: base });
        }
        previous_open = kline.open_time_ms;
        match rolled.as_mut() {
            None => {
                rolled = Some(Kline {
                    open_time_ms: open_ms,
                    close_time_ms: target.close_time(open_ms),
                    ..*kline
                });
            }
            Some(sum) => {
                if !sum.absorb(kline) {
                    return Err(ComposeError::Overflow { interval: target });
                }
            }
        }
    }
    Ok(rolled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use klagg_shards::kline::AggTrade;

    fn default_intervals() -> Vec<Interval> {
        crate::config::parse_intervals(crate::config::DEFAULT_INTERVALS).unwrap()
    }

    #[test]
    fn default_intervals_take_two_weight_one_requests() {
        let plan = plan(&default_intervals(), false);
        assert_eq!(
            plan.fetches,
            vec![
                Fetch {
                    interval: Interval::M1,
                    limit: 60
                },
                Fetch {
                    interval: Interval::H4,
                    limit: 42
                },
            ]
        );
        assert_eq!(plan.weight(), 2);
        let sources: Vec<_> = plan.targets.iter().map(|t| t.1).collect();
        assert_eq!(
            sources,
            vec![
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(1),
                Some(1),
                Some(1)
            ]
        );
    }

    #[test]
    fn one_second_has_no_rest_on_binance_and_months_need_days() {
        let intervals = crate::config::parse_intervals("1s,1m,1d,1M").unwrap();
        let binance = plan(&intervals, false);
        assert_eq!(binance.targets[0], (Interval::S1, None));
        assert_eq!(binance.fetches.len(), 2);
        assert_eq!(
            binance.fetches[1],
            Fetch {
                interval: Interval::D1,
                limit: 31
            }
        );
        let sim = plan(&intervals, true);
        assert_eq!(
            sim.fetches[0],
            Fetch {
                interval: Interval::S1,
                limit: 60
            }
        );
        assert!(sim.fetches.iter().all(|f| f.limit < 100));
    }

    #[test]
    fn tiling_respects_week_and_month_boundaries() {
        assert!(tiles(Interval::H4, Interval::W1));
        assert!(!tiles(Interval::D3, Interval::W1));
        assert!(tiles(Interval::D1, Interval::Mo1));
        assert!(!tiles(Interval::W1, Interval::Mo1));
        assert!(tiles(Interval::M1, Interval::D3));
        assert!(!tiles(Interval::H1, Interval::M30));
        assert_eq!(periods(Interval::H4, Interval::W1), 42);
        assert_eq!(periods(Interval::D1, Interval::Mo1), 31);
    }

    fn trade(id: i64, price: i64, time_ms: i64) -> AggTrade {
        AggTrade {
            agg_id: id,
            price,
            qty: 2,
            first_id: id,
            last_id: id,
            time_ms,
            buyer_maker: id % 2 == 0,
        }
    }

    /// Klines of `interval` from trades (the reference: what Binance would serve).
    fn aggregate(interval: Interval, trades: &[AggTrade], from_ms: i64, to_ms: i64) -> Vec<Kline> {
        let mut klines: Vec<Kline> = Vec::new();
        let mut open = interval.open_time(from_ms);
        while open <= to_ms {
            let mut kline: Option<Kline> = None;
            for t in trades
                .iter()
                .filter(|t| interval.open_time(t.time_ms) == open)
            {
                let quote = i128::from(t.price) * i128::from(t.qty);
                match kline.as_mut() {
                    None => kline = Some(Kline::from_trade(interval, open, t)),
                    Some(k) => k.apply(t, quote),
                }
            }
            let previous_close = klines.last().map_or(100, |k| k.close);
            klines.push(kline.unwrap_or_else(|| Kline::flat(interval, open, previous_close)));
            open = interval.open_time(interval.close_time(open) + 1);
        }
        klines
    }

    #[test]
    fn composed_klines_equal_direct_aggregation() {
        let day = 19_000 * DAY_MS; // a Thursday
        let now = day + 5 * 3_600_000 + 17 * 60_000 + 4_000;
        let trades: Vec<AggTrade> = (0..400)
            .map(|i| {
                trade(
                    i,
                    100 + (i * 37) % 23,
                    day - 2 * DAY_MS + i * 1_000_000 % (2 * DAY_MS + 5 * 3_600_000),
                )
            })
            .filter(|t| t.time_ms <= now)
            .collect();
        let mut sorted = trades;
        sorted.sort_by_key(|t| t.time_ms);
        let intervals = default_intervals();
        let plan = plan(&intervals, false);
        let responses: Vec<Vec<Kline>> = plan
            .fetches
            .iter()
            .map(|f| {
                let all = aggregate(f.interval, &sorted, day - 7 * DAY_MS, now);
                all[all.len().saturating_sub(f.limit as usize)..].to_vec()
            })
            .collect();
        let composed = plan.compose(&responses).unwrap();
        for (&interval, kline) in intervals.iter().zip(&composed) {
            let direct = *aggregate(interval, &sorted, day - 7 * DAY_MS, now)
                .last()
                .unwrap();
            let mut got = kline.unwrap();
            let mut want = direct;
            // REST rows carry no trade ids.
            (
                got.first_trade_id,
                got.last_trade_id,
                want.first_trade_id,
                want.last_trade_id,
            ) = (0, 0, 0, 0);
            assert_eq!(got, want, "{interval}");
        }
    }

    #[test]
    fn empty_responses_and_bad_input() {
        let plan = plan(&[Interval::M1, Interval::H1], false);
        assert_eq!(plan.compose(&[vec![]]).unwrap(), vec![None, None]);
        assert!(matches!(
            plan.compose(&[]),
            Err(ComposeError::ResponseCount { .. })
        ));
        let misaligned = vec![
            Kline::flat(Interval::M1, 0, 5),
            Kline::flat(Interval::M1, 30_000, 5),
        ];
        assert!(matches!(
            plan.compose(&[misaligned]),
            Err(ComposeError::Misaligned { .. })
        ));
    }
}
