//! `mailhaul watch` against a real sshd and Postfix: mail sent after it
//! started is filed with no key press (and the new-mail hook runs); a
//! dropped link (the session's sshd processes killed) is reconnected and
//! mail sent meanwhile filed once; Postfix delivering a few hundred tagged
//! messages while it runs ends with each filed exactly once; SIGTERM stops
//! it with exit 0; after SIGTERM, a kill -9, or a frozen client that sshd's
//! ClientAlive check drops, no watcher process is left on the server.

mod common;
mod fetch_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{proc, Postfix, TestSshd, TestUser};
use fetch_support::watch::Watch;
use fetch_support::{maildir_files, Client};

fn message(tag: &str) -> Vec<u8> {
    format!(
        "From: sender@example.org\nTo: someone\nSubject: {tag}\nMessage-ID: <{tag}@example.org>\n\nbody of {tag}\n"
    )
    .into_bytes()
}

/// How many filed messages carry each `Subject: TAG` line.
fn filed_tags(client: &Client) -> std::collections::BTreeMap<String, usize> {
    let mut tags = std::collections::BTreeMap::new();
    for file in maildir_files(&client.maildir) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        if let Some(tag) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) {
            *tags.entry(tag.to_string()).or_insert(0) += 1;
        }
    }
    tags
}

