//! The command-line definition (clap), kept in the library so that shell
//! completions and the man page are generated from the very same definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Brings mail home from Unix mail servers over SSH in one compressed,
/// verified transfer, files it into Maildir folders, and forwards SMTP through
/// an SSH tunnel. Without a subcommand, opens the dashboard.
#[derive(Debug, Parser)]
#[command(name = "mailhaul", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default: $XDG_CONFIG_HOME/mailhaul/config.toml).
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        env = "MAILHAUL_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// What to do; the dashboard when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented config from a few questions (Host aliases from
    /// ~/.ssh/config are offered).
    Init {
        /// Replace an existing config.
        #[arg(long)]
        force: bool,
    },
    /// Print shell completions for SHELL on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
    /// Runs an account's SMTP forward (like `ssh -C -L2525:mailhost:25`)
    /// until interrupted, printing its state and traffic.
    Tunnel {
        /// The account (default: the first in the config).
        account: Option<String>,
        /// Seconds between stats lines (printed only when they changed).
        #[arg(long, default_value_t = 10, value_name = "SECS")]
        stats_every: u64,
    },
}
