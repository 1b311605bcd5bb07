//! `mailhaul watch [ACCOUNT...]`: headless and long-running. Per account a
//! push worker (`engine::push`) keeps one SSH session, watches the spool
//! over it and fetches within seconds of a delivery; `--forward` also keeps
//! the accounts' SMTP forwards up. Plain log lines, one per fetch or state
//! change, each naming its account; SIGINT/SIGTERM stop it cleanly.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::{select, Receiver};

use crate::cli::WatchArgs;
use crate::engine::civil::UtcTime;
use crate::engine::event::{Event, FetchEvent, FetchSummary, Level, TunnelEvent, TunnelState};
use crate::engine::fetch::FetchOptions;
use crate::engine::push::{self, PushSettings, Stop};
use crate::engine::tunnel::{connector, Tunnel, TunnelSpec};
use crate::exit::Exit;

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
    let options = match FetchOptions::headless(false) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mailhaul: {e}");
            return e.failure().into();
        }
    };
    // Blocked in every thread started from here on; taken by one thread.
    let signals = super::tunnel::termination_signals();
    let stop = match Stop::new() {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("mailhaul: {e}");
            return Exit::Failure;
        }
    };
    let options = FetchOptions {
        cancel: stop.flag(),
        ..options
    };
    let (events_tx, events) = crossbeam_channel::unbounded();
    let mut forwards = Vec::new();
    if args.forward {
        for account in &accounts {
            let spec = match TunnelSpec::from_account(account) {
                Ok(s) => s,
                Err(message) => {
                    eprintln!("mailhaul: account {}: {message}", account.name);
                    return Exit::Config;
                }
            };
            let listen = spec.listen;
            match Tunnel::start(spec, connector(account), events_tx.clone()) {
                Ok(handle) => forwards.push(handle),
                Err(e) => {
                    eprintln!("mailhaul: {}: cannot listen on {listen}: {e}", account.name);
                    return Exit::Failure;
                }
            }
        }
    }
    let settings = PushSettings::default();
    let workers: Vec<_> = accounts
        .iter()
        .map(|account| {
            let (account, destination, options, settings, events, stop) = (
                account.clone(),
                config.destination(account),
                options.clone(),
                settings.clone(),
                events_tx.clone(),
                Arc::clone(&stop),
            );
            std::thread::Builder::new()
                .name(format!("push {}", account.name))
                .spawn(move || {
                    push::run(&account, &destination, &options, &settings, &events, &stop)
                })
                .expect("spawn a push worker")
        })
        .collect();
    drop(events_tx);
    let mut printer = Printer {
        quiet: args.quiet,
        fetching: HashMap::new(),
        stopping: false,
    };
    let stopped_by_signal = print_until_stopped(&mut printer, &events, &signals, &workers);
    printer.stopping = true;
    stop.stop();
    for handle in forwards {
        handle.request_stop();
    }
    let mut exit = Exit::Ok;
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if exit == Exit::Ok {
                    exit = e.failure().into();
                }
            }
            Err(_) => exit = Exit::Failure,
        }
    }
    for event in events.try_iter() {
        printer.show(event);
    }
    if stopped_by_signal && exit == Exit::Ok {
        Exit::Ok
    } else {
        exit
    }
}

/// Prints events until a signal arrives (true) or every worker has ended
/// (false: each gave up on its account).
fn print_until_stopped<T>(
    printer: &mut Printer,
    events: &Receiver<Event>,
    signals: &Receiver<libc::c_int>,
    workers: &[std::thread::JoinHandle<T>],
) -> bool {
    loop {
        select! {
            recv(events) -> event => match event {
                Ok(event) => printer.show(event),
                Err(_) => return false,
            },
            recv(signals) -> _ => return true,
            default(std::time::Duration::from_millis(500)) => {
                if workers.iter().all(|w| w.is_finished()) {
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
