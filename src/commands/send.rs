//! `mailhaul send` (the sendmail drop-in) and `mailhaul queue` (list,
//! flush, retry, drop): the command side of the outbox (`engine::outbox`).

use std::path::Path;

use crate::cli::{QueueAction, QueueArgs, SendArgs};
use crate::config::Config;
use crate::engine::account::Account;
use crate::engine::journal::Workspace;
use crate::engine::outbox::flush::{self, Due};
use crate::engine::outbox::relay::{Outcome, RelayReport};
use crate::engine::outbox::submit::{Submission, SubmitError, SubmitOptions};
use crate::engine::outbox::{self, Outbox, OutboxMessage, Place};
use crate::exit::Exit;

/// Runs `mailhaul send`.
pub fn run_send(config_path: Option<&Path>, args: &SendArgs) -> Exit {
    if let Some(mode) = args.mode.as_deref().filter(|m| *m != "m") {
        eprintln!("mailhaul send: -b{mode} is not supported (only -bm, reading a message)");
        return Exit::SysUsage;
    }
    let config = match super::context::Context::load(config_path) {
        Ok(c) => c.config,
        Err(_) => return Exit::SysConfig,
    };
    if config.accounts.is_empty() {
        eprintln!("mailhaul send: the config has no [[account]]");
        return Exit::SysConfig;
    }
    let options = SubmitOptions {
        extract_recipients: args.extract_recipients,
        ignore_dots: args.ignore_dots || args.options.iter().any(|o| o == "i"),
        sender: args.from.clone(),
        full_name: args.full_name.clone(),
        recipients: args.recipients.clone(),
    };
    let stdin = std::io::stdin().lock();
    let mut submission = match Submission::begin(stdin, &options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailhaul send: {e}; nothing queued");
            return match e {
                SubmitError::NoRecipients => Exit::SysUsage,
                SubmitError::BadAddress { .. } => Exit::SysDataErr,
                SubmitError::Read(_) => Exit::SysIoErr,
            };
        }
    };
    let account = match &args.account {
        Some(name) => match config.account(name) {
            Some(a) => a.clone(),
            None => {
                eprintln!("mailhaul send: no account named `{name}`; nothing queued");
                return Exit::SysUsage;
            }
        },
        None => choose_account(
            &config,
            args.from.as_deref().or(submission.header_from.as_deref()),
        )
        .clone(),
    };
    if submission.envelope.sender.is_none() {
        submission.envelope.sender = account.address.clone().filter(|a| !a.starts_with('@'));
    }
    let Some(data_dir) = Workspace::default_data_dir() else {
        eprintln!("mailhaul send: cannot find the home directory for the data dir");
        return Exit::SysCantCreat;
    };
    let outbox = match Outbox::open(&data_dir, &account.name) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "mailhaul send: cannot open the outbox under {}: {e}",
                data_dir.display()
            );
            return Exit::SysCantCreat;
        }
    };
    let stored = match outbox.store(submission) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailhaul send: cannot queue the message: {e}; nothing queued");
            return Exit::SysCantCreat;
        }
    };
    if !args.now {
        return Exit::Ok;
    }
    match flush_account(&account, &outbox) {
        Err((_, words)) => {
            eprintln!(
                "mailhaul send: queued as {}, not sent yet: {words}",
                stored.id
            );
            Exit::SysTempFail
        }
        Ok(report) => {
            print_failures(&account.name, &report);
            match report.outcomes.iter().find(|(id, _)| *id == stored.id) {
                Some((_, Outcome::Sent | Outcome::AlreadySent)) => Exit::Ok,
                Some((_, Outcome::Refused { status, .. })) => match status {
                    67 => Exit::SysNoUser,
                    77 => Exit::SysNoPerm,
                    65 => Exit::SysDataErr,
                    64 => Exit::SysUsage,
                    _ => Exit::SysUnavailable,
                },
                Some((_, Outcome::Unsure)) => Exit::SysUnavailable,
                Some((_, Outcome::Deferred(why))) => {
                    eprintln!(
                        "mailhaul send: queued as {}, not sent yet: {why}",
                        stored.id
                    );
                    Exit::SysTempFail
                }
                None => {
                    eprintln!("mailhaul send: queued as {}, not sent yet", stored.id);
                    Exit::SysTempFail
                }
            }
        }
    }
}

