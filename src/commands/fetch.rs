//! `mailhaul fetch` and `mailhaul check`: headless runs of the fetch engine.
//!
//! `fetch` starts one worker thread per account, all reporting on one
//! channel of engine events, and shows them as progress bars on a terminal
//! (indicatif) or as plain log lines otherwise (cron, systemd, pipes).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::context::Context;
use crate::cli::{CheckArgs, FetchArgs};
use crate::engine::event::{Event, FetchEvent, FetchSummary, Level, Stage};
use crate::engine::fetch::{self, FetchOptions};
use crate::exit::Exit;
use crate::ui::format::bytes;

/// Runs `mailhaul fetch`.
pub fn run_fetch(config_path: Option<&Path>, args: &FetchArgs) -> Exit {
    let context = match Context::load(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let accounts = match context.accounts(&args.accounts) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let config = &context.config;
    let options = match FetchOptions::headless(args.dry_run) {
        Ok(o) => FetchOptions {
            prompter: super::prompt::TerminalPrompter::if_interactive(),
            adopt_claims: args.adopt_claims,
            ..o
        },
        Err(e) => {
            eprintln!("mailhaul: {e}");
            return e.failure().into();
        }
    };
    let (sender, receiver) = crossbeam_channel::unbounded();
    let workers: Vec<_> = accounts
        .iter()
        .map(|a| {
            let handle = fetch::spawn(
                a.clone(),
                config.destination(a),
                options.clone(),
                sender.clone(),
            );
            (a.name.clone(), handle)
        })
        .collect();
    drop(sender);
    let names: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
    let mut display = if std::io::stderr().is_terminal() {
        Display::Bars(Bars::new(&names))
    } else {
        Display::Lines(Lines {
            info: args.dry_run || args.verbose,
            stages: args.verbose,
        })
    };
    for event in receiver {
        display.show(event);
    }
    display.finish();
    let mut exit = Exit::Ok;
    for (name, handle) in workers {
        match handle.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if exit == Exit::Ok {
                    exit = e.failure().into();
                }
            }
            Err(_) => {
                eprintln!("mailhaul: {name}: the fetch worker crashed");
                if exit == Exit::Ok {
                    exit = Exit::Failure;
                }
            }
        }
    }
    exit
}

/// Runs `mailhaul check`.
pub fn run_check(config_path: Option<&Path>, args: &CheckArgs) -> Exit {
    let accounts = match Context::load(config_path).and_then(|c| c.accounts(&args.accounts)) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let prompter = super::prompt::TerminalPrompter::if_interactive();
    let mut exit = Exit::Ok;
    for account in &accounts {
        let result = fetch::connect(account, false, prompter.as_ref())
            .and_then(|conn| fetch::inspect(&conn, account));
        match result {
            Ok(i) => {
                println!(
                    "{}: connected, host key verified, authenticated",
                    account.name
                );
                for line in fetch::describe(&i).lines() {
                    println!("{}: {line}", account.name);
                }
                let problem = i.strategy.as_ref().err().or(i.method.as_ref().err());
                if problem.is_some() && exit == Exit::Ok {
                    exit = Exit::ServerUnsupported;
                }
            }
            Err(e) => {
                println!("{}: {e}", account.name);
                if exit == Exit::Ok {
                    exit = e.failure().into();
                }
            }
        }
    }
    exit
}

/// How events are shown.
enum Display {
    /// Progress bars on a terminal.
    Bars(Bars),
    /// Plain lines for logs.
    Lines(Lines),
}

impl Display {
    fn show(&mut self, event: Event) {
        match self {
            Display::Bars(b) => b.show(event),
            Display::Lines(l) => l.show(event),
        }
    }

