//! klagg control plane (library crate of the `klagg` binary): command line, run_app and the
//! control threads. The data plane (kline core, Worker, shard threads) is `klagg_shards`; the
//! exchange simulator and benchmarks are `klagg_bench`.

pub mod cli;
pub mod replay;
pub mod store;
