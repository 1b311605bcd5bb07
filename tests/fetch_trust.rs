//! What other local users and odd spools on the server cannot do to a fetch,
//! against a real sshd on loopback: files another user plants as claims in
//! a sticky, world-writable spool directory; a spool that is a symbolic
//! link (zstd and gzip); stale dot-locks removed as Postfix's local(8) does,
//! and fresh ones or ones whose holder is alive waited on, never broken.

mod common;
mod fetch_support;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestSshd, TestUser};
use fetch_support::{describe, Client, Fixture};

/// One message whose Subject tells it apart.
fn message(subject: &str) -> Vec<u8> {
    format!("From a@b Thu Jan  1 00:00:00 1970\nSubject: {subject}\n\nbody of {subject}\n\n")
        .into_bytes()
}

/// The Subject lines of everything filed, sorted.
fn filed_subjects(client: &Client) -> Vec<String> {
    let mut subjects: Vec<String> = client
        .filed_messages()
        .iter()
        .map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    subjects.sort();
    subjects
}

/// Runs `sh -c SCRIPT sh ARGS...` as `user` (a real second login, not root
/// with chown), panicking with its output on failure.
fn as_user(user: &TestUser, script: &str, args: &[&std::ffi::OsStr]) {
    common::run(
        Command::new("/usr/sbin/runuser")
            .args(["-u", &user.name, "--", "sh", "-c", script, "sh"])
            .args(args),
    );
}

/// A directory like a shared `/var/mail` on systems that make it 1777.
fn sticky_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mailhaul-sticky.")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// Another local user plants files named like the victim's claims in a
/// sticky 1777 spool directory: mail of its own, a symbolic link to a file
/// of the victim's, a name with a terminal escape and one that is not
/// UTF-8. The victim's fetch files none of it, claims its new mail, prints
/// the names escaped, and keeps working on the next run.
#[test]
fn claims_planted_by_another_user_in_a_sticky_spool_directory_are_ignored() {
    let sshd = TestSshd::start();
    let victim = TestUser::create_for(&sshd, "mhtv");
    let attacker = TestUser::create("mhta");
    let dir = sticky_dir();
    let spool = dir.path().join(&victim.name);
    std::fs::write(&spool, message("mine 1")).unwrap();
    std::os::unix::fs::chown(&spool, Some(victim.uid), Some(victim.gid)).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A file of the victim's the attacker would like to see filed.
    let secret = victim.home.join("secret");
    std::fs::write(&secret, message("victim's secret file")).unwrap();
    std::os::unix::fs::chown(&secret, Some(victim.uid), Some(victim.gid)).unwrap();

    let claim_name = |suffix: &[u8]| -> PathBuf {
        let mut name = format!("{}.mailhaul-claim.", victim.name).into_bytes();
        name.extend_from_slice(suffix);
        dir.path().join(std::ffi::OsStr::from_bytes(&name))
    };
    let planted_mail = claim_name(b"20260101T000000-1-1");
    let planted_link = claim_name(b"20260101T000000-1-2");
    let escape_name = claim_name(b"\x1b[31mred");
    let latin1_name = claim_name(b"caf\xe9");
    let write = "printf '%s' \"$2\" > \"$1\"";
    let evil = message("planted by another user");
    as_user(
        &attacker,
        write,
        &[planted_mail.as_os_str(), std::ffi::OsStr::from_bytes(&evil)],
    );
    as_user(
        &attacker,
        "ln -s \"$2\" \"$1\"",
        &[planted_link.as_os_str(), secret.as_os_str()],
    );
    for name in [&escape_name, &latin1_name] {
        as_user(
            &attacker,
            write,
            &[name.as_os_str(), std::ffi::OsStr::from_bytes(&evil)],
        );
    }
    let planted = [&planted_mail, &planted_link, &escape_name, &latin1_name];

    let client = Client::new(&sshd, &victim.name, &format!("spool = {spool:?}\n"));
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(filed_subjects(&client), ["mine 1"], "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ignored"), "{stderr}");
    assert!(stderr.contains("claim.\\x1b[31mred"), "{stderr}");
    assert!(stderr.contains("claim.caf\\xe9"), "{stderr}");
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(&0x1b), "a raw escape reached the terminal");
    }
    for p in planted {
        assert!(p.symlink_metadata().is_ok(), "{} was removed", p.display());
    }
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        message("victim's secret file")
    );

    // New mail arrives: the next fetch claims it, with the planted files
    // still there.
    std::fs::write(&spool, message("mine 2")).unwrap();
    std::os::unix::fs::chown(&spool, Some(victim.uid), Some(victim.gid)).unwrap();
    let out = client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(filed_subjects(&client), ["mine 1", "mine 2"]);
    assert_eq!(std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0), 0);
}

