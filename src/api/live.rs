//! The live klines in memory (written by the `api-hub` thread, read by REST on the gateway's
//! connection threads): per stream the latest open kline and the last few final klines, which
//! may not have reached the store yet. [`merge`] lays them over stored rows with the store's own
//! precedence rule (`Source::rank`): a live final kline (closed, corrected, flat) replaces a
//! stored row of lower or equal rank (open snapshots, REST history, flat fills, live rows) but not
//! a repair from the venue; the live open kline replaces only a stored open row. One mutex,
//! taken once per batch by the hub and once per request by REST.

use std::collections::{HashMap, VecDeque};

use klagg_shards::kline::Kline;
use klagg_shards::protocol::KlineMsg;
use parking_lot::Mutex;

use super::StreamKey;
use crate::store::Source;

/// Final klines kept per stream (covers the store's write delay: closed klines are on disk
/// within about a second).
pub const RECENT_CLOSED_MAX: usize = 8;

#[derive(Debug, Default, Clone)]
struct Entry {
    open: Option<Kline>,
    /// Final klines, ascending by open time, at most `RECENT_CLOSED_MAX`.
    recent: VecDeque<Kline>,
}

impl Entry {
    fn final_kline(&mut self, kline: Kline) {
        match self
            .recent
            .binary_search_by_key(&kline.open_time_ms, |k| k.open_time_ms)
        {
            Ok(at) => self.recent[at] = kline,
            Err(at) => {
                self.recent.insert(at, kline);
                if self.recent.len() > RECENT_CLOSED_MAX {
                    self.recent.pop_front();
                }
            }
        }
        if self
            .open
            .is_some_and(|open| open.open_time_ms <= kline.open_time_ms)
        {
            self.open = None;
        }
    }

    fn update(&mut self, kline: Kline) {
        let newest_final = self.recent.back().map_or(i64::MIN, |k| k.open_time_ms);
        let newer = self
            .open
            .is_none_or(|open| open.open_time_ms <= kline.open_time_ms);
        if newer && kline.open_time_ms > newest_final {
            self.open = Some(kline);
        }
    }
}

/// A stream's klines held in memory: final ones (ascending) and the open one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    pub finals: Vec<Kline>,
    pub open: Option<Kline>,
}

/// The live klines of every stream.
#[derive(Debug, Default)]
pub struct LiveKlines {
    inner: Mutex<HashMap<StreamKey, Entry>>,
}

impl LiveKlines {
    /// Apply a batch of shard messages (in the order they came).
    pub fn apply(&self, messages: &[KlineMsg]) {
        let mut map = self.inner.lock();
        for message in messages {
            apply_one(&mut map, message);
        }
    }

    /// The klines in memory for `key`.
    pub fn overlay(&self, key: StreamKey) -> Overlay {
        let map = self.inner.lock();
        map.get(&key)
            .map_or_else(Overlay::default, |entry| Overlay {
                finals: entry.recent.iter().copied().collect(),
                open: entry.open,
            })
    }

    /// Streams held (tests, metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn apply_one(map: &mut HashMap<StreamKey, Entry>, message: &KlineMsg) {
    let key = StreamKey {
        symbol: message.symbol(),
        interval: message.interval(),
    };
    let entry = map.entry(key).or_default();
    match *message {
        KlineMsg::Update { kline, .. } => entry.update(kline),
        _ => {
            for kline in message.final_klines(RECENT_CLOSED_MAX as u64) {
                entry.final_kline(kline);
            }
        }
    }
}

