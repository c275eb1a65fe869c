//! The kline book (pure; owned and mutated by exactly one thread — a shard, or `klagg replay`):
//! flat, preallocated kline state per (symbol slot, interval), updated by aggregate trades and by
//! the clock. Every effect is an event in an outbox that the owner drains with
//! [`KlineBook::take_events`]; there are no callbacks, no I/O, no clock reads and no logging here.
//!
//! Per slot and interval the book keeps the current (open) kline and the most recently closed
//! one. A trade of a later period closes the current kline, emits the skipped periods as one
//! [`BookEvent::FlatRun`] and starts the new period; a trade of the most recently closed period
//! amends it ([`BookEvent::Corrected`]); an older one is dropped and counted. The fast path — the
//! trade falls inside every current kline — costs one range check and the field updates.

use super::event::{ApplyOutcome, BookError, BookEvent, BookStats};
use super::interval::Interval;
use super::model::{AggTrade, Kline};

/// The most intervals one book aggregates (every Binance interval).
pub const INTERVALS_MAX: usize = Interval::ALL.len();
/// The most symbol slots one book holds (one shard; slots are `u32`, so this is a sanity cap).
pub const SLOTS_MAX: usize = 1 << 16;
/// Events queued per slot and interval before the outbox has to grow; the owner drains it after
/// every call, so this is a starting size, not a limit on correctness.
const EVENTS_PER_CELL: usize = 2;
/// Open time of "no kline yet" (e.g. 1s on a venue without 1s REST klines, before the first trade).
const NONE_MS: i64 = i64::MIN;

#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    live: bool,
    dirty: bool,
    /// Last aggregate-trade id applied, `-1` while unknown.
    last_agg_id: i64,
    /// Every current kline of the slot contains `[fast_open_ms, fast_close_ms]` (empty when
    /// open > close), so a trade inside it touches no period boundary.
    fast_open_ms: i64,
    fast_close_ms: i64,
    /// The earliest close time over the current klines (`i64::MAX` when none).
    next_close_ms: i64,
}

impl SlotMeta {
    const IDLE: SlotMeta = SlotMeta {
        live: false,
        dirty: false,
        last_agg_id: -1,
        fast_open_ms: 0,
        fast_close_ms: -1,
        next_close_ms: i64::MAX,
    };
}

/// What one interval does with a trade (decided for all intervals before any is changed, so a
/// refused trade changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Extend,
    Start,
    Roll,
    Amend,
    Drop,
}

const NO_KLINE: Kline = Kline {
    open_time_ms: NONE_MS,
    close_time_ms: NONE_MS,
    open: 0,
    high: 0,
    low: 0,
    close: 0,
    volume: 0,
    quote_volume: 0,
    taker_buy_volume: 0,
    taker_buy_quote_volume: 0,
    trade_count: 0,
    first_trade_id: -1,
    last_trade_id: -1,
};

/// Kline state of up to `capacity` symbol slots for a fixed set of intervals.
#[derive(Debug)]
pub struct KlineBook {
    intervals: Box<[Interval]>,
    /// Indices of the intervals no other configured interval contains: their open klines hold
    /// every trade of the others', so an overflow check on them covers all (one index for the
    /// default intervals, two for 1w with 1M).
    roots: Box<[usize]>,
    /// `current[slot * n + i]`: the open kline of interval `i` (`NO_KLINE` when none).
    current: Vec<Kline>,
    /// `closed[slot * n + i]`: the most recently closed kline (`NO_KLINE` when none).
    closed: Vec<Kline>,
    slots: Vec<SlotMeta>,
    events: Vec<BookEvent>,
    dirty_slots: Vec<u32>,
    stats: BookStats,
}

