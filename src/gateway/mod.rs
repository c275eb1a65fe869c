//! The gateway (threads `api-accept` and `api-http-N`, see [`server`]): the HTTP listener on
//! `--listen`, a small [`Router`] and a shared read-only [`GatewayContext`]. The listener is
//! bound first thing in `run_app`, so the operability endpoints answer while everything else
//! starts. Handlers read atomics and snapshots; they never block the engine (no locks a shard
//! takes, no channel sends into shards).
//!
//! Extending it: write `fn handler(ctx: &GatewayContext, request: &HttpRequest) ->
//! HttpResponse` and add it with `Router::get("/fapi/v1/klines", handler)` or
//! `Router::get_prefix("/assets/", handler)`; a WebSocket endpoint is
//! `Router::websocket("/market/", upgrade)` with `fn upgrade(ctx, request, socket, leftover)`,
//! which owns the socket from the opening handshake on. Routes go in before [`serve`] (through
//! `AppExtensions::router`). State the new handlers need goes into
//! `AppExtensions::gateway_state` (any `Arc<T>`, read-only or internally synchronised) and is
//! found with `ctx.state::<T>()`.

pub mod http;
pub mod metrics;
pub mod server;
pub mod slots;
pub mod status_page;

use std::any::Any;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use klagg_shards::protocol::ShardHandle;

use crate::clock::epoch_ms;
use crate::health::{HealthReport, HealthReporter, heartbeat_report};
use crate::status::StatusBoard;
use crate::symbol_manager::registry::RegistryView;
use crate::symbol_manager::rest::WeightBudget;
use crate::watchdog::HealthBoard;

pub use http::{HttpRequest, HttpResponse};
pub use server::{HttpCounters, HttpLimits, bind, serve};

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
    /// Epoch ms of the acceptor's last loop (the API's heartbeat).
    pub heartbeat_ms: AtomicI64,
    /// Connections and requests of the HTTP side.
    pub http: HttpCounters,
    /// The HTTP server's limits (set before [`serve`]; defaults: the `HTTP_*` constants).
    pub http_limits: HttpLimits,
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
            http: HttpCounters::default(),
            http_limits: HttpLimits::default(),
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

/// A request handler: answers one request.
pub type Handler = fn(&GatewayContext, &HttpRequest) -> HttpResponse;
/// A WebSocket endpoint: takes the opening handshake's request, the socket (blocking, nothing
/// answered yet) and the bytes read after the head; it must answer and own the socket.
pub type UpgradeHandler = fn(&GatewayContext, HttpRequest, TcpStream, Vec<u8>);

#[derive(Debug, Clone, Copy)]
enum Action {
    Get(Handler),
    Upgrade(UpgradeHandler),
}

#[derive(Debug, Clone)]
struct Route {
    path: &'static str,
    prefix: bool,
    action: Action,
}

/// Path → handler. Exact paths win over prefixes; the first match of each kind wins. Plain
/// routes answer `GET`; WebSocket routes answer opening handshakes.
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
            path,
            prefix: false,
            action: Action::Get(handler),
        });
        self
    }

    /// Route every `GET` whose path starts with `prefix`.
    pub fn get_prefix(mut self, prefix: &'static str, handler: Handler) -> Router {
        self.routes.push(Route {
            path: prefix,
            prefix: true,
            action: Action::Get(handler),
        });
        self
    }

    /// Route WebSocket handshakes whose path is `path` or starts with `path/`.
    pub fn websocket(mut self, path: &'static str, handler: UpgradeHandler) -> Router {
        self.routes.push(Route {
            path,
            prefix: true,
            action: Action::Upgrade(handler),
        });
        self
    }

    /// Every route of `other` after these.
    pub fn merge(mut self, other: Router) -> Router {
        self.routes.extend(other.routes);
        self
    }

    /// The operability endpoints: `/api/v1/status`, `/health`, `/metrics`.
    pub fn operability(self) -> Router {
        self.get("/api/v1/status", status_page::handle_status)
            .get("/health", status_page::handle_health)
            .get("/metrics", metrics::handle_metrics)
    }

    fn find(&self, path: &str, upgrade: bool) -> Option<&Route> {
        let matching = |prefix: bool| {
            self.routes.iter().find(|r| {
                r.prefix == prefix
                    && matches!(r.action, Action::Upgrade(_)) == upgrade
                    && if !prefix {
                        path == r.path
                    } else if upgrade {
                        path == r.path
                            || path
                                .strip_prefix(r.path)
                                .is_some_and(|rest| rest.starts_with('/'))
                    } else {
                        path.starts_with(r.path)
                    }
            })
        };
        matching(false).or_else(|| matching(true))
    }

    /// The WebSocket endpoint of `path`.
    pub fn find_upgrade(&self, path: &str) -> Option<UpgradeHandler> {
        match self.find(path, true)?.action {
            Action::Upgrade(handler) => Some(handler),
            Action::Get(_) => None,
        }
    }

    /// The answer to `request` (404 without a route, 405 for other methods than GET).
    pub fn dispatch(&self, ctx: &GatewayContext, request: &HttpRequest) -> HttpResponse {
        let Some(route) = self.find(&request.path, false) else {
            return error_response(404, -1000, "Path not found.");
        };
        if request.method != "GET" {
            return error_response(405, -1000, "Only GET is supported.");
        }
        match route.action {
            Action::Get(handler) => handler(ctx, request),
            Action::Upgrade(_) => error_response(404, -1000, "Path not found."),
        }
    }
}

/// A JSON response with `status`.
pub fn json_response(status: u16, body: String) -> HttpResponse {
    HttpResponse::new(status, "application/json", body.into_bytes())
}

/// Binance's error body `{"code":C,"msg":"…"}` with an HTTP status.
pub fn error_response(status: u16, code: i32, msg: &str) -> HttpResponse {
    json_response(status, klagg_shards::wire::rest::error_body(code, msg))
}

/// The bound address (with the real port when `--listen` asked for port 0).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

/// Health of the API: its acceptor's heartbeat (fatal when stale: the listener is gone).
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

    fn a(_: &GatewayContext, _: &HttpRequest) -> HttpResponse {
        json_response(200, "a".into())
    }
    fn b(_: &GatewayContext, _: &HttpRequest) -> HttpResponse {
        json_response(200, "b".into())
    }
    fn up(_: &GatewayContext, _: HttpRequest, _: TcpStream, _: Vec<u8>) {}

    fn context() -> GatewayContext {
        GatewayContext::new(
            Arc::new(StatusBoard::new(crate::clock::ProcessStart::now())),
            RegistryView::new(),
            Arc::new(HealthBoard::new()),
            Arc::new(WeightBudget::new()),
        )
    }

    #[test]
    fn added_state_is_found_by_type() {
        let mut ctx = context();
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
            .websocket("/market", up)
            .operability();
        let ctx = context();
        let answer = |path: &str| router.dispatch(&ctx, &HttpRequest::get(path));
        assert_eq!(answer("/market/x").text(), "b");
        assert_eq!(answer("/market/ws").text(), "a");
        assert_eq!(answer("/nope").status, 404);
        assert_eq!(answer("/health").status, 200);
        let mut post = HttpRequest::get("/market/x");
        post.method = "POST".into();
        assert_eq!(router.dispatch(&ctx, &post).status, 405);
        assert!(router.find_upgrade("/market/ws").is_some());
        assert!(router.find_upgrade("/market").is_some());
        assert!(router.find_upgrade("/marketx").is_none());
        assert!(router.find_upgrade("/health").is_none());
    }
}
