//! Smoke tests of the shared harness: the real OpenSSH client logs in to the
//! test sshd, a throwaway user can log in, and Postfix delivers to its spool.

mod common;

use common::{Postfix, TestSshd, TestUser};

#[test]
fn openssh_client_logs_in_as_root() {
    let sshd = TestSshd::start();
    let out = sshd
        .ssh_command("root")
        .arg("echo hello from $(id -un)")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh failed: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from root\n");
}

#[test]
fn throwaway_user_logs_in_and_gets_mail() {
    let sshd = TestSshd::start();
    let user = TestUser::create_for(&sshd, "mht");
    let meta = std::fs::metadata(&user.spool).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.uid(), user.uid);
    assert_eq!(meta.gid(), common::user::group_id("mail"));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);

    let out = sshd.ssh_command(&user.name).arg("id -un").output().unwrap();
    assert!(
        out.status.success(),
        "ssh as {} failed: {}\nsshd log:\n{}",
        user.name,
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user.name);

    let postfix = Postfix::ensure_running();
    assert!(
        postfix.mailbox_command.contains("procmail"),
        "expected Debian's procmail delivery, got mailbox_command = {}",
        postfix.mailbox_command
    );
    let msg = format!(
        "From: test@example.org\nTo: {}\nSubject: harness\n\nbody line\nFrom the middle\n",
        user.name
    );
    postfix.deliver(&user, msg.as_bytes());
    let spool = String::from_utf8(user.spool_contents()).unwrap();
    assert!(spool.starts_with("From "), "{spool}");
    assert!(spool.contains("Subject: harness\n"), "{spool}");
    assert!(
        spool.contains(&format!("Delivered-To: {}@", user.name)),
        "{spool}"
    );
    assert!(
        spool.contains("\n>From the middle\n"),
        "mboxo quoting: {spool}"
    );
}

#[test]
fn dropping_sshd_ends_its_live_sessions() {
    use std::time::{Duration, Instant};
    let sshd = TestSshd::start();
    let mut client = sshd
        .ssh_command("root")
        .arg("exec sleep 1000")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let is_sleep = |pid: &i32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x001000\x00")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeper = loop {
        if let Some(pid) = common::proc::descendants(sshd.pid() as i32)
            .into_iter()
            .find(is_sleep)
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the remote sleep never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(sshd);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
        .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            Instant::now() < deadline,
            "session process {sleeper} survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The client sees its connection end.
    assert!(!client.wait().unwrap().success());
}
