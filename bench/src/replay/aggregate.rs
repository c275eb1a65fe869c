//! Replay aggregation (caller's thread): aggTrades files → klines with the engine's own kline
//! core (`KlineBook`), the same code the shards run live.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use klagg_shards::kline::{
    AggTrade, ApplyOutcome, BookEvent, ClosedSeries, Interval, Kline, KlineBook, Scales,
    parse_scaled, written_scale,
};

use super::{Location, ReplayError, TextTrade, read_trades};

/// How to aggregate: the intervals and, optionally, the decimal places (taken from the data
/// where not given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySettings {
    pub intervals: Vec<Interval>,
    pub price_scale: Option<u8>,
    pub qty_scale: Option<u8>,
}

/// The klines of a replay and what was noticed on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayOutput {
    pub scales: Scales,
    /// Every kline per interval from the first to the last trade, in time order (empty periods
    /// as flat klines).
    pub klines: BTreeMap<Interval, Vec<Kline>>,
    pub trades: u64,
    /// Aggregate-id jumps `(expected, received)`: trades missing from the input.
    pub gaps: Vec<(i64, i64)>,
    pub duplicates: u64,
    /// Trades older than an interval's most recently closed kline (not aggregated there).
    pub late_dropped: u64,
    /// Where the first of those was read.
    pub first_late: Option<Location>,
}

/// Pass 1: validate every record of every file and find the decimal places the data is written
/// with (the largest seen per field). Also checks that the files are in time order.
///
/// # Errors
/// The first malformed record or unreadable file, or files out of time order.
pub fn scales_from_files(files: &[PathBuf]) -> Result<Scales, ReplayError> {
    let mut scales = Scales::default();
    let mut order = FileOrder::default();
    for file in files {
        order.start(file);
        read_trades(file, |trade, at| {
            order.check(trade, at)?;
            scales.price = scales.price.max(scale_of(trade.price, "price", at)?);
            scales.qty = scales.qty.max(scale_of(trade.qty, "quantity", at)?);
            Ok(())
        })?;
    }
    Ok(scales)
}

/// Aggregate `files` (in time order) into klines of every interval in `settings`.
///
/// # Errors
/// The first malformed record, a decimal that does not fit the given places, files out of time
/// order, or a trade the kline core refuses.
pub fn aggregate_files(
    files: &[PathBuf],
    settings: &ReplaySettings,
) -> Result<ReplayOutput, ReplayError> {
    let scales = match (settings.price_scale, settings.qty_scale) {
        (Some(price), Some(qty)) => Scales { price, qty },
        (price, qty) => {
            let found = scales_from_files(files)?;
            Scales {
                price: price.unwrap_or(found.price),
                qty: qty.unwrap_or(found.qty),
            }
        }
    };
    let mut run = Run::new(&settings.intervals, scales);
    let mut order = FileOrder::default();
    for file in files {
        order.start(file);
        read_trades(file, |trade, at| {
            order.check(trade, at)?;
            run.apply(trade, at)
        })?;
    }
    Ok(run.finish())
}

/// One replay in progress: a one-slot book and the klines collected so far.
struct Run {
    book: KlineBook,
    events: Vec<BookEvent>,
    series: ClosedSeries,
    output: ReplayOutput,
}

impl Run {
    fn new(intervals: &[Interval], scales: Scales) -> Run {
        let mut book = KlineBook::new(intervals, 1);
        book.init_slot(0, &vec![None; intervals.len()])
            .expect("an empty package is valid");
        let output = ReplayOutput {
            scales,
            ..ReplayOutput::default()
        };
        Run {
            book,
            events: Vec::new(),
            series: ClosedSeries::default(),
            output,
        }
    }

    fn apply(&mut self, text: &TextTrade<'_>, at: &Location) -> Result<(), ReplayError> {
        let scales = self.output.scales;
        let decimal = |value: &str, scale, field| {
            parse_scaled(value.as_bytes(), scale).map_err(|err| ReplayError::Field {
                at: at.clone(),
                field,
                reason: format!("{value:?}: {err}"),
            })
        };
        let trade = AggTrade {
            agg_id: text.agg_id,
            price: decimal(text.price, scales.price, "price")?,
            qty: decimal(text.qty, scales.qty, "quantity")?,
            first_id: text.first_id,
            last_id: text.last_id,
            time_ms: text.time_ms,
            buyer_maker: text.buyer_maker,
        };
        let outcome = self
            .book
            .apply(0, &trade)
            .map_err(|err| ReplayError::Record {
                at: at.clone(),
                reason: err.to_string(),
            })?;
        if outcome == ApplyOutcome::Dropped && self.output.first_late.is_none() {
            self.output.first_late = Some(at.clone());
        }
        self.drain();
        Ok(())
    }

    fn drain(&mut self) {
        self.book.take_events(&mut self.events);
        for event in self.events.drain(..) {
            if let BookEvent::Gap {
                expected_agg_id,
                received_agg_id,
                ..
            } = event
            {
                self.output.gaps.push((expected_agg_id, received_agg_id));
            }
            self.series.record(&event);
        }
    }

    fn finish(mut self) -> ReplayOutput {
        self.book.finish_slot(0);
        self.drain();
        let stats = self.book.stats();
        self.output.trades = stats.trades_applied;
        self.output.duplicates = stats.duplicates;
        self.output.late_dropped = stats.late_dropped;
        self.output.klines = self.series.into_map();
        self.output
    }
}

fn scale_of(text: &str, field: &'static str, at: &Location) -> Result<u8, ReplayError> {
    written_scale(text.as_bytes()).map_err(|err| ReplayError::Field {
        at: at.clone(),
        field,
        reason: format!("{text:?}: {err}"),
    })
}

/// Checks that consecutive files do not go back in time.
#[derive(Debug, Default)]
struct FileOrder {
    previous: Option<(PathBuf, i64)>,
    current: Option<(PathBuf, i64)>,
    first_of_file: bool,
}

impl FileOrder {
    fn start(&mut self, file: &Path) {
        if let Some(current) = self.current.take() {
            self.previous = Some(current);
        }
        self.current = Some((file.to_path_buf(), i64::MIN));
        self.first_of_file = true;
    }

    fn check(&mut self, trade: &TextTrade<'_>, at: &Location) -> Result<(), ReplayError> {
        if std::mem::take(&mut self.first_of_file)
            && let Some((previous, last_ms)) = &self.previous
            && trade.time_ms < *last_ms
        {
            return Err(ReplayError::Record {
                at: at.clone(),
                reason: format!(
                    "files are not in time order: this file starts at {} ms but {} ends at {last_ms} ms",
                    trade.time_ms,
                    previous.display()
                ),
            });
        }
        if let Some((_, last_ms)) = self.current.as_mut() {
            *last_ms = (*last_ms).max(trade.time_ms);
        }
        Ok(())
    }
}
