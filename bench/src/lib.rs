//! klagg test bench: the Binance USD-M exchange simulator (`klagg sim`, `klagg run --venue sim`),
//! replay readers for recorded aggTrades, workload generators and the benchmark programs.

pub mod fed_shard;
pub mod replay;
pub mod replay_files;
pub mod report;
pub mod sim;
pub mod testdata;
pub mod workload;
