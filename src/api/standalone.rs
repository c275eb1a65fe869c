//! The API without the engine (started and stopped from the caller's thread; the API's own
//! threads run it), for the API benchmark and the API's tests: the gateway with the API's routes
//! and the operability endpoints on an ephemeral loopback port, the hub and push threads, and
//! the kline sink a shard would feed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use klagg_shards::shard::KlineSink;

use super::{Api, ApiState};
use crate::gateway::{self, GatewayContext, Router};
use crate::shutdown::{Shutdown, StopReason};
use crate::symbol_manager::registry::RegistryView;

/// A running API of its own.
#[derive(Debug)]
pub struct Standalone {
    /// Where it listens.
    pub addr: SocketAddr,
    pub state: Arc<ApiState>,
    /// Kline messages in, as from a shard.
    pub sink: KlineSink,
    shutdown: Shutdown,
    threads: Vec<JoinHandle<()>>,
}

impl Standalone {
    /// Serve `api` over the symbols of `registry` on `127.0.0.1:0`.
    ///
    /// # Errors
    /// The listener or a thread could not start.
    pub fn start(api: Api, registry: RegistryView) -> Result<Standalone, String> {
        let (state, sink) = (api.state(), api.sink());
        let mut ctx = GatewayContext::new(
            Arc::new(crate::status::StatusBoard::new(
                crate::clock::ProcessStart::now(),
            )),
            registry,
            Arc::new(crate::watchdog::HealthBoard::new()),
            Arc::new(crate::symbol_manager::rest::WeightBudget::new()),
        );
        ctx.extra.push(state.clone());
        let listener = gateway::bind("127.0.0.1:0".parse().map_err(|_| "address")?)
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shutdown = Shutdown::new();
        let router = Router::new().merge(Api::router()).operability();
        let mut threads = gateway::serve(listener, router, Arc::new(ctx), &shutdown, None)
            .map_err(|e| e.to_string())?;
        let spawned = api.spawn(&shutdown, None).map_err(|e| e.to_string())?;
        threads.extend(spawned.into_iter().map(|(_, t)| t));
        Ok(Standalone {
            addr,
            state,
            sink,
            shutdown,
            threads,
        })
    }

    /// Stop and join every thread; how many of them panicked.
    pub fn stop(self) -> usize {
        self.shutdown.request(StopReason::RunFor);
        drop(self.sink);
        let joined = self.threads.into_iter().map(JoinHandle::join);
        joined.filter(Result::is_err).count()
    }
}
