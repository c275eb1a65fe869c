//! `GET /api/v1/status` and `GET /health` (run on the API threads): JSON built from the status
//! board, the registry snapshot, the shards' counters and the watchdog's latest report.

use serde_json::{Value, json};

use super::{GatewayContext, HttpRequest, HttpResponse, json_response};
use crate::activation_dispatcher::DispatchState;
use crate::health::HealthStatus;
use crate::status::StatusBoard;

/// The status document (see the README's `klagg run` section for the fields).
pub fn status_json(ctx: &GatewayContext) -> Value {
    let status = &ctx.status;
    let symbols: Vec<Value> = ctx
        .registry
        .snapshot()
        .iter()
        .map(|entry| {
            let published = status.symbol(entry.index);
            let state = match published.state {
                DispatchState::Unknown => entry.lifecycle.as_str(),
                state => state.as_str(),
            };
            json!({
                "symbol": &*entry.name,
                "state": state,
                "shard": published.shard.map(|s| s.0),
                "activated_ms": published.activated_ms,
            })
        })
        .collect();
    let shards: Vec<Value> = ctx.shards().iter().map(shard_json).collect();
    let counters = &ctx.rest_budget.counters;
    json!({
        "started_at_ms": status.start.started_at_ms,
        "uptime_ms": status.start.elapsed_ms(),
        "first_active_ms": status.first_active_ms(),
        "all_active_ms": status.all_active_ms(),
        "last_package_ms": status.last_package_ms(),
        "symbols_total": StatusBoard::get(&status.symbols_total),
        "symbols_active": StatusBoard::get(&status.symbols_active),
        "symbols_failed": StatusBoard::get(&status.symbols_failed),
        "rest_weight_used": StatusBoard::get(&counters.weight_total),
        "rest_requests": StatusBoard::get(&counters.requests),
        "rest_weight_used_1m": StatusBoard::get(&counters.venue_used_weight),
        "package_weight": StatusBoard::get(&status.package_weight),
        "packages_built": StatusBoard::get(&status.packages_built),
        "resyncs": StatusBoard::get(&status.resyncs),
        "listings": StatusBoard::get(&status.listings),
        "delistings": StatusBoard::get(&status.delistings),
        "shards": shards,
        "symbols": symbols,
    })
}

fn shard_json(handle: &klagg_shards::protocol::ShardHandle) -> Value {
    let c = handle.counters.snapshot();
    json!({
        "shard": handle.id.0,
        "core": handle.core,
        "pin_failed": handle.pin_failed,
        "inbox_depth": handle.inbox_len(),
        "heartbeat_ms": c.heartbeat_ms,
        "symbols_active": c.symbols_active,
        "trades_applied": c.trades_applied,
        "frames": c.frames,
        "bytes": c.bytes,
        "parse_errors": c.parse_errors,
        "gaps": c.gaps,
        "duplicates": c.duplicates,
        "late_trades": c.late_trades,
        "reconnects": c.reconnects,
        "connections_open": c.connections_open,
        "subscriptions_active": c.subscriptions_active,
        "subscriptions_pending": c.subscriptions_pending,
        "outbox_depth": c.outbox_depth,
        "updates_dropped": c.updates_dropped,
        "resyncs_requested": c.resyncs_requested,
        "busiest_iteration_ns": c.busiest_iteration_ns,
    })
}

/// `GET /api/v1/status`.
pub fn handle_status(ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    json_response(200, status_json(ctx).to_string())
}

/// `GET /health`: 200 unless the watchdog's latest report is Error (503).
pub fn handle_health(ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    let report = ctx.health.latest();
    let code = if report.status == HealthStatus::Error {
        503
    } else {
        200
    };
    let body = serde_json::to_string(&*report).unwrap_or_else(|_| "{}".to_string());
    json_response(code, body)
}
