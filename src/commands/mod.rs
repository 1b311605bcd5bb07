//! The subcommands' implementations: each turns parsed arguments into engine
//! calls and an [`Exit`](crate::exit::Exit) code.

use crate::cli::Cli;
use crate::exit::Exit;

/// Runs what the command line asks for.
pub fn run(cli: Cli) -> Exit {
    match cli.command {
        None => {
            eprintln!("mailhaul: the dashboard is not built yet; see `mailhaul --help`");
            Exit::Usage
        }
        Some(command) => match command {},
    }
}
