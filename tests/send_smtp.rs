//! `send = "smtp"`: the outbox delivered with SMTP to the forward's target
//! over a direct-tcpip channel of the account's SSH login, against the real
//! sshd and the system Postfix's smtpd (port 25 on the "server", the
//! forward's default target): messages arrive exactly once, a recipient
//! refused for good goes to the failed folder with the server's words, one
//! put off stays queued, `queue retry` queues failed messages again, and a
//! client killed between the server's 250 and its record never sends twice.

mod common;
mod fetch_support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::CutProxy;
use common::{Postfix, SystemLock, TestSshd, TestUser};
use fetch_support::send::{
    assert_each_tag_once, count, flush_and_disturb, queue_listing, queue_tagged, run_with_input,
    tagged_messages, wait_for_in_spool,
};
use fetch_support::{describe, Client};

/// A second smtpd of the system Postfix, on loopback, that puts off every
/// recipient (`smtpd_recipient_restrictions = defer`: 450).
const DEFERRING_SMTPD: &str = "127.0.0.1:10026";

/// A third one that does not offer PIPELINING.
const UNPIPELINED_SMTPD: &str = "127.0.0.1:10027";

/// A fourth one with Postfix 3.9's default, on this 3.7:
/// `smtpd_forbid_unauth_pipelining = yes` disconnects a client that sends
/// commands ahead where RFC 2920 does not allow it.
const STRICT_SMTPD: &str = "127.0.0.1:10028";

