//! The engine's calls into the operating system beyond what `std` offers,
//! in one place, each with what it relies on (its `SAFETY` comment):
//! directory fsync and syncfs, unnamed files linked into place and renames
//! that never overwrite (durable Maildir delivery), the open-file limit,
//! the host name, poll(2), and TCP socket options and counters.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// fsyncs a directory, making the names created, renamed or removed in it
/// durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A pollfd for poll(2) asking for `events` on `fd`.
pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Sets TCP_USER_TIMEOUT: unacknowledged data older than `limit` fails the
/// connection. Best effort: without it, only detection is slower.
pub fn set_user_timeout(fd: RawFd, limit: Duration) {
    let ms = limit.as_millis().min(u32::MAX as u128) as libc::c_uint;
    // SAFETY: setsockopt reads `size_of::<c_uint>()` bytes from `&ms`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        );
    }
}

/// Asks the kernel to acknowledge what arrives next at once (TCP_QUICKACK,
/// which it clears again by itself). sshd leaves Nagle on for sessions
/// without a terminal, so a small packet right after another (the SMTP
/// greeting after the channel-open confirmation) waits for our ACK, and a
/// delayed ACK costs 40 ms per exchange.
pub fn quick_ack(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&on`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// poll(2); `None` waits forever. EINTR counts as a wakeup.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) {
    let ms = timeout.map_or(-1, |t| {
        // Round up so that a 0.4 ms wait does not become a busy 0.
        t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

/// syncfs(2) on the file system holding `dir`: everything written to it so
/// far is durable.
#[cfg(target_os = "linux")]
pub fn syncfs(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    // SAFETY: syncfs only reads the descriptor, which `f` keeps open.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises this process's soft limit on open files to the hard limit (at
/// most 65,536) and returns the soft limit now in force; `None` when it
/// cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        let wanted = limit.rlim_max.min(1 << 16);
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// This host's name (gethostname(2)), `None` when it cannot be read.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // or truncates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    (rc == 0).then(|| {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    })
}

/// The kernel's TCP_INFO record of the socket `fd` (byte counters).
pub fn tcp_info(fd: RawFd) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `len`
    // bytes into it; the caller keeps `fd` open.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info)
    }
}

/// Bytes written to the TCP socket `fd` that the peer has not acknowledged
/// yet, unsent ones included (SIOCOUTQ).
pub fn tcp_unacked_bytes(fd: RawFd) -> io::Result<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one c_int through the pointer; the
    // caller keeps `fd` open.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(queued).unwrap_or(0))
}

/// Gives the unnamed `file` the name `target`; false when that exists.
/// linkat(2) with `AT_EMPTY_PATH` links the descriptor itself (Linux 6.10
/// allows it to the file's opener; before, only with CAP_DAC_READ_SEARCH);
/// where that is refused, through its `/proc/self/fd` link.
#[cfg(target_os = "linux")]
pub fn link_unnamed(file: &File, target: &Path) -> io::Result<bool> {
    static EMPTY_PATH_REFUSED: AtomicBool = AtomicBool::new(false);
    let fd = file.as_raw_fd();
    let to = c_path(target)?;
    let link = |from_dir: libc::c_int, from: &CString, flags: libc::c_int| {
        // SAFETY: both paths are NUL-terminated strings that outlive the
        // call; `from_dir` is an open descriptor or AT_FDCWD.
        let rc =
            unsafe { libc::linkat(from_dir, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags) };
        if rc == 0 {
            Ok(true)
        } else {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(false)
            } else {
                Err(e)
            }
        }
    };
    if !EMPTY_PATH_REFUSED.load(Ordering::Relaxed) {
        match link(fd, &CString::default(), libc::AT_EMPTY_PATH) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EPERM)) => {
                EMPTY_PATH_REFUSED.store(true, Ordering::Relaxed);
            }
            done => return done,
        }
    }
    let proc_link = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a /proc path");
    link(libc::AT_FDCWD, &proc_link, libc::AT_SYMLINK_FOLLOW)
}

#[cfg(not(target_os = "linux"))]
pub fn link_unnamed(_file: &File, _target: &Path) -> io::Result<bool> {
    unreachable!("unnamed tmp files are only made on Linux")
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An inotify watch of one directory (names created, moved in or out,
/// removed), to poll(2) on beside other descriptors: how a long-running
/// worker learns at once that another process (`mailhaul send`) put a file
/// there.
#[derive(Debug)]
pub struct DirWatch {
    fd: std::os::fd::OwnedFd,
}

impl DirWatch {
    /// Watches `dir`.
    pub fn new(dir: &Path) -> io::Result<DirWatch> {
        use std::os::fd::FromRawFd;
        // SAFETY: inotify_init1 takes flags only; a non-negative result is a
        // new descriptor that we own from here on.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let path = c_path(dir)?;
        let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM | libc::IN_DELETE;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirWatch { fd })
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every pending event without blocking; whether there was any.
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut any = false;
        loop {
            // SAFETY: read writes at most `buf.len()` bytes into `buf`.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return any;
            }
            any = true;
        }
    }
}

/// The last local midnight at or before `unix` (seconds since the epoch),
/// as the C library's time zone sees it; UTC midnight if it cannot say.
pub fn local_midnight(unix: u64) -> u64 {
    let now = unix as libc::time_t;
    // SAFETY: an all-zero tm is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r writes only into the tm we pass and reads `now`.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return unix - unix % 86_400;
    }
    let since = tm.tm_hour as u64 * 3600 + tm.tm_min as u64 * 60 + tm.tm_sec as u64;
    unix.saturating_sub(since)
}
