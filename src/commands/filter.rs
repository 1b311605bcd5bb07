//! `mailhaul filter`: split mbox input and file it into Maildir folders by
//! the config's rules, like `formail -s procmail`, but durable, without
//! trusting `Content-Length:`, and naming every message it could not deliver.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal};
use std::path::Path;

use super::context::Context;
use crate::cli::FilterArgs;
use crate::engine::deliver::Filer;
use crate::engine::pipeline::{self, FilingReport};
use crate::exit::Exit;

/// Runs `mailhaul filter` with the config at `config` (or the default one
/// if it exists, or none).
pub fn run(config: Option<&Path>, args: &FilterArgs) -> Exit {
    let context = match Context::load_or_defaults(config) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let root = context.maildir_root(args.maildir.as_deref(), None);
    let mut filter = context.config.filter.clone();
    if let Some(format) = args.format {
        filter.format = format;
    }
    if args.no_fsync {
        filter.fsync = false;
    }
    let inputs: Vec<Option<&Path>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files.iter().map(|f| Some(f.as_path())).collect()
    };
    let mut reports = Vec::new();
    for input in inputs {
        let mut filer = match Filer::new(&filter, &root, None) {
            Ok(f) => match args.batch {
                Some(n) => f.with_batch(n),
                None => f,
            },
            Err(e) => {
                eprintln!("mailhaul: {e}");
                return Exit::Config;
            }
        };
        let report = match input {
            None => {
                if io::stdin().is_terminal() {
                    eprintln!("mailhaul filter: reading an mbox from the terminal (give FILEs, or pipe one in)");
                }
                pipeline::file_mbox(
                    io::stdin().lock(),
                    "stdin",
                    &mut filer,
                    filter.format,
                    &mut |_| {},
                )
            }
            Some(path) => match File::open(path) {
                Ok(f) => pipeline::file_mbox(
                    BufReader::with_capacity(256 << 10, f),
                    &path.display().to_string(),
                    &mut filer,
                    filter.format,
                    &mut |_| {},
                ),
                Err(e) => {
                    eprintln!("mailhaul filter: cannot read {}: {e}", path.display());
                    return Exit::Failure;
                }
            },
        };
        print_report(&report);
        reports.push(report);
    }
    if reports.iter().all(FilingReport::complete) {
        Exit::Ok
    } else {
        Exit::PartialDelivery
    }
}

/// One summary line per input on stderr, then one line per undelivered message.
fn print_report(report: &FilingReport) {
    let folders: Vec<String> = report
        .delivered
        .iter()
        .map(|(folder, n)| format!("{folder} {n}"))
        .collect();
    eprintln!(
        "{}: {} messages, {} delivered ({}){}",
        report.input,
        report.messages,
        report.delivered_total(),
        folders.join(", "),
        if report.already_delivered > 0 {
            format!(", {} already there", report.already_delivered)
        } else {
            String::new()
        }
    );
    for u in &report.undelivered {
        eprintln!("mailhaul filter: {u}");
    }
    if let Some(e) = &report.read_error {
        eprintln!("mailhaul filter: reading stopped: {e}; later messages were not filed");
    }
}
