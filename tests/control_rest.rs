//! The REST client against a scripted loopback server: 429 with `Retry-After` pauses every
//! caller and is retried; 5xx is retried with back-off; `X-MBX-USED-WEIGHT-1M` is followed; a
//! 400 is final at once; an unreachable venue gives up after the bounded attempts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use klagg::constants::REST_ATTEMPTS_MAX;
use klagg::shutdown::Shutdown;
use klagg::status::StatusBoard;
use klagg::symbol_manager::rest::{RestClient, RestError};
use tiny_http::{Header, Response, Server};

/// One scripted answer: status, an extra header, body.
type Answer = (u16, Option<(&'static str, &'static str)>, &'static str);

/// Serve `script` (status, extra header, body) in order, one per request, then stop.
fn scripted(script: Vec<Answer>) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let thread = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (status, header, body) in script {
            let Ok(Some(request)) = server.recv_timeout(Duration::from_secs(10)) else {
                break;
            };
            seen.push(request.url().to_string());
            let mut response = Response::from_string(body).with_status_code(status);
            if let Some((name, value)) = header {
                response = response
                    .with_header(Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap());
            }
            let _ = request.respond(response);
        }
        seen
    });
    (url, thread)
}

#[test]
fn rate_limits_and_server_errors_are_retried_within_bounds() {
    let (url, server) = scripted(vec![
        (
            429,
            Some(("Retry-After", "1")),
            r#"{"code":-1003,"msg":"Too many requests"}"#,
        ),
        (503, None, "Service Unavailable."),
        (200, Some(("X-MBX-USED-WEIGHT-1M", "17")), "[]"),
    ]);
    let client = RestClient::new(&url, None, Shutdown::new()).unwrap();
    let started = Instant::now();
    let body = client.get("/fapi/v1/time", 1).unwrap();
    assert_eq!(body, b"[]");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let counters = &client.budget.counters;
    assert_eq!(StatusBoard::get(&counters.rate_limited_429), 1);
    assert_eq!(StatusBoard::get(&counters.retries), 2);
    assert_eq!(StatusBoard::get(&counters.venue_used_weight), 17);
    assert_eq!(StatusBoard::get(&counters.weight_total), 3);
    assert!(client.budget.snapshot().used_in_window() >= 17);
    assert_eq!(server.join().unwrap(), vec!["/fapi/v1/time"; 3]);
}

#[test]
fn client_errors_are_final_and_bans_pause() {
    let (url, server) = scripted(vec![
        (400, None, r#"{"code":-1121,"msg":"Invalid symbol."}"#),
        (
            418,
            Some(("Retry-After", "1")),
            r#"{"code":-1003,"msg":"Way too many requests; IP banned"}"#,
        ),
        (200, None, "{}"),
    ]);
    let client = RestClient::new(&url, None, Shutdown::new()).unwrap();
    let error = client.get("/fapi/v1/klines?symbol=NOPE", 1).unwrap_err();
    assert!(
        matches!(error, RestError::Status { status: 400, .. }),
        "{error}"
    );
    assert!(!error.is_retryable());
    let started = Instant::now();
    assert_eq!(client.get("/fapi/v1/exchangeInfo", 1).unwrap(), b"{}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(StatusBoard::get(&client.budget.counters.banned_418), 1);
    server.join().unwrap();
}

#[test]
fn an_unreachable_venue_gives_up_after_bounded_attempts() {
    let client = RestClient::new("http://127.0.0.1:1", None, Shutdown::new()).unwrap();
    let started = Instant::now();
    let error = client.get("/fapi/v1/exchangeInfo", 1).unwrap_err();
    assert!(
        matches!(error, RestError::Exhausted { attempts, .. } if attempts == REST_ATTEMPTS_MAX),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn shutdown_interrupts_a_rate_limit_pause() {
    let (url, _server) = scripted(vec![(429, Some(("Retry-After", "60")), "{}")]);
    let shutdown = Shutdown::new();
    let client = RestClient::new(&url, None, shutdown.clone()).unwrap();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        shutdown.request(klagg::shutdown::StopReason::Signal);
    });
    let started = Instant::now();
    assert!(matches!(
        client.get("/fapi/v1/time", 1),
        Err(RestError::Stopped)
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    stopper.join().unwrap();
}
