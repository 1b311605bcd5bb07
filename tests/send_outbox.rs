//! `mailhaul send` and `mailhaul queue` against the real sshd and Postfix:
//! messages queued by the sendmail drop-in reach the recipients' spools on
//! the "server" exactly once, with the envelope right and Bcc gone; offline
//! sends queue; refusals land in the failed folder; and neither a kill -9
//! of the client nor a cut link ever sends a message twice.

mod common;
mod fetch_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::proxy::CutProxy;
use common::{Postfix, TestSshd, TestUser};
use fetch_support::send::{
    assert_each_tag_once, count, flush_and_disturb, queue_listing, queue_tagged, run_with_input,
    tagged_messages, wait_for_in_spool,
};
use fetch_support::{describe, Client};

#[test]
fn sendmail_interface_delivers_once_with_envelope_and_without_bcc() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let login = TestUser::create_for(&sshd, "sndl");
    let blind = TestUser::create("sndb");
    let client = Client::new(&sshd, &login.name, "address = \"me@example.org\"\n");
    let subject = format!("outbox-{}", login.name);
    // CRLF line ends, 8-bit, a lone dot line (data with -oi).
    let message = format!(
        "From: Me <me@example.org>\r\nTo: {l}@localhost\r\nBcc: {b}@localhost\r\n\
         Subject: {subject}\r\nX-Eight-Bit: caf\u{e9}\r\n\r\nfirst line\r\n.\r\nafter the dot\r\n",
        l = login.name,
        b = blind.name
    );
    let out = run_with_input(&client, &["send", "-t", "-oi"], message.as_bytes());
    assert!(out.status.success(), "send: {}", describe(&out));
    assert!(
        out.stdout.is_empty(),
        "sendmail is silent: {}",
        describe(&out)
    );
    let listing = queue_listing(&client);
    assert!(
        listing.contains(&format!(
            "{}@localhost, {}@localhost",
            login.name, blind.name
        )),
        "{listing}"
    );
    assert!(
        login.spool_contents().is_empty(),
        "nothing sent before flush"
    );

    let out = client.run(&["queue", "flush"]);
    assert!(out.status.success(), "flush: {}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("acct: 1 sent"),
        "{}",
        describe(&out)
    );
    assert_eq!(queue_listing(&client), "the outbox is empty\n");
    wait_for_in_spool(&login, &subject, 1);
    wait_for_in_spool(&blind, &subject, 1);
    postfix.wait_delivered(&login, 0);
    postfix.wait_delivered(&blind, 0);
    for user in [&login, &blind] {
        let spool = user.spool_contents();
        let text = String::from_utf8_lossy(&spool);
        assert_eq!(count(&spool, &format!("Subject: {subject}\n")), 1, "{text}");
        assert!(!text.contains("Bcc:"), "Bcc must not be sent: {text}");
        assert!(
            text.contains("Return-Path: <me@example.org>"),
            "envelope sender from account.address: {text}"
        );
        assert!(
            text.contains("\nfirst line\n.\nafter the dot\n"),
            "LF line ends, the dot kept: {text}"
        );
        assert!(spool
            .windows("X-Eight-Bit: caf\u{e9}\n".len())
            .any(|w| w == "X-Eight-Bit: caf\u{e9}\n".as_bytes()));
    }
}

/// Recipients that are shell syntax or start with a dash reach the server's
/// sendmail as they are (the leading-dash one is bounced by Postfix, and the
/// bounce names it), never a shell; `--now` waits for the server.
#[test]
fn odd_recipients_arrive_verbatim_and_now_waits() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let login = TestUser::create_for(&sshd, "sndo");
    let client = Client::new(&sshd, &login.name, "");
    let marker = client.dir.path().join("shell-ran");
    let dashed = format!("-nosuch-{}@localhost", login.name);
    let shelly = format!(
        "{}+a;b$(touch${{IFS}}{})'x@localhost",
        login.name,
        marker.display()
    );
    let subject = format!("odd-{}", login.name);
    let message = format!("Subject: {subject}\n\nhello\n");
    let from = format!("{}@localhost", login.name);
    let out = run_with_input(
        &client,
        &[
            "send",
            "--now",
            "-i",
            "-f",
            &from,
            "-F",
            "Odd Sender",
            "--",
            &dashed,
            &shelly,
        ],
        message.as_bytes(),
    );
    assert!(out.status.success(), "send --now: {}", describe(&out));
    assert_eq!(queue_listing(&client), "the outbox is empty\n");
    // The bounce for the dashed recipient comes back to the sender (login).
    wait_for_in_spool(&login, &dashed, 1);
    wait_for_in_spool(&login, "From: Odd Sender <", 1);
    postfix.wait_delivered(&login, 0);
    assert!(!marker.exists(), "a recipient reached a shell");
}

