//! `GET /metrics` (run on the API threads): Prometheus text built per scrape with
//! prometheus-client from the status board, the REST budget and every shard's counters.
//! Activation states, trades, gaps, reconnects, REST weight, channel depths, per shard.

use klagg_shards::protocol::ShardCountersSnapshot;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{GatewayContext, HttpRequest, HttpResponse};
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
    let rows = per_state
        .into_iter()
        .map(|(s, n)| (label("state", s), n))
        .collect();
    family(
        &mut registry,
        "symbols",
        "Symbols per activation state",
        rows,
    );
    for (name, help, value) in control_gauges(ctx).into_iter().chain(api_gauges(ctx)) {
        gauge(&mut registry, name, help, value);
    }
    shard_families(&mut registry, ctx);
    // The kline store's gauges (writer, history, repairs), when a store is attached.
    if let Some(store) = ctx.state::<crate::store::StoreView>() {
        store.register_metrics(&mut registry);
    }
    let mut text = String::new();
    let _ = encode(&mut text, &registry);
    text
}

/// (name, help, value) of the HTTP server's and the Binance API's gauges.
fn api_gauges(ctx: &GatewayContext) -> Vec<(&'static str, &'static str, u64)> {
    use std::sync::atomic::Ordering::Relaxed;
    let h = &ctx.http;
    let mut rows = vec![
        (
            "http_connections_accepted",
            "HTTP connections accepted",
            h.connections_accepted.load(Relaxed),
        ),
        (
            "http_connections_refused",
            "HTTP connections refused (limit)",
            h.connections_refused.load(Relaxed),
        ),
        (
            "http_connections_open",
            "HTTP connections open",
            h.connections_open.load(Relaxed) as u64,
        ),
        (
            "http_requests",
            "HTTP requests read",
            h.requests.load(Relaxed),
        ),
        (
            "http_bad_requests",
            "Malformed HTTP requests",
            h.bad_requests.load(Relaxed),
        ),
    ];
    let Some(api) = ctx.state::<crate::api::ApiState>() else {
        return rows;
    };
    let c = &api.counters;
    let get = crate::api::ApiCounters::get;
    rows.extend([
        (
            "api_kline_messages",
            "Kline messages taken from the shards",
            get(&c.kline_messages),
        ),
        (
            "api_events_rendered",
            "Stream events rendered",
            get(&c.events_rendered),
        ),
        (
            "api_events_dropped",
            "Stream events the push thread could not take",
            get(&c.events_dropped),
        ),
        (
            "api_updates_coalesced",
            "Open-kline updates replaced within the 250 ms window",
            get(&c.updates_coalesced),
        ),
        (
            "api_ws_clients",
            "WebSocket clients connected",
            get(&c.ws_clients),
        ),
        (
            "api_ws_clients_total",
            "WebSocket clients ever connected",
            get(&c.ws_clients_total),
        ),
        (
            "api_ws_refused",
            "WebSocket clients refused (limit)",
            get(&c.ws_refused),
        ),
        (
            "api_ws_subscriptions",
            "Stream subscriptions held",
            get(&c.ws_subscriptions),
        ),
        (
            "api_ws_frames_queued",
            "Stream frames queued for clients",
            get(&c.ws_frames_sent),
        ),
        (
            "api_ws_bytes_sent",
            "Bytes written to WebSocket clients",
            get(&c.ws_bytes_sent),
        ),
        (
            "api_ws_closed_slow",
            "Clients closed for not keeping up",
            get(&c.ws_closed_slow),
        ),
        (
            "api_ws_closed_rate",
            "Clients closed for sending too many messages",
            get(&c.ws_closed_rate),
        ),
        (
            "api_ws_closed_protocol",
            "Clients closed for protocol errors",
            get(&c.ws_closed_protocol),
        ),
        (
            "api_ws_closed_idle",
            "Clients closed without a pong",
            get(&c.ws_closed_idle),
        ),
        (
            "api_ws_requests",
            "Control requests received",
            get(&c.ws_requests),
        ),
        (
            "api_ws_request_errors",
            "Control requests answered with an error",
            get(&c.ws_request_errors),
        ),
        (
            "api_rest_klines",
            "GET /fapi/v1/klines requests",
            get(&c.rest_klines),
        ),
        (
            "api_rest_errors",
            "Klines requests refused (400)",
            get(&c.rest_errors),
        ),
        (
            "api_store_errors",
            "Klines requests failed on the store",
            get(&c.store_errors),
        ),
    ]);
    rows
}

