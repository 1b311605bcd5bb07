//! The engine's calls into the operating system beyond what `std` offers,
//! in one place, each with what it relies on: directory fsync, and the
//! Linux calls behind durable delivery and socket counters.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
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
