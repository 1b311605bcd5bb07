//! Mail delivered by the real Postfix (through procmail, which holds the
//! dot-lock and an fcntl lock while it appends) during repeated fetches as
//! an ordinary user (copy-truncate under dotlockfile): every message must be
//! filed exactly once and whole, none lost, none cut.
//!
//! The overlap of fetches and deliveries is made, not hoped for: `sendmail`
//! only queues, so the test counts deliveries in procmail's own log
//! (`LOGABSTRACT`), keeps fetching until every queued message is in the
//! spool, and, should the first 60 all be delivered before two fetches have
//! filed mail while more was still on its way, sends more (one at a time,
//! up to a cap) until they have. On failure
//! it prints what it expected and found, every fetch's output, Postfix's
//! queue and procmail's log.

mod common;
mod fetch_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use common::{Postfix, TestSshd, TestUser};
use fetch_support::{describe, maildir_files, Client};

/// Messages always sent.
const MESSAGES: usize = 60;
/// The sender goes on past [`MESSAGES`] until this many fetches have filed
/// mail while more was on its way, and the test requires as many…
const OVERLAPPING_FETCHES: usize = 2;
/// …but never beyond this many messages.
const MAX_MESSAGES: usize = 400;
/// The whole exchange must end within this.
const TIME_LIMIT: Duration = Duration::from_secs(300);

fn message(i: usize) -> Vec<u8> {
    let mut m = format!("To: someone\nSubject: mailhaul-race {i}\n\n").into_bytes();
    for j in 0..400 {
        m.extend_from_slice(
            format!("message {i} line {j} of the body, padding padding\n").as_bytes(),
        );
    }
    m.extend_from_slice(format!("END {i}\n").as_bytes());
    m
}

/// The body of a message (after the first blank line), if it has one.
fn body(m: &[u8]) -> Option<&[u8]> {
    m.windows(2).position(|w| w == b"\n\n").map(|p| &m[p + 2..])
}

/// Makes procmail log every delivery of `user` (an rc with only `LOGFILE`
/// and `LOGABSTRACT` changes nothing else: the default delivery into the
/// spool, with its locks, still happens); returns the log's path.
fn log_procmail_deliveries(user: &TestUser) -> PathBuf {
    let log = user.home.join("procmail.log");
    let rc = user.home.join(".procmailrc");
    std::fs::write(&rc, format!("LOGFILE={}\nLOGABSTRACT=all\n", log.display())).unwrap();
    std::os::unix::fs::chown(&rc, Some(user.uid), Some(user.gid)).unwrap();
    log
}

/// Deliveries procmail has logged (one `Folder:` line each).
fn delivered(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim_start().starts_with("Folder:"))
        .count()
}

/// What one fetch did, for the failure report.
struct FetchRecord {
    /// Seconds since the start when it ended.
    at: f64,
    /// Messages filed by it.
    filed: usize,
    /// Whether more mail was on its way when it ended.
    overlapped: bool,
    /// Whether it exited 0.
    succeeded: bool,
    /// Its exit status and output.
    output: String,
}

