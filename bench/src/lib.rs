//! klagg test bench: the Binance USD-M exchange simulator (`klagg sim`, `klagg run --venue sim`),
//! workload generators, replay readers and the benchmark programs.

pub mod replay;
pub mod sim;
pub mod testdata;
