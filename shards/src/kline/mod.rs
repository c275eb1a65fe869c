//! The pure kline core (no I/O, no clock reads, no logging; used by shard threads and by
//! `klagg replay`): intervals, fixed-point decimals, the trade and kline types, the kline book
//! and its events.

pub mod book;
pub mod decimal;
pub mod event;
pub mod interval;
pub mod model;
pub mod series;

#[cfg(test)]
mod property_tests;

pub use book::KlineBook;
pub use decimal::{DecimalError, Fixed, parse_scaled, written_scale};
pub use event::{ApplyOutcome, BookError, BookEvent, BookStats, flat_run_klines};
pub use interval::{Interval, IntervalError};
pub use model::{AggTrade, KLINE_CSV_HEADER, Kline, Scales};
pub use series::ClosedSeries;