/// `--account`'s default: the account whose `address` matches `sender`
/// (an `@domain` address matches the whole domain), else the first.
fn choose_account<'c>(config: &'c Config, sender: Option<&str>) -> &'c Account {
    if let Some(sender) = sender {
        let sender = sender.to_ascii_lowercase();
        let matches = |a: &&Account| {
            a.address.as_deref().is_some_and(|addr| {
                let addr = addr.to_ascii_lowercase();
                if addr.starts_with('@') {
                    sender.ends_with(&addr)
                } else {
                    addr == sender
                }
            })
        };
        if let Some(a) = config.accounts.iter().find(matches) {
            return a;
        }
    }
    &config.accounts[0]
}

/// Relays the account's whole queue now (backoff ignored) through the
/// transport its `send` names; the error is an exit code and the reason
/// (every message then stays queued, its attempt counted).
fn flush_account(account: &Account, outbox: &Outbox) -> Result<RelayReport, (Exit, String)> {
    let prompter = super::prompt::TerminalPrompter::if_interactive();
    flush::flush(account, outbox, prompter.as_ref(), Due::All)
        .map_err(|e| (Exit::from(e.failure()), e.to_string()))
}

fn print_failures(account: &str, report: &RelayReport) {
    for (id, outcome) in &report.outcomes {
        match outcome {
            Outcome::Refused { words, .. } if report.method == Some("smtp") => eprintln!(
                "{account}: {id} refused by the SMTP server: {words}; kept in the failed folder \
                 (`mailhaul queue retry {id}` once fixed)"
            ),
            Outcome::Refused { status, words } => eprintln!(
                "{account}: {id} refused by the server's sendmail (exit status {status}): {words}; \
                 kept in the failed folder"
            ),
            Outcome::Unsure => eprintln!(
                "{account}: {id} may have been sent by an interrupted earlier attempt; not sent \
                 again, kept in the failed folder"
            ),
            _ => {}
        }
    }
}

