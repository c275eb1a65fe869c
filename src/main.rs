//! `klagg` binary entry point (main thread): parse the command line and hand over to the
//! subcommand. Everything else lives in the library crate.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = klagg::cli::Cli::parse();
    klagg::cli::dispatch(cli)
}
