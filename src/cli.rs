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
    /// Fetch mail from every named (or every configured) account, in
    /// parallel: claim each spool under its lock, download it compressed and
    /// verified, file it into Maildir folders.
    ///
    /// Exit codes: 0 done, 1 local error, 3 config, 4 host key, 5
    /// authentication, 6 spool lock busy (or the account is being fetched by
    /// another mailhaul), 7 connection or transfer, 8 some messages not
    /// delivered (kept and named), 9 the server lacks a tool a safe claim
    /// needs. With several accounts, the first failing account's code.
    Fetch(FetchArgs),
    /// Keep every named (or every) account connected, watch its spool over
    /// that one SSH session and fetch within seconds of a delivery, until
    /// SIGINT or SIGTERM; one log line per fetch or state change.
    ///
    /// Reconnects with backoff when a link drops. Exit codes: 0 stopped by a
    /// signal; when every account has given up, the first one's code (3
    /// config, 4 host key, 5 authentication, 9 the server lacks a tool).
    Watch(WatchArgs),
    /// Connect to accounts and say which spool, claim strategy and
    /// compression a fetch would use and why, or what the server lacks;
    /// claims nothing.
    Check(CheckArgs),
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
    /// File an mbox (FILEs, or stdin) into Maildir folders by the config's
    /// rules: the drop-in for `formail -s procmail`. Without a config,
    /// everything goes to INBOX. Exits 8 when some message was not delivered
    /// where the rules say, naming each and where it is kept.
    Filter(FilterArgs),
    /// The sendmail drop-in (`set sendmail="mailhaul send"`): reads a
    /// message on stdin, queues it durably in the local outbox and exits 0;
    /// `mailhaul queue flush`, `mailhaul watch` or the dashboard hand it to
    /// the server's sendmail over the SSH login, exactly once.
    ///
    /// Exit codes (sysexits, as sendmail's): 0 queued (or, with --now,
    /// sent); 64 bad command line or no recipients; 65 an address holds a
    /// line break; 73 the outbox cannot be written; 74 reading stdin failed;
    /// 75 --now could not deliver it yet (it stays queued); 78 config;
    /// with --now a permanent refusal gives the server sendmail's status
    /// (67 no such user, 77 not permitted, else 69).
    Send(SendArgs),
    /// List queued and failed outgoing messages; `queue flush` sends them
    /// now, `queue drop ID` removes one.
    ///
    /// Exit codes of `flush`: 0 all sent; 7 some could not be sent now
    /// (still queued, or the server could not be reached); 8 some were
    /// refused for good (moved to the failed folder, named); 4, 5 host key
    /// and authentication as for fetch.
    Queue(QueueArgs),
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

/// Arguments of `mailhaul send`: sendmail's, as mail clients pass them.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Take recipients from the To, Cc and Bcc headers (added to those
    /// given as arguments); Bcc is never sent.
    #[arg(short = 't')]
    pub extract_recipients: bool,
    /// A line with a lone `.` does not end the message.
    #[arg(short = 'i')]
    pub ignore_dots: bool,
    /// sendmail `-o` options: `-oi` is `-i`; others (`-oem`, `-odb`, ...) are
    /// accepted and ignored.
    #[arg(short = 'o', value_name = "OPTION", action = clap::ArgAction::Append)]
    pub options: Vec<String>,
    /// Envelope sender (default: the account's `address`, else the server
    /// login's own).
    #[arg(short = 'f', short_alias = 'r', value_name = "FROM")]
    pub from: Option<String>,
    /// Full name for the From: header the server's sendmail adds when the
    /// message has none.
    #[arg(short = 'F', value_name = "NAME")]
    pub full_name: Option<String>,
    /// Body type (`7BIT`, `8BITMIME`): accepted and ignored; 8-bit passes
    /// unchanged.
    #[arg(short = 'B', value_name = "TYPE")]
    pub body_type: Option<String>,
    /// Mode: only `-bm` (read a message from stdin, the default) is known.
    #[arg(short = 'b', value_name = "MODE")]
    pub mode: Option<String>,
    /// DSN notify option: accepted and ignored.
    #[arg(short = 'N', value_name = "DSN")]
    pub dsn: Option<String>,
    /// Verbose: accepted and ignored.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// The account to send through (default: the one whose `address`
    /// matches the sender or the From: header, else the first).
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Wait until the server's sendmail has taken it; fail if it cannot.
    #[arg(long)]
    pub now: bool,
    /// Recipients; put `--` before any that starts with a dash.
    #[arg(value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
}

/// Arguments of `mailhaul queue`.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub action: Option<QueueAction>,
}

/// `mailhaul queue` actions.
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// List queued and failed messages (the default).
    List,
    /// Send every queued message of the named (or every) account now,
    /// ignoring the backoff.
    Flush {
        /// Accounts (default: all).
        #[arg(value_name = "ACCOUNT")]
        accounts: Vec<String>,
    },
    /// Put failed messages back into the queue (after fixing what made
    /// them fail); each gets a new id and its attempts start again.
    Retry {
        /// The failed message's id, as `mailhaul queue` lists it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every failed message of every account.
        #[arg(long)]
        all: bool,
    },
    /// Remove a queued or failed message for good.
    Drop {
        /// Its id, as `mailhaul queue` lists it.
        id: String,
    },
}

/// Arguments of `mailhaul filter`.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Maildir root to file into (default: `general.maildir` of the config,
    /// else ~/Maildir).
    #[arg(long, value_name = "DIR")]
    pub maildir: Option<PathBuf>,
    /// Dialect of the input (default: `filter.format` of the config, else mboxo).
    #[arg(long, value_enum)]
    pub format: Option<crate::engine::filing::MboxFormat>,
    /// Do not fsync delivered mail (fast, loses mail on a crash; for
    /// throwaway imports and benchmarks).
    #[arg(long)]
    pub no_fsync: bool,
    /// How many messages are made durable together (1: fsync each one;
    /// default: `filter.batch` of the config, else 1024).
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// mbox files to file, in order; stdin when none is given.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Arguments of `mailhaul fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Connect and report what would be fetched; claim nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Also take over claims another mailhaul installation made and left on
    /// the server (each installation takes only its own otherwise, so that
    /// two machines never file the same mail twice); for when that
    /// installation is gone for good.
    #[arg(long)]
    pub adopt_claims: bool,
    /// Without a terminal, also print each stage and progress note as it
    /// happens (otherwise: one summary line per account, and problems).
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Accounts to fetch (default: all).
    #[arg(value_name = "ACCOUNT")]
    pub accounts: Vec<String>,
}

/// Arguments of `mailhaul watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Also keep the accounts' SMTP forwards up.
    #[arg(long)]
    pub forward: bool,
    /// Print errors only.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Accounts to watch (default: all).
    #[arg(value_name = "ACCOUNT")]
    pub accounts: Vec<String>,
}

/// Arguments of `mailhaul check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Accounts to check (default: all).
    #[arg(value_name = "ACCOUNT")]
    pub accounts: Vec<String>,
}
