//! What the kline book reports (types only, and the expansion of a flat run; pure, used on the
//! book owner's thread and by whoever it forwards to): the events of a call, the outcome of one
//! trade, why something was refused, and the book's counters.

use super::interval::Interval;
use super::model::Kline;

/// What a call did, for the owner to forward (store, API) in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookEvent {
    /// The current klines of the slot changed; read them with
    /// [`KlineBook::current`](super::KlineBook::current). Emitted at most once per slot between
    /// two drains, after every other event of the drain.
    Updated { slot: u32 },
    /// A kline closed (with or without trades).
    Closed {
        slot: u32,
        interval: Interval,
        kline: Kline,
    },
    /// `count` consecutive periods without trades closed, the first opening at `first_open_ms`,
    /// all flat at `price`. Expand with [`flat_run_klines`].
    FlatRun {
        slot: u32,
        interval: Interval,
        first_open_ms: i64,
        count: u64,
        price: i64,
    },
    /// A late trade amended the most recently closed kline; this is its new value.
    Corrected {
        slot: u32,
        interval: Interval,
        kline: Kline,
    },
    /// The aggregate-trade id jumped: the trades in between were missed.
    Gap {
        slot: u32,
        expected_agg_id: i64,
        received_agg_id: i64,
    },
}

/// How one trade was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Added to the current klines (closing earlier ones where the trade was of a later period).
    Applied,
    /// Late for at least one interval and amended its most recently closed kline.
    Amended,
    /// Too late for at least one interval (older than its most recently closed kline): that
    /// interval did not take it.
    Dropped,
    /// Its id was not newer than the last one seen: already applied, ignored.
    Duplicate,
}

/// Why a trade or an initial package was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("slot {slot} is out of range (capacity {capacity})")]
    SlotOutOfRange { slot: u32, capacity: usize },
    #[error("slot {slot} is not live")]
    SlotNotLive { slot: u32 },
    #[error("a kline sum would overflow 128 bits; trade {agg_id} refused")]
    Overflow { agg_id: i64 },
    #[error("trade {agg_id} has a negative price or quantity, or last id < first id")]
    InvalidTrade { agg_id: i64 },
    #[error("initial {interval} kline is inconsistent: {reason}")]
    InvalidInitial {
        interval: Interval,
        reason: &'static str,
    },
    #[error("initial package has {given} klines for {expected} intervals")]
    InitialLength { given: usize, expected: usize },
}

/// Counters of what the book did (never reset; the owner reads differences).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookStats {
    pub trades_applied: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub late_amended: u64,
    pub late_dropped: u64,
    pub refused: u64,
    pub klines_closed: u64,
    pub flat_klines_closed: u64,
}

/// The klines of a [`BookEvent::FlatRun`], in time order.
pub fn flat_run_klines(
    interval: Interval,
    first_open_ms: i64,
    count: u64,
    price: i64,
) -> impl Iterator<Item = Kline> {
    let mut open = first_open_ms;
    (0..count).map(move |_| {
        let kline = Kline::flat(interval, open, price);
        open = interval.next_open(open);
        kline
    })
}
