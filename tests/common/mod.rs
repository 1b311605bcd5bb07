//! Shared harness for the integration tests: a real OpenSSH `sshd` on
//! loopback, throwaway local users, and the system Postfix for local delivery.
//!
//! Use it from any integration test with `mod common;`. Everything here needs
//! root and the Debian packages that `tests/run-all.sh` installs; without them
//! the harness panics with a message saying so, instead of passing silently.
//! Servers bind 127.0.0.1 on free ports and are stopped by PID, never by name.

// Each test binary compiles this module and uses only a part of it.
#![allow(dead_code, unused_imports)]

pub mod hook;
pub mod postfix;
pub mod proc;
pub mod proxy;
pub mod sshd;
pub mod strace;
pub mod target;
pub mod tmpfs;
pub mod tmux;
pub mod user;

pub use hook::ServerHook;
pub use postfix::Postfix;
pub use sshd::TestSshd;
pub use target::ssh_target;
pub use user::TestUser;

use std::path::Path;
use std::process::{Command, Output};

/// The programs the harness and the servers it starts need, with the
/// Debian package of each.
const SERVER_TOOLS: [(&str, &str); 8] = [
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/bin/ssh", "openssh-client"),
    ("/usr/bin/ssh-keygen", "openssh-client"),
    ("/usr/sbin/useradd", "passwd"),
    ("zstd", "zstd"),
    ("gzip", "gzip"),
    ("dotlockfile", "liblockfile-bin"),
    ("procmail", "procmail"),
];

/// Panics unless the process runs as root and the server's tools (sshd,
/// zstd, gzip, dotlockfile, procmail) are installed, with a message naming
/// the packages to install and how to run the suite.
pub fn require_root_and_packages() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut missing: Vec<&str> = SERVER_TOOLS
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if euid != 0 || !missing.is_empty() {
        panic!(
            "these integration tests need root and real servers (sshd, postfix, procmail); \
             euid={euid}, missing packages: {missing:?} (`apt-get install {}`). Run \
             `bash tests/run-all.sh` as root: it installs the Debian packages and runs every test.",
            missing.join(" ")
        );
    }
}

/// Where `program` is: itself when it is a path, else the first match on
/// `PATH`.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| program.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Panics, naming the Debian package to install, unless `program` is
/// installed: a test that needs a tool fails loudly without it, never
/// passes with a note.
pub fn require_tool(program: &str, package: &str) {
    if find_program(program).is_none() {
        panic!(
            "this test needs `{program}`, which is not installed: `apt-get install {package}` \
             (`bash tests/run-all.sh` installs every package the tests need)"
        );
    }
}

/// Runs a command to completion and panics, with its output, if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A name unlikely to be taken by any other test, process or earlier run:
/// `prefix` followed by 8 hex digits, at most 16 characters in all (a valid
/// Linux user name when `prefix` starts with a lowercase letter).
pub fn unique_name(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let prefix: String = prefix.chars().take(8).collect();
    format!("{prefix}{:08x}", h.finish() as u32)
}

/// Holds an exclusive `flock` on a file under `/run/lock` while alive, to
/// serialize system-wide steps (useradd, starting Postfix) across test
/// processes.
pub struct SystemLock {
    file: std::fs::File,
}

impl SystemLock {
    /// Blocks until the lock named `name` is held.
    pub fn acquire(name: &str) -> SystemLock {
        use std::os::fd::AsRawFd;
        let dir = Path::new("/run/lock");
        let dir = if dir.is_dir() { dir } else { Path::new("/tmp") };
        let path = dir.join(format!("mailhaul-test-{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        // SAFETY: the fd is valid for the life of `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        SystemLock { file }
    }
}

impl Drop for SystemLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: the fd is valid; closing it would release the lock anyway.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}
