//! The gateway (threads `api-0` … `api-N`, tiny_http): the HTTP listener on `--listen`, a small
//! [`Router`] and a shared read-only [`GatewayContext`]. The listener is bound first thing in
//! `run_app`, so the operability endpoints answer while everything else starts. Handlers read
//! atomics and snapshots; they never block the engine (no locks a shard takes, no channel sends
//! into shards).
//!
//! Extending it (store/API helper): write `fn handler(ctx: &GatewayContext, request:
//! tiny_http::Request)` — the handler owns the request and responds (or upgrades it to a
//! WebSocket with `Request::upgrade`) — and add it with `Router::get("/fapi/v1/klines", handler)`
//! or `Router::get_prefix("/market/", handler)` before [`serve`] (through
//! `AppExtensions::router`). State the new handlers need goes into `AppExtensions::gateway_state`
//! (any `Arc<T>`, read-only or internally synchronised) and is found with
//! `ctx.state::<T>()`.

pub mod metrics;
pub mod status_page;

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use klagg_shards::protocol::ShardHandle;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::clock::epoch_ms;
use crate::constants::{GATEWAY_RECV_TIMEOUT_MS, GATEWAY_THREADS};
use crate::health::{HealthReport, HealthReporter, heartbeat_report};
use crate::runtime::spawn_control;
use crate::shutdown::Shutdown;
use crate::status::StatusBoard;
use crate::symbol_manager::registry::RegistryView;
use crate::symbol_manager::rest::WeightBudget;
use crate::watchdog::HealthBoard;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("cannot start the API threads: {0}")]
    Thread(#[from] std::io::Error),
}

/// What handlers may read. Filled while the process starts: fields set later are `OnceLock`s
/// (a handler answers "not yet" while they are empty).
#[derive(Debug)]
pub struct GatewayContext {
    pub status: Arc<StatusBoard>,
    pub registry: RegistryView,
    pub health: Arc<HealthBoard>,
    pub rest_budget: Arc<WeightBudget>,
    /// The shards (core, counters); set once they run.
    pub shards: OnceLock<Vec<ShardHandle>>,
    /// Epoch ms of the last loop of any API thread (the API's heartbeat).
    pub heartbeat_ms: AtomicI64,
    /// State other components add for their handlers (a store reader, a WebSocket hub …),
    /// found by type with [`GatewayContext::state`].
    pub extra: Vec<Arc<dyn Any + Send + Sync>>,
}

impl GatewayContext {
    pub fn new(
        status: Arc<StatusBoard>,
        registry: RegistryView,
        health: Arc<HealthBoard>,
        rest_budget: Arc<WeightBudget>,
    ) -> GatewayContext {
        GatewayContext {
            status,
            registry,
            health,
            rest_budget,
            shards: OnceLock::new(),
            heartbeat_ms: AtomicI64::new(epoch_ms()),
            extra: Vec::new(),
        }
    }

    /// The added state of type `T`, if any.
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.extra.iter().find_map(|s| s.downcast_ref::<T>())
    }

    /// The shards, or none before they started.
    pub fn shards(&self) -> &[ShardHandle] {
        self.shards.get().map_or(&[], Vec::as_slice)
    }
}

/// A request handler: owns the request and must respond to it.
pub type Handler = fn(&GatewayContext, Request);

#[derive(Debug, Clone)]
struct Route {
    method: Method,
    path: &'static str,
    prefix: bool,
    handler: Handler,
}

/// Method + path → handler. Exact paths win over prefixes; the first match of each kind wins.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Route `GET path` (exact, query string ignored).
    pub fn get(mut self, path: &'static str, handler: Handler) -> Router {
        self.routes.push(Route {
            method: Method::Get,
            path,
            prefix: false,
            handler,
        });
        self
    }

    /// Route every `GET` whose path starts with `prefix`.
    pub fn get_prefix(mut self, prefix: &'static str, handler: Handler) -> Router {
        self.routes.push(Route {
            method: Method::Get,
            path: prefix,
            prefix: true,
            handler,
        });
        self
    }

    /// The operability endpoints: `/api/v1/status`, `/health`, `/metrics`.
    pub fn operability(self) -> Router {
        self.get("/api/v1/status", status_page::handle_status)
            .get("/health", status_page::handle_health)
            .get("/metrics", metrics::handle_metrics)
    }

    fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        let matching = |prefix: bool| {
            self.routes.iter().find(|r| {
                r.prefix == prefix
                    && &r.method == method
                    && if prefix {
                        path.starts_with(r.path)
                    } else {
                        path == r.path
                    }
            })
        };
        matching(false).or_else(|| matching(true))
    }

    /// Hand `request` to its handler, or answer 404/405.
    pub fn dispatch(&self, ctx: &GatewayContext, request: Request) {
        let path = request.url().split('?').next().unwrap_or("").to_string();
        match self.find(request.method(), &path) {
            Some(route) => (route.handler)(ctx, request),
            None => {
                let body = r#"{"code":-1,"msg":"not found"}"#;
                let _ = request.respond(json_response(404, body.to_string()));
            }
        }
    }
}

