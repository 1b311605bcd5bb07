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