#[test]
fn refusals_and_offline_sends_queue_and_say_why() {
    let sshd = TestSshd::start();
    let login = TestUser::create_for(&sshd, "sndf");
    // No recipients, a bad mode: sysexits, nothing queued.
    let client = Client::new(&sshd, &login.name, "");
    let out = run_with_input(&client, &["send", "-oi"], b"Subject: x\n\nno one\n");
    assert_eq!(out.status.code(), Some(64), "{}", describe(&out));
    let out = run_with_input(&client, &["send", "-t"], b"Subject: x\n\nno one\n");
    assert_eq!(out.status.code(), Some(64), "{}", describe(&out));
    let out = run_with_input(&client, &["send", "--bogus", "a@b"], b"x\n");
    assert_eq!(out.status.code(), Some(64), "{}", describe(&out));
    let out = run_with_input(&client, &["send", "-f", "a@b\nRCPT TO:<x>", "c@d"], b"x\n");
    assert_eq!(out.status.code(), Some(65), "{}", describe(&out));
    assert_eq!(queue_listing(&client), "the outbox is empty\n");

    // The server cannot be reached: queued, exit 0; flush says so (7).
    let dead_port = common::sshd::free_port();
    client.connect_on_port(&sshd, dead_port);
    let out = run_with_input(
        &client,
        &["send", "-i", "someone@example.org"],
        b"Subject: later\n\nbody\n",
    );
    assert!(out.status.success(), "offline send: {}", describe(&out));
    let out = run_with_input(
        &client,
        &["send", "--now", "-i", "someone@example.org"],
        b"Subject: now\n\nbody\n",
    );
    assert_eq!(
        out.status.code(),
        Some(75),
        "--now offline: {}",
        describe(&out)
    );
    let out = client.run(&["queue", "flush"]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let listing = queue_listing(&client);
    assert_eq!(listing.matches(" queued, ").count(), 2, "{listing}");
    assert!(listing.contains("someone@example.org"), "{listing}");
    assert!(
        listing.contains("Connection refused") || listing.contains("connect"),
        "{listing}"
    );
}

/// Postfix's sendmail refuses a user not in `authorized_submit_users`
/// with EX_TEMPFAIL (Postfix answers every synchronous refusal so): the
/// message stays queued with sendmail's words, flush exits 7, and once the
/// server takes mail again the next flush sends it.
#[test]
fn a_temporary_refusal_stays_queued_with_the_servers_words() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let login = TestUser::create_for(&sshd, "sndt");
    let client = Client::new(&sshd, &login.name, "");
    let rcpt = format!("{}@localhost", login.name);
    let out = run_with_input(
        &client,
        &["send", "-i", &rcpt],
        b"Subject: held back\n\nbody\n",
    );
    assert!(out.status.success(), "send: {}", describe(&out));
    let out = {
        let _lock = common::SystemLock::acquire("postfix-submit-users");
        let postconf = || std::process::Command::new("/usr/sbin/postconf");
        let before = common::run(postconf().args(["-h", "authorized_submit_users"]));
        let before = String::from_utf8_lossy(&before.stdout).trim().to_string();
        common::run(postconf().arg("-e").arg(format!(
            "authorized_submit_users = !{}, {before}",
            login.name
        )));
        let out = client.run(&["queue", "flush"]);
        common::run(
            postconf()
                .arg("-e")
                .arg(format!("authorized_submit_users = {before}")),
        );
        out
    };
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let listing = queue_listing(&client);
    assert!(listing.contains(" queued, 1 attempts "), "{listing}");
    assert!(listing.contains("exit status 75, EX_TEMPFAIL"), "{listing}");
    assert!(listing.contains("not allowed to submit mail"), "{listing}");
    let out = client.run(&["queue", "flush"]);
    assert!(out.status.success(), "{}", describe(&out));
    wait_for_in_spool(&login, "Subject: held back\n", 1);
    postfix.wait_delivered(&login, 0);
    assert_eq!(count(&login.spool_contents(), "Subject: held back\n"), 1);
}