/// Waits until `n` messages are filed; returns how long it took.
fn wait_filed(client: &Client, n: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let have = maildir_files(&client.maildir).len();
        if have >= n {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{have} of {n} messages filed after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the user has no process left on the server; returns how long.
fn wait_no_processes(user: &TestUser, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let left = proc::processes_of(user.uid);
        if left.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "processes of {} still on the server after {limit:?}: {:?}",
            user.name,
            left.iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " "))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mail_is_pushed_reconnected_after_a_drop_and_the_hook_runs() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "push");
    let postfix = Postfix::ensure_running();
    let hook_dir = tempfile::tempdir().unwrap();
    let hook_out = hook_dir.path().join("hook.log");
    let client = Client::new(
        &sshd,
        &user.name,
        &format!(
            "on_new_mail = [\"sh\", \"-c\", \"echo \\\"$MAILHAUL_ACCOUNT $MAILHAUL_COUNT $MAILHAUL_FOLDERS\\\" >> {}\"]",
            hook_out.display()
        ),
    );
    let mut watch = Watch::start(&client);
    watch.wait_line("watching the spool (inotify)", Duration::from_secs(30));

    // Sent after watch started: filed with no key press.
    postfix.send(&user.name, &message("pushed-1"));
    let took = wait_filed(&client, 1, Duration::from_secs(30));
    eprintln!("sendmail -> filed in {took:?}");
    watch.wait_line("filed 1 message(s) (INBOX 1)", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&hook_out).is_ok_and(|t| t.contains("acct 1 1 INBOX")) {
        assert!(Instant::now() < deadline, "the hook did not run");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The link drops (the session's sshd processes are killed): mail sent
    // meanwhile is filed once after the reconnect.
    let killed = proc::kill_connection_holders(sshd.port);
    assert!(!killed.is_empty(), "no connection to drop");
    postfix.send(&user.name, &message("while-down-2"));
    watch.wait_line("reconnecting in", Duration::from_secs(30));
    watch.wait_line("watching the spool", Duration::from_secs(30));
    wait_filed(&client, 2, Duration::from_secs(30));
    postfix.send(&user.name, &message("after-3"));
    wait_filed(&client, 3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let tags = filed_tags(&client);
    assert_eq!(
        tags.into_iter().collect::<Vec<_>>(),
        vec![
            ("after-3".to_string(), 1),
            ("pushed-1".to_string(), 1),
            ("while-down-2".to_string(), 1)
        ]
    );

    // SIGTERM: a clean stop, exit 0, nothing left on the server.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.pid(), libc::SIGTERM) };
    let status = watch.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{:#?}", watch.seen);
    let gone = wait_no_processes(&user, Duration::from_secs(10));
    eprintln!("after SIGTERM the server side was gone in {gone:?}");
}

/// On a server that allows a connection two sessions (sshd's
/// MaxSessions 2: the watcher and one more), the claim script kept
/// started ahead and the channel asked for ahead take turns with the
/// fetch's own steps (claim, release, probe), refused when none is free:
/// mail delivered one after another is still filed, each message once.
#[test]
fn mail_is_pushed_by_a_server_that_allows_two_sessions() {
    let sshd = TestSshd::start_with_config("MaxSessions 2\n");
    let user = TestUser::create_for(&sshd, "two");
    let postfix = Postfix::ensure_running();
    let client = Client::new(&sshd, &user.name, "");
    let mut watch = Watch::start(&client);
    watch.wait_line("watching the spool (inotify)", Duration::from_secs(30));
    for n in 1..=3 {
        postfix.send(&user.name, &message(&format!("two-{n}")));
        wait_filed(&client, n, Duration::from_secs(30));
        // Idle turns: the standby and the channel ahead come back.
        std::thread::sleep(Duration::from_secs(1));
    }
    let tags = filed_tags(&client);
    assert_eq!(
        tags.into_iter().collect::<Vec<_>>(),
        (1..=3).map(|n| (format!("two-{n}"), 1)).collect::<Vec<_>>()
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.pid(), libc::SIGTERM) };
    let status = watch.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{:#?}", watch.seen);
}

#[test]
fn no_watcher_is_left_after_kill_9_or_a_frozen_client() {
    // sshd notices a silent client after ClientAliveInterval x CountMax.
    let sshd = TestSshd::start_with_config("ClientAliveInterval 1\nClientAliveCountMax 2\n");
    let user = TestUser::create_for(&sshd, "pushk");
    let client = Client::new(&sshd, &user.name, "");

    let mut watch = Watch::start(&client);
    watch.wait_line("watching the spool (inotify)", Duration::from_secs(30));
    assert!(!proc::processes_of(user.uid).is_empty());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.pid(), libc::SIGKILL) };
    let gone = wait_no_processes(&user, Duration::from_secs(10));
    eprintln!("after kill -9 of the client the watcher was gone in {gone:?}");

    // A frozen client (no FIN, no answers: like a cut link).
    let mut watch = Watch::start(&client);
    watch.wait_line("watching the spool (inotify)", Duration::from_secs(30));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.pid(), libc::SIGSTOP) };
    let gone = wait_no_processes(&user, Duration::from_secs(20));
    eprintln!(
        "with ClientAliveInterval 1, CountMax 2, a frozen client's watcher was gone in {gone:?}"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.pid(), libc::SIGKILL) };
}

