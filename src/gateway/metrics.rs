//! `GET /metrics` (run on the API threads): OpenMetrics text built per scrape with
//! prometheus-client from the status board, the REST budget, the HTTP and WebSocket counters,
//! the store and every shard's counters: activation states, trades, gaps, reconnects, connect
//! failures, REST weight, channel depths, per shard. Monotonic counts are counters (exposed
//! with the `_total` suffix); levels (depths, connections open, symbols active) are gauges.

use klagg_shards::protocol::ShardCountersSnapshot;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{GatewayContext, HttpRequest, HttpResponse};
use crate::activation_dispatcher::DispatchState;
use crate::status::StatusBoard;

/// The content type of the exposition (prometheus-client writes OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

/// Whether a value is a level or a monotonic count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A level that goes up and down (depths, connections open, symbols active).
    Gauge,
    /// A count that only grows while the process runs; exposed as `<name>_total`.
    Counter,
}

/// One metric: name (prefix and, for counters, `_total` added on encoding), help, kind, value.
pub type MetricRow = (&'static str, &'static str, MetricKind, u64);

/// A gauge row.
pub const fn gauge(name: &'static str, help: &'static str, value: u64) -> MetricRow {
    (name, help, MetricKind::Gauge, value)
}

/// A counter row (`name` without `_total`).
pub const fn counter(name: &'static str, help: &'static str, value: u64) -> MetricRow {
    (name, help, MetricKind::Counter, value)
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Register one row.
pub fn register(registry: &mut Registry, (name, help, kind, value): MetricRow) {
    match kind {
        MetricKind::Gauge => {
            let metric = Gauge::<i64>::default();
            metric.set(as_i64(value));
            registry.register(name, help, metric);
        }
        MetricKind::Counter => {
            let metric = Counter::<u64>::default();
            metric.inc_by(value);
            registry.register(name, help, metric);
        }
    }
}

/// Register a labelled family of one kind.
fn family(
    registry: &mut Registry,
    (name, help, kind): (&str, &str, MetricKind),
    rows: Vec<(Labels, u64)>,
) {
    match kind {
        MetricKind::Gauge => {
            let metric = Family::<Labels, Gauge>::default();
            for (labels, value) in rows {
                metric.get_or_create(&labels).set(as_i64(value));
            }
            registry.register(name, help, metric);
        }
        MetricKind::Counter => {
            let metric = Family::<Labels, Counter>::default();
            for (labels, value) in rows {
                metric.get_or_create(&labels).inc_by(value);
            }
            registry.register(name, help, metric);
        }
    }
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
    let symbols = ("symbols", "Symbols per activation state", MetricKind::Gauge);
    family(&mut registry, symbols, rows);
    let rows = [control_metrics(ctx), http_metrics(ctx), api_metrics(ctx)];
    for row in rows.into_iter().flatten() {
        register(&mut registry, row);
    }
    shard_families(&mut registry, ctx);
    // The kline store's metrics (writer, history, repairs), when a store is attached.
    if let Some(store) = ctx.state::<crate::store::StoreView>() {
        store.register_metrics(&mut registry);
    }
    let mut text = String::new();
    let _ = encode(&mut text, &registry);
    text
}

/// The HTTP server's metrics.
fn http_metrics(ctx: &GatewayContext) -> Vec<MetricRow> {
    use std::sync::atomic::Ordering::Relaxed;
    let h = &ctx.http;
    vec![
        counter(
            "http_connections_accepted",
            "HTTP connections accepted",
            h.connections_accepted.load(Relaxed),
        ),
        counter(
            "http_connections_refused",
            "HTTP connections refused a slot (limits)",
            h.connections_refused.load(Relaxed),
        ),
        counter(
            "http_connections_refused_per_client",
            "HTTP connections refused for the per-address limit",
            h.connections_refused_per_client.load(Relaxed),
        ),
        gauge(
            "http_connections_open",
            "HTTP connections open",
            h.connections_open.load(Relaxed) as u64,
        ),
        counter(
            "http_requests",
            "HTTP requests read",
            h.requests.load(Relaxed),
        ),
        counter(
            "http_bad_requests",
            "Malformed HTTP requests",
            h.bad_requests.load(Relaxed),
        ),
        counter(
            "http_head_timeouts",
            "Request heads not complete in time (408)",
            h.head_timeouts.load(Relaxed),
        ),
        counter(
            "http_probe_answers",
            "Health checks answered beyond the connection limits",
            h.probe_answers.load(Relaxed),
        ),
    ]
}

/// The Binance API's metrics (none without the API).
fn api_metrics(ctx: &GatewayContext) -> Vec<MetricRow> {
    let Some(api) = ctx.state::<crate::api::ApiState>() else {
        return Vec::new();
    };
    let c = &api.counters;
    let get = crate::api::ApiCounters::get;
    vec![
        counter(
            "api_kline_messages",
            "Kline messages taken from the shards",
            get(&c.kline_messages),
        ),
        counter(
            "api_events_rendered",
            "Stream events rendered",
            get(&c.events_rendered),
        ),
        counter(
            "api_events_dropped",
            "Stream events the push thread could not take",
            get(&c.events_dropped),
        ),
        counter(
            "api_updates_coalesced",
            "Open-kline updates replaced within the 250 ms window",
            get(&c.updates_coalesced),
        ),
        gauge(
            "api_ws_clients",
            "WebSocket clients connected",
            get(&c.ws_clients),
        ),
        counter(
            "api_ws_clients_accepted",
            "WebSocket clients ever connected",
            get(&c.ws_clients_total),
        ),
        counter(
            "api_ws_refused",
            "WebSocket clients refused (limits)",
            get(&c.ws_refused),
        ),
        counter(
            "api_ws_refused_per_client",
            "WebSocket clients refused for the per-address limit",
            get(&c.ws_refused_per_client),
        ),
        gauge(
            "api_ws_subscriptions",
            "Stream subscriptions held",
            get(&c.ws_subscriptions),
        ),
        counter(
            "api_ws_frames_queued",
            "Stream frames queued for clients",
            get(&c.ws_frames_sent),
        ),
        counter(
            "api_ws_bytes_sent",
            "Bytes written to WebSocket clients",
            get(&c.ws_bytes_sent),
        ),
        counter(
            "api_ws_closed_slow",
            "Clients closed for not keeping up",
            get(&c.ws_closed_slow),
        ),
        counter(
            "api_ws_closed_rate",
            "Clients closed for sending too many messages",
            get(&c.ws_closed_rate),
        ),
        counter(
            "api_ws_closed_protocol",
            "Clients closed for protocol errors",
            get(&c.ws_closed_protocol),
        ),
        counter(
            "api_ws_closed_idle",
            "Clients closed without a pong",
            get(&c.ws_closed_idle),
        ),
        counter(
            "api_ws_requests",
            "Control requests received",
            get(&c.ws_requests),
        ),
        counter(
            "api_ws_request_errors",
            "Control requests answered with an error",
            get(&c.ws_request_errors),
        ),
        counter(
            "api_rest_klines",
            "GET /fapi/v1/klines requests",
            get(&c.rest_klines),
        ),
        counter(
            "api_rest_errors",
            "Klines requests refused (400)",
            get(&c.rest_errors),
        ),
        counter(
            "api_store_errors",
            "Klines requests failed on the store",
            get(&c.store_errors),
        ),
    ]
}

/// The control plane's metrics.
fn control_metrics(ctx: &GatewayContext) -> Vec<MetricRow> {
    let s = &ctx.status;
    let r = &ctx.rest_budget.counters;
    let get = StatusBoard::get;
    vec![
        gauge(
            "symbols_total",
            "Symbols that should be active",
            get(&s.symbols_total),
        ),
        counter(
            "activation_retries",
            "Activation attempts retried",
            get(&s.activation_retries),
        ),
        counter(
            "activation_stale_acks",
            "Late or duplicate acks ignored",
            get(&s.stale_acks),
        ),
        gauge(
            "activation_queue_depth",
            "Commands waiting in activation_tx",
            get(&s.activation_queue_depth),
        ),
        gauge(
            "dispatcher_backlog",
            "Shard commands waiting in the dispatcher",
            get(&s.dispatcher_backlog),
        ),
        gauge(
            "dispatcher_in_flight",
            "Activations awaiting an ack",
            get(&s.dispatcher_in_flight),
        ),
        gauge(
            "backfill_queue_depth",
            "Symbols waiting for a backfill thread",
            get(&s.backfill_queue_depth),
        ),
        counter(
            "packages_built",
            "Initial packages built",
            get(&s.packages_built),
        ),
        counter(
            "package_weight",
            "REST weight spent on initial packages",
            get(&s.package_weight),
        ),
        counter("resyncs", "Resyncs queued", get(&s.resyncs)),
        counter("listings", "Listings admitted", get(&s.listings)),
        counter("delistings", "Symbols delisted", get(&s.delistings)),
        counter(
            "klines_received",
            "Final klines received from the shards",
            get(&s.klines_received),
        ),
        counter(
            "detector_frames",
            "miniTicker frames read",
            get(&s.detector_frames),
        ),
        counter(
            "detector_reconnects",
            "miniTicker reconnects",
            get(&s.detector_reconnects),
        ),
        counter("rest_weight_used", "REST weight sent", get(&r.weight_total)),
        counter("rest_requests", "REST requests sent", get(&r.requests)),
        gauge(
            "rest_weight_used_1m",
            "Last X-MBX-USED-WEIGHT-1M",
            get(&r.venue_used_weight),
        ),
        counter(
            "rest_rate_limited",
            "HTTP 429 answers",
            get(&r.rate_limited_429),
        ),
        counter("rest_banned", "HTTP 418 answers", get(&r.banned_418)),
        counter(
            "rest_throttled_waits",
            "Waits for the weight budget",
            get(&r.throttled_waits),
        ),
    ]
}

type Pick = fn(&ShardCountersSnapshot) -> u64;

/// (name, help, kind, counter) of the per-shard families.
const SHARD_FAMILIES: [(&str, &str, MetricKind, Pick); 20] = [
    ("shard_trades", "Trades applied", COUNTER, |c| {
        c.trades_applied
    }),
    ("shard_frames", "Frames read", COUNTER, |c| c.frames),
    (
        "shard_parse_errors",
        "Frames that did not parse",
        COUNTER,
        |c| c.parse_errors,
    ),
    ("shard_gaps", "Aggregate-trade id gaps", COUNTER, |c| c.gaps),
    ("shard_reconnects", "WebSocket reconnects", COUNTER, |c| {
        c.reconnects
    }),
    (
        "shard_connect_failures",
        "WebSocket connects that failed",
        COUNTER,
        |c| c.connect_failures,
    ),
    (
        "shard_connections_open",
        "WebSocket connections open",
        GAUGE,
        |c| c.connections_open,
    ),
    ("shard_symbols_active", "Active symbols", GAUGE, |c| {
        c.symbols_active
    }),
    (
        "shard_subscriptions_active",
        "Subscribed streams",
        GAUGE,
        |c| c.subscriptions_active,
    ),
    (
        "shard_subscriptions_pending",
        "Streams wanted and not yet subscribed",
        GAUGE,
        |c| c.subscriptions_pending,
    ),
    (
        "shard_subscriptions_given_up",
        "Streams given up after repeated SUBSCRIBE errors",
        COUNTER,
        |c| c.subscriptions_given_up,
    ),
    (
        "shard_outbox_depth",
        "Kline messages waiting in the outbox",
        GAUGE,
        |c| c.outbox_depth,
    ),
    (
        "shard_outbox_max",
        "Deepest the outbox has been",
        GAUGE,
        |c| c.outbox_max,
    ),
    (
        "shard_backpressure_pauses",
        "Loop iterations paused for a full outbox",
        COUNTER,
        |c| c.backpressure_pauses,
    ),
    (
        "shard_updates_dropped",
        "Open-kline updates dropped",
        COUNTER,
        |c| c.updates_dropped,
    ),
    (
        "shard_klines_undeliverable",
        "Final klines for an output that is gone",
        COUNTER,
        |c| c.klines_undeliverable,
    ),
    (
        "shard_resyncs_requested",
        "Resyncs requested",
        COUNTER,
        |c| c.resyncs_requested,
    ),
    (
        "shard_reports_dropped",
        "Reports to the control plane that could not be queued",
        COUNTER,
        |c| c.reports_dropped,
    ),
    (
        "shard_acks_failed",
        "Activation acks that could not be delivered",
        COUNTER,
        |c| c.acks_failed,
    ),
    (
        "shard_control_errors",
        "Error replies from the venue",
        COUNTER,
        |c| c.control_errors,
    ),
];

const COUNTER: MetricKind = MetricKind::Counter;
const GAUGE: MetricKind = MetricKind::Gauge;

fn shard_families(registry: &mut Registry, ctx: &GatewayContext) {
    let shards: Vec<_> = ctx
        .shards()
        .iter()
        .map(|h| (h.id.0, h.inbox_len() as u64, h.counters.snapshot()))
        .collect();
    for (name, help, kind, pick) in SHARD_FAMILIES {
        let rows = shards
            .iter()
            .map(|(id, _, c)| (label("shard", id), pick(c)))
            .collect();
        family(registry, (name, help, kind), rows);
    }
    let inbox = shards
        .iter()
        .map(|(id, depth, _)| (label("shard", id), *depth))
        .collect();
    let what = (
        "shard_inbox_depth",
        "Commands waiting in the shard inbox",
        GAUGE,
    );
    family(registry, what, inbox);
}

/// `GET /metrics`.
pub fn handle_metrics(ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    HttpResponse::new(200, CONTENT_TYPE, render(ctx).into_bytes())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::watchdog::HealthBoard;

    #[test]
    fn counts_are_counters_and_levels_gauges() {
        let ctx = GatewayContext::new(
            Arc::new(StatusBoard::new(crate::clock::ProcessStart::now())),
            crate::symbol_manager::registry::RegistryView::new(),
            Arc::new(HealthBoard::new()),
            Arc::new(crate::symbol_manager::rest::WeightBudget::new()),
        );
        ctx.http.requests.store(5, Ordering::Relaxed);
        ctx.http.connections_open.store(2, Ordering::Relaxed);
        let answer = handle_metrics(&ctx, &HttpRequest::get("/metrics"));
        assert_eq!(answer.content_type, CONTENT_TYPE);
        let text = answer.text();
        for line in [
            "# TYPE klagg_http_requests counter",
            "klagg_http_requests_total 5",
            "# TYPE klagg_http_connections_open gauge",
            "klagg_http_connections_open 2",
            "# TYPE klagg_rest_weight_used counter",
            "# TYPE klagg_activation_queue_depth gauge",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing: {text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
    }
}
