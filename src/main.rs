//! The `mailhaul` binary: parses the command line and dispatches.

use clap::Parser;

fn main() -> std::process::ExitCode {
    mailhaul::commands::run(mailhaul::cli::Cli::parse()).into()
}
