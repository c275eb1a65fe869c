//! The engine against the simulator when REST misbehaves: a 418 ban (the SymbolManager waits it
//! out on its own thread) keeps the manager's heartbeat fresh, health says "warning", not
//! fatal, and a stop during the ban is prompt; a resync whose REST calls keep failing is retried
//! with back-off, reported as failing meanwhile, and done once REST recovers.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use klagg::activation_dispatcher::DispatchState;
use klagg::app::{AppExtensions, RunningApp};
use klagg::clock::epoch_ms;
use klagg::config::RunArgs;
use klagg::constants::HEARTBEAT_WARN_MS;
use klagg::health::{HealthReport, HealthStatus};
use klagg::status::StatusBoard;
use support::engine::{self, state_of, stop};
use support::wait_for;
use tiny_http::{Header, Response, Server};

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

/// A REST front for the simulator that answers 503 while `failing` is set.
struct FlakyRest {
    url: String,
    failing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FlakyRest {
    fn start(upstream: String) -> FlakyRest {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let failing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..3)
            .map(|_| {
                let (server, upstream) = (server.clone(), upstream.clone());
                let (failing, stop) = (failing.clone(), stop.clone());
                std::thread::spawn(move || serve(&server, &upstream, &failing, &stop))
            })
            .collect();
        FlakyRest {
            url,
            failing,
            stop,
            threads,
        }
    }

    fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn serve(server: &Server, upstream: &str, failing: &AtomicBool, stop: &AtomicBool) {
    let agent = agent();
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if failing.load(Ordering::Relaxed) {
            let _ = request.respond(Response::from_string("down").with_status_code(503));
            continue;
        }
        let Ok(mut answer) = agent.get(format!("{upstream}{}", request.url())).call() else {
            let _ = request.respond(Response::from_string("upstream").with_status_code(502));
            continue;
        };
        let status = answer.status().as_u16();
        let weight = answer
            .headers()
            .get("x-mbx-used-weight-1m")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = answer.body_mut().read_to_vec().unwrap_or_default();
        let mut response = Response::from_data(body).with_status_code(status);
        if let Some(weight) = weight {
            let header = Header::from_bytes("X-MBX-USED-WEIGHT-1M", weight).unwrap();
            response = response.with_header(header);
        }
        let _ = request.respond(response);
    }
}

#[test]
fn a_failed_resync_is_retried_until_rest_recovers() {
    let sim = engine::start_sim(engine::sim_config(6, 1_000, 5));
    let rest = FlakyRest::start(sim.rest_url());
    let args = RunArgs {
        rest_url: Some(rest.url.clone()),
        ..engine::args(&sim, 1, "1m")
    };
    let app = engine::start(args, |_| {}, AppExtensions::default());
    wait_for("all active", PATIENCE, || {
        app.status.all_active_ms().is_some()
    });
    let trades = || {
        let snapshots = app.shards.iter().map(|h| h.counters.snapshot());
        snapshots.map(|c| c.trades_applied).sum::<u64>()
    };
    wait_for("live trades", PATIENCE, || trades() > 100);
    let busy = sim.symbols()[0].name.clone();
    let packages = StatusBoard::get(&app.status.packages_built);
    // REST goes down, then trades are withheld from the stream: the shard asks for a resync,
    // whose packages fail.
    rest.failing.store(true, Ordering::Relaxed);
    sim.skip_agg_ids(&busy, 3).unwrap();
    wait_for("resync requested", PATIENCE, || {
        StatusBoard::get(&app.status.resyncs) >= 1
    });
    wait_for("a failed resync round", PATIENCE, || {
        StatusBoard::get(&app.status.resync_rounds_failed) >= 1
    });
    wait_for(
        "the failing resync reported",
        Duration::from_secs(10),
        || {
            manager_report(&app).is_some_and(|r| {
                r.status == HealthStatus::Warning
                    && r.message.contains("resync(s) failing")
                    && r.message.contains(busy.as_str())
                    && r.details["resyncs_failing"] == 1
            })
        },
    );
    assert_eq!(StatusBoard::get(&app.status.packages_built), packages);
    // REST recovers: the deferred resync runs again and re-activates the symbol.
    rest.failing.store(false, Ordering::Relaxed);
    wait_for("the resync package", PATIENCE, || {
        StatusBoard::get(&app.status.packages_built) > packages
    });
    wait_for("re-activated, nothing failing", PATIENCE, || {
        state_of(&app, &busy) == Some(DispatchState::Active)
            && StatusBoard::get(&app.status.dispatcher_in_flight) == 0
            && manager_report(&app).is_some_and(|r| r.details["resyncs_failing"] == 0)
    });
    stop(app);
    rest.shutdown();
    sim.shutdown();
}
