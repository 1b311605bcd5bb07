//! Durability as the kernel sees it: the real binary runs under strace and
//! the tests check the system calls it made, in their order:
//! - `mailhaul filter`: every message is made durable (syncfs, or fsync of
//!   its file) after its last write and before it is linked into `new/`,
//!   and every `new/` is fsynced after its last link;
//! - `mailhaul fetch`: the download is fsynced before it is renamed into
//!   staging, the staging directory and the journal's `staged` record are
//!   synced, all before the server is asked to release the claim (the
//!   server-side hook logs when that request arrives); the delivered
//!   messages are durable and published, and their `new/` synced, before
//!   the staged claim (then the only copy) is deleted.

mod common;
mod fetch_support;

use std::path::Path;
use std::process::Command;

use common::strace::{self, Call};
use common::ServerHook;
use fetch_support::{assert_same_messages, describe, Fixture, RealMail};

/// The committed sample spool and its md5s (no corpus needed: the order of
/// system calls, not the volume, is under test).
fn sample() -> RealMail {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut md5s: Vec<String> = std::fs::read_to_string(assets.join("sample-spool.md5"))
        .expect("assets/sample-spool.md5")
        .lines()
        .map(|l| l.split_once('\t').expect("index TAB md5").1.to_string())
        .collect();
    md5s.sort();
    RealMail {
        spool: std::fs::read(assets.join("sample-spool.mbox")).expect("sample spool"),
        md5s,
        source: "assets/sample-spool.mbox".into(),
    }
}

fn is_write(c: &Call) -> bool {
    matches!(c.name.as_str(), "write" | "writev" | "pwrite64")
}

fn is_file_sync(c: &Call) -> bool {
    matches!(c.name.as_str(), "fsync" | "fdatasync")
}

/// A successful link or rename: (source path, target path).
fn publish_paths(calls: &[Call], c: &Call) -> Option<(String, String)> {
    if !c.ok() {
        return None;
    }
    let target = c.strings.last()?.clone();
    let source = match c.name.as_str() {
        "rename" | "renameat" | "renameat2" | "link" => c.strings.first()?.clone(),
        // linkat(FD</tmp/#INODE (deleted)>, "", ..., AT_EMPTY_PATH), or
        // linkat(AT_FDCWD, "/proc/self/fd/N", ...): the descriptor's file.
        "linkat" => match (&c.fd, c.strings.first()) {
            (Some((_, path)), _) => path.clone(),
            (None, Some(proc)) => {
                let fd: i32 = proc.strip_prefix("/proc/self/fd/")?.parse().ok()?;
                calls[..]
                    .iter()
                    .rev()
                    .filter(|w| w.exit < c.entry)
                    .find_map(|w| w.fd.as_ref().filter(|(n, _)| *n == fd))?
                    .1
                    .clone()
            }
            (None, None) => return None,
        },
        _ => return None,
    };
    Some((source, target))
}

/// Checks that every message linked or renamed into a `new/` under `root`
/// was made durable after its last write and before that: a syncfs, or an
/// fsync of the file itself, returned in between. Then that each such
/// `new/` was fsynced after its last link. Returns how many were
/// published and the event position by which all of it was done.
fn assert_durable_before_published(calls: &[Call], root: &Path) -> (usize, usize) {
    let root = root.canonicalize().expect("the Maildir root exists");
    let root = root.to_str().unwrap();
    let mut published = 0;
    let mut last_link: std::collections::BTreeMap<String, usize> = Default::default();
    for p in calls {
        let Some((source, target)) = publish_paths(calls, p) else {
            continue;
        };
        let Some(dir) = target
            .strip_prefix(root)
            .and_then(|_| target.rsplit_once('/'))
        else {
            continue;
        };
        if !dir.0.ends_with("/new") {
            continue;
        }
        published += 1;
        let last_write = calls
            .iter()
            .filter(|w| is_write(w) && w.fd_path() == Some(source.as_str()) && w.exit < p.entry)
            .map(|w| w.exit)
            .max()
            .unwrap_or_else(|| panic!("no write to {source} seen before it went to {target}"));
        let synced = calls.iter().any(|s| {
            s.ok()
                && s.entry > last_write
                && s.exit < p.entry
                && (s.name == "syncfs" || (is_file_sync(s) && s.fd_path() == Some(source.as_str())))
        });
        assert!(
            synced,
            "{target} was published ({} at event {}) without a syncfs or fsync of {source} \
             between its last write (event {last_write}) and the link",
            p.name, p.entry
        );
        last_link.insert(dir.0.to_string(), p.exit);
    }
    assert!(published > 0, "nothing was published under {root}");
    let mut done = 0;
    for (dir, link) in &last_link {
        let sync = calls
            .iter()
            .filter(|s| s.ok() && is_file_sync(s) && s.fd_path() == Some(dir.as_str()))
            .find(|s| s.entry > *link)
            .unwrap_or_else(|| panic!("{dir} was not fsynced after its last link (event {link})"));
        done = done.max(sync.exit);
    }
    (published, done)
}