/// A server whose sendmail is msmtp (relaying to Postfix's SMTP port)
/// refuses an unknown recipient at once: msmtp exits EX_DATAERR with the
/// SMTP server's 550. The message goes to the failed folder with those
/// words, flush exits 8 and names it, later flushes leave it alone, and
/// only `queue drop` removes it.
#[test]
fn a_permanent_refusal_lands_in_failed_with_the_servers_words() {
    Postfix::ensure_running();
    let sshd = TestSshd::start();
    let login = TestUser::create_for(&sshd, "sndr");
    login.write_msmtprc();
    let client = Client::new(&sshd, &login.name, "sendmail = \"/usr/bin/msmtp\"\n");
    let nobody = format!("nosuch-{}@localhost", login.name);
    let out = run_with_input(
        &client,
        &["send", "-i", &nobody],
        b"Subject: refused\n\nbody\n",
    );
    assert!(out.status.success(), "send: {}", describe(&out));
    let out = client.run(&["queue", "flush"]);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused by the server's sendmail (exit status 65)"),
        "{stderr}"
    );
    assert!(stderr.contains("User unknown"), "{stderr}");
    let listing = queue_listing(&client);
    assert!(listing.contains(" FAILED "), "{listing}");
    assert!(listing.contains("exit status 65, EX_DATAERR"), "{listing}");
    assert!(listing.contains("550 5.1.1"), "{listing}");
    let out = client.run(&["queue", "flush"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(queue_listing(&client).contains(" FAILED "));
    let id = listing.split(' ').nth(1).unwrap().to_string();
    let out = client.run(&["queue", "drop", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(queue_listing(&client), "the outbox is empty\n");
}

/// The client dies (abort) right after the server's first answer, before
/// it records anything: the next flush must not send those messages again
/// (the server's ledger answers `dup`). Fails when send.sh's ledger check
/// is broken.
#[test]
fn a_client_killed_after_the_servers_acceptance_never_sends_twice() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "sndk");
    let client = Client::new(&sshd, &user.name, "");
    let messages = tagged_messages(5, "k");
    queue_tagged(&client, &format!("{}@localhost", user.name), &messages);
    let out = client
        .command(&["queue", "flush"])
        .env("MAILHAUL_TEST_CRASH_AT", "answered")
        .output()
        .unwrap();
    assert!(!out.status.success(), "crashed: {}", describe(&out));
    assert_eq!(queue_listing(&client).matches(" queued").count(), 5);
    let out = client.run(&["queue", "flush"]);
    assert!(out.status.success(), "flush: {}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("acct: 5 sent"),
        "{}",
        describe(&out)
    );
    assert_eq!(queue_listing(&client), "the outbox is empty\n");
    wait_for_in_spool(&user, "X-Mailhaul-Test-Tag: k-4\n", 1);
    postfix.wait_delivered(&user, 0);
    assert_each_tag_once(&user, "k", messages.len());
}

/// A small random generator (xorshift), seeded from the clock and printed,
/// so that a failing run can be told apart.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Sends `n` real messages while the client is killed -9 and the link is
/// cut at random moments, then flushes in peace: every message is in the
/// spool exactly once. `MAILHAUL_SEND_RACE_MESSAGES` sets `n` (bench/send-race.sh
/// runs 500).
#[test]
fn kills_and_cut_links_never_send_twice_or_lose_a_message() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "sndx");
    let n: usize = std::env::var("MAILHAUL_SEND_RACE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(36);
    let proxy = CutProxy::start(sshd.port);
    // The proxy's port is not the one known_hosts has the key for.
    let client = Client::new(&sshd, &user.name, "known_hosts = \"accept-new\"\n");
    client.connect_on_port(&sshd, proxy.port);
    let messages = tagged_messages(n.min(300), "x");
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let m = &messages[i % messages.len()];
            let text = String::from_utf8_lossy(m).replacen(
                "X-Mailhaul-Test-Tag: x-",
                &format!("X-Mailhaul-Test-Tag: x-{i}-was-"),
                1,
            );
            // Tag is `x-I-was-J`; count by `x-I-was-`.
            text.into_bytes()
        })
        .collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    // Queue in groups, so flushes overlap with new mail.
    let mut queued = 0;
    let mut rounds = 0;
    let (mut kills, mut cuts) = (0, 0);
    while queued < n {
        let group = (n - queued).min(1 + rng.below(12) as usize);
        queue_tagged(
            &client,
            &format!("{}@localhost", user.name),
            &messages[queued..queued + group],
        );
        queued += group;
        rounds += 1;
        let pause = Duration::from_millis(rng.below(900));
        let (killed, cut) = flush_and_disturb(&client, &proxy, pause, rng.below(3));
        kills += killed;
        cuts += cut;
    }
    // In peace now: flush until the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = client.run(&["queue", "flush"]);
        if out.status.success() && queue_listing(&client) == "the outbox is empty\n" {
            break;
        }
        assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
        assert!(
            Instant::now() < deadline,
            "queue not empty after 300 s: {}\n{}",
            describe(&out),
            queue_listing(&client)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{n} messages, {rounds} rounds, {kills} kills, {cuts} cuts");
    wait_for_in_spool(&user, &format!("X-Mailhaul-Test-Tag: x-{}-was-", n - 1), 1);
    postfix.wait_delivered(&user, 0);
    let spool = user.spool_contents();
    let mut wrong = Vec::new();
    for i in 0..n {
        let c = count(&spool, &format!("X-Mailhaul-Test-Tag: x-{i}-was-"));
        if c != 1 {
            wrong.push(format!("x-{i}: {c} times"));
        }
    }
    assert!(wrong.is_empty(), "seed {seed}: not exactly once: {wrong:?}");
}