impl KlineBook {
    /// A book for `capacity` slots. Intervals are kept shortest first (their `Ord`), whatever
    /// the order given.
    ///
    /// # Panics
    /// If `intervals` is empty, holds a duplicate, or `capacity` exceeds [`SLOTS_MAX`]: these
    /// are configuration the caller validated.
    pub fn new(intervals: &[Interval], capacity: usize) -> KlineBook {
        assert!(!intervals.is_empty(), "a book needs at least one interval");
        assert!(
            capacity <= SLOTS_MAX,
            "slot capacity {capacity} over {SLOTS_MAX}"
        );
        let mut sorted = intervals.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), intervals.len(), "duplicate interval");
        let cells = capacity * sorted.len();
        let roots = (0..sorted.len())
            .filter(|&i| !(0..sorted.len()).any(|o| o != i && sorted[o].contains(sorted[i])))
            .collect();
        KlineBook {
            intervals: sorted.into_boxed_slice(),
            roots,
            current: vec![NO_KLINE; cells],
            closed: vec![NO_KLINE; cells],
            slots: vec![SlotMeta::IDLE; capacity],
            events: Vec::with_capacity(cells * EVENTS_PER_CELL),
            dirty_slots: Vec::with_capacity(capacity),
            stats: BookStats::default(),
        }
    }

    /// The intervals, shortest first; interval index `i` everywhere refers to this order.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn stats(&self) -> BookStats {
        self.stats
    }

    pub fn is_live(&self, slot: u32) -> bool {
        self.slots.get(slot as usize).is_some_and(|meta| meta.live)
    }

    /// The last aggregate-trade id the slot applied (`None` while unknown).
    pub fn last_agg_id(&self, slot: u32) -> Option<i64> {
        let meta = self.slots.get(slot as usize)?;
        (meta.live && meta.last_agg_id >= 0).then_some(meta.last_agg_id)
    }

    /// The open kline of interval index `interval` (`None` before its first trade or data).
    pub fn current(&self, slot: u32, interval: usize) -> Option<&Kline> {
        self.cell(&self.current, slot, interval)
    }

    /// The most recently closed kline of interval index `interval`.
    pub fn last_closed(&self, slot: u32, interval: usize) -> Option<&Kline> {
        self.cell(&self.closed, slot, interval)
    }

    fn cell<'a>(&self, cells: &'a [Kline], slot: u32, interval: usize) -> Option<&'a Kline> {
        let n = self.intervals.len();
        if interval >= n || slot as usize >= self.slots.len() {
            return None;
        }
        let kline = &cells[slot as usize * n + interval];
        (kline.open_time_ms != NONE_MS).then_some(kline)
    }

    /// Make `slot` live with an initial package: per interval (in [`KlineBook::intervals`]
    /// order) its latest kline, possibly still open, or `None` to start at the first trade.
    /// Replaces whatever the slot held (re-activation after a gap is one step).
    ///
    /// # Errors
    /// A wrong number of klines, or a kline that is not aligned or not consistent
    /// (`low ≤ open, close ≤ high`); the slot is then left not live.
    pub fn init_slot(&mut self, slot: u32, initial: &[Option<Kline>]) -> Result<(), BookError> {
        self.check_slot(slot)?;
        self.clear_slot(slot);
        let n = self.intervals.len();
        if initial.len() != n {
            return Err(BookError::InitialLength {
                given: initial.len(),
                expected: n,
            });
        }
        for (&interval, kline) in self.intervals.iter().zip(initial) {
            if let Some(kline) = kline {
                check_initial(interval, kline)?;
            }
        }
        let base = slot as usize * n;
        for (index, kline) in initial.iter().enumerate() {
            self.current[base + index] = kline.unwrap_or(NO_KLINE);
        }
        self.slots[slot as usize].live = true;
        self.refresh_meta(slot);
        Ok(())
    }

    /// Take `slot` out of service (delisting, before re-activation): its state is forgotten.
    pub fn clear_slot(&mut self, slot: u32) {
        let n = self.intervals.len();
        let Some(meta) = self.slots.get_mut(slot as usize) else {
            return;
        };
        *meta = SlotMeta::IDLE;
        let base = slot as usize * n;
        self.current[base..base + n].fill(NO_KLINE);
        self.closed[base..base + n].fill(NO_KLINE);
    }

    /// Apply one aggregate trade of `slot`'s symbol.
    ///
    /// # Errors
    /// The slot is not live, the trade is malformed, or a sum would overflow; nothing changes.
    #[inline]
    pub fn apply(&mut self, slot: u32, trade: &AggTrade) -> Result<ApplyOutcome, BookError> {
        let index = slot as usize;
        let Some(meta) = self.slots.get(index) else {
            return Err(BookError::SlotOutOfRange {
                slot,
                capacity: self.slots.len(),
            });
        };
        if !meta.live {
            return Err(BookError::SlotNotLive { slot });
        }
        if meta.last_agg_id >= 0 && trade.agg_id <= meta.last_agg_id {
            self.stats.duplicates += 1;
            return Ok(ApplyOutcome::Duplicate);
        }
        if trade.price < 0 || trade.qty < 0 || trade.last_id < trade.first_id {
            self.stats.refused += 1;
            return Err(BookError::InvalidTrade {
                agg_id: trade.agg_id,
            });
        }
        let quote = i128::from(trade.price) * i128::from(trade.qty);
        let time = trade.time_ms;
        let outcome = if meta.fast_open_ms <= time && time <= meta.fast_close_ms {
            self.apply_fast(slot, trade, quote)?
        } else {
            self.apply_slow(slot, trade, quote)?
        };
        self.stats.trades_applied += 1;
        Ok(outcome)
    }

    /// The trade falls inside every current kline: update them all, no boundary checks.
    #[inline(always)]
    fn apply_fast(
        &mut self,
        slot: u32,
        trade: &AggTrade,
        quote: i128,
    ) -> Result<ApplyOutcome, BookError> {
        let n = self.intervals.len();
        let base = slot as usize * n;
        let cells = &mut self.current[base..base + n];
        // The roots' klines hold every trade the others hold, so their sums are the largest.
        let qty = i128::from(trade.qty);
        if !self.roots.iter().all(|&i| cells[i].can_absorb(qty, quote)) {
            self.stats.refused += 1;
            return Err(BookError::Overflow {
                agg_id: trade.agg_id,
            });
        }
        for kline in cells.iter_mut() {
            kline.apply(trade, quote);
        }
        self.note_trade(slot, trade.agg_id);
        Ok(ApplyOutcome::Applied)
    }

    #[inline(never)]
    fn apply_slow(
        &mut self,
        slot: u32,
        trade: &AggTrade,
        quote: i128,
    ) -> Result<ApplyOutcome, BookError> {
        let n = self.intervals.len();
        let base = slot as usize * n;
        let mut steps = [Step::Drop; INTERVALS_MAX];
        for (index, step) in steps.iter_mut().enumerate().take(n) {
            *step = self.plan(base + index, trade, quote)?;
        }
        let mut outcome = ApplyOutcome::Applied;
        for (index, &step) in steps.iter().enumerate().take(n) {
            let interval = self.intervals[index];
            match step {
                Step::Extend => self.current[base + index].apply(trade, quote),
                Step::Start => {
                    self.current[base + index] =
                        Kline::from_trade(interval, interval.open_time(trade.time_ms), trade);
                }
                Step::Roll => {
                    self.roll(slot, index, interval.open_time(trade.time_ms), Some(trade))
                }
                Step::Amend => {
                    self.amend(slot, index, trade, quote);
                    if outcome == ApplyOutcome::Applied {
                        outcome = ApplyOutcome::Amended;
                    }
                }
                Step::Drop => outcome = ApplyOutcome::Dropped,
            }
        }
        match outcome {
            ApplyOutcome::Amended => self.stats.late_amended += 1,
            ApplyOutcome::Dropped => self.stats.late_dropped += 1,
            _ => {}
        }
        self.note_trade(slot, trade.agg_id);
        self.refresh_meta(slot);
        Ok(outcome)
    }

    /// Decide what the interval at `cell` does with `trade`, refusing an overflow up front.
    fn plan(&mut self, cell: usize, trade: &AggTrade, quote: i128) -> Result<Step, BookError> {
        let current = &self.current[cell];
        let closed = &self.closed[cell];
        let time = trade.time_ms;
        let (step, target) = if current.open_time_ms == NONE_MS {
            (Step::Start, None)
        } else if time > current.close_time_ms {
            (Step::Roll, None)
        } else if time >= current.open_time_ms {
            (Step::Extend, Some(current))
        } else if closed.open_time_ms != NONE_MS
            && time >= closed.open_time_ms
            && time <= closed.close_time_ms
        {
            (Step::Amend, Some(closed))
        } else {
            (Step::Drop, None)
        };
        if let Some(kline) = target
            && !kline.can_absorb(i128::from(trade.qty), quote)
        {
            self.stats.refused += 1;
            return Err(BookError::Overflow {
                agg_id: trade.agg_id,
            });
        }
        Ok(step)
    }

    /// Close the current kline of (`slot`, interval index `index`), emit the skipped periods as
    /// a flat run, and open the period at `new_open_ms` — with `trade`, or flat.
    fn roll(&mut self, slot: u32, index: usize, new_open_ms: i64, trade: Option<&AggTrade>) {
        let interval = self.intervals[index];
        let cell = slot as usize * self.intervals.len() + index;
        let old = self.current[cell];
        debug_assert!(old.open_time_ms != NONE_MS && new_open_ms > old.open_time_ms);
        self.events.push(BookEvent::Closed {
            slot,
            interval,
            kline: old,
        });
        self.stats.klines_closed += 1;
        let first_skipped = interval.next_open(old.open_time_ms);
        let skipped = interval.periods_between(first_skipped, new_open_ms);
        self.closed[cell] = if skipped == 0 {
            old
        } else {
            self.events.push(BookEvent::FlatRun {
                slot,
                interval,
                first_open_ms: first_skipped,
                count: skipped,
                price: old.close,
            });
            self.stats.flat_klines_closed += skipped;
            Kline::flat(interval, interval.open_time(new_open_ms - 1), old.close)
        };
        self.current[cell] = match trade {
            Some(trade) => Kline::from_trade(interval, new_open_ms, trade),
            None => Kline::flat(interval, new_open_ms, old.close),
        };
    }

    /// Add a late trade to the most recently closed kline and publish the correction. A still
    /// flat current kline carries the amended close forward.
    fn amend(&mut self, slot: u32, index: usize, trade: &AggTrade, quote: i128) {
        let interval = self.intervals[index];
        let cell = slot as usize * self.intervals.len() + index;
        let closed = &mut self.closed[cell];
        closed.apply(trade, quote);
        let kline = *closed;
        self.events.push(BookEvent::Corrected {
            slot,
            interval,
            kline,
        });
        let current = &mut self.current[cell];
        if current.is_flat() {
            *current = Kline::flat(interval, current.open_time_ms, kline.close);
        }
    }

    /// Close every kline whose period ended before `now_ms` (the caller's exchange-time
    /// estimate minus its grace), opening flat klines for the periods that follow.
    pub fn close_due(&mut self, now_ms: i64) {
        for slot in 0..self.slots.len() as u32 {
            let meta = &self.slots[slot as usize];
            if meta.live && meta.next_close_ms < now_ms {
                self.close_slot_due(slot, now_ms);
            }
        }
    }

    fn close_slot_due(&mut self, slot: u32, now_ms: i64) {
        let n = self.intervals.len();
        for index in 0..n {
            let current = &self.current[slot as usize * n + index];
            if current.open_time_ms != NONE_MS && current.close_time_ms < now_ms {
                let new_open = self.intervals[index].open_time(now_ms);
                self.roll(slot, index, new_open, None);
            }
        }
        self.mark_dirty(slot);
        self.refresh_meta(slot);
    }

    /// Close every current kline of `slot` as it stands, opening nothing (end of a replay).
    pub fn finish_slot(&mut self, slot: u32) {
        let n = self.intervals.len();
        let Some(meta) = self.slots.get(slot as usize) else {
            return;
        };
        if !meta.live {
            return;
        }
        for index in 0..n {
            let cell = slot as usize * n + index;
            let kline = self.current[cell];
            if kline.open_time_ms != NONE_MS {
                self.events.push(BookEvent::Closed {
                    slot,
                    interval: self.intervals[index],
                    kline,
                });
                self.stats.klines_closed += 1;
                self.closed[cell] = kline;
                self.current[cell] = NO_KLINE;
            }
        }
        self.refresh_meta(slot);
    }

    /// Move every queued event into `out` (in order; `Updated` events last) and clear the queue.
    pub fn take_events(&mut self, out: &mut Vec<BookEvent>) {
        out.append(&mut self.events);
        for slot in self.dirty_slots.drain(..) {
            self.slots[slot as usize].dirty = false;
            out.push(BookEvent::Updated { slot });
        }
    }

    /// True when events are waiting to be taken.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || !self.dirty_slots.is_empty()
    }

    /// Record the trade's id (reporting a jump as a gap) and mark the slot updated.
    #[inline(always)]
    fn note_trade(&mut self, slot: u32, agg_id: i64) {
        let meta = &mut self.slots[slot as usize];
        let last = meta.last_agg_id;
        meta.last_agg_id = agg_id;
        if last >= 0 && agg_id != last + 1 {
            self.report_gap(slot, last + 1, agg_id);
        }
        self.mark_dirty(slot);
    }

    #[cold]
    fn report_gap(&mut self, slot: u32, expected_agg_id: i64, received_agg_id: i64) {
        self.events.push(BookEvent::Gap {
            slot,
            expected_agg_id,
            received_agg_id,
        });
        self.stats.gaps += 1;
    }

    #[inline(always)]
    fn mark_dirty(&mut self, slot: u32) {
        let meta = &mut self.slots[slot as usize];
        if !meta.dirty {
            meta.dirty = true;
            self.dirty_slots.push(slot);
        }
    }

    fn refresh_meta(&mut self, slot: u32) {
        let n = self.intervals.len();
        let base = slot as usize * n;
        let (mut open, mut close, mut next_close) = (i64::MIN, i64::MAX, i64::MAX);
        for kline in &self.current[base..base + n] {
            if kline.open_time_ms == NONE_MS {
                (open, close) = (0, -1);
                continue;
            }
            open = open.max(kline.open_time_ms);
            close = close.min(kline.close_time_ms);
            next_close = next_close.min(kline.close_time_ms);
        }
        let meta = &mut self.slots[slot as usize];
        if open > close {
            (open, close) = (0, -1);
        }
        (meta.fast_open_ms, meta.fast_close_ms, meta.next_close_ms) = (open, close, next_close);
    }

    fn check_slot(&self, slot: u32) -> Result<(), BookError> {
        if (slot as usize) < self.slots.len() {
            Ok(())
        } else {
            Err(BookError::SlotOutOfRange {
                slot,
                capacity: self.slots.len(),
            })
        }
    }
}

fn check_initial(interval: Interval, kline: &Kline) -> Result<(), BookError> {
    let invalid = |reason| Err(BookError::InvalidInitial { interval, reason });
    if interval.open_time(kline.open_time_ms) != kline.open_time_ms {
        return invalid("open time is not aligned to the interval");
    }
    if interval.close_time(kline.open_time_ms) != kline.close_time_ms {
        return invalid("close time is not the period's end");
    }
    if kline.low > kline.high || kline.open > kline.high || kline.close > kline.high {
        return invalid("a price is above the high");
    }
    if kline.open < kline.low || kline.close < kline.low {
        return invalid("a price is below the low");
    }
    if kline.volume < 0 || kline.quote_volume < 0 || kline.taker_buy_volume > kline.volume {
        return invalid("volumes are negative or taker-buy exceeds the total");
    }
    Ok(())
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
