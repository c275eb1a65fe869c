//! Command line (main thread): the subcommands and their dispatch. Each subcommand owns its
//! argument struct; this module only routes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The exit codes of `klagg run` (`crate::app_stop::ExitStatus`), shown by `klagg run --help`.
const RUN_EXIT_CODES: &str = "Exit codes:
  0  stopped by SIGINT/SIGTERM or --run-for, everything flushed and joined
  1  fatal error: unusable --db, venue unreachable at startup, fatal health state, a panic
  2  bad flags or config file (nothing was started)
  3  stopped, but the stop lost data: the store lost rows or did not close, or a shard was
     still running at the 5 s shutdown deadline";

/// Binance USD-M futures klines from the live aggregate-trade stream.
#[derive(Debug, Parser)]
#[command(name = "klagg", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine: klines for every trading USDT perpetual, served on --listen.
    #[command(after_help = RUN_EXIT_CODES)]
    Run(Box<crate::config::RunArgs>),
    /// Aggregate aggTrades files (data.binance.vision CSV, REST JSON) into klines, printed in
    /// the official klines CSV format.
    Replay(crate::replay::ReplayArgs),
    /// Startup benchmark against the in-process simulator (writes bench-results/startup.json).
    #[command(hide = true)]
    BenchStartup(crate::bench_startup::BenchStartupArgs),
    /// API benchmarks: klines REST, closed-kline push latency, WebSocket fan-out (writes
    /// bench-results/api.json).
    #[command(hide = true)]
    BenchApi(crate::api::bench::BenchApiArgs),
    /// Run the simulated Binance USD-M exchange on loopback.
    Sim(Box<klagg_bench::sim::SimArgs>),
}

/// Run the chosen subcommand and turn its outcome into the process exit code.
pub fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => crate::app::run(*args),
        Command::Replay(args) => crate::replay::run(&args),
        Command::BenchStartup(args) => crate::bench_startup::run(args),
        Command::BenchApi(args) => crate::api::bench::run(args),
        Command::Sim(args) => klagg_bench::sim::run_cli(*args),
    }
}
