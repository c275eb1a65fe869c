//! The engine against the simulator when REST misbehaves: a 418 ban (the SymbolManager waits it
//! out on its own thread) keeps the manager's heartbeat fresh, health says "warning", not
//! fatal, and a stop during the ban is prompt.

mod support;

use std::time::{Duration, Instant};

use klagg::app::{AppExtensions, RunningApp};
use klagg::clock::epoch_ms;
use klagg::constants::HEARTBEAT_WARN_MS;
use klagg::health::{HealthReport, HealthStatus};
use klagg::status::StatusBoard;
use support::engine::{self, stop};
use support::wait_for;

const PATIENCE: Duration = Duration::from_secs(60);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// The SymbolManager's latest health report (once the watchdog published one).
fn manager_report(app: &RunningApp) -> Option<HealthReport> {
    let latest = app.health.latest();
    let service = latest
        .services
        .iter()
        .find(|s| s.name == "symbol-manager")?;
    Some(service.report.clone())
}

#[test]
fn a_rest_ban_is_a_warning_not_a_hung_thread_and_stop_stays_prompt() {
    let sim = engine::start_sim(
        engine::sim_config(4, 100, 11)
            .with_weight_limit(200)
            .with_rejections_before_ban(0)
            .with_ban_durations(vec![Duration::from_secs(20)]),
    );
    // Spend this IP's weight (ticker/24hr weighs 40) until the simulator bans it.
    let url = format!("{}/fapi/v1/ticker/24hr", sim.rest_url());
    let banned = (0..20).any(|_| agent().get(&url).call().unwrap().status().as_u16() == 418);
    assert!(banned, "the simulator did not ban");
    let app = engine::start(
        engine::args(&sim, 1, "1m"),
        |_| {},
        AppExtensions::default(),
    );
    let counters = &app.rest.budget.counters;
    wait_for("the ban answered", PATIENCE, || {
        StatusBoard::get(&counters.banned_418) >= 1
    });
    // The manager waits out the ban inside exchangeInfo: it keeps beating, health warns.
    let watched = Instant::now();
    let mut warned = false;
    while watched.elapsed() < Duration::from_secs(8) {
        let age = epoch_ms() - StatusBoard::heartbeat(&app.status.manager_heartbeat_ms);
        assert!(age < HEARTBEAT_WARN_MS, "manager heartbeat {age} ms old");
        if let Some(report) = manager_report(&app) {
            assert!(!report.fatal, "{report:?}");
            assert_ne!(report.status, HealthStatus::Error, "{report:?}");
            warned |= report.status == HealthStatus::Warning
                && report.message.starts_with("REST paused by the venue");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(warned, "no REST-pause warning: {:?}", manager_report(&app));
    assert_eq!(
        StatusBoard::get(&app.status.symbols_active),
        0,
        "still banned"
    );
    assert!(app.shutdown.reason().is_none());
    // Stopping while the ban still holds is prompt (`stop` checks the 5 s bound).
    assert!(app.rest.budget.is_paused(epoch_ms()));
    stop(app);
    sim.shutdown();
}
