//! klagg test bench: the Binance USD-M exchange simulator (`klagg sim`, `klagg run --venue sim`),
//! workload generators, replay readers and the benchmark programs.

pub mod replay;
pub mod report;
pub mod sim;
pub mod testdata;
pub mod workload;