/// Makes master.cf hold the smtpd on `addr` with `options` (`-o
/// name=value`), reloads Postfix if it changed, and waits for it to
/// listen. Left there: other test processes may use it.
fn ensure_smtpd(addr: &str, options: &str) {
    Postfix::ensure_running();
    let _lock = SystemLock::acquire("postfix");
    let service = format!("{addr}/inet");
    let present = Command::new("/usr/sbin/postconf")
        .args(["-M", &service])
        .output()
        .expect("run postconf");
    if !String::from_utf8_lossy(&present.stdout).contains(options) {
        common::run(
            Command::new("/usr/sbin/postconf")
                .arg("-M")
                .arg(format!("{service}={addr} inet n - y - - smtpd {options}")),
        );
        common::run(Command::new("/usr/sbin/postfix").arg("reload"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "Postfix's smtpd on {addr} did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ensure_deferring_smtpd() {
    ensure_smtpd(DEFERRING_SMTPD, "-o smtpd_recipient_restrictions=defer");
}

/// A client of `user` on `sshd` that sends with SMTP; `target` is the
/// forward's target (`None`: the default, Postfix's port 25).
fn smtp_client(sshd: &TestSshd, user: &TestUser, extra: &str, target: Option<&str>) -> Client {
    let target = target.map_or(String::new(), |t| format!("target = \"{t}\"\n"));
    Client::new(
        sshd,
        &user.name,
        &format!("send = \"smtp\"\n{extra}[account.forward]\n{target}"),
    )
}

/// Twelve real messages and one with CRLF, 8-bit bytes and lines that
/// start with a dot go through Postfix's smtpd: each arrives once, the
/// dots and bytes intact, the envelope sender from `address`.
#[test]
fn smtp_delivers_every_message_once_and_intact() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "smtd");
    let client = smtp_client(&sshd, &user, "address = \"me@example.org\"\n", None);
    let rcpt = format!("{}@localhost", user.name);
    let messages = tagged_messages(12, "d");
    queue_tagged(&client, &rcpt, &messages);
    let subject = format!("dots-{}", user.name);
    let odd =
        format!("Subject: {subject}\r\nX-Eight-Bit: caf\u{e9}\r\n\r\n.\r\n..two\r\n.three\r\nend");
    let out = run_with_input(&client, &["send", "-oi", &rcpt], odd.as_bytes());
    assert!(out.status.success(), "send: {}", describe(&out));

    let out = client.run(&["queue", "flush"]);
    assert!(out.status.success(), "flush: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("acct: 13 sent") && stdout.contains("smtp"),
        "{}",
        describe(&out)
    );
    assert_eq!(queue_listing(&client), "the outbox is empty\n");

    // `send --now` over SMTP waits for the server's answer.
    let out = run_with_input(
        &client,
        &["send", "--now", "-oi", &rcpt],
        format!("Subject: now-{}\n\nbody\n", user.name).as_bytes(),
    );
    assert!(out.status.success(), "send --now: {}", describe(&out));
    assert_eq!(queue_listing(&client), "the outbox is empty\n");

    wait_for_in_spool(&user, &format!("Subject: now-{}", user.name), 1);
    wait_for_in_spool(&user, "X-Mailhaul-Test-Tag: d-11\n", 1);
    postfix.wait_delivered(&user, 0);
    assert_each_tag_once(&user, "d", messages.len());
    let spool = user.spool_contents();
    let text = String::from_utf8_lossy(&spool);
    assert_eq!(count(&spool, &format!("Subject: {subject}\n")), 1, "{text}");
    assert!(
        text.contains("\n\n.\n..two\n.three\nend\n"),
        "the dots as sent, LF line ends: {text}"
    );
    assert!(spool
        .windows("X-Eight-Bit: caf\u{e9}\n".len())
        .any(|w| w == "X-Eight-Bit: caf\u{e9}\n".as_bytes()));
    assert!(
        text.contains("Return-Path: <me@example.org>"),
        "envelope sender from account.address: {text}"
    );
}

/// A recipient Postfix does not know (550 5.1.1) goes to the failed folder
/// with Postfix's words, on a copy of its own; the other recipient gets
/// the message; flush exits 8; `queue retry` queues the failed one again
/// under a new id.
#[test]
fn a_refused_recipient_goes_to_failed_and_retry_queues_it_again() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "smtr");
    let client = smtp_client(&sshd, &user, "", None);
    let good = format!("{}@localhost", user.name);
    let nobody = format!("nosuch-{}@localhost", user.name);
    let subject = format!("split-{}", user.name);
    let out = run_with_input(
        &client,
        &["send", "-i", &good, &nobody],
        format!("Subject: {subject}\n\nbody\n").as_bytes(),
    );
    assert!(out.status.success(), "send: {}", describe(&out));
    let out = client.run(&["queue", "flush"]);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused by the SMTP server"), "{stderr}");
    assert!(stderr.contains("550 5.1.1"), "{stderr}");
    let listing = queue_listing(&client);
    assert_eq!(listing.matches(" FAILED ").count(), 1, "{listing}");
    assert!(
        listing.contains(&format!("bytes -> {nobody}\n")),
        "the failed copy is for the refused recipient only: {listing}"
    );
    assert!(listing.contains("User unknown"), "{listing}");
    wait_for_in_spool(&user, &format!("Subject: {subject}"), 1);
    postfix.wait_delivered(&user, 0);

    // Later flushes leave it alone; retry puts it back (new id).
    let out = client.run(&["queue", "flush"]);
    assert!(out.status.success(), "{}", describe(&out));
    let id = listing.split(' ').nth(1).unwrap().to_string();
    let out = client.run(&["queue", "retry", &id]);
    assert!(out.status.success(), "retry: {}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{id} queued again as ")),
        "{}",
        describe(&out)
    );
    let listing = queue_listing(&client);
    assert!(
        listing.contains(" queued ") && !listing.contains(" FAILED ") && !listing.contains(&id),
        "{listing}"
    );
    let out = client.run(&["queue", "retry", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // Still unknown: refused again, failed again.
    let out = client.run(&["queue", "flush"]);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    assert!(queue_listing(&client).contains(" FAILED "));
    let out = client.run(&["queue", "retry", "--all"]);
    assert!(out.status.success(), "retry --all: {}", describe(&out));
    assert!(!queue_listing(&client).contains(" FAILED "));
    // `send --now` to an unknown user alone: sendmail's EX_NOUSER (67),
    // from the server's 5.1.1.
    let out = run_with_input(
        &client,
        &["send", "--now", "-i", &nobody],
        b"Subject: now-refused\n\nbody\n",
    );
    assert_eq!(out.status.code(), Some(67), "{}", describe(&out));
    assert_eq!(
        count(&user.spool_contents(), &format!("Subject: {subject}\n")),
        1
    );
}

/// Every recipient put off (450): the message stays queued with the
/// server's words and a backoff, flush exits 7; once the target takes mail
/// the next flush sends it, once.
#[test]
fn a_temporary_refusal_stays_queued_with_backoff() {
    ensure_deferring_smtpd();
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "smtt");
    let client = smtp_client(&sshd, &user, "", Some(DEFERRING_SMTPD));
    let rcpt = format!("{}@localhost", user.name);
    let subject = format!("later-{}", user.name);
    let out = run_with_input(
        &client,
        &["send", "-i", &rcpt],
        format!("Subject: {subject}\n\nbody\n").as_bytes(),
    );
    assert!(out.status.success(), "send: {}", describe(&out));
    let out = client.run(&["queue", "flush"]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let listing = queue_listing(&client);
    assert!(listing.contains(" queued, 1 attempts "), "{listing}");
    assert!(listing.contains("put it off"), "{listing}");
    assert!(listing.contains(": 450 4."), "{listing}");
    let out = client.run(&["queue", "flush"]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert!(queue_listing(&client).contains(" queued, 2 attempts "));

    let text = std::fs::read_to_string(&client.config).unwrap();
    std::fs::write(
        &client.config,
        text.replace(&format!("target = \"{DEFERRING_SMTPD}\"\n"), ""),
    )
    .unwrap();
    let out = client.run(&["queue", "flush"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(queue_listing(&client), "the outbox is empty\n");
    wait_for_in_spool(&user, &format!("Subject: {subject}\n"), 1);
    postfix.wait_delivered(&user, 0);
    assert_eq!(
        count(&user.spool_contents(), &format!("Subject: {subject}\n")),
        1
    );
}

/// The client dies right after the server's 250 to the first message's
/// data, before it records it. SMTP keeps no ledger to ask, so the next
/// flush must not send that message again: it goes to the failed folder
/// as "may have been sent" (it was: once in the spool); the others are
/// sent once.
#[test]
fn a_client_killed_after_the_servers_250_never_sends_twice() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "smtk");
    let client = smtp_client(&sshd, &user, "", None);
    let rcpt = format!("{}@localhost", user.name);
    let messages = tagged_messages(4, "k");
    queue_tagged(&client, &rcpt, &messages);
    let out = client
        .command(&["queue", "flush"])
        .env("MAILHAUL_TEST_CRASH_AT", "answered")
        .output()
        .unwrap();
    assert!(!out.status.success(), "crashed: {}", describe(&out));
    assert_eq!(queue_listing(&client).matches(" queued").count(), 4);

    let out = client.run(&["queue", "flush"]);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("acct: 3 sent"), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may have been sent"),
        "{}",
        describe(&out)
    );
    let listing = queue_listing(&client);
    assert_eq!(listing.matches(" FAILED ").count(), 1, "{listing}");
    assert!(listing.contains("SMTP keeps no record"), "{listing}");
    wait_for_in_spool(&user, "X-Mailhaul-Test-Tag: k-3\n", 1);
    postfix.wait_delivered(&user, 0);
    assert_each_tag_once(&user, "k", messages.len());
}

/// A server that does not offer PIPELINING: the commands go one at a time
/// and four messages (one with a refused second recipient) arrive once
/// each. (Postfix cannot tell us whether a client pipelined anyway: under
/// ESMTP it lets MAIL, RCPT and DATA come ahead even when it did not offer
/// PIPELINING, `smtpd_forbid_unauth_pipelining` included.)
#[test]
fn without_pipelining_each_command_waits_and_all_arrive_once() {
    ensure_smtpd(
        UNPIPELINED_SMTPD,
        "-o smtpd_discard_ehlo_keywords=pipelining",
    );
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "smtn");
    let client = smtp_client(&sshd, &user, "", Some(UNPIPELINED_SMTPD));
    let rcpt = format!("{}@localhost", user.name);
    let messages = tagged_messages(3, "n");
    queue_tagged(&client, &rcpt, &messages);
    let nobody = format!("nosuch-{}@localhost", user.name);
    let out = run_with_input(
        &client,
        &["send", "-i", &rcpt, &nobody],
        b"X-Mailhaul-Test-Tag: n-3\nSubject: two\n\nbody\n",
    );
    assert!(out.status.success(), "send: {}", describe(&out));
    let out = client.run(&["queue", "flush"]);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("acct: 4 sent"),
        "{}",
        describe(&out)
    );
    let listing = queue_listing(&client);
    assert_eq!(listing.matches(" FAILED ").count(), 1, "{listing}");
    assert!(
        listing.contains(&format!("bytes -> {nobody}\n")),
        "{listing}"
    );
    wait_for_in_spool(&user, "X-Mailhaul-Test-Tag: n-3\n", 1);
    postfix.wait_delivered(&user, 0);
    assert_each_tag_once(&user, "n", 4);
}

