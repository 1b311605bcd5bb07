//! The system Postfix as the test server's MTA: local delivery into
//! `/var/mail/USER`, which on Debian with procmail installed goes through
//! `mailbox_command = procmail -a "$EXTENSION"` (dot-lock + fcntl lock).
//!
//! Postfix is one system-wide service: it is started at most once per test
//! process (a `OnceLock`) under an `flock` shared by all test processes, and
//! left running (other test processes may be using it).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{require_root_and_packages, run, SystemLock, TestUser};

/// A handle proving Postfix runs; get it with [`Postfix::ensure_running`].
pub struct Postfix {
    /// Postfix's `mailbox_command` (procmail on Debian when it is installed).
    pub mailbox_command: String,
}

impl Postfix {
    /// Starts Postfix if it is not running (`newaliases; postfix start`).
    pub fn ensure_running() -> &'static Postfix {
        static POSTFIX: OnceLock<Postfix> = OnceLock::new();
        POSTFIX.get_or_init(|| {
            require_root_and_packages();
            if !std::path::Path::new("/usr/sbin/postfix").exists()
                || !std::path::Path::new("/etc/postfix/main.cf").exists()
            {
                panic!(
                    "Postfix is not installed or not configured; run `bash tests/run-all.sh` \
                     as root (it preseeds debconf for a local-only Postfix)"
                );
            }
            let _lock = SystemLock::acquire("postfix");
            if !is_running() {
                run(&mut Command::new("/usr/bin/newaliases"));
                run(Command::new("/usr/sbin/postfix").arg("start"));
                let deadline = Instant::now() + Duration::from_secs(20);
                while !is_running() {
                    assert!(Instant::now() < deadline, "postfix did not start");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let out = run(Command::new("/usr/sbin/postconf").args(["-h", "mailbox_command"]));
            Postfix {
                mailbox_command: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            }
        })
    }

    /// Raises Postfix's `message_size_limit` to at least `bytes` (the
    /// Debian default is 10 MB), for tests that send big messages.
    pub fn allow_messages_of(&self, bytes: u64) {
        let _lock = SystemLock::acquire("postfix");
        let out = run(Command::new("/usr/sbin/postconf").args(["-h", "message_size_limit"]));
        let limit: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if limit != 0 && limit < bytes {
            run(Command::new("/usr/sbin/postconf")
                .args(["-e", &format!("message_size_limit={bytes}")]));
            run(Command::new("/usr/sbin/postfix").arg("reload"));
        }
    }

    /// Queues `message` (a complete RFC 5322 message, no `From ` line) for
    /// `user` with `sendmail -i`, without waiting for delivery.
    pub fn send(&self, user: &str, message: &[u8]) {
        let mut child = Command::new("/usr/sbin/sendmail")
            .arg("-i")
            .arg(user)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn /usr/sbin/sendmail");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(message)
            .expect("write to sendmail");
        let out = child.wait_with_output().expect("wait for sendmail");
        assert!(
            out.status.success(),
            "sendmail {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Queues `message` for `user` and waits until it is in their spool.
    pub fn deliver(&self, user: &TestUser, message: &[u8]) {
        let before = user.spool_contents().len();
        self.send(&user.name, message);
        self.wait_delivered(user, before + message.len());
    }

    /// Waits (up to 60 s) until nothing for `user` is left in Postfix's queue,
    /// the spool is at least `min_spool_len` bytes long and not locked.
    pub fn wait_delivered(&self, user: &TestUser, min_spool_len: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let lock = format!("{}.lock", user.spool.display());
        loop {
            let len = std::fs::metadata(&user.spool).map_or(0, |m| m.len() as usize);
            if len >= min_spool_len
                && !std::path::Path::new(&lock).exists()
                && !queued_for(&user.name)
            {
                return;
            }
            if Instant::now() > deadline {
                let q = Command::new("/usr/sbin/postqueue").arg("-p").output();
                panic!(
                    "mail for {} not delivered within 60 s (spool {len} bytes, want >= \
                     {min_spool_len}); queue:\n{}",
                    user.name,
                    q.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether `postfix status` says the master runs.
fn is_running() -> bool {
    Command::new("/usr/sbin/postfix")
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether Postfix's queue holds mail for `user`: qualified (`user@domain`)
/// or, still in the maildrop queue, as the bare name.
fn queued_for(user: &str) -> bool {
    let out = Command::new("/usr/sbin/postqueue")
        .arg("-j")
        .output()
        .expect("run postqueue -j");
    let text = String::from_utf8_lossy(&out.stdout).replace("\": \"", "\":\"");
    text.contains(&format!("\"address\":\"{user}@"))
        || text.contains(&format!("\"address\":\"{user}\""))
}
