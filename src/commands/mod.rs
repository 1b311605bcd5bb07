//! The subcommands' implementations: each turns parsed arguments into engine
//! calls and an [`Exit`](crate::exit::Exit) code.

pub mod context;
mod dashboard;
pub mod fetch;
mod filter;
pub mod init;
pub mod prompt;
pub mod send;
pub mod tunnel;
mod watch;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::exit::Exit;

/// Runs what the command line asks for.
pub fn run(cli: Cli) -> Exit {
    match cli.command {
        None => dashboard::run(cli.config.as_deref()),
        Some(Command::Fetch(args)) => fetch::run_fetch(cli.config.as_deref(), &args),
        Some(Command::Check(args)) => fetch::run_check(cli.config.as_deref(), &args),
        Some(Command::Watch(args)) => watch::run(cli.config.as_deref(), &args),
        Some(Command::Send(args)) => send::run_send(cli.config.as_deref(), &args),
        Some(Command::Queue(args)) => send::run_queue(cli.config.as_deref(), &args),
        Some(Command::Filter(args)) => filter::run(cli.config.as_deref(), &args),
        Some(Command::Init { force }) => init::run(cli.config.as_deref(), force),
        Some(Command::Completions { shell }) => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "mailhaul", &mut std::io::stdout());
            Exit::Ok
        }
        Some(Command::Man) => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => Exit::Ok,
                Err(e) => {
                    eprintln!("mailhaul: {e}");
                    Exit::Failure
                }
            }
        }
        Some(Command::Tunnel {
            account,
            stats_every,
        }) => tunnel::run(
            cli.config.as_deref(),
            account,
            std::time::Duration::from_secs(stats_every.max(1)),
        ),
    }
}