/// Lay `overlay` over `stored` (ascending, each with its `Source::rank`) and apply the klines
/// endpoint's window: open times in `[start, end]`, with a start the first `limit`, otherwise
/// the last `limit`.
pub fn merge(
    stored: Vec<(Kline, u8)>,
    overlay: &Overlay,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    limit: usize,
) -> Vec<Kline> {
    let (low, high) = (start_ms.unwrap_or(i64::MIN), end_ms.unwrap_or(i64::MAX));
    let mut rows = stored;
    let live = overlay
        .finals
        .iter()
        .map(|k| (*k, Source::Live.rank(true)))
        .chain(overlay.open.map(|k| (k, Source::Live.rank(false))));
    for (kline, rank) in live {
        if kline.open_time_ms < low || kline.open_time_ms > high {
            continue;
        }
        match rows.binary_search_by_key(&kline.open_time_ms, |(k, _)| k.open_time_ms) {
            Ok(at) if rank >= rows[at].1 => rows[at] = (kline, rank),
            Ok(_) => {}
            Err(at) => rows.insert(at, (kline, rank)),
        }
    }
    let rows = rows.into_iter().map(|(k, _)| k);
    if start_ms.is_some() {
        rows.take(limit).collect()
    } else {
        let all: Vec<Kline> = rows.collect();
        let skip = all.len().saturating_sub(limit);
        all[skip..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use klagg_shards::kline::Interval;
    use klagg_shards::protocol::SymbolIndex;

    const MIN: i64 = 60_000;

    fn k(open: i64, close_price: i64) -> Kline {
        let mut kline = Kline::flat(Interval::M1, open, close_price);
        kline.trade_count = 1;
        kline
    }

    fn key() -> StreamKey {
        StreamKey {
            symbol: SymbolIndex(1),
            interval: Interval::M1,
        }
    }

    fn update(kline: Kline) -> KlineMsg {
        KlineMsg::Update {
            symbol: SymbolIndex(1),
            interval: Interval::M1,
            kline,
        }
    }

    fn closed(kline: Kline) -> KlineMsg {
        KlineMsg::Closed {
            symbol: SymbolIndex(1),
            interval: Interval::M1,
            kline,
        }
    }

    #[test]
    fn keeps_the_open_kline_and_recent_finals() {
        let live = LiveKlines::default();
        live.apply(&[update(k(0, 1)), update(k(0, 2))]);
        assert_eq!(live.overlay(key()).open, Some(k(0, 2)));
        live.apply(&[closed(k(0, 3)), update(k(MIN, 4))]);
        let overlay = live.overlay(key());
        assert_eq!(overlay.finals, vec![k(0, 3)]);
        assert_eq!(overlay.open, Some(k(MIN, 4)));
        // A stale update (older than a final kline) is ignored.
        live.apply(&[closed(k(MIN, 5)), update(k(MIN, 6))]);
        assert_eq!(live.overlay(key()).open, None);
        // A long flat run keeps only its last klines.
        live.apply(&[KlineMsg::FlatRun {
            symbol: SymbolIndex(1),
            interval: Interval::M1,
            first_open_ms: 2 * MIN,
            count: 100,
            price: 7,
        }]);
        let finals = live.overlay(key()).finals;
        assert_eq!(finals.len(), RECENT_CLOSED_MAX);
        assert_eq!(finals.last().unwrap().open_time_ms, 101 * MIN);
        assert!(
            finals
                .windows(2)
                .all(|w| w[1].open_time_ms - w[0].open_time_ms == MIN)
        );
        assert_eq!(live.len(), 1);
    }

    #[test]
    fn merge_follows_the_precedence_and_the_window() {
        let (closed, open) = (Source::Live.rank(true), Source::Live.rank(false));
        let stored = vec![
            (k(0, 1), closed),
            (k(MIN, 2), closed),
            (k(2 * MIN, 3), open),
        ];
        let overlay = Overlay {
            finals: vec![k(MIN, 20)],
            open: Some(k(3 * MIN, 40)),
        };
        let all = merge(stored.clone(), &overlay, None, None, 10);
        let closes: Vec<i64> = all.iter().map(|k| k.close).collect();
        assert_eq!(closes, vec![1, 20, 3, 40]);
        // The open live kline replaces a stale open row, never a closed one.
        let open_over_closed = Overlay {
            finals: vec![],
            open: Some(k(0, 99)),
        };
        assert_eq!(
            merge(stored.clone(), &open_over_closed, None, None, 10)[0].close,
            1
        );
        let open_over_open = Overlay {
            finals: vec![],
            open: Some(k(2 * MIN, 99)),
        };
        assert_eq!(
            merge(stored.clone(), &open_over_open, None, None, 10)[2].close,
            99
        );
        // Limits: latest without a start, first with one; the window bounds live klines too.
        let last_two = merge(stored.clone(), &overlay, None, None, 2);
        assert_eq!(
            last_two.iter().map(|k| k.close).collect::<Vec<_>>(),
            vec![3, 40]
        );
        let first_two = merge(stored.clone(), &overlay, Some(0), None, 2);
        assert_eq!(
            first_two.iter().map(|k| k.close).collect::<Vec<_>>(),
            vec![1, 20]
        );
        let bounded = merge(stored, &overlay, None, Some(2 * MIN), 10);
        assert_eq!(bounded.len(), 3);
        // A repair from the venue outranks the live kline.
        let repaired = vec![(k(MIN, 7), Source::Repair.rank(true))];
        assert_eq!(merge(repaired, &overlay, None, None, 10)[0].close, 7);
        let history = vec![(k(MIN, 7), Source::Rest.rank(true))];
        assert_eq!(merge(history, &overlay, None, None, 10)[0].close, 20);
    }
}
