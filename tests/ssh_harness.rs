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

/// A python3 process that forks all the time, each fork slow (30,000
/// mappings to copy), each child sleeping a minute; its children carry
/// `marker` in their command line too. Returns once it runs.
fn spawn_slow_forker(marker: &str) -> std::process::Child {
    use std::io::BufRead;
    let script = format!(
        "import mmap, os, time\n\
         rw = mmap.PROT_READ | mmap.PROT_WRITE\n\
         maps = [mmap.mmap(-1, 4096, prot=mmap.PROT_READ if i % 2 else rw) for i in range(30000)]\n\
         print('ready', flush=True)\n\
         while True:\n\
         \x20   if os.fork() == 0:\n\
         \x20       time.sleep(60)\n\
         \x20       os._exit(0)\n\
         # {marker}\n"
    );
    common::require_tool("python3", "python3");
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

/// Live (not zombie) processes whose command line contains `marker`.
fn live_with_marker(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
                && !matches!(common::proc::state(*pid), None | Some('Z' | 'X'))
        })
        .collect()
}

#[test]
fn kill_tree_leaves_no_child_of_a_process_caught_forking() {
    use std::time::Duration;
    // SIGSTOP is only queued: a process in the middle of fork(2) finishes it,
    // and the child is born running. Freezing must wait for the stop.
    for round in 0..5 {
        let marker = format!("mailhaul-forker-{}-{round}", std::process::id());
        let mut forker = spawn_slow_forker(&marker);
        std::thread::sleep(Duration::from_millis(100));
        let root = forker.id() as i32;
        let tree = common::proc::freeze_tree(root);
        let states: Vec<_> = tree
            .iter()
            .map(|&pid| (pid, common::proc::state(pid)))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let later = common::proc::descendants(root);
        let killed = common::proc::kill_tree(root);
        let _ = forker.wait();
        std::thread::sleep(Duration::from_millis(100));
        let survivors = live_with_marker(&marker);
        for &pid in &survivors {
            // SAFETY: kill(2) on a process this test started (it carries the marker).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        assert!(
            states
                .iter()
                .all(|(_, s)| matches!(s, Some('T' | 't' | 'Z' | 'X') | None)),
            "round {round}: not stopped after freeze_tree: {states:?}"
        );
        assert!(
            later.iter().all(|pid| tree.contains(pid)),
            "round {round}: the frozen tree forked: {later:?} vs {tree:?}"
        );
        assert!(
            survivors.is_empty(),
            "round {round}: escaped kill_tree: {survivors:?} (killed {killed:?})"
        );
    }
}