#[test]
fn filter_makes_every_message_durable_before_it_appears_in_new() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("Mail");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-spool.mbox");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailhaul"));
    cmd.arg("filter")
        .arg("--maildir")
        .arg(&root)
        .arg(&input)
        .env_remove("MAILHAUL_CONFIG")
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"));
    let (out, calls) = strace::run(&cmd, &home.path().join("trace"));
    assert!(out.status.success(), "{}", describe(&out));
    let (published, _) = assert_durable_before_published(&calls, &root);
    assert_eq!(published, sample().md5s.len());
}

#[test]
fn fetch_makes_the_download_durable_before_release_and_delivery_before_the_staged_copy_goes() {
    let hook = ServerHook::new();
    let sshd = hook.start_sshd();
    let mail = sample();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "");
    let client = &fixture.client;
    let (out, calls) = strace::run(
        &client.command(&["fetch"]),
        &client.dir.path().join("trace"),
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&client.filed_md5s(), &mail.md5s, "fetch under strace");

    let staging = client
        .data_dir()
        .join("accounts/acct/staging")
        .canonicalize()
        .unwrap();
    let staging = staging.to_str().unwrap();
    let journal = format!("{}/journal", staging.rsplit_once('/').unwrap().0);
    let find = |what: &str, pred: &dyn Fn(&Call) -> bool| -> Call {
        calls
            .iter()
            .find(|c| pred(c))
            .unwrap_or_else(|| panic!("no {what} in the trace"))
            .clone()
    };
    // Download: last write to ID.part, fsync of it, rename to ID.mbox,
    // fsync of the staging directory.
    let rename = find("rename of the download into staging", &|c| {
        c.ok()
            && c.name.starts_with("rename")
            && c.strings.len() == 2
            && c.strings[0].starts_with(staging)
            && c.strings[0].ends_with(".part")
            && c.strings[1].ends_with(".mbox")
    });
    let (part, staged) = (rename.strings[0].clone(), rename.strings[1].clone());
    let last_write = calls
        .iter()
        .filter(|c| is_write(c) && c.fd_path() == Some(part.as_str()))
        .map(|c| c.exit)
        .max()
        .expect("writes to the download");
    let file_sync = find("fsync of the download", &|c| {
        c.ok() && is_file_sync(c) && c.fd_path() == Some(part.as_str()) && c.entry > last_write
    });
    assert!(
        file_sync.exit < rename.entry,
        "the download was renamed before its fsync returned"
    );
    let dir_sync = find("fsync of the staging directory after the rename", &|c| {
        c.ok() && is_file_sync(c) && c.fd_path() == Some(staging) && c.entry > rename.exit
    });
    let staged_record = find("the journal's staged record", &|c| {
        is_write(c)
            && c.fd_path() == Some(journal.as_str())
            && c.strings.first().is_some_and(|s| s.starts_with("staged"))
    });
    let journal_sync = find("the journal's sync after the staged record", &|c| {
        c.ok()
            && is_file_sync(c)
            && c.fd_path() == Some(journal.as_str())
            && c.entry > staged_record.exit
    });
    // The server's hook logged the release request when it arrived (the
    // fetch's last release goes unanswered: it may arrive after the
    // client's exit, so it is waited for).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let release = loop {
        match hook.log().into_iter().find(|e| e.is(&["release", "start"])) {
            Some(e) => break e.secs(),
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            None => panic!("no release on the server; hook log:\n{}", hook.log_text()),
        }
    };
    for (what, call) in [
        ("the download's fsync", &file_sync),
        ("the staging directory's fsync", &dir_sync),
        ("the journal's staged record sync", &journal_sync),
    ] {
        assert!(
            call.end < release,
            "{what} returned at {:.6}, after the server got the release at {release:.6}",
            call.end
        );
    }

    // The messages are filed while the claim arrives, but none is
    // published into the Maildir before the download is verified, durable
    // and journalled.
    let maildir = client.maildir.canonicalize().unwrap();
    let maildir = maildir.to_str().unwrap();
    let first_publish = calls
        .iter()
        .filter(|c| publish_paths(&calls, c).is_some_and(|(_, to)| to.starts_with(maildir)))
        .map(|c| c.entry)
        .min()
        .expect("messages published into the Maildir");
    assert!(
        journal_sync.exit < first_publish,
        "a message was published (event {first_publish}) before the journal recorded the \
         verified download (its sync returned at event {})",
        journal_sync.exit
    );

    // Delivery: durable, published and synced before the staged claim,
    // the only copy once released, is deleted.
    let (published, done) = assert_durable_before_published(&calls, &client.maildir);
    assert_eq!(published, mail.md5s.len());
    let unlink = find("the staged claim's removal", &|c| {
        c.ok() && c.name.starts_with("unlink") && c.strings.last() == Some(&staged)
    });
    assert!(
        done < unlink.entry,
        "the staged claim was deleted (event {}) before the delivered messages were durable \
         (event {done})",
        unlink.entry
    );
}
