//! `GET /metrics` (run on the API threads): Prometheus text built per scrape with
//! prometheus-client from the status board, the REST budget and every shard's counters.
//! Activation states, trades, gaps, reconnects, REST weight, channel depths, per shard.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tiny_http::Request;

use super::{GatewayContext, header};
use crate::activation_dispatcher::DispatchState;
use crate::status::StatusBoard;

type Labels = Vec<(String, String)>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let metric = Gauge::<i64>::default();
    metric.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, metric);
}

fn family(registry: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
    let metric = Family::<Labels, Gauge>::default();
    for (labels, value) in rows {
        metric
            .get_or_create(&labels)
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }
    registry.register(name, help, metric);
}

fn label(key: &str, value: impl ToString) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

/// The whole exposition text.
pub fn render(ctx: &GatewayContext) -> String {
    let mut registry = Registry::with_prefix("klagg");
    let status = &ctx.status;
    let mut per_state = std::collections::BTreeMap::<&str, u64>::new();
    for entry in ctx.registry.snapshot() {
        let state = match status.symbol(entry.index).state {
            DispatchState::Unknown => entry.lifecycle.as_str(),
            state => state.as_str(),
        };
        *per_state.entry(state).or_default() += 1;
    }
    family(
        &mut registry,
        "symbols",
        "Symbols per activation state",
        per_state
            .into_iter()
            .map(|(s, n)| (label("state", s), n))
            .collect(),
    );
    gauge(
        &mut registry,
        "symbols_total",
        "Symbols that should be active",
        StatusBoard::get(&status.symbols_total),
    );
    gauge(
        &mut registry,
        "activation_retries",
        "Activation attempts retried",
        StatusBoard::get(&status.activation_retries),
    );
    gauge(
        &mut registry,
        "activation_stale_acks",
        "Late or duplicate acks ignored",
        StatusBoard::get(&status.stale_acks),
    );
    gauge(
        &mut registry,
        "activation_queue_depth",
        "Commands waiting in activation_tx",
        StatusBoard::get(&status.activation_queue_depth),
    );
    gauge(
        &mut registry,
        "dispatcher_backlog",
        "Shard commands waiting in the dispatcher",
        StatusBoard::get(&status.dispatcher_backlog),
    );
    gauge(
        &mut registry,
        "dispatcher_in_flight",
        "Activations awaiting an ack",
        StatusBoard::get(&status.dispatcher_in_flight),
    );
    gauge(
        &mut registry,
        "backfill_queue_depth",
        "Symbols waiting for a backfill thread",
        StatusBoard::get(&status.backfill_queue_depth),
    );
    gauge(
        &mut registry,
        "packages_built",
        "Initial packages built",
        StatusBoard::get(&status.packages_built),
    );
    gauge(
        &mut registry,
        "package_weight",
        "REST weight spent on initial packages",
        StatusBoard::get(&status.package_weight),
    );
    gauge(
        &mut registry,
        "resyncs",
        "Resyncs queued",
        StatusBoard::get(&status.resyncs),
    );
    gauge(
        &mut registry,
        "detector_frames",
        "miniTicker frames read",
        StatusBoard::get(&status.detector_frames),
    );
    gauge(
        &mut registry,
        "detector_reconnects",
        "miniTicker reconnects",
        StatusBoard::get(&status.detector_reconnects),
    );
    let rest = &ctx.rest_budget.counters;
    gauge(
        &mut registry,
        "rest_weight_used",
        "REST weight sent",
        StatusBoard::get(&rest.weight_total),
    );
    gauge(
        &mut registry,
        "rest_requests",
        "REST requests sent",
        StatusBoard::get(&rest.requests),
    );
    gauge(
        &mut registry,
        "rest_weight_used_1m",
        "Last X-MBX-USED-WEIGHT-1M",
        StatusBoard::get(&rest.venue_used_weight),
    );
    gauge(
        &mut registry,
        "rest_rate_limited",
        "HTTP 429 answers",
        StatusBoard::get(&rest.rate_limited_429),
    );
    gauge(
        &mut registry,
        "rest_banned",
        "HTTP 418 answers",
        StatusBoard::get(&rest.banned_418),
    );
    gauge(
        &mut registry,
        "rest_throttled_waits",
        "Waits for the weight budget",
        StatusBoard::get(&rest.throttled_waits),
    );
    shard_families(&mut registry, ctx);
    let mut text = String::new();
    let _ = encode(&mut text, &registry);
    text
}

fn shard_families(registry: &mut Registry, ctx: &GatewayContext) {
    let shards: Vec<_> = ctx
        .shards()
        .iter()
        .map(|h| (h.id.0, h.inbox_len() as u64, h.counters.snapshot()))
        .collect();
    let rows = |pick: fn(&klagg_shards::protocol::ShardCountersSnapshot) -> u64| {
        shards
            .iter()
            .map(|(id, _, c)| (label("shard", id), pick(c)))
            .collect::<Vec<_>>()
    };
    family(
        registry,
        "shard_trades",
        "Trades applied",
        rows(|c| c.trades_applied),
    );
    family(registry, "shard_frames", "Frames read", rows(|c| c.frames));
    family(
        registry,
        "shard_parse_errors",
        "Frames that did not parse",
        rows(|c| c.parse_errors),
    );
    family(
        registry,
        "shard_gaps",
        "Aggregate-trade id gaps",
        rows(|c| c.gaps),
    );
    family(
        registry,
        "shard_reconnects",
        "WebSocket reconnects",
        rows(|c| c.reconnects),
    );
    family(
        registry,
        "shard_symbols_active",
        "Active symbols",
        rows(|c| c.symbols_active),
    );
    family(
        registry,
        "shard_subscriptions_active",
        "Subscribed streams",
        rows(|c| c.subscriptions_active),
    );
    family(
        registry,
        "shard_outbox_depth",
        "Kline messages waiting in the outbox",
        rows(|c| c.outbox_depth),
    );
    family(
        registry,
        "shard_updates_dropped",
        "Open-kline updates dropped",
        rows(|c| c.updates_dropped),
    );
    family(
        registry,
        "shard_resyncs_requested",
        "Resyncs requested",
        rows(|c| c.resyncs_requested),
    );
    let inbox = shards
        .iter()
        .map(|(id, depth, _)| (label("shard", id), *depth))
        .collect();
    family(
        registry,
        "shard_inbox_depth",
        "Commands waiting in the shard inbox",
        inbox,
    );
}

/// `GET /metrics`.
pub fn handle_metrics(ctx: &GatewayContext, request: Request) {
    let response = tiny_http::Response::from_string(render(ctx)).with_header(header(
        "Content-Type",
        "text/plain; version=0.0.4; charset=utf-8",
    ));
    let _ = request.respond(response);
}
