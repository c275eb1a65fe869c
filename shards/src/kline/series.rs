//! Closed kline series (pure; the book owner's thread): the closed klines of each interval in
//! time order, built from a [`KlineBook`](super::KlineBook)'s events — flat runs expanded,
//! corrections applied in place. What `klagg replay` prints and what tests compare.

use std::collections::BTreeMap;

use super::event::{BookEvent, flat_run_klines};
use super::interval::Interval;
use super::model::Kline;

/// Closed klines per interval, in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosedSeries {
    klines: BTreeMap<Interval, Vec<Kline>>,
}

impl ClosedSeries {
    /// Take one event: `Closed` and `FlatRun` append, `Corrected` replaces the kline of the same
    /// period. Returns false for events that carry no kline (`Updated`, `Gap`), and for a
    /// correction of a period the series does not hold.
    pub fn record(&mut self, event: &BookEvent) -> bool {
        match *event {
            BookEvent::Closed {
                interval, kline, ..
            } => self.klines.entry(interval).or_default().push(kline),
            BookEvent::FlatRun {
                interval,
                first_open_ms,
                count,
                price,
                ..
            } => {
                let run = flat_run_klines(interval, first_open_ms, count, price);
                self.klines.entry(interval).or_default().extend(run);
            }
            BookEvent::Corrected {
                interval, kline, ..
            } => {
                let list = self
                    .klines
                    .get_mut(&interval)
                    .map(Vec::as_mut_slice)
                    .unwrap_or_default();
                let Some(stored) = list
                    .iter_mut()
                    .rev()
                    .find(|k| k.open_time_ms == kline.open_time_ms)
                else {
                    return false;
                };
                *stored = kline;
            }
            BookEvent::Updated { .. } | BookEvent::Gap { .. } => return false,
        }
        true
    }

    /// The closed klines of `interval` (empty when none).
    pub fn klines(&self, interval: Interval) -> &[Kline] {
        self.klines
            .get(&interval)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The intervals that have klines, shortest first.
    pub fn intervals(&self) -> impl Iterator<Item = Interval> + '_ {
        self.klines.keys().copied()
    }

    /// All klines, per interval.
    pub fn into_map(self) -> BTreeMap<Interval, Vec<Kline>> {
        self.klines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_runs_expand_and_corrections_replace() {
        let mut series = ClosedSeries::default();
        let first = Kline::flat(Interval::M1, 0, 10);
        assert!(series.record(&BookEvent::Closed {
            slot: 0,
            interval: Interval::M1,
            kline: first
        }));
        let run = BookEvent::FlatRun {
            slot: 0,
            interval: Interval::M1,
            first_open_ms: 60_000,
            count: 2,
            price: 10,
        };
        assert!(series.record(&run));
        let mut amended = Kline::flat(Interval::M1, 60_000, 10);
        amended.high = 12;
        assert!(series.record(&BookEvent::Corrected {
            slot: 0,
            interval: Interval::M1,
            kline: amended
        }));
        let klines = series.klines(Interval::M1);
        assert_eq!(
            klines.iter().map(|k| k.open_time_ms).collect::<Vec<_>>(),
            [0, 60_000, 120_000]
        );
        assert_eq!(klines[1].high, 12);
        let unknown = BookEvent::Corrected {
            slot: 0,
            interval: Interval::H1,
            kline: amended,
        };
        assert!(!series.record(&unknown));
        assert!(!series.record(&BookEvent::Updated { slot: 0 }));
        assert!(series.klines(Interval::M5).is_empty());
        assert_eq!(series.intervals().collect::<Vec<_>>(), [Interval::M1]);
    }
}