/// Real messages sent with SMTP while the client is killed -9 and the link
/// cut at random moments, then flushed in peace: no message is in the
/// spool twice, and none is lost: each is in the spool once, or in the
/// failed folder as "may have been sent" (the SMTP window), and then in
/// the spool at most once. `MAILHAUL_SMTP_RACE_MESSAGES` sets the count.
#[test]
fn smtp_under_kills_and_cuts_never_sends_twice_nor_loses_a_message() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "smtx");
    let n: usize = std::env::var("MAILHAUL_SMTP_RACE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let proxy = CutProxy::start(sshd.port);
    let client = smtp_client(&sshd, &user, "known_hosts = \"accept-new\"\n", None);
    client.connect_on_port(&sshd, proxy.port);
    let sample = tagged_messages(n.min(300), "y");
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            String::from_utf8_lossy(&sample[i % sample.len()])
                .replacen(
                    "X-Mailhaul-Test-Tag: y-",
                    &format!("X-Mailhaul-Test-Tag: x-{i}-was-"),
                    1,
                )
                .into_bytes()
        })
        .collect();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut below = |k: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % k
    };
    let rcpt = format!("{}@localhost", user.name);
    let (mut queued, mut kills, mut cuts) = (0, 0, 0);
    while queued < n {
        let group = (n - queued).min(1 + below(6) as usize);
        queue_tagged(&client, &rcpt, &messages[queued..queued + group]);
        queued += group;
        let pause = Duration::from_millis(below(900));
        let (killed, cut) = flush_and_disturb(&client, &proxy, pause, below(3));
        kills += killed;
        cuts += cut;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = client.run(&["queue", "flush"]);
        let listing = queue_listing(&client);
        if !listing.contains(" queued") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queue not empty after 300 s: {}\n{listing}",
            describe(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let listing = queue_listing(&client);
    let unsure = listing.matches("may have been sent").count();
    assert_eq!(
        unsure,
        listing.matches(" FAILED ").count(),
        "only the SMTP window fails: {listing}"
    );
    eprintln!("{n} messages, {kills} kills, {cuts} cuts, {unsure} in the failed folder as unsure");
    std::thread::sleep(Duration::from_secs(2));
    postfix.wait_delivered(&user, 0);
    let spool = user.spool_contents();
    let failed_text = {
        // The failed messages' tags, read from their files.
        let dir = client.data_dir().join("outbox/acct/failed");
        let mut text = String::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            text.push_str(&String::from_utf8_lossy(
                &std::fs::read(entry.path()).unwrap(),
            ));
        }
        text
    };
    let mut wrong = Vec::new();
    for i in 0..n {
        let tag = format!("X-Mailhaul-Test-Tag: x-{i}-was-");
        let c = count(&spool, &tag);
        let failed = failed_text.contains(&tag);
        if c > 1 || (c == 0 && !failed) {
            wrong.push(format!("x-{i}: {c} times, failed: {failed}"));
        }
    }
    assert!(wrong.is_empty(), "seed: see above; {wrong:?}");
}

/// Postfix 3.9's default strictness (`smtpd_forbid_unauth_pipelining`):
/// the end of data sent together with the next message's MAIL, RCPT and
/// DATA is allowed pipelining (RFC 2920), so the session is not dropped and
/// six messages arrive once each.
#[test]
fn pipelined_end_of_data_passes_postfix_39s_strict_pipelining_check() {
    ensure_smtpd(STRICT_SMTPD, "-o smtpd_forbid_unauth_pipelining=yes");
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "smts");
    let client = smtp_client(&sshd, &user, "", Some(STRICT_SMTPD));
    let rcpt = format!("{}@localhost", user.name);
    let messages = tagged_messages(6, "s");
    queue_tagged(&client, &rcpt, &messages);
    let out = client.run(&["queue", "flush"]);
    assert!(out.status.success(), "flush: {}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("acct: 6 sent"),
        "{}",
        describe(&out)
    );
    wait_for_in_spool(&user, "X-Mailhaul-Test-Tag: s-5\n", 1);
    postfix.wait_delivered(&user, 0);
    assert_each_tag_once(&user, "s", 6);
}
