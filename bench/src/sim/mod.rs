//! The exchange simulator (placeholder until the simulator lands).

use std::process::ExitCode;

/// Flags of `klagg sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: String,
}

/// Entry point of `klagg sim`.
pub fn run_cli(_args: SimArgs) -> ExitCode {
    eprintln!("klagg sim: not built yet");
    ExitCode::FAILURE
}
