//! Process-tree helpers over `/proc`: find a process's descendants or a
//! user's processes and end them by PID (never by name).

use std::fs;

/// The parent PID and the real UID of a process, read from `/proc/PID/status`.
fn status(pid: i32) -> Option<(i32, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_string)
    };
    Some((field("PPid:")?.parse().ok()?, field("Uid:")?.parse().ok()?))
}

/// Every live PID with its parent PID and UID.
fn all_processes() -> Vec<(i32, i32, u32)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| status(pid).map(|(ppid, uid)| (pid, ppid, uid)))
        .collect()
}

/// All descendants of `root` (children, their children, ...), parents first.
pub fn descendants(root: i32) -> Vec<i32> {
    let procs = all_processes();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            procs
                .iter()
                .filter(|(_, ppid, _)| *ppid == parent)
                .map(|(pid, _, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Freezes `root` and its whole tree with SIGSTOP (so nothing forks or gets
/// reparented meanwhile), then kills every one of them with SIGKILL.
/// Returns the descendants that were killed.
pub fn kill_tree(root: i32) -> Vec<i32> {
    let mut stopped: Vec<i32> = vec![root];
    // SAFETY: kill(2) with a PID we found; a vanished PID just gives ESRCH.
    unsafe { libc::kill(root, libc::SIGSTOP) };
    loop {
        let tree = descendants(root);
        let new: Vec<i32> = tree.into_iter().filter(|p| !stopped.contains(p)).collect();
        if new.is_empty() {
            break;
        }
        for &pid in &new {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
        stopped.extend(new);
    }
    for &pid in &stopped {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    stopped.remove(0);
    stopped
}

/// Kills, by PID, every process whose real UID is `uid` (used before
/// removing a throwaway test user, whose sessions may outlive the test).
pub fn kill_user_processes(uid: u32) {
    assert_ne!(uid, 0, "refusing to kill root's processes");
    for (pid, _, _) in all_processes().into_iter().filter(|p| p.2 == uid) {
        // SAFETY: kill(2) on a PID owned by the throwaway user.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