/// 300 messages by default (the suite stays short); `bench/push-bulk.sh`
/// runs it with `MAILHAUL_PUSH_BULK=2000`.
#[test]
fn postfix_delivering_hundreds_while_watched_files_each_once() {
    let n: usize = std::env::var("MAILHAUL_PUSH_BULK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "pushn");
    let postfix = Postfix::ensure_running();
    let client = Client::new(&sshd, &user.name, "");
    let mut watch = Watch::start(&client);
    watch.wait_line("watching the spool (inotify)", Duration::from_secs(30));
    let start = Instant::now();
    for i in 0..n {
        postfix.send(&user.name, &message(&format!("bulk-{i:04}")));
    }
    wait_filed(&client, n, Duration::from_secs(240 + n as u64 / 2));
    eprintln!("{n} messages sent and filed in {:?}", start.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    let tags = filed_tags(&client);
    let wrong: Vec<_> = (0..n)
        .map(|i| format!("bulk-{i:04}"))
        .filter(|t| tags.get(t) != Some(&1))
        .map(|t| (tags.get(&t).copied().unwrap_or(0), t))
        .collect();
    assert!(wrong.is_empty(), "not filed exactly once: {wrong:?}");
    assert_eq!(tags.len(), n);
    assert!(user.spool_contents().is_empty(), "all fetched");
}

/// The account's lock is push's guard against filing twice: while another
/// mailhaul (cron's `fetch`, the dashboard) holds the account, `watch`
/// claims nothing even though the watcher reports mail; once the lock is
/// free, the next report fetches everything, each message once.
#[test]
fn watch_never_fetches_while_another_mailhaul_holds_the_account() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "pushl");
    let postfix = Postfix::ensure_running();
    let client = Client::new(&sshd, &user.name, "");
    // A fetch of this account is running elsewhere.
    let held = mailhaul::engine::journal::Workspace::open(&client.data_dir(), "acct")
        .expect("hold the account's lock");
    let mut watch = Watch::start(&client);
    watch.wait_line("watching the spool (inotify)", Duration::from_secs(30));
    postfix.deliver(&user, &message("held-1"));
    watch.wait_line("another mailhaul is fetching", Duration::from_secs(30));
    assert!(
        maildir_files(&client.maildir).is_empty(),
        "filed while another mailhaul held the account"
    );
    assert!(
        String::from_utf8_lossy(&user.spool_contents()).contains("Subject: held-1"),
        "claimed while another mailhaul held the account"
    );

    drop(held);
    postfix.send(&user.name, &message("after-2"));
    wait_filed(&client, 2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        filed_tags(&client).into_iter().collect::<Vec<_>>(),
        vec![("after-2".to_string(), 1), ("held-1".to_string(), 1)]
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.pid(), libc::SIGTERM) };
    assert_eq!(
        watch.child.wait().unwrap().code(),
        Some(0),
        "{:#?}",
        watch.seen
    );
}

/// `watch` killed (-9) after a claim's messages were filed and before it
/// was released on the server: the claim is still there, and only the
/// journal says it is filed. The next `watch` releases it without filing
/// it again, then goes on pushing; every message is filed once. Fails when
/// the journal is not written (the claim is then fetched and filed again).
#[test]
fn watch_killed_between_delivery_and_release_files_every_message_once_after_restart() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "pushj");
    let postfix = Postfix::ensure_running();
    let client = Client::new(&sshd, &user.name, "");
    for tag in ["crash-1", "crash-2", "crash-3"] {
        postfix.deliver(&user, &message(tag));
    }
    let status = client
        .command(&["watch"])
        .env("MAILHAUL_TEST_CRASH_AT", "delivered")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "watch was to die at the crash point"
    );
    assert_eq!(
        maildir_files(&client.maildir).len(),
        3,
        "filed before the crash"
    );
    assert!(user.spool_contents().is_empty(), "the spool was claimed");
    let staged = std::fs::read_dir(client.data_dir().join("accounts/acct/staging"))
        .unwrap()
        .count();
    assert_eq!(staged, 0, "the filed claim is no longer staged");
    // A reader sees them (moved to cur/): fetching the claim again would
    // file each one twice.
    for file in maildir_files(&client.maildir) {
        let dir = file.parent().unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        let seen = dir
            .parent()
            .unwrap()
            .join("cur")
            .join(format!("{name}:2,S"));
        std::fs::rename(&file, seen).unwrap();
    }

    let mut watch = Watch::start(&client);
    wait_filed(&client, 3, Duration::from_secs(60));
    watch.wait_line("watching the spool", Duration::from_secs(30));
    postfix.send(&user.name, &message("after-4"));
    wait_filed(&client, 4, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        filed_tags(&client).into_iter().collect::<Vec<_>>(),
        vec![
            ("after-4".to_string(), 1),
            ("crash-1".to_string(), 1),
            ("crash-2".to_string(), 1),
            ("crash-3".to_string(), 1)
        ]
    );
    let left: Vec<_> = std::fs::read_dir(user.home.join(".mailhaul/claims"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "claims left on the server: {left:?}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.pid(), libc::SIGTERM) };
    assert_eq!(
        watch.child.wait().unwrap().code(),
        Some(0),
        "{:#?}",
        watch.seen
    );
}