/// A 50 MB message goes up gzip-compressed (`compression = "gzip"`) in
/// chunks and arrives intact (size and md5 of its body in the spool).
#[test]
fn a_50_mb_message_arrives_intact_over_gzip() {
    use md5::{Digest, Md5};
    let postfix = Postfix::ensure_running();
    postfix.allow_messages_of(64 << 20);
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "sndg");
    let client = Client::new(&sshd, &user.name, "compression = \"gzip\"\n");
    let mut body = Vec::with_capacity(50 << 20);
    let mut i = 0u64;
    while body.len() < 50 << 20 {
        // Varied enough that gzip does not shrink it to nothing.
        body.extend_from_slice(
            format!(
                "line {i} {:x} of a big message\n",
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )
            .as_bytes(),
        );
        i += 1;
    }
    let mut message = format!("Subject: big-{}\n\n", user.name).into_bytes();
    message.extend_from_slice(&body);
    let rcpt = format!("{}@localhost", user.name);
    let out = run_with_input(&client, &["send", "-oi", "--", &rcpt], &message);
    assert!(out.status.success(), "send: {}", describe(&out));
    let out = client.run(&["queue", "flush"]);
    assert!(out.status.success(), "flush: {}", describe(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("1 sent") && summary.contains("gzip"),
        "{summary}"
    );
    postfix.wait_delivered(&user, body.len());
    let spool = user.spool_contents();
    let start = spool
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 2)
        .unwrap();
    let got = &spool[start..start + body.len()];
    assert_eq!(
        format!("{:x}", Md5::digest(got)),
        format!("{:x}", Md5::digest(&body))
    );
}

/// The server died (kill -9, power) between `begin` and sendmail's answer:
/// the ledger's last word for the message is `begin`. A later flush must
/// not send it again: it goes to the failed folder, named as possibly sent.
/// One message's line is as protocol 2 writes it (the id's first 16 hex
/// digits), the other's as protocol 1 did (the whole id), which a newer
/// mailhaul must honour too (fails when the script matches only whole
/// lines of its own length).
#[test]
fn a_message_the_server_may_have_sent_is_not_sent_again() {
    Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "sndu");
    let client = Client::new(&sshd, &user.name, "");
    let rcpt = format!("{}@localhost", user.name);
    for n in 0..2 {
        let out = run_with_input(
            &client,
            &["send", "-i", &rcpt],
            format!("Subject: maybe-sent-{n}\n\nbody\n").as_bytes(),
        );
        assert!(out.status.success(), "send: {}", describe(&out));
    }
    let listing = queue_listing(&client);
    let ids: Vec<String> = listing
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{listing}");
    // What a server killed between the ledger's `begin` and sendmail's exit leaves.
    let dir = user.home.join(".mailhaul");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("sent-ledger"),
        format!("begin {}\nbegin {}\n", &ids[0][..16], ids[1]),
    )
    .unwrap();
    for path in [dir.clone(), dir.join("sent-ledger")] {
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
    }
    let out = client.run(&["queue", "flush"]);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may have been sent"),
        "{}",
        describe(&out)
    );
    let listing = queue_listing(&client);
    assert_eq!(listing.matches(" FAILED ").count(), 2, "{listing}");
    assert!(listing.contains("it may have been sent"), "{listing}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&user.spool_contents(), "Subject: maybe-sent"), 0);
}

/// Three flushes of one queue at once (cron's, a mail client's `send
/// --now`, the user's): the relay lock lets one send while the others wait,
/// so every message is sent once and none is taken for one an interrupted
/// attempt may have sent (which the server's ledger would say of a message
/// another flush is handing over at that moment). Fails when the lock is
/// skipped.
#[test]
fn flushes_at_the_same_time_send_each_message_once() {
    let postfix = Postfix::ensure_running();
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "sndc");
    let client = Client::new(&sshd, &user.name, "");
    let messages = tagged_messages(30, "c");
    queue_tagged(&client, &format!("{}@localhost", user.name), &messages);
    let flushes: Vec<_> = (0..3)
        .map(|_| {
            client
                .command(&["queue", "flush"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for flush in flushes {
        let out = flush.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent flush: {}",
            describe(&out)
        );
    }
    assert_eq!(queue_listing(&client), "the outbox is empty\n");
    wait_for_in_spool(&user, "X-Mailhaul-Test-Tag: c-29\n", 1);
    postfix.wait_delivered(&user, 0);
    assert_each_tag_once(&user, "c", messages.len());
}
