//! `mailhaul fetch` end to end against a real sshd on loopback: as root
//! (rename in a writable spool directory) and as an ordinary user on
//! Debian's 2775 root:mail /var/mail (copy-truncate under dotlockfile), with
//! real mail checked message by message (md5), empty and missing spools, host
//! key refusals and a dry run (busy and stale locks: tests/fetch_trust.rs).

mod common;
mod fetch_support;

use std::os::unix::fs::PermissionsExt;

use common::{TestSshd, TestUser};
use fetch_support::{
    assert_same_messages, describe, fill_spool, names_in, real_mail, settled, Client, Fixture,
};

#[test]
fn root_fetch_renames_the_spool_and_files_every_message_once() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "");
    let client = &fixture.client;

    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&client.filed_md5s(), &mail.md5s, &mail.source);
    // Without a terminal (cron): one summary line, nothing on stderr.
    assert!(out.stderr.is_empty(), "{}", describe(&out));
    // The spool was renamed away and the claim released: nothing is left.
    let left = settled(|| names_in(fixture.server_dir()));
    assert!(left.is_empty(), "left on the server: {left:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let n = mail.md5s.len();
    assert!(
        stdout.starts_with(&format!("acct: {n} message(s) (INBOX {n}), ")),
        "{stdout}"
    );
    assert!(stdout.contains("zstd -9"), "{stdout}");
    assert!(stdout.contains(", ratio "), "{stdout}");

    // Nothing new: a second fetch files nothing and succeeds; --verbose
    // (bench/fetch.sh times the stages by it) tells each stage as it starts.
    let out = client.run(&["fetch", "--verbose"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in ["acct: connecting", "acct: claiming the spool", "acct: done"] {
        assert!(stderr.contains(line), "{line:?} missing: {stderr}");
    }
    assert_eq!(client.filed_md5s().len(), mail.md5s.len());
    let history = client.history();
    eprintln!("{}:\n{history}", mail.source);
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
    let mail = real_mail();
    let fixture = Fixture::as_user(&sshd, "mhfc", &mail.spool, "");
    let (client, user) = (&fixture.client, fixture.user());
    let mode = std::fs::metadata("/var/mail").unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o2775, "Debian's /var/mail");

    let out = client.run(&["check"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("claim: copy-truncate"),
        "{}",
        describe(&out)
    );
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_messages(&client.filed_md5s(), &mail.md5s, &mail.source);
    // The spool is kept (empty, same owner) and no claim is left behind.
    assert_eq!(std::fs::metadata(&user.spool).unwrap().len(), 0);
    let claims = user.home.join(".mailhaul/claims");
    let left = settled(|| names_in(&claims));
    assert!(left.is_empty(), "claims left: {left:?}");
    assert!(!std::path::Path::new(&format!("{}.lock", user.spool.display())).exists());
}

#[test]
fn empty_and_missing_spools_fetch_nothing_and_succeed() {
    let sshd = TestSshd::start();
    let fixture = Fixture::as_user(&sshd, "mhfe", b"", "");
    let (client, user) = (&fixture.client, fixture.user());
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
fn dry_run_and_check_report_without_claiming() {
    let sshd = TestSshd::start();
    let mail = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: x\n\nbody\n\n";
    let fixture = Fixture::as_user(&sshd, "mhfd", mail, "");
    let (client, user) = (&fixture.client, fixture.user());
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
        text.contains(&format!("holds {} bytes (1 message(s))", mail.len())),
        "{text}"
    );
    assert!(text.contains("claim: copy-truncate"), "{text}");
    assert_eq!(std::fs::read(&user.spool).unwrap(), mail);
    assert!(client.filed_md5s().is_empty());
}

/// gzip, SSH transport compression and none: the same messages arrive, and
/// the history's byte counts show one compression at a time (payload
/// compressed or the socket compressed, never both).
#[test]
fn each_compression_method_delivers_and_counts_its_bytes() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let raw = mail.spool.len() as u64;
    for method in ["gzip", "ssh", "none"] {
        let fixture = Fixture::as_root(&sshd, &mail.spool, &format!("compression = {method:?}"));
        let client = &fixture.client;
        let out = client.run(&["fetch"]);
        assert!(out.status.success(), "{method}: {}", describe(&out));
        assert_same_messages(&client.filed_md5s(), &mail.md5s, method);
        let history = client.history();
        eprintln!("{method}: {}", history.lines().nth(1).unwrap_or_default());
        let row: Vec<String> = history
            .lines()
            .nth(1)
            .unwrap()
            .split('\t')
            .map(String::from)
            .collect();
        let (payload, socket): (u64, u64) = (row[5].parse().unwrap(), row[6].parse().unwrap());
        assert_eq!(row[4], raw.to_string(), "{method}: raw");
        match method {
            "gzip" => {
                assert_eq!(row[7], "gzip -6");
                assert!(payload < raw / 2, "{method}: payload {payload} of {raw}");
                assert!(socket > payload, "{method}: socket {socket}");
            }
            "ssh" => {
                assert_eq!(row[7], "ssh");
                assert_eq!(payload, raw, "{method}: payload is not compressed");
                assert!(socket < raw / 2, "{method}: socket {socket} of {raw}");
            }
            _ => {
                assert_eq!(row[7], "none");
                assert_eq!(payload, raw);
                assert!(socket > raw, "{method}: socket {socket} of {raw}");
            }
        }
    }
}

/// On a terminal (a pseudo-terminal made by util-linux `script`), progress
/// is drawn as bars and the fetch ends with the account's summary line.
#[test]
fn a_terminal_gets_progress_bars_and_the_summary() {
    let sshd = TestSshd::start();
    let mail = real_mail();
    let fixture = Fixture::as_root(&sshd, &mail.spool, "");
    let client = &fixture.client;
    let inner = client.command(&["fetch"]);
    let mut line = format!("{:?}", inner.get_program());
    for arg in inner.get_args() {
        line.push_str(&format!(" '{}'", arg.to_str().unwrap()));
    }
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.env("TERM", "xterm").output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // The finished bar carries the summary with the ratio.
    assert!(
        text.contains(&format!("{} message(s)", mail.md5s.len())),
        "{text}"
    );
    assert!(text.contains("ratio"), "{text}");
    assert!(
        text.contains("\u{1b}["),
        "no terminal control sequences: {text}"
    );
    assert_same_messages(&client.filed_md5s(), &mail.md5s, "terminal run");
}

/// Two accounts in one config: a named one alone, then all in parallel
/// (the server's log shows their sessions overlapping in time); an unknown
/// name is a usage error.
#[test]
fn named_accounts_alone_or_all_in_parallel() {
    let hook = common::ServerHook::new();
    let sshd = hook.start_sshd();
    let first = TestUser::create_for(&sshd, "mhfa");
    let second = TestUser::create_for(&sshd, "mhfb");
    let msg = |s: &str| format!("From a@b Thu Jan  1 00:00:00 1970\nSubject: {s}\n\nbody\n\n");
    fill_spool(&first.spool, msg("first").as_bytes());
    fill_spool(&second.spool, msg("second").as_bytes());
    let client = Client::new(&sshd, &first.name, "");
    let text = std::fs::read_to_string(&client.config).unwrap();
    let (_, account) = text.split_once("[[account]]").unwrap();
    let other = account
        .replace("name = \"acct\"", "name = \"other\"")
        .replace(&format!("{:?}", first.name), &format!("{:?}", second.name));
    std::fs::write(&client.config, format!("{text}\n[[account]]{other}")).unwrap();

    let out = client.run(&["fetch", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account named `nosuch`"));

    let out = client.run(&["fetch", "other"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(client.filed_md5s().len(), 1);
    assert_eq!(std::fs::metadata(&second.spool).unwrap().len(), 0);
    assert!(
        std::fs::metadata(&first.spool).unwrap().len() > 0,
        "not named"
    );

    fill_spool(&second.spool, msg("second again").as_bytes());
    // Every server command now takes a second or more: one after the other,
    // two fetches could not overlap.
    hook.set("pause", true);
    let logged = hook.log().len();
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    let span = |user: &str| {
        let times: Vec<u128> = hook.log()[logged..]
            .iter()
            .filter(|e| e.user == user)
            .map(|e| e.time_ns)
            .collect();
        assert!(!times.is_empty(), "no session of {user} in the hook log");
        (*times.iter().min().unwrap(), *times.iter().max().unwrap())
    };
    let (a, b) = (span(&first.name), span(&second.name));
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "the accounts' sessions did not overlap: {a:?} and {b:?}; hook log:\n{}",
        hook.log_text()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("acct: 1 message(s)"), "{stdout}");
    assert!(stdout.contains("other: 1 message(s)"), "{stdout}");
    let subjects: Vec<String> = client
        .filed_messages()
        .iter()
        .map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    for s in ["Subject: first", "Subject: second", "Subject: second again"] {
        assert!(subjects.iter().any(|x| x == s), "{s} missing: {subjects:?}");
    }
}
