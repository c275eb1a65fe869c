//! `klagg sim` (runs on the main thread): flags, start-up banner, and waiting for Ctrl-C or
//! `--run-for` before shutting the simulator down.
pub use super::config::SimConfig;
use std::process::ExitCode;

/// Flags of `klagg sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {}

/// Entry point of `klagg sim`.
pub fn run_cli(_args: SimArgs) -> ExitCode {
    ExitCode::FAILURE
}