/// Runs `mailhaul queue`.
pub fn run_queue(config_path: Option<&Path>, args: &QueueArgs) -> Exit {
    let config = match super::context::Context::load(config_path) {
        Ok(c) => c.config,
        Err(e) => return e,
    };
    let Some(data_dir) = Workspace::default_data_dir() else {
        eprintln!("mailhaul: cannot find the home directory for the data dir");
        return Exit::Failure;
    };
    let open = |account: &Account| {
        Outbox::open(&data_dir, &account.name).map_err(|e| {
            eprintln!("mailhaul: cannot open the outbox of {}: {e}", account.name);
            Exit::Failure
        })
    };
    match args.action.as_ref().unwrap_or(&QueueAction::List) {
        QueueAction::List => {
            let mut rows = Vec::new();
            for account in &config.accounts {
                let outbox = match open(account) {
                    Ok(o) => o,
                    Err(e) => return e,
                };
                for list in [outbox.queued(), outbox.failed()] {
                    match list {
                        Ok(l) => rows.extend(l.into_iter().map(|m| (account.name.clone(), m))),
                        Err(e) => {
                            eprintln!("mailhaul: cannot read the outbox of {}: {e}", account.name);
                            return Exit::Failure;
                        }
                    }
                }
            }
            if rows.is_empty() {
                println!("the outbox is empty");
            }
            let now = outbox::now();
            for (account, m) in &rows {
                println!("{}", list_line(account, m, now));
            }
            Exit::Ok
        }
        QueueAction::Drop { id } => {
            for account in &config.accounts {
                let outbox = match open(account) {
                    Ok(o) => o,
                    Err(e) => return e,
                };
                match outbox.drop_message(id) {
                    Ok(true) => {
                        println!("{}: dropped {id}", account.name);
                        return Exit::Ok;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        eprintln!("mailhaul: cannot drop {id}: {e}");
                        return Exit::Failure;
                    }
                }
            }
            eprintln!("mailhaul: no queued or failed message {id}");
            Exit::Usage
        }
        QueueAction::Retry { id, all } => {
            let mut moved = 0;
            for account in &config.accounts {
                let outbox = match open(account) {
                    Ok(o) => o,
                    Err(e) => return e,
                };
                let ids: Vec<String> = if *all {
                    match outbox.failed() {
                        Ok(list) => list.into_iter().map(|m| m.id).collect(),
                        Err(e) => {
                            eprintln!("mailhaul: cannot read the outbox of {}: {e}", account.name);
                            return Exit::Failure;
                        }
                    }
                } else {
                    id.iter().cloned().collect()
                };
                for old in &ids {
                    match outbox.retry(old) {
                        Ok(Some(new)) => {
                            println!("{}: {old} queued again as {new}", account.name);
                            moved += 1;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            eprintln!("mailhaul: cannot queue {old} again: {e}");
                            return Exit::Failure;
                        }
                    }
                }
            }
            match (moved, id) {
                (0, Some(id)) => {
                    eprintln!("mailhaul: no failed message {id}");
                    Exit::Usage
                }
                (0, None) => {
                    println!("no failed messages");
                    Exit::Ok
                }
                _ => Exit::Ok,
            }
        }
        QueueAction::Flush { accounts } => {
            let chosen: Vec<&Account> = if accounts.is_empty() {
                config.accounts.iter().collect()
            } else {
                let mut v = Vec::new();
                for name in accounts {
                    match config.account(name) {
                        Some(a) => v.push(a),
                        None => {
                            eprintln!("mailhaul: no account named `{name}`");
                            return Exit::Usage;
                        }
                    }
                }
                v
            };
            let mut exit = Exit::Ok;
            for account in chosen {
                let outbox = match open(account) {
                    Ok(o) => o,
                    Err(e) => return e,
                };
                match flush_account(account, &outbox) {
                    Err((code, words)) => {
                        eprintln!("{}: not sent: {words}", account.name);
                        if exit == Exit::Ok {
                            exit = if matches!(code, Exit::HostKey | Exit::Auth | Exit::Config) {
                                code
                            } else {
                                Exit::Transfer
                            };
                        }
                    }
                    Ok(report) => {
                        print_failures(&account.name, &report);
                        println!("{}", summary_line(&account.name, &report));
                        if report.outcomes.iter().any(|(_, o)| o.is_failure()) {
                            exit = Exit::PartialDelivery;
                        } else if exit == Exit::Ok
                            && report
                                .outcomes
                                .iter()
                                .any(|(_, o)| matches!(o, Outcome::Deferred(_)))
                        {
                            exit = Exit::Transfer;
                        }
                    }
                }
            }
            exit
        }
    }
}

/// `acct: 3 sent (12.0 kB, 3.1 kB on the wire, zstd), 1 deferred, 0 refused`.
fn summary_line(account: &str, report: &RelayReport) -> String {
    let count = |f: &dyn Fn(&Outcome) -> bool| report.outcomes.iter().filter(|(_, o)| f(o)).count();
    let sent = count(&|o| matches!(o, Outcome::Sent | Outcome::AlreadySent));
    let deferred = count(&|o| matches!(o, Outcome::Deferred(_)));
    let failed = count(&|o| o.is_failure());
    let mut line = format!(
        "{account}: {sent} sent ({} bytes, {} on the wire{})",
        report.sent_bytes,
        report.wire_bytes,
        report.method.map(|m| format!(", {m}")).unwrap_or_default()
    );
    line.push_str(&format!(", {deferred} deferred, {failed} refused"));
    if let Some((_, Outcome::Deferred(why))) = report
        .outcomes
        .iter()
        .find(|(_, o)| matches!(o, Outcome::Deferred(_)))
    {
        line.push_str(&format!(" ({why})"));
    }
    line
}

/// One line of `mailhaul queue`: account, id, state, age, size, recipients,
/// last error.
fn list_line(account: &str, m: &OutboxMessage, now: u64) -> String {
    let state = match m.place {
        Place::Queued if m.attempts == 0 => "queued".to_string(),
        Place::Queued => format!("queued, {} attempts", m.attempts),
        Place::Failed => "FAILED".to_string(),
    };
    let mut line = format!(
        "{account} {} {state} {} ago {} bytes -> {}",
        m.id,
        age(now.saturating_sub(m.queued_at)),
        m.size,
        m.envelope.recipients.join(", ")
    );
    if let Some(e) = &m.last_error {
        line.push_str(&format!("\n    {}", e.trim_end().replace('\n', "\n    ")));
    }
    line
}

fn age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}
