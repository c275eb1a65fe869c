//! `GET /api/v1/status` and `GET /health` (run on the API threads): JSON built from the status
//! board, the registry snapshot, the shards' counters and the watchdog's latest report (503
//! when it is Error, or too old to trust: see `HealthBoard::current`).

use serde_json::{Value, json};

use super::{GatewayContext, HttpRequest, HttpResponse, json_response};
use crate::activation_dispatcher::DispatchState;
use crate::clock::epoch_ms;
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
        "settled_ms": status.settled_ms(),
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
        "rotations": c.rotations,
        "connections_open": c.connections_open,
        "connect_failures": c.connect_failures,
        "subscriptions_active": c.subscriptions_active,
        "subscriptions_pending": c.subscriptions_pending,
        "subscriptions_given_up": c.subscriptions_given_up,
        "subscribe_refused": c.subscribe_refused,
        "control_errors": c.control_errors,
        "outbox_depth": c.outbox_depth,
        "outbox_max": c.outbox_max,
        "backpressure_pauses": c.backpressure_pauses,
        "updates_dropped": c.updates_dropped,
        "klines_undeliverable": c.klines_undeliverable,
        "resyncs_requested": c.resyncs_requested,
        "reports_dropped": c.reports_dropped,
        "acks_failed": c.acks_failed,
        "busiest_iteration_ns": c.busiest_iteration_ns,
    })
}

/// `GET /api/v1/status`.
pub fn handle_status(ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    json_response(200, status_json(ctx).to_string())
}

/// `GET /health`: 200 unless the watchdog's latest report is Error or older than
/// `HEALTH_REPORT_MAX_AGE_MS` (503; then `status` is `error`, `stale` true and `message` says
/// why, with the old report's services kept for reference).
pub fn handle_health(ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    let now = epoch_ms();
    let (report, stale) = ctx.health.current(now);
    let mut body = serde_json::to_value(&*report).unwrap_or_else(|_| json!({}));
    let failing = report.status == HealthStatus::Error || stale.is_some();
    if let (Some(message), Some(fields)) = (stale, body.as_object_mut()) {
        fields.insert("status".into(), json!(HealthStatus::Error.as_str()));
        fields.insert("stale".into(), json!(true));
        fields.insert("age_ms".into(), json!(now - report.at_ms));
        fields.insert("message".into(), json!(message));
    }
    json_response(if failing { 503 } else { 200 }, body.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::health::HealthReport;
    use crate::watchdog::{HEALTH_REPORT_MAX_AGE_MS, HealthBoard, ServiceReport, WatchdogReport};

    fn context() -> GatewayContext {
        GatewayContext::new(
            Arc::new(StatusBoard::new(crate::clock::ProcessStart::now())),
            crate::symbol_manager::registry::RegistryView::new(),
            Arc::new(HealthBoard::new()),
            Arc::new(crate::symbol_manager::rest::WeightBudget::new()),
        )
    }

    fn publish(ctx: &GatewayContext, status: HealthStatus, at_ms: i64) {
        ctx.health.publish(WatchdogReport {
            status,
            at_ms,
            services: vec![ServiceReport {
                name: "shard-00".into(),
                report: HealthReport::new(status, "x"),
            }],
        });
    }

    fn health(ctx: &GatewayContext) -> (u16, Value) {
        let answer = handle_health(ctx, &HttpRequest::get("/health"));
        (answer.status, serde_json::from_str(&answer.text()).unwrap())
    }

    #[test]
    fn health_is_503_on_error_and_on_a_stale_report() {
        let ctx = context();
        assert_eq!(health(&ctx).0, 200, "starting");
        publish(&ctx, HealthStatus::Warning, epoch_ms());
        let (code, body) = health(&ctx);
        assert_eq!((code, body["status"].as_str()), (200, Some("warning")));
        publish(&ctx, HealthStatus::Error, epoch_ms());
        assert_eq!(health(&ctx).0, 503);
        // The watchdog stopped: its last report, Ok, is too old.
        publish(
            &ctx,
            HealthStatus::Ok,
            epoch_ms() - HEALTH_REPORT_MAX_AGE_MS - 1_000,
        );
        let (code, body) = health(&ctx);
        assert_eq!(code, 503, "{body}");
        assert_eq!(body["status"], "error");
        assert_eq!(body["stale"], true);
        assert!(body["age_ms"].as_i64().unwrap() > HEALTH_REPORT_MAX_AGE_MS);
        assert!(body["message"].as_str().unwrap().contains("watchdog"));
        assert_eq!(body["services"][0]["name"], "shard-00");
    }
}
