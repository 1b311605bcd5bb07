//! `mailhaul fetch` end to end against a real sshd on loopback: as root
//! (rename in a writable spool directory) and as an ordinary user on
//! Debian's 2775 root:mail /var/mail (copy-truncate under dotlockfile), with
//! real mail checked message by message (md5), empty and missing spools, host
//! key refusals, a busy lock, and a dry run.

mod common;
mod fetch_support;

use std::os::unix::fs::PermissionsExt;

use common::{TestSshd, TestUser};
use fetch_support::{assert_same_messages, describe, fill_spool, real_mail, Client};

#[test]
fn root_fetch_renames_the_spool_and_files_every_message_once() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let server = tempfile::tempdir().unwrap();
    let spool = server.path().join("root-spool");
    fill_spool(&spool, &mail.spool);
    let client = Client::new(&sshd, "root", &format!("spool = {spool:?}"));
    client.set_format("mboxrd");

    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&client.filed_md5s(), &mail.md5s, &mail.source);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rename"), "strategy not reported: {stderr}");
    // The spool was renamed away and the claim released: nothing is left.
    let left: Vec<_> = std::fs::read_dir(server.path())
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "left on the server: {left:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{} message(s)", mail.md5s.len())),
        "{stdout}"
    );
    assert!(stdout.contains("zstd -3"), "{stdout}");

    // Nothing new: a second fetch files nothing and succeeds.
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(client.filed_md5s().len(), mail.md5s.len());
    let history = client.history();
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{history}");
    let first: Vec<&str> = rows[0].split('\t').collect();
    assert_eq!(first[1], "acct");
    assert_eq!(first[2], mail.md5s.len().to_string());
    assert_eq!(first[4], mail.spool.len().to_string(), "raw bytes");
    let payload: u64 = first[5].parse().unwrap();
    let socket: u64 = first[6].parse().unwrap();
    assert!(
        payload > 0 && payload < mail.spool.len() as u64 / 2,
        "{history}"
    );
    assert!(socket >= payload, "{history}");
}

#[test]
fn user_fetch_copies_and_truncates_under_dotlockfile() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhfc");
    let mail = real_mail();
    fill_spool(&user.spool, &mail.spool);
    let mode = std::fs::metadata("/var/mail").unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o2775, "Debian's /var/mail");
    let client = Client::new(&sshd, &user.name, "");
    client.set_format("mboxrd");

    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("copy-truncate"),
        "{}",
        describe(&out)
    );
    assert_same_messages(&client.filed_md5s(), &mail.md5s, &mail.source);
    // The spool is kept (empty, same owner) and no claim is left behind.
    assert_eq!(std::fs::metadata(&user.spool).unwrap().len(), 0);
    let claims = user.home.join(".mailhaul/claims");
    let left: Vec<_> = std::fs::read_dir(&claims).unwrap().flatten().collect();
    assert!(left.is_empty(), "claims left: {left:?}");
    assert!(!std::path::Path::new(&format!("{}.lock", user.spool.display())).exists());
}

#[test]
fn empty_and_missing_spools_fetch_nothing_and_succeed() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhfe");
    let client = Client::new(&sshd, &user.name, "");
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "empty: {}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 message(s)"));
    std::fs::remove_file(&user.spool).unwrap();
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "missing: {}", describe(&out));
    assert!(client.filed_md5s().is_empty());
    assert!(!user.spool.exists(), "a missing spool must not be created");
}

#[test]
fn changed_or_unknown_host_keys_are_refused_before_anything_runs() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhfk");
    fill_spool(
        &user.spool,
        b"From a@b Thu Jan  1 00:00:00 1970\nSubject: x\n\nbody\n\n",
    );
    let dir = tempfile::tempdir().unwrap();

    // Another key for the same [host]:port.
    let other = dir.path().join("other");
    common::sshd::keygen(&other, "");
    let wrong = dir.path().join("known_hosts_wrong");
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {}\n",
            sshd.port,
            common::sshd::public_key(&other)
        ),
    )
    .unwrap();
    let client = Client::with_known_hosts(&sshd, &user.name, &wrong, "");
    let out = client.run(&["fetch"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CHANGED"),
        "{}",
        describe(&out)
    );

    // No key at all, strict policy.
    let empty = dir.path().join("known_hosts_empty");
    std::fs::write(&empty, "").unwrap();
    let client = Client::with_known_hosts(&sshd, &user.name, &empty, "");
    let out = client.run(&["fetch"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(client.filed_md5s().is_empty());
    assert!(
        std::fs::metadata(&user.spool).unwrap().len() > 0,
        "spool touched"
    );
    assert!(!user.home.join(".mailhaul").exists(), "a script ran");
}

#[test]
fn a_busy_lock_is_waited_on_then_reported_and_the_spool_kept() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhfl");
    let mail = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: x\n\nbody\n\n";
    fill_spool(&user.spool, mail);
    let lock = format!("{}.lock", user.spool.display());
    std::fs::write(&lock, "").unwrap();
    let client = Client::new(&sshd, &user.name, "");
    let started = std::time::Instant::now();
    let out = client.run(&["fetch"]);
    let _ = std::fs::remove_file(&lock);
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    assert!(
        started.elapsed().as_secs() >= 3,
        "lock_timeout = 3 not waited"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("held by another program"));
    assert_eq!(std::fs::read(&user.spool).unwrap(), mail);
    // Once the lock is gone, the same fetch works.
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(client.filed_md5s().len(), 1);
}

#[test]
fn dry_run_and_check_report_without_claiming() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mhfd");
    let mail = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: x\n\nbody\n\n";
    fill_spool(&user.spool, mail);
    let client = Client::new(&sshd, &user.name, "");
    let out = client.run(&["fetch", "--dry-run"]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("copy-truncate") && err.contains("dotlockfile"),
        "{err}"
    );
    assert!(err.contains("zstd"), "{err}");
    assert_eq!(std::fs::read(&user.spool).unwrap(), mail);

    let out = client.run(&["check"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("host key verified"), "{text}");
    assert!(
        text.contains(&format!("holds {} bytes", mail.len())),
        "{text}"
    );
    assert!(text.contains("claim: copy-truncate"), "{text}");
    assert_eq!(std::fs::read(&user.spool).unwrap(), mail);
    assert!(client.filed_md5s().is_empty());
}