/// A JSON response with `status`.
pub fn json_response(status: u16, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
}

/// A header from constant strings.
///
/// # Panics
/// If `name` or `value` is not a valid header (they are constants).
pub fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("constant header")
}

/// Bind the listener (first thing in `run_app`).
///
/// # Errors
/// The address is taken or not ours.
pub fn bind(addr: SocketAddr) -> Result<Arc<Server>, GatewayError> {
    Server::http(addr)
        .map(Arc::new)
        .map_err(|e| GatewayError::Bind {
            addr,
            reason: e.to_string(),
        })
}

/// The bound address (with the real port when `--listen` asked for port 0).
pub fn local_addr(server: &Server) -> Option<SocketAddr> {
    server.server_addr().to_ip()
}

/// Start `GATEWAY_THREADS` threads serving `router` until shutdown.
///
/// # Errors
/// A thread could not be created.
pub fn serve(
    server: Arc<Server>,
    router: Router,
    ctx: Arc<GatewayContext>,
    shutdown: &Shutdown,
    core: Option<usize>,
) -> Result<Vec<JoinHandle<()>>, GatewayError> {
    let router = Arc::new(router);
    let mut threads = Vec::with_capacity(GATEWAY_THREADS);
    for id in 0..GATEWAY_THREADS {
        let (server, router, ctx, shutdown) = (
            server.clone(),
            router.clone(),
            ctx.clone(),
            shutdown.clone(),
        );
        threads.push(spawn_control(&format!("api-{id}"), core, move || {
            // The thread's event loop: intentionally unbounded; one request per iteration.
            while !shutdown.is_requested() {
                ctx.heartbeat_ms.store(epoch_ms(), Ordering::Relaxed);
                match server.recv_timeout(Duration::from_millis(GATEWAY_RECV_TIMEOUT_MS)) {
                    Ok(Some(request)) => router.dispatch(&ctx, request),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        })?);
    }
    Ok(threads)
}

/// Health of the API: its threads' heartbeat (fatal when stale: the listener is gone).
#[derive(Debug)]
pub struct ApiHealth {
    pub ctx: Arc<GatewayContext>,
}

impl HealthReporter for ApiHealth {
    fn name(&self) -> &str {
        "api"
    }

    fn report(&self) -> HealthReport {
        heartbeat_report(
            epoch_ms(),
            self.ctx.heartbeat_ms.load(Ordering::Relaxed),
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(_: &GatewayContext, _: Request) {}
    fn b(_: &GatewayContext, _: Request) {}

    #[test]
    fn added_state_is_found_by_type() {
        let mut ctx = GatewayContext::new(
            Arc::new(StatusBoard::new(crate::clock::ProcessStart::now())),
            RegistryView::new(),
            Arc::new(HealthBoard::new()),
            Arc::new(WeightBudget::new()),
        );
        ctx.extra.push(Arc::new(42u32));
        assert_eq!(ctx.state::<u32>(), Some(&42));
        assert!(ctx.state::<String>().is_none());
        assert!(ctx.shards().is_empty());
    }

    #[test]
    fn exact_routes_win_over_prefixes() {
        let router = Router::new()
            .get_prefix("/market/", a)
            .get("/market/x", b)
            .operability();
        let found = |path| router.find(&Method::Get, path).map(|r| (r.path, r.prefix));
        assert_eq!(found("/market/x"), Some(("/market/x", false)));
        assert_eq!(found("/market/ws"), Some(("/market/", true)));
        assert!(router.find(&Method::Post, "/market/x").is_none());
        assert!(router.find(&Method::Get, "/nope").is_none());
        assert!(router.find(&Method::Get, "/health").is_some());
    }
}