    fn finish(&mut self) {
        if let Display::Bars(b) = self {
            for bar in b.bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Connecting => "connecting",
        Stage::Recovering => "recovering earlier claims",
        Stage::Claiming => "claiming the spool",
        Stage::Transferring => "transferring",
        Stage::Verifying => "verifying",
        Stage::Delivering => "delivering",
        Stage::Done => "done",
        Stage::Failed => "failed",
    }
}

/// The one-line result of a fetch: counts (per folder with `folders`),
/// bytes raw / payload / socket, ratio, seconds.
pub fn summary_line(s: &FetchSummary, folders: bool) -> String {
    let ratio = if s.payload_bytes > 0 {
        format!(
            ", ratio {:.2}x",
            s.raw_bytes as f64 / s.payload_bytes as f64
        )
    } else {
        String::new()
    };
    let per_folder = if folders && !s.folders.is_empty() {
        let list: Vec<String> = s.folders.iter().map(|(f, n)| format!("{f} {n}")).collect();
        format!(" ({})", list.join(", "))
    } else {
        String::new()
    };
    format!(
        "{} message(s){per_folder}{}, {} raw, {} payload ({}), {} on the socket{ratio}, {:.1} s",
        s.messages,
        if s.undelivered > 0 {
            format!(" ({} undelivered)", s.undelivered)
        } else {
            String::new()
        },
        bytes(s.raw_bytes),
        bytes(s.payload_bytes),
        if s.method.is_empty() { "-" } else { &s.method },
        bytes(s.socket_bytes),
        s.elapsed.as_secs_f64()
    )
}

/// Plain lines for logs (cron, systemd, pipes): one summary line per account
/// on stdout when its fetch ends, and on stderr what needs a reader's eye
/// (warnings, errors). A dry run also prints its report (the info lines);
/// `--verbose` also each stage as it starts.
struct Lines {
    /// Print info lines too.
    info: bool,
    /// Print each stage as it starts, and `done` at the end.
    stages: bool,
}

impl Lines {
    fn show(&mut self, event: Event) {
        match event {
            Event::Fetch {
                account,
                event: FetchEvent::Ended { summary, failure },
            } => {
                if let Some(s) = summary {
                    println!("{account}: {}", summary_line(&s, true));
                }
                match failure {
                    Some(f) => eprintln!(
                        "mailhaul: {account}: error (exit {}): {}",
                        Exit::from(f.class).code(),
                        f.message
                    ),
                    None if self.stages => {
                        eprintln!("mailhaul: {account}: {}", stage_name(Stage::Done))
                    }
                    None => {}
                }
            }
            Event::Fetch {
                account,
                event: FetchEvent::Stage(stage),
            } if self.stages => eprintln!("mailhaul: {account}: {}", stage_name(stage)),
            // A headless run refuses unknown and changed keys; the failure
            // that ends the fetch explains what to do.
            Event::Fetch { .. } => {}
            Event::Log {
                level,
                account,
                message,
            } if level >= Level::Warn || (self.info && level >= Level::Info) => {
                let who = account.map(|a| format!("{a}: ")).unwrap_or_default();
                let tag = match level {
                    Level::Warn => "warning: ",
                    Level::Error => "error: ",
                    _ => "",
                };
                eprintln!("mailhaul: {who}{tag}{message}");
            }
            Event::Log { .. }
            | Event::Tunnel { .. }
            | Event::Link { .. }
            | Event::Outbox { .. }
            | Event::History(_) => {}
        }
    }
}

/// One indicatif bar per account.
struct Bars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

impl Bars {
    fn new(names: &[String]) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        let style = ProgressStyle::with_template(
            "{prefix:.bold} {bar:30.cyan/blue} {decimal_bytes:>10}/{decimal_total_bytes:<10} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let bars = names
            .iter()
            .map(|n| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(style.clone());
                bar.set_prefix(format!("{n:width$}"));
                bar.set_message("connecting");
                (n.clone(), bar)
            })
            .collect();
        Bars { multi, bars }
    }

    fn show(&mut self, event: Event) {
        match event {
            Event::Fetch { account, event } => {
                let Some(bar) = self.bars.get(&account) else {
                    return;
                };
                match event {
                    FetchEvent::HostKeyUnknown(_) | FetchEvent::HostKeyChanged { .. } => {}
                    FetchEvent::Stage(stage) => bar.set_message(stage_name(stage)),
                    FetchEvent::SpoolSize { bytes: n, .. } => {
                        bar.set_message(format!("spool {}", bytes(n)))
                    }
                    FetchEvent::Progress(p) => {
                        bar.set_length(p.raw_total);
                        bar.set_position(p.raw_done);
                        let ratio = if p.payload_bytes > 0 {
                            format!(" ratio {:.1}x", p.raw_done as f64 / p.payload_bytes as f64)
                        } else {
                            String::new()
                        };
                        bar.set_message(format!(
                            "payload {} socket {}{ratio}",
                            bytes(p.payload_bytes),
                            bytes(p.socket_bytes)
                        ));
                    }
                    FetchEvent::Filed { folder, count } => {
                        bar.set_message(format!("{count} filed into {folder}"))
                    }
                    FetchEvent::Ended { summary, failure } => match failure {
                        None => bar.finish_with_message(
                            summary
                                .as_ref()
                                .map(|s| summary_line(s, false))
                                .unwrap_or_default(),
                        ),
                        Some(f) => {
                            bar.abandon_with_message(format!(
                                "failed (exit {})",
                                Exit::from(f.class).code()
                            ));
                            let _ = self.multi.println(format!("{account}: {}", f.message));
                        }
                    },
                }
            }
            Event::Log {
                level,
                account,
                message,
            } if level >= Level::Warn => {
                let who = account.map(|a| format!("{a}: ")).unwrap_or_default();
                let _ = self.multi.println(format!("{who}{message}"));
            }
            Event::Log { .. }
            | Event::Tunnel { .. }
            | Event::Link { .. }
            | Event::Outbox { .. }
            | Event::History(_) => {}
        }
    }
}
