//! The spool watcher (`assets/remote/watch.sh`) on a real sshd: it reports
//! a Postfix delivery and a claim left behind, falls back to a stat loop
//! where `inotifywait` is missing, and neither takes the spool's lock nor
//! opens the spool while it watches (checked from outside with inotify).

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ssh_target, Postfix, TestSshd, TestUser};
use mailhaul::engine::account::TransportCompression;
use mailhaul::engine::ssh::{self, Connection, NoPrompts};
use mailhaul::engine::watch::{wait_readable, SpoolWatcher, WatchMode, WatchReport};

const HEARTBEAT: Duration = Duration::from_secs(2);

fn connect(sshd: &TestSshd, user: &str) -> Connection {
    ssh::connect(
        &ssh_target(sshd, user),
        TransportCompression::Off,
        &NoPrompts,
    )
    .expect("connect")
}

/// A watcher and the reports read but not looked at yet.
struct Watch {
    watcher: SpoolWatcher,
    backlog: std::collections::VecDeque<WatchReport>,
}

impl Watch {
    /// Starts the watcher and waits for its `ready`.
    fn start(conn: &Connection, spool: &Path, claims: &Path) -> (Watch, WatchMode) {
        let watcher = SpoolWatcher::start(
            conn,
            &spool.display().to_string(),
            &claims.display().to_string(),
            Duration::from_secs(1),
            HEARTBEAT,
        )
        .expect("start the watcher");
        let mut watch = Watch {
            watcher,
            backlog: Default::default(),
        };
        let (ready, _) = watch.wait_for(conn, Duration::from_secs(10), |r| {
            matches!(r, WatchReport::Ready(_))
        });
        let WatchReport::Ready(mode) = ready else {
            unreachable!()
        };
        (watch, mode)
    }

    /// Reads reports until `want` accepts one (returned with the time it
    /// took), panicking after `limit` with everything seen.
    fn wait_for(
        &mut self,
        conn: &Connection,
        limit: Duration,
        want: impl Fn(&WatchReport) -> bool,
    ) -> (WatchReport, Duration) {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            let fresh = self.watcher.read_available(conn).expect("watcher alive");
            self.backlog.extend(fresh);
            while let Some(r) = self.backlog.pop_front() {
                if want(&r) {
                    return (r, start.elapsed());
                }
                seen.push(r);
            }
            let left = limit.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "not reported within {limit:?}; saw {seen:?}"
            );
            wait_readable(conn.raw_fd(), None, left.min(Duration::from_millis(200)));
        }
    }

    /// Everything reported so far, without waiting.
    fn drain(&mut self, conn: &Connection) -> Vec<WatchReport> {
        let fresh = self.watcher.read_available(conn).expect("watcher alive");
        self.backlog.extend(fresh);
        self.backlog.drain(..).collect()
    }
}

fn message(tag: &str) -> Vec<u8> {
    format!(
        "From: sender@example.org\nTo: someone\nSubject: {tag}\nMessage-ID: <{tag}@example.org>\n\nbody {tag}\n"
    )
    .into_bytes()
}

#[test]
fn inotify_reports_a_postfix_delivery_a_claim_and_heartbeats() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "wat");
    let postfix = Postfix::ensure_running();
    let conn = connect(&sshd, &user.name);
    let claims = user.home.join(".mailhaul/claims");
    let (mut watch, mode) = Watch::start(&conn, &user.spool, &claims);
    assert_eq!(mode, WatchMode::Inotify, "inotify-tools is installed here");
    watch.wait_for(&conn, Duration::from_secs(5), |r| {
        *r == WatchReport::Spool {
            bytes: 0,
            claims: 0,
        }
    });

    postfix.send(&user.name, &message("push-1"));
    let (_, took) = watch.wait_for(
        &conn,
        Duration::from_secs(30),
        |r| matches!(r, WatchReport::Spool { bytes, .. } if *bytes > 0),
    );
    eprintln!("delivery reported {took:?} after sendmail");
    let spool_len = std::fs::metadata(&user.spool).unwrap().len();
    assert!(spool_len > 0);
    assert!(
        String::from_utf8_lossy(&user.spool_contents()).contains("push-1"),
        "delivered"
    );

    // A claim left behind (a copy-truncate claim file appears).
    std::fs::create_dir_all(&claims).unwrap();
    // The watcher watches the claims directory only once it exists: restart.
    watch.watcher.close(&conn);
    let (mut watch, _) = Watch::start(&conn, &user.spool, &claims);
    // The user's claim, moved in once it is the user's file.
    let made = user.home.join("x.mbox");
    std::fs::write(&made, b"From a\n\n").unwrap();
    std::os::unix::fs::chown(&made, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::rename(&made, claims.join("x.0123456789ab.1-2-3.mbox")).unwrap();
    watch.wait_for(&conn, Duration::from_secs(5), |r| {
        matches!(r, WatchReport::Spool { claims: 1, .. })
    });
    // A file of another user's (root's) named like a claim is no claim of
    // the user's: the report it causes still counts one.
    std::fs::write(claims.join("y.0123456789ab.1-2-4.mbox"), b"From b\n\n").unwrap();
    let (next, _) = watch.wait_for(&conn, Duration::from_secs(5), |r| {
        matches!(r, WatchReport::Spool { .. })
    });
    assert!(
        matches!(next, WatchReport::Spool { claims: 1, .. }),
        "{next:?}"
    );

    // Silence is broken by a heartbeat.
    let (_, took) = watch.wait_for(&conn, HEARTBEAT * 3, |r| *r == WatchReport::Alive);
    assert!(took >= HEARTBEAT / 2, "alive after {took:?}");
}

