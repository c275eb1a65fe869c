//! klagg control plane (library crate of the `klagg` binary): command line, `run_app` and the
//! control threads. The data plane (kline core, Worker, shard threads) is `klagg_shards`; the
//! exchange simulator and benchmarks are `klagg_bench`.
//!
//! ```text
//!  main ── run_app: flags → Config → logging → API listener → shards → dispatcher →
//!   │       SymbolManager → watchdog; waits for SIGINT/SIGTERM or --run-for; joins
//!   ├─ api-accept, api-http-N  gateway: HTTP listener, a thread per HTTP connection
//!   ├─ api-hub, api-ws     Binance API: kline hub (live klines, throttle) and WebSocket push
//!   ├─ shard-00 … shard-NN data plane (klagg_shards), pinned
//!   ├─ activation-dispatcher  activation_rx (2048) + ack_rx → ShardCmd to the owner shard
//!   ├─ symbol-manager      registry, exchangeInfo refresh, resync reports
//!   │    ├─ backfill-0..N  KlineBackfiller: initial packages → activation_tx
//!   │    └─ new-symbol-detector  !miniTicker@arr → confirm → package → activation_tx
//!   └─ watchdog            HealthReporter of every service, /health, progress line
//! ```

pub mod activation_dispatcher;
pub mod api;
pub mod app;
pub mod app_stop;
pub mod app_store;
pub mod bench_startup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod constants;
pub mod gateway;
pub mod health;
pub mod log;
pub mod panic_hook;
pub mod replay;
pub mod runtime;
pub mod shard_health;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod symbol_manager;
pub mod watchdog;
