//! Health, status and metrics of the engine (`klagg::app::start_app`) whose shards cannot reach
//! the venue's WebSocket (the simulator serves REST, the WebSocket URL is a dead loopback port):
//! symbols activate, but `/health` names the shard that has no connection, and the connect
//! failures are on `/api/v1/status` and `/metrics` (as counters). Time bounds are generous (2
//! noisy cores; the Warning needs `SHARD_DISCONNECTED_WARN_MS`).

mod support;

use std::time::Duration;

use klagg::shard_health::SHARD_DISCONNECTED_WARN_MS;
use serde_json::Value;
use support::engine;
use support::{free_port, get_text, wait_for};

fn get_health(url: &str) -> (u16, Value) {
    let response = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[test]
fn a_shard_that_cannot_reach_the_venue_is_reported() {
    let sim = engine::start_sim(engine::sim_config(5, 50, 3));
    let mut args = engine::args(&sim, 1, "1m");
    args.ws_url = Some(format!("ws://127.0.0.1:{}", free_port()));
    let app = engine::start(args, |_| {}, klagg::app::AppExtensions::default());
    let base = format!("http://{}", app.listen);
    let limit = Duration::from_millis(SHARD_DISCONNECTED_WARN_MS as u64) + Duration::from_secs(30);
    let mut last = Value::Null;
    wait_for(
        "shard-00 reported without a venue connection",
        limit,
        || {
            let (status, body) = get_health(&format!("{base}/health"));
            assert_eq!(status, 200, "a Warning is not a 503: {body}");
            last = body;
            last["services"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "shard-00" && s["status"] == "warning")
        },
    );
    let shard = last["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "shard-00")
        .unwrap();
    let message = shard["message"].as_str().unwrap();
    assert!(message.contains("no venue connection"), "{shard}");
    let details = &shard["details"];
    assert!(details["connect_failures"].as_u64().unwrap() > 0, "{shard}");
    assert_eq!(details["connections_open"], 0);
    assert!(details["disconnected_ms"].as_i64().unwrap() >= SHARD_DISCONNECTED_WARN_MS);
    let status: Value = serde_json::from_str(&get_text(&format!("{base}/api/v1/status"))).unwrap();
    assert_eq!(
        status["symbols_active"], 5,
        "activation does not need the stream"
    );
    let s0 = &status["shards"][0];
    assert!(s0["connect_failures"].as_u64().unwrap() > 0, "{s0}");
    for key in [
        "subscriptions_given_up",
        "reports_dropped",
        "klines_undeliverable",
    ] {
        assert!(s0[key].is_u64(), "{key} missing: {s0}");
    }
    let metrics = get_text(&format!("{base}/metrics"));
    assert!(metrics.contains("# TYPE klagg_shard_connect_failures counter"));
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("klagg_shard_connect_failures_total{shard=\"0\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(failures > 0, "{metrics}");
    for line in [
        "klagg_shard_connections_open{shard=\"0\"} 0",
        "# TYPE klagg_shard_trades counter",
        "# TYPE klagg_shard_symbols_active gauge",
        "# TYPE klagg_shard_subscriptions_given_up counter",
        "# TYPE klagg_shard_reports_dropped counter",
        "# TYPE klagg_shard_klines_undeliverable counter",
        "# TYPE klagg_http_requests counter",
        "# TYPE klagg_symbols_total gauge",
    ] {
        assert!(metrics.contains(line), "{line} missing: {metrics}");
    }
    assert!(!metrics.contains("_total_total"), "{metrics}");
    engine::stop(app);
    sim.shutdown();
}
