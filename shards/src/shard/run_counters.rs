//! Publishing a shard's counters (shard thread, single writer): copies of the Worker's, the
//! book's, the I/O's and the publisher's own counts into the shared [`ShardCounters`]. Cheap
//! counters every loop iteration; gauges that need a scan on the heartbeat.

use std::sync::Arc;

use super::run::{ShardLoop, publish_io_gauges};
use crate::protocol::ShardCounters;

/// Copy the running totals (every iteration: plain stores).
pub fn publish(shard: &ShardLoop) {
    let (worker, io, publisher, counters, totals) = shard.parts();
    let set = ShardCounters::set;
    let c: &Arc<ShardCounters> = counters;
    let book = worker.book().stats();
    let work = worker.stats();
    let io_stats = io.stats();
    let out = publisher.stats();
    set(&c.trades_applied, book.trades_applied);
    set(&c.duplicates, book.duplicates + work.initial_duplicates);
    set(&c.gaps, book.gaps + work.initial_gaps);
    set(&c.late_trades, book.late_amended);
    set(&c.late_dropped, book.late_dropped);
    set(&c.frames, totals.frames);
    set(&c.bytes, totals.bytes);
    set(&c.parse_errors, totals.parse_errors + book.refused);
    set(&c.frames_other, totals.other_frames);
    set(&c.unknown_symbol, totals.unknown_symbol);
    set(&c.trades_not_active, work.trades_not_active);
    set(&c.initial_duplicates, work.initial_duplicates);
    set(&c.trades_replayed, work.replayed);
    set(&c.activations_ok, work.activations_ok);
    set(&c.activations_failed, work.activations_failed);
    set(&c.acks_failed, work.acks_failed);
    set(&c.reconnects, io_stats.reconnects);
    set(&c.rotations, io_stats.rotations);
    set(&c.rotation_held, io_stats.rotation_held);
    set(&c.rotation_held_dropped, io_stats.rotation_held_dropped);
    set(&c.connect_failures, io_stats.connect_failures);
    set(&c.subscribe_messages, io_stats.subscribe_messages);
    set(&c.subscriptions_given_up, io_stats.subscriptions_given_up);
    set(&c.control_errors, io_stats.control_errors);
    set(&c.updates_dropped, out.updates_dropped);
    set(&c.klines_sent, out.klines_sent);
    set(&c.klines_undeliverable, out.klines_undeliverable);
    set(&c.resyncs_requested, out.resyncs_requested);
    set(&c.reports_dropped, out.reports_dropped);
    set(&c.outbox_depth, publisher.depth() as u64);
    set(&c.outbox_max, out.outbox_max);
}

/// Gauges that need a scan (heartbeat and after commands).
pub fn publish_gauges(shard: &ShardLoop) {
    let (worker, io, _, counters, _) = shard.parts();
    ShardCounters::set(&counters.symbols_active, worker.active_count() as u64);
    publish_io_gauges(io, counters);
}