/// An sshd whose root sessions cannot see `/usr/bin/inotifywait` (a mount
/// namespace per session, as in fetch_server_tools.rs).
fn sshd_without_inotifywait(dir: &Path) -> TestSshd {
    let blank = dir.join("blank");
    std::fs::write(&blank, "").unwrap();
    let wrapper = dir.join("hide.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare -m sh -c 'mount --bind {} /usr/bin/inotifywait || exit 99; \
             exec sh -c \"$SSH_ORIGINAL_COMMAND\"'\n",
            blank.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    TestSshd::start_with_config(&format!("ForceCommand {}\n", wrapper.display()))
}

#[test]
fn without_inotifywait_a_stat_loop_reports_changes() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = sshd_without_inotifywait(dir.path());
    let server = tempfile::tempdir().unwrap();
    let spool = server.path().join("mbox");
    std::fs::write(&spool, b"").unwrap();
    let conn = connect(&sshd, "root");
    let (mut watch, mode) = Watch::start(&conn, &spool, &server.path().join("claims"));
    assert_eq!(mode, WatchMode::Poll);
    watch.wait_for(&conn, Duration::from_secs(5), |r| {
        matches!(r, WatchReport::Spool { bytes: 0, .. })
    });
    let msg = message("poll-1");
    deliver_with_procmail(&spool, &msg, None);
    let (_, took) = watch.wait_for(
        &conn,
        Duration::from_secs(5),
        |r| matches!(r, WatchReport::Spool { bytes, .. } if *bytes > 0),
    );
    eprintln!("stat loop reported the delivery after {took:?}");
}

/// Appends `msg` to `spool` with procmail (which takes `spool.lock`, as on
/// a real server), as `user` when given; panics unless it is delivered.
fn deliver_with_procmail(spool: &Path, msg: &[u8], user: Option<&str>) {
    let rc = spool.with_extension("procmailrc");
    std::fs::write(&rc, format!("DEFAULT={}\n", spool.display())).unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "procmail", "-m"]);
            c
        }
        None => {
            let mut c = Command::new("procmail");
            c.arg("-m");
            c
        }
    };
    let mut child = cmd
        .arg(&rc)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run procmail");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(msg).unwrap();
    assert!(child.wait().unwrap().success(), "procmail failed");
}

/// Watches `dir` from outside (the test's own inotifywait) for any open,
/// create or modification of `names`.
struct Spy {
    child: Child,
}

impl Spy {
    fn start(dir: &Path) -> Spy {
        let mut child = Command::new("inotifywait")
            .args([
                "-m", "-e", "open", "-e", "access", "-e", "create", "-e", "modify",
            ])
            .args(["--format", "%e %f"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run inotifywait");
        // Wait until its watch is in place.
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("Watches established") {
            assert_eq!(err.read(&mut byte).unwrap(), 1, "inotifywait ended");
            seen.push(byte[0]);
        }
        Spy { child }
    }

    /// Every event seen on one of `names`.
    fn stop(mut self, names: &[&str]) -> Vec<String> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = self.child.wait();
        out.lines()
            .filter(|l| {
                l.split_once(' ')
                    .is_some_and(|(_, name)| names.contains(&name))
            })
            .map(str::to_string)
            .collect()
    }
}

/// While the watcher runs and looks (inotify: on events that concern the
/// spool's claims; poll: every second), nothing opens the spool or creates
/// its lock; a delivery agent taking the lock right then gets it at once.
#[test]
fn the_watcher_neither_locks_nor_opens_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let plain = TestSshd::start();
    let hidden = sshd_without_inotifywait(dir.path());
    for (sshd, expect) in [(&plain, WatchMode::Inotify), (&hidden, WatchMode::Poll)] {
        let server = tempfile::tempdir().unwrap();
        let spool = server.path().join("mbox");
        std::fs::write(&spool, message("already-there")).unwrap();
        let conn = connect(sshd, "root");
        let (mut watch, mode) = Watch::start(&conn, &spool, &server.path().join("claims"));
        assert_eq!(mode, expect);
        let spy = Spy::start(server.path());
        // Events the inotify watcher looks at (a claim name appearing and
        // going; it is no regular file, so it counts as no claim), and three
        // seconds of the poll loop.
        for i in 0..3 {
            let fake = server.path().join(format!("mbox.mailhaul-claim.{i}"));
            std::fs::create_dir(&fake).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            std::fs::remove_dir(&fake).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        }
        let reports = watch.drain(&conn);
        let touched = spy.stop(&["mbox", "mbox.lock"]);
        assert!(
            touched.is_empty(),
            "{mode:?}: the watcher touched the spool or its lock {} times: {:?}",
            touched.len(),
            &touched[..touched.len().min(6)]
        );
        if mode == WatchMode::Inotify {
            assert!(
                reports
                    .iter()
                    .filter(|r| matches!(r, WatchReport::Spool { .. }))
                    .count()
                    >= 3,
                "the inotify watcher looked on each event: {reports:?}"
            );
        }
        // procmail takes the lock at once while the watcher runs.
        let start = Instant::now();
        deliver_with_procmail(&spool, &message("while-watched"), None);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(4),
            "{mode:?}: procmail needed {took:?} (it backs off 8 s from a busy lock)"
        );
        watch.wait_for(
            &conn,
            Duration::from_secs(5),
            |r| matches!(r, WatchReport::Spool { bytes, .. } if *bytes > 0),
        );
    }
}
