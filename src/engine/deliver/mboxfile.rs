//! Appending a message to an mbox file the way local delivery agents do on
//! Debian, so that mail readers and other agents never see half a message.
//!
//! Locking, in this order: the dot-lock `FILE.lock` created with O_EXCL
//! (retried every 100 ms up to a bounded wait; a lock that stays is reported
//! with its age, never removed), then an fcntl write lock on the whole file
//! (same bounded wait). The message is written in mboxrd (a From_ line, then
//! every `>*From ` line quoted with one more `>`, then a blank line); the file
//! is truncated back to its old length if anything fails, fsynced when asked,
//! and both locks are released.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::filing::MboxFormat;
use crate::engine::mbox;
use crate::engine::message::Message;

/// Why a message could not be appended (the file is as it was).
#[derive(Debug, thiserror::Error)]
pub enum MboxError {
    /// The dot-lock stayed in place for the whole bounded wait.
    #[error(
        "mbox {path}: lock {lock} is held (for {age_secs} s); if no program holds it, remove it"
    )]
    DotLockBusy {
        /// The mbox file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// How old the lock file is.
        age_secs: u64,
    },
    /// Another process kept its fcntl lock for the whole bounded wait.
    #[error("mbox {path}: another process keeps its fcntl lock")]
    FcntlBusy {
        /// The mbox file.
        path: PathBuf,
    },
    /// An I/O error.
    #[error("mbox {path}: {source}")]
    Io {
        /// The mbox file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Appends `message` to the mbox at `path` (created 0600 if missing), under
/// both locks, waiting at most `wait` for each.
pub fn append(
    path: &Path,
    message: &mut Message,
    fsync: bool,
    wait: Duration,
) -> Result<(), MboxError> {
    let io_err = |source| MboxError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_err)?;
    }
    let _dotlock = DotLock::take(path, wait)?;
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err)?;
    fcntl_lock(&file, path, wait)?;
    let old_len = file.metadata().map_err(io_err)?.len();
    let written = (|| {
        let separator = separator_needed(&file, old_len)?;
        let mut out = BufWriter::with_capacity(64 << 10, &file);
        out.write_all(separator)?;
        let envelope = message.envelope.as_deref();
        mbox::write_message(
            &mut out,
            envelope,
            message.content.reader()?,
            MboxFormat::Mboxrd,
        )?;
        out.flush()?;
        drop(out);
        if fsync {
            file.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = file.set_len(old_len);
        return Err(io_err(e));
    }
    Ok(())
}

/// What must precede a new From_ line so that the previous message ends
/// with a blank line.
fn separator_needed(file: &File, len: u64) -> io::Result<&'static [u8]> {
    if len == 0 {
        return Ok(b"");
    }
    let mut tail = [0u8; 2];
    let n = tail.len().min(len as usize);
    file.read_exact_at(&mut tail[..n], len - n as u64)?;
    Ok(match &tail[..n] {
        b"\n\n" => b"",
        [.., b'\n'] => b"\n",
        _ => b"\n\n",
    })
}

/// A held dot-lock; removed when dropped.
struct DotLock {
    lock: PathBuf,
}