/// A spool that is a symbolic link (`/var/mail/USER -> elsewhere`) is
/// copied and truncated through the link: the mail is filed once, the link
/// stays, the file it points to is emptied, with zstd and with gzip. An
/// explicit `claim = "rename"` is refused and changes nothing.
#[test]
fn a_symlinked_spool_is_emptied_through_the_link_with_zstd_and_gzip() {
    let sshd = TestSshd::start();
    for compression in ["zstd", "gzip"] {
        let spool_dir = tempfile::tempdir().unwrap();
        let real_dir = tempfile::tempdir().unwrap();
        let real = real_dir.path().join("real-spool");
        let spool = spool_dir.path().join("spool");
        std::fs::write(&real, [message("one"), message("two")].concat()).unwrap();
        std::os::unix::fs::symlink(&real, &spool).unwrap();

        let refused = Client::new(
            &sshd,
            "root",
            &format!("spool = {spool:?}\ncompression = {compression:?}\nclaim = \"rename\"\n"),
        );
        let out = refused.run(&["fetch"]);
        assert_eq!(out.status.code(), Some(9), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is a symbolic link"),
            "{}",
            describe(&out)
        );
        assert!(refused.filed_messages().is_empty());

        let client = Client::new(
            &sshd,
            "root",
            &format!("spool = {spool:?}\ncompression = {compression:?}\n"),
        );
        let out = client.run(&["fetch"]);
        assert!(out.status.success(), "{compression}: {}", describe(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(compression), "{stdout}");
        assert_eq!(filed_subjects(&client), ["one", "two"], "{compression}");
        assert!(spool.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_link(&spool).unwrap(), real);
        assert_eq!(std::fs::metadata(&real).unwrap().len(), 0, "{compression}");
        // Nothing left in either directory but the link and its file.
        assert_eq!(std::fs::read_dir(spool_dir.path()).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(real_dir.path()).unwrap().count(), 1);

        // More mail through the link: fetched once more, nothing twice.
        std::fs::write(&spool, message("three")).unwrap();
        let out = client.run(&["fetch"]);
        assert!(out.status.success(), "{compression}: {}", describe(&out));
        assert_eq!(filed_subjects(&client), ["one", "three", "two"]);
        assert_eq!(std::fs::metadata(&real).unwrap().len(), 0);
    }
}

/// Sets a file's modification time `age` into the past with the real `touch`.
fn age_file(path: &Path, age: &str) {
    common::run(Command::new("touch").args(["-d", age]).arg(path));
}

/// The pid of a process that has ended (spawned, reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A dot-lock untouched for 10 minutes (more than stale_lock_time, 500 s by
/// default, as in Postfix) whose holder is not running is removed, the
/// removal is logged, and the mail is claimed: by dotlockfile on Debian's
/// 2775 root:mail /var/mail (an empty lock, as Postfix and procmail leave),
/// and by rm in a writable spool directory (a lock holding a dead pid, as
/// dotlockfile -p leaves it).
#[test]
fn a_stale_lock_whose_holder_is_gone_is_removed_and_logged() {
    let sshd = TestSshd::start();
    let user_fixture = Fixture::as_user(&sshd, "mhts", &message("behind an old lock"), "");
    let root_fixture = Fixture::as_root(&sshd, &message("behind a dead pid"), "");
    let dead = dead_pid();
    for (fixture, content, holder) in [
        (
            &user_fixture,
            String::new(),
            "it names no holder".to_string(),
        ),
        (
            &root_fixture,
            format!("{dead}\n"),
            format!("pid {dead}, is not running"),
        ),
    ] {
        let lock = PathBuf::from(format!("{}.lock", fixture.spool.display()));
        std::fs::write(&lock, &content).unwrap();
        age_file(&lock, "-10 min");
        let out = fixture.client.run(&["fetch"]);
        assert!(out.status.success(), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("removed the stale lock {}", lock.display())),
            "{stderr}"
        );
        assert!(stderr.contains(&holder), "{stderr}");
        assert!(stderr.contains("stale_lock_time = 500 s"), "{stderr}");
        assert!(!lock.exists(), "the stale lock is still there");
        assert_eq!(fixture.client.filed_messages().len(), 1);
        assert_eq!(std::fs::metadata(&fixture.spool).map_or(0, |m| m.len()), 0);
    }
}

/// A fresh lock, an old lock whose holder is alive, and any lock with
/// `stale_lock_time = 0` are waited on for lock_timeout, then reported
/// (exit 6), never broken; once the lock is gone the same fetch works.
#[test]
fn a_fresh_lock_or_a_live_holder_is_waited_on_never_broken() {
    let sshd = TestSshd::start();
    let mail = message("behind a busy lock");
    let fixture = Fixture::as_user(&sshd, "mhtf", &mail, "");
    let user = fixture.user();
    let lock = PathBuf::from(format!("{}.lock", user.spool.display()));
    let mut holder = Command::new("sleep").arg("60").spawn().unwrap();
    let never = Client::new(&sshd, &user.name, "stale_lock_time = 0\n");
    for (case, content, age, client) in [
        ("fresh", String::new(), None, &fixture.client),
        (
            "live holder",
            format!("{}\n", holder.id()),
            Some("-10 min"),
            &fixture.client,
        ),
        ("stale_lock_time = 0", String::new(), Some("-1 day"), &never),
    ] {
        std::fs::write(&lock, &content).unwrap();
        if let Some(age) = age {
            age_file(&lock, age);
        }
        let started = std::time::Instant::now();
        let out = client.run(&["fetch"]);
        assert_eq!(out.status.code(), Some(6), "{case}: {}", describe(&out));
        assert!(started.elapsed().as_secs() >= 3, "{case}: not waited");
        assert!(lock.exists(), "{case}: the lock was broken");
        assert_eq!(std::fs::read_to_string(&lock).unwrap(), content, "{case}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("held by another program"),
            "{case}: {stderr}"
        );
        assert!(!stderr.contains("stale lock"), "{case}: {stderr}");
        assert_eq!(std::fs::read(&user.spool).unwrap(), mail, "{case}");
    }
    let _ = holder.kill();
    let _ = holder.wait();
    std::fs::remove_file(&lock).unwrap();
    let out = fixture.client.run(&["fetch"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fixture.client.filed_messages().len(), 1);
}
