//! Process-tree helpers over `/proc`: find a process's descendants, a
//! user's processes or the holders of a server's connections, and end them
//! by PID (never by name).

use std::fs;
use std::time::{Duration, Instant};

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

/// The scheduler state letter of a process (`R`, `S`, `D`, `T`, `Z`, ...)
/// from `/proc/PID/stat`; `None` once it is gone.
pub fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Sends SIGSTOP to `pid` and waits until it has stopped (or is dead).
/// kill(2) only queues the signal: a process in the middle of fork(2) goes
/// on to finish it, and the new child, born after the signal, is not
/// stopped. Once the state is `T` the process is back out of every system
/// call, so its children are all visible and it makes no new ones.
fn stop_and_wait(pid: i32) {
    // SAFETY: kill(2) with a PID we found; a vanished PID just gives ESRCH.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // A process blocked in the kernel stops when it leaves it; bounded, so
    // that one stuck in uninterruptible sleep cannot hang a test.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches!(state(pid), None | Some('T' | 't' | 'Z' | 'X' | 'x'))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Stops `root` and its whole tree: each process is stopped (and seen
/// stopped) before its children are listed, until a listing finds no new
/// process; then nothing in the tree can fork or be reparented any more.
/// Returns the tree, `root` first.
pub fn freeze_tree(root: i32) -> Vec<i32> {
    stop_and_wait(root);
    let mut stopped: Vec<i32> = vec![root];
    loop {
        let tree = descendants(root);
        let new: Vec<i32> = tree.into_iter().filter(|p| !stopped.contains(p)).collect();
        if new.is_empty() {
            return stopped;
        }
        for &pid in &new {
            stop_and_wait(pid);
        }
        stopped.extend(new);
    }
}

/// Freezes `root` and its whole tree (see [`freeze_tree`]), then kills
/// every one of them with SIGKILL. Returns the descendants that were killed.
pub fn kill_tree(root: i32) -> Vec<i32> {
    let mut tree = freeze_tree(root);
    for &pid in &tree {
        // SAFETY: kill(2) with a PID we found; a vanished PID gives ESRCH.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    tree.remove(0);
    tree
}

/// The socket inodes of TCP connections (any state but LISTEN) whose local
/// port is `port`, from `/proc/net/tcp` and `/proc/net/tcp6`. Sockets no
/// process holds any more (TIME_WAIT, orphaned FIN_WAIT) have inode 0 and
/// are left out.
fn connection_inodes(port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&st), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            match inode.parse::<u64>() {
                Ok(inode) if inode != 0 && local_port == Some(port) && st != LISTEN => {
                    inodes.push(inode)
                }
                _ => {}
            }
        }
    }
    inodes
}

/// Every process holding one of these sockets (by inode).
fn socket_holders(inodes: &[u64]) -> Vec<i32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                    .any(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
            })
        })
        .collect()
}

/// Ends the connections open now to the server on local `port` (the
/// server's ends: listeners and clients are left alone): kills the tree (see
/// [`kill_tree`]) of each process holding one, and waits until no process
/// holds one any more (panics after 10 s, naming the survivors). Returns the
/// PIDs killed.
pub fn kill_connection_holders(port: u16) -> Vec<i32> {
    // Fixed now: a connection made later (a client reconnecting) is spared.
    let inodes = connection_inodes(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut killed: Vec<i32> = Vec::new();
    loop {
        let holders = socket_holders(&inodes);
        if holders.is_empty() {
            return killed;
        }
        let me = std::process::id() as i32;
        assert!(
            !holders.contains(&me),
            "this test process holds the server side of a connection on port {port}"
        );
        assert!(
            Instant::now() < deadline,
            "connections on port {port} still held after SIGKILL by {:?}",
            holders
                .iter()
                .map(|pid| (pid, cmdline(*pid), state(*pid)))
                .collect::<Vec<_>>()
        );
        for pid in holders {
            if !killed.contains(&pid) {
                killed.push(pid);
                killed.extend(kill_tree(pid));
            }
        }
        // SIGKILL is queued too: the files close when the process has exited.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process's command line, arguments separated by spaces.
fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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

/// The local addresses of every listening TCP socket on `port`, as the
/// kernel has them (`/proc/net/tcp` and `/proc/net/tcp6`), e.g.
/// `["127.0.0.1:2525"]`; what a program says it bound is not evidence.
pub fn listening_addresses(port: u16) -> Vec<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    const LISTEN: &str = "0A";
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match fs::read_to_string(table) {
            Ok(text) => text,
            // A kernel without IPv6 has no tcp6 table.
            Err(_) if table.ends_with('6') => continue,
            Err(e) => panic!("read {table}: {e}"),
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&st)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((ip, p)) = local.split_once(':') else {
                continue;
            };
            if st != LISTEN || u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            // The address is printed as 32-bit words in host byte order.
            let bytes: Vec<u8> = (0..ip.len() / 8)
                .flat_map(|i| {
                    u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16)
                        .expect("hex address")
                        .to_ne_bytes()
                })
                .collect();
            let addr = match bytes.len() {
                4 => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into(),
                16 => Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..]).unwrap()).into(),
                _ => panic!("unexpected address {local} in {table}"),
            };
            found.push(SocketAddr::new(addr, port));
        }
    }
    found
}

/// The PIDs of every live process whose real UID is `uid` (zombies left out).
pub fn processes_of(uid: u32) -> Vec<i32> {
    all_processes()
        .into_iter()
        .filter(|p| p.2 == uid && !matches!(state(p.0), None | Some('Z' | 'X' | 'x')))
        .map(|p| p.0)
        .collect()
}