impl DotLock {
    fn take(path: &Path, wait: Duration) -> Result<DotLock, MboxError> {
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let deadline = Instant::now() + wait;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&lock)
            {
                Ok(mut f) => {
                    // Informational only, as liblockfile writes it.
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(DotLock { lock });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if Instant::now() >= deadline {
                        let age_secs = std::fs::metadata(&lock)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .map_or(0, |d| d.as_secs());
                        return Err(MboxError::DotLockBusy {
                            path: path.to_path_buf(),
                            lock,
                            age_secs,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(source) => return Err(MboxError::Io { path: lock, source }),
            }
        }
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Takes an fcntl write lock on all of `file` (released when it is closed).
fn fcntl_lock(file: &File, path: &Path, wait: Duration) -> Result<(), MboxError> {
    let deadline = Instant::now() + wait;
    loop {
        // SAFETY: a zeroed flock is valid; the fields are set below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        // SAFETY: F_SETLK reads `fl`, which lives across the call.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Some(libc::EAGAIN) | Some(libc::EACCES) => {
                return Err(MboxError::FcntlBusy {
                    path: path.to_path_buf(),
                })
            }
            _ => {
                return Err(MboxError::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::message::Content;

    fn message(text: &str) -> Message {
        let mut content = Content::new();
        content.extend(text.as_bytes()).unwrap();
        Message {
            index: 1,
            offset: 0,
            envelope: Some(b"a@b Mon Jan  1 00:00:00 2024".to_vec()),
            header: Vec::new(),
            content,
        }
    }

    #[test]
    fn a_held_dot_lock_is_reported_with_its_age_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("box");
        std::fs::write(&mbox, "From x Mon Jan  1 00:00:00 2024\n\nold\n\n").unwrap();
        let lock = dir.path().join("box.lock");
        std::fs::write(&lock, "4242\n").unwrap();
        let err = append(
            &mbox,
            &mut message("Subject: s\n\nnew\n"),
            false,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, MboxError::DotLockBusy { .. }), "{err}");
        assert!(err.to_string().contains("box.lock is held"), "{err}");
        assert!(lock.exists(), "a foreign lock is never removed");
        assert_eq!(
            std::fs::read_to_string(&mbox).unwrap(),
            "From x Mon Jan  1 00:00:00 2024\n\nold\n\n"
        );
    }

    #[test]
    fn appends_mboxrd_after_a_blank_line_and_creates_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("sub/box");
        append(
            &mbox,
            &mut message("S: 1\n\n>From a\nFrom b\n"),
            true,
            Duration::ZERO,
        )
        .unwrap();
        append(
            &mbox,
            &mut message("S: 2\n\nno newline"),
            true,
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&mbox).unwrap(),
            "From a@b Mon Jan  1 00:00:00 2024\nS: 1\n\n>>From a\n>From b\n\n\
             From a@b Mon Jan  1 00:00:00 2024\nS: 2\n\nno newline\n\n"
        );
        assert!(!dir.path().join("sub/box.lock").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&mbox).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// Whatever the file ends with, the new From_ line comes after a blank
    /// line, and the old last message gains no byte beyond that line: a
    /// missing blank line would glue the new message onto the old one.
    #[test]
    fn the_new_message_starts_after_exactly_one_blank_line() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("box");
        let old = "From x Mon Jan  1 00:00:00 2024\n\nold";
        let new = "From a@b Mon Jan  1 00:00:00 2024\nS: n\n\nnew\n\n";
        for (tail, separator) in [("\n\n", ""), ("\n", "\n"), ("", "\n\n")] {
            std::fs::write(&mbox, format!("{old}{tail}")).unwrap();
            append(&mbox, &mut message("S: n\n\nnew\n"), false, Duration::ZERO).unwrap();
            assert_eq!(
                std::fs::read_to_string(&mbox).unwrap(),
                format!("{old}{tail}{separator}{new}"),
                "old mbox ending {tail:?}"
            );
        }
    }

    /// A dot-lock released within the wait is waited for, not reported.
    #[test]
    fn a_dot_lock_released_in_time_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("box");
        let lock = dir.path().join("box.lock");
        std::fs::write(&lock, "4242\n").unwrap();
        let holder = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::remove_file(lock).unwrap();
            })
        };
        append(
            &mbox,
            &mut message("S: 1\n\nb\n"),
            false,
            Duration::from_secs(20),
        )
        .unwrap();
        holder.join().unwrap();
        assert!(std::fs::read_to_string(&mbox).unwrap().contains("S: 1"));
    }

    /// A dot-lock that cannot be made (here: its name is too long) is an
    /// error at once, not a busy lock waited for.
    #[test]
    fn a_dot_lock_that_cannot_be_made_is_an_error_not_a_busy_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("x".repeat(251));
        let err = append(
            &mbox,
            &mut message("S: 1\n\nb\n"),
            false,
            Duration::from_secs(20),
        )
        .unwrap_err();
        assert!(matches!(err, MboxError::Io { .. }), "{err}");
    }

    /// Takes an open-file-description write lock on `path`: unlike a
    /// process's own fcntl locks, it conflicts with the append's lock taken
    /// in this same process, as another agent's would.
    fn ofd_lock(path: &Path) -> File {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        // SAFETY: a zeroed flock is valid; the fields are set below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        // SAFETY: F_OFD_SETLK reads `fl`, which lives across the call.
        assert_eq!(
            unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) },
            0
        );
        file
    }

    /// Another holder of the fcntl lock is waited for, then reported; the
    /// file is not written meanwhile.
    #[test]
    fn the_fcntl_lock_of_another_agent_is_waited_for_then_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("box");
        let old = "From x Mon Jan  1 00:00:00 2024\n\nold\n\n";
        std::fs::write(&mbox, old).unwrap();
        let held = ofd_lock(&mbox);
        let err = append(
            &mbox,
            &mut message("S: 1\n\nb\n"),
            false,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, MboxError::FcntlBusy { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&mbox).unwrap(), old);
        assert!(!dir.path().join("box.lock").exists(), "dot-lock released");
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        append(
            &mbox,
            &mut message("S: 2\n\nb\n"),
            false,
            Duration::from_secs(20),
        )
        .unwrap();
        holder.join().unwrap();
        assert!(std::fs::read_to_string(&mbox).unwrap().contains("S: 2"));
    }
}