/// (name, help, value) of the control plane's gauges.
fn control_gauges(ctx: &GatewayContext) -> Vec<(&'static str, &'static str, u64)> {
    let s = &ctx.status;
    let r = &ctx.rest_budget.counters;
    let get = StatusBoard::get;
    vec![
        (
            "symbols_total",
            "Symbols that should be active",
            get(&s.symbols_total),
        ),
        (
            "activation_retries",
            "Activation attempts retried",
            get(&s.activation_retries),
        ),
        (
            "activation_stale_acks",
            "Late or duplicate acks ignored",
            get(&s.stale_acks),
        ),
        (
            "activation_queue_depth",
            "Commands waiting in activation_tx",
            get(&s.activation_queue_depth),
        ),
        (
            "dispatcher_backlog",
            "Shard commands waiting in the dispatcher",
            get(&s.dispatcher_backlog),
        ),
        (
            "dispatcher_in_flight",
            "Activations awaiting an ack",
            get(&s.dispatcher_in_flight),
        ),
        (
            "backfill_queue_depth",
            "Symbols waiting for a backfill thread",
            get(&s.backfill_queue_depth),
        ),
        (
            "packages_built",
            "Initial packages built",
            get(&s.packages_built),
        ),
        (
            "package_weight",
            "REST weight spent on initial packages",
            get(&s.package_weight),
        ),
        ("resyncs", "Resyncs queued", get(&s.resyncs)),
        ("listings", "Listings admitted", get(&s.listings)),
        ("delistings", "Symbols delisted", get(&s.delistings)),
        (
            "klines_received",
            "Final klines received from the shards",
            get(&s.klines_received),
        ),
        (
            "detector_frames",
            "miniTicker frames read",
            get(&s.detector_frames),
        ),
        (
            "detector_reconnects",
            "miniTicker reconnects",
            get(&s.detector_reconnects),
        ),
        ("rest_weight_used", "REST weight sent", get(&r.weight_total)),
        ("rest_requests", "REST requests sent", get(&r.requests)),
        (
            "rest_weight_used_1m",
            "Last X-MBX-USED-WEIGHT-1M",
            get(&r.venue_used_weight),
        ),
        (
            "rest_rate_limited",
            "HTTP 429 answers",
            get(&r.rate_limited_429),
        ),
        ("rest_banned", "HTTP 418 answers", get(&r.banned_418)),
        (
            "rest_throttled_waits",
            "Waits for the weight budget",
            get(&r.throttled_waits),
        ),
    ]
}

type Pick = fn(&ShardCountersSnapshot) -> u64;

/// (name, help, counter) of the per-shard families.
const SHARD_FAMILIES: [(&str, &str, Pick); 10] = [
    ("shard_trades", "Trades applied", |c| c.trades_applied),
    ("shard_frames", "Frames read", |c| c.frames),
    ("shard_parse_errors", "Frames that did not parse", |c| {
        c.parse_errors
    }),
    ("shard_gaps", "Aggregate-trade id gaps", |c| c.gaps),
    ("shard_reconnects", "WebSocket reconnects", |c| c.reconnects),
    ("shard_symbols_active", "Active symbols", |c| {
        c.symbols_active
    }),
    ("shard_subscriptions_active", "Subscribed streams", |c| {
        c.subscriptions_active
    }),
    (
        "shard_outbox_depth",
        "Kline messages waiting in the outbox",
        |c| c.outbox_depth,
    ),
    ("shard_updates_dropped", "Open-kline updates dropped", |c| {
        c.updates_dropped
    }),
    ("shard_resyncs_requested", "Resyncs requested", |c| {
        c.resyncs_requested
    }),
];

fn shard_families(registry: &mut Registry, ctx: &GatewayContext) {
    let shards: Vec<_> = ctx
        .shards()
        .iter()
        .map(|h| (h.id.0, h.inbox_len() as u64, h.counters.snapshot()))
        .collect();
    for (name, help, pick) in SHARD_FAMILIES {
        let rows = shards
            .iter()
            .map(|(id, _, c)| (label("shard", id), pick(c)))
            .collect();
        family(registry, name, help, rows);
    }
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
pub fn handle_metrics(ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    HttpResponse::new(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        render(ctx).into_bytes(),
    )
}
