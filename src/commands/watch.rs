//! `mailhaul watch [ACCOUNT...]`: headless and long-running, a thin driver
//! of the engine's supervisor (`engine::supervisor`): per account it keeps
//! one SSH session, watches the spool over it, fetches within seconds of a
//! delivery and sends the outbox when the link is up; `--forward` also
//! keeps the accounts' SMTP forwards up. Plain log lines, one per fetch or
//! state change, each naming its account; SIGINT/SIGTERM stop it cleanly.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crossbeam_channel::{select, Receiver};

use crate::cli::WatchArgs;
use crate::engine::civil::UtcTime;
use crate::engine::event::{Event, FetchEvent, FetchSummary, Level, TunnelEvent, TunnelState};
use crate::engine::journal::Workspace;
use crate::engine::supervisor::{self, Supervised, Supervisor, Timings};
use crate::exit::Exit;

/// How long a stop waits for fetches to reach a safe point.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Runs `mailhaul watch` until SIGINT or SIGTERM (or until every account
/// has failed for good: host key, authentication, server).
pub fn run(config_path: Option<&Path>, args: &WatchArgs) -> Exit {
    let context = match super::context::Context::load(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let accounts = match context.accounts(&args.accounts) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let config = &context.config;
    let Some(data_dir) = Workspace::default_data_dir() else {
        eprintln!("mailhaul: cannot find the home directory for the data dir");
        return Exit::Failure;
    };
    // Blocked in every thread started from here on; taken by one thread.
    let signals = super::tunnel::termination_signals();
    let (events_tx, events) = crossbeam_channel::unbounded();
    let supervised = accounts
        .iter()
        .map(|account| Supervised {
            account: account.clone(),
            destination: config.destination(account),
        })
        .collect();
    let options = supervisor::Options {
        data_dir,
        timings: Timings {
            check_every: Duration::from_secs(config.general.check_interval.max(1)),
            ..Timings::default()
        },
        headless: true,
    };
    let supervisor = match Supervisor::start(supervised, options, events_tx) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailhaul: cannot start the workers: {e}");
            return Exit::Failure;
        }
    };
    let mut printer = Printer {
        quiet: args.quiet,
        fetching: HashMap::new(),
        stopping: false,
    };
    if args.forward {
        for account in &accounts {
            if let Err((class, message)) = supervisor.toggle_forward(&account.name) {
                eprintln!("mailhaul: {}: {message}", account.name);
                supervisor.shut_down(STOP_WAIT);
                return class.into();
            }
        }
    }
    let stopped_by_signal = print_until_stopped(&mut printer, &events, &signals, &supervisor);
    printer.stopping = true;
    let failures = supervisor.shut_down(STOP_WAIT);
    for event in events.try_iter() {
        printer.show(event);
    }
    match failures.first() {
        Some((_, e)) => e.failure().into(),
        None if stopped_by_signal => Exit::Ok,
        None => Exit::Failure,
    }
}

/// Prints events until a signal arrives (true) or every worker has ended
/// (false: each gave up on its account).
fn print_until_stopped(
    printer: &mut Printer,
    events: &Receiver<Event>,
    signals: &Receiver<libc::c_int>,
    supervisor: &Supervisor,
) -> bool {
    loop {
        select! {
            recv(events) -> event => match event {
                Ok(event) => printer.show(event),
                Err(_) => return false,
            },
            recv(signals) -> _ => return true,
            default(Duration::from_millis(500)) => {
                if supervisor.all_ended() {
                    return false;
                }
            }
        }
    }
}

/// Turns events into plain lines: a UTC time, the account, what happened.
struct Printer {
    /// Only errors.
    quiet: bool,
    /// Accounts with a fetch running: their progress lines are not shown.
    fetching: HashMap<String, bool>,
    /// Stopping on a signal: a fetch that ends now was stopped at a safe
    /// point on request, which is no error.
    stopping: bool,
}

