//! The subcommands' implementations: each turns parsed arguments into engine
//! calls and an [`Exit`](crate::exit::Exit) code.

mod filter;

use crate::cli::{Cli, Command};
use crate::exit::Exit;

/// Runs what the command line asks for.
pub fn run(cli: Cli) -> Exit {
    match cli.command {
        None => {
            eprintln!("mailhaul: the dashboard is not built yet; see `mailhaul --help`");
            Exit::Usage
        }
        Some(Command::Filter(args)) => filter::run(cli.config.as_deref(), &args),
    }
}