/// Everything needed to diagnose a failure: the fetches, the queue, the
/// procmail log, what is left in the spool and the claims directory.
fn report(user: &TestUser, log: &Path, fetches: &[FetchRecord]) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "--- {} fetch(es):", fetches.len());
    for (n, f) in fetches.iter().enumerate() {
        let _ = write!(
            r,
            "fetch {n} ended at {:.1}s, filed {}, mail still coming: {}",
            f.at, f.filed, f.overlapped
        );
        // The output of those that filed or failed; the rest found no mail.
        if f.filed > 0 || !f.succeeded {
            let _ = writeln!(r, "\n{}", f.output);
        } else {
            let _ = writeln!(r);
        }
    }
    let queue = Command::new("/usr/sbin/postqueue")
        .arg("-p")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("postqueue -p: {e}"));
    let _ = writeln!(r, "--- postqueue -p:\n{queue}");
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = log_text.lines().rev().take(60).collect();
    let _ = writeln!(
        r,
        "--- procmail log ({} deliveries), last lines:\n{}",
        delivered(log),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    let _ = writeln!(
        r,
        "--- spool {} bytes; lock present: {}; claims left: {:?}",
        user.spool_contents().len(),
        Path::new(&format!("{}.lock", user.spool.display())).exists(),
        std::fs::read_dir(user.home.join(".mailhaul/claims"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default()
    );
    r
}

#[test]
fn postfix_deliveries_during_fetches_are_neither_lost_nor_cut() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhfp");
    let log = log_procmail_deliveries(&user);
    // procmail may hold the lock a while on a loaded machine: wait for it.
    let client = Client::new(&sshd, &user.name, "lock_timeout = 60");

    let sent = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(AtomicBool::new(false));
    let sender = {
        let (name, sent, enough) = (user.name.clone(), Arc::clone(&sent), Arc::clone(&enough));
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..MAX_MESSAGES {
                // Past the first batch, another message only when all that
                // was sent is delivered and the fetches still lack overlap.
                while i >= MESSAGES
                    && !enough.load(Ordering::SeqCst)
                    && delivered(&log) < sent.load(Ordering::SeqCst)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if i >= MESSAGES && enough.load(Ordering::SeqCst) {
                    break;
                }
                postfix.send(&name, &message(i));
                sent.store(i + 1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    // Mail is on its way while the sender runs or procmail has not yet
    // delivered all that was queued (checked in this order: once the
    // sender is done, `sent` is final).
    let more_to_come = |sender: &std::thread::JoinHandle<()>| {
        !sender.is_finished() || delivered(&log) < sent.load(Ordering::SeqCst)
    };

    let mut fetches: Vec<FetchRecord> = Vec::new();
    let started = Instant::now();
    while more_to_come(&sender) {
        let before = maildir_files(&client.maildir).len();
        let out = client.run(&["fetch"]);
        let filed = maildir_files(&client.maildir).len() - before;
        let overlapped = more_to_come(&sender);
        fetches.push(FetchRecord {
            at: started.elapsed().as_secs_f64(),
            filed,
            overlapped,
            succeeded: out.status.success(),
            output: describe(&out),
        });
        assert!(
            out.status.success(),
            "a fetch during deliveries failed\n{}",
            report(&user, &log, &fetches)
        );
        let overlapping = fetches.iter().filter(|f| f.filed > 0 && f.overlapped);
        if overlapping.count() >= OVERLAPPING_FETCHES {
            enough.store(true, Ordering::SeqCst);
        }
        assert!(
            started.elapsed() < TIME_LIMIT,
            "not done within {TIME_LIMIT:?}: {} sent, {} delivered by procmail\n{}",
            sent.load(Ordering::SeqCst),
            delivered(&log),
            report(&user, &log, &fetches)
        );
    }
    sender.join().unwrap();
    let sent = sent.load(Ordering::SeqCst);
    // procmail logged every delivery; wait for its lock and the queue too.
    postfix.wait_delivered(&user, 0);
    let out = client.run(&["fetch"]);
    fetches.push(FetchRecord {
        at: started.elapsed().as_secs_f64(),
        filed: 0,
        overlapped: false,
        succeeded: out.status.success(),
        output: describe(&out),
    });
    assert!(
        out.status.success(),
        "final fetch failed\n{}",
        report(&user, &log, &fetches)
    );
    let overlapping = fetches
        .iter()
        .filter(|f| f.filed > 0 && f.overlapped)
        .count();
    assert!(
        overlapping >= OVERLAPPING_FETCHES,
        "only {overlapping} fetch(es) filed mail while more was on its way ({sent} sent)\n{}",
        report(&user, &log, &fetches)
    );

    // message index -> md5 of each filed copy
    let mut seen: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for m in client.filed_messages() {
        let text = String::from_utf8_lossy(&m);
        let md5 = format!("{:x}", Md5::digest(&m));
        let Some(i) = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: mailhaul-race "))
            .and_then(|n| n.trim().parse::<usize>().ok())
        else {
            let head: String = text.chars().take(300).collect();
            problems.push(format!(
                "a filed message ({} bytes, md5 {md5}) without its subject:\n{head}",
                m.len()
            ));
            continue;
        };
        let want = message(i);
        if body(&m) != body(&want) {
            problems.push(format!(
                "message {i} was cut or altered: body {:?} bytes, want {:?} (md5 {md5})",
                body(&m).map(<[u8]>::len),
                body(&want).map(<[u8]>::len)
            ));
        }
        seen.entry(i).or_default().push(md5);
    }
    let missing: Vec<usize> = (0..sent).filter(|i| !seen.contains_key(i)).collect();
    if !missing.is_empty() {
        problems.push(format!("lost: {missing:?}"));
    }
    let dups: Vec<_> = seen.iter().filter(|(_, copies)| copies.len() > 1).collect();
    if !dups.is_empty() {
        problems.push(format!("duplicated (index -> md5 of each copy): {dups:?}"));
    }
    assert!(
        problems.is_empty(),
        "{sent} sent, {} filed, {} delivered by procmail:\n{}\n{}",
        seen.values().map(Vec::len).sum::<usize>(),
        delivered(&log),
        problems.join("\n"),
        report(&user, &log, &fetches)
    );
    eprintln!(
        "{sent} messages arrived exactly once over {} fetches, {overlapping} of them \
         filing mail while more was on its way",
        fetches.len()
    );
}