impl Printer {
    fn line(&self, level: Level, account: &str, text: &str) {
        if self.quiet && level < Level::Error {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let t = UtcTime::from_unix(now);
        let stamp = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        );
        let tag = match level {
            Level::Warn => "warning: ",
            Level::Error => "error: ",
            _ => "",
        };
        println!("{stamp} {account}: {tag}{text}");
    }

    fn show(&mut self, event: Event) {
        match event {
            Event::Fetch { account, event } => match event {
                FetchEvent::Stage(crate::engine::event::Stage::Connecting) => {
                    self.fetching.insert(account, true);
                }
                FetchEvent::Ended { summary, failure } => {
                    self.fetching.remove(&account);
                    if let Some(s) = summary.filter(|s| s.messages > 0 || s.undelivered > 0) {
                        self.line(Level::Info, &account, &fetch_line(&s));
                    }
                    if let Some(f) = failure.as_ref().filter(|_| self.stopping) {
                        self.line(
                            Level::Info,
                            &account,
                            &format!(
                                "fetch stopped at a safe point ({}); the next run completes it",
                                f.message
                            ),
                        );
                    } else if let Some(f) = failure {
                        self.line(
                            Level::Error,
                            &account,
                            &format!(
                                "fetch failed (exit {}): {}",
                                Exit::from(f.class).code(),
                                f.message
                            ),
                        );
                    }
                }
                _ => {}
            },
            Event::Log {
                level,
                account,
                message,
            } => {
                let account = account.unwrap_or_else(|| "mailhaul".into());
                // A fetch's own progress notes stay out of the log.
                let in_fetch = self.fetching.contains_key(&account);
                if level >= Level::Warn || (level == Level::Info && !in_fetch) {
                    self.line(level, &account, &message);
                }
            }
            Event::Tunnel { account, event } => match event {
                TunnelEvent::State(TunnelState::Listening(addr)) => {
                    self.line(Level::Info, &account, &format!("SMTP forward on {addr}"))
                }
                TunnelEvent::State(TunnelState::Reconnecting { in_secs }) => self.line(
                    Level::Warn,
                    &account,
                    &format!("SMTP forward reconnecting in {in_secs} s"),
                ),
                TunnelEvent::State(TunnelState::Off) => {
                    self.line(Level::Info, &account, "SMTP forward off")
                }
                TunnelEvent::Error(message) => {
                    self.line(Level::Warn, &account, &format!("SMTP forward: {message}"))
                }
                TunnelEvent::State(TunnelState::Connecting) | TunnelEvent::Stats(_) => {}
            },
            // State changes are logged as lines already; counts are for
            // the dashboard.
            Event::Link { .. } | Event::Outbox { .. } | Event::History(_) => {}
        }
    }
}

/// `filed 3 message(s) (INBOX 2, Junk 1) in 0.21 s, 4.1 kB on the wire`.
fn fetch_line(s: &FetchSummary) -> String {
    let folders: Vec<String> = s
        .folders
        .iter()
        .map(|(folder, n)| format!("{folder} {n}"))
        .collect();
    format!(
        "filed {} message(s) ({}){} in {:.2} s, {} bytes on the wire",
        s.messages,
        folders.join(", "),
        if s.undelivered > 0 {
            format!(", {} undelivered (kept, see the warnings)", s.undelivered)
        } else {
            String::new()
        },
        s.elapsed.as_secs_f64(),
        s.socket_bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_line_names_counts_and_folders() {
        let mut s = FetchSummary {
            messages: 3,
            socket_bytes: 4100,
            elapsed: std::time::Duration::from_millis(210),
            ..Default::default()
        };
        s.folders.insert("INBOX".into(), 2);
        s.folders.insert("Junk".into(), 1);
        assert_eq!(
            fetch_line(&s),
            "filed 3 message(s) (INBOX 2, Junk 1) in 0.21 s, 4100 bytes on the wire"
        );
    }
}
