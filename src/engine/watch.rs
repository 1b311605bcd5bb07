//! The client side of the spool watcher: `assets/remote/watch.sh` on one
//! long-lived exec channel of an account's open session, reporting when the
//! spool (or a claim left on the server) changes, so that mail is fetched
//! within seconds of its delivery instead of at the next poll.
//!
//! The watcher never takes the spool's lock and never reads mail (inotify
//! where the server has `inotifywait`, else an `ls` every poll interval),
//! and it dies with its channel (see the script's header).
//!
//! A libssh2 session is one mutex, and the same session also runs the
//! fetches: so the watcher's channel is only ever read without blocking
//! ([`SpoolWatcher::read_available`]), after poll(2) says the socket has
//! data ([`wait_readable`]) or after any other use of the session (which may
//! have pulled the watcher's lines into libssh2's buffers).

use std::io::Read;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::time::Duration;

use ssh2::Channel;

use crate::engine::ssh::{compact, Connection, RemoteScript, SshError};

/// The script as written, with its comments.
const SCRIPT_SOURCE: &str = include_str!("../../assets/remote/watch.sh");

/// The script as sent: without comments and indentation, cached on the
/// server by its hash (see `engine::ssh`).
pub fn script() -> &'static RemoteScript {
    static COMPACT: OnceLock<RemoteScript> = OnceLock::new();
    COMPACT.get_or_init(|| RemoteScript::new("watch", &compact(SCRIPT_SOURCE)))
}

/// How often the stat loop looks where the server has no inotify: one `ls`
/// and one `sleep` per look (docs/bench-watch.md has the cost).
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// How long the watcher may stay silent before it says `alive`; the client
/// declares the link dead after [`silence_limit`] of it.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);

/// How long the client waits for a word from the watcher (a change or a
/// heartbeat) before it takes the link for dead: two heartbeats and a half.
pub fn silence_limit(heartbeat: Duration) -> Duration {
    heartbeat * 5 / 2
}

/// How the server watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify events (`inotifywait`): a change is seen at once.
    Inotify,
    /// An `ls` of the spool every poll interval.
    Poll,
}

impl WatchMode {
    /// `inotify` or `poll`, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchMode::Inotify => "inotify",
            WatchMode::Poll => "poll",
        }
    }
}

/// One line from the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchReport {
    /// Watching has begun; changes from now on are reported.
    Ready(WatchMode),
    /// The spool's state at a change (or at start).
    Spool {
        /// Bytes in the spool (0: empty or missing).
        bytes: u64,
        /// Finished claims on the server (this login's, any spool).
        claims: u64,
    },
    /// Nothing changed for a heartbeat interval.
    Alive,
    /// Something the watcher did not expect (an `inotifywait` message).
    Note(String),
}

impl WatchReport {
    /// Parses one line of the watcher's output.
    pub fn parse(line: &str) -> WatchReport {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("ready"), Some("inotify"), None, None) => WatchReport::Ready(WatchMode::Inotify),
            (Some("ready"), Some("poll"), None, None) => WatchReport::Ready(WatchMode::Poll),
            (Some("alive"), None, None, None) => WatchReport::Alive,
            (Some("spool"), Some(bytes), Some(claims), None) => {
                match (bytes.parse(), claims.parse()) {
                    (Ok(bytes), Ok(claims)) => WatchReport::Spool { bytes, claims },
                    _ => WatchReport::Note(line.to_string()),
                }
            }
            _ => WatchReport::Note(line.strip_prefix("note ").unwrap_or(line).to_string()),
        }
    }
}

/// Why the watcher stopped reporting.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The watcher's channel ended (the script exited or the server closed it).
    #[error("the spool watcher on {host} ended")]
    Ended {
        /// The server.
        host: String,
    },
    /// Reading the channel failed: the connection is gone.
    #[error("the connection to {host} broke: {source}")]
    Broken {
        /// The server.
        host: String,
        /// What the read said.
        #[source]
        source: std::io::Error,
    },
    /// The channel could not be started.
    #[error(transparent)]
    Ssh(#[from] SshError),
}

/// A running watcher on one channel of a session.
pub struct SpoolWatcher {
    channel: Channel,
    /// Bytes of a line not complete yet.
    partial: Vec<u8>,
}

impl SpoolWatcher {
    /// Starts the watcher for `spool` (an absolute path, as the claim
    /// script's probe resolved it) and the copy-truncate claims in
    /// `claims_dir`, looking every `poll` where there is no inotify and
    /// saying `alive` after `heartbeat` of silence.
    pub fn start(
        conn: &Connection,
        spool: &str,
        claims_dir: &str,
        poll: Duration,
        heartbeat: Duration,
    ) -> Result<SpoolWatcher, WatchError> {
        let poll = poll.as_secs().max(1).to_string();
        let heartbeat = heartbeat.as_secs().max(1).to_string();
        let channel = conn.start_long_script(
            script(),
            &[
                spool.as_bytes(),
                claims_dir.as_bytes(),
                poll.as_bytes(),
                heartbeat.as_bytes(),
            ],
        )?;
        Ok(SpoolWatcher {
            channel,
            partial: Vec::new(),
        })
    }

    /// Every complete line the watcher has sent so far, without blocking.
    /// Call it whenever the session's socket is readable and after every
    /// other use of the session.
    pub fn read_available(&mut self, conn: &Connection) -> Result<Vec<WatchReport>, WatchError> {
        let mut buf = [0u8; 4096];
        let outcome = conn.nonblocking(|| loop {
            match self.channel.read(&mut buf) {
                Ok(0) => {
                    break if self.channel.eof() {
                        Err(WatchError::Ended {
                            host: conn.host().to_string(),
                        })
                    } else {
                        Ok(())
                    }
                }
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(()),
                Err(source) => {
                    break Err(WatchError::Broken {
                        host: conn.host().to_string(),
                        source,
                    })
                }
            }
        });
        let mut reports = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            reports.push(WatchReport::parse(&line));
        }
        outcome.map(|()| reports)
    }

    /// Closes the channel (the watcher sees end-of-file and ends), without
    /// waiting for the server's answer.
    pub fn close(mut self, conn: &Connection) {
        let _ = conn.nonblocking(|| self.channel.close());
    }
}

/// Waits until `socket` has data or `wake` (if any) is readable, at most
/// `timeout`. Returns whether `wake` woke it.
pub fn wait_readable(socket: RawFd, wake: Option<RawFd>, timeout: Duration) -> bool {
    let mut fds = vec![libc::pollfd {
        fd: socket,
        events: libc::POLLIN,
        revents: 0,
    }];
    if let Some(fd) = wake {
        fds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a live array of `fds.len()` pollfd structs; poll only
    // writes their `revents`.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    rc > 0 && fds.get(1).is_some_and(|w| w.revents != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        assert_eq!(
            WatchReport::parse("ready inotify"),
            WatchReport::Ready(WatchMode::Inotify)
        );
        assert_eq!(
            WatchReport::parse("ready poll"),
            WatchReport::Ready(WatchMode::Poll)
        );
        assert_eq!(
            WatchReport::parse("spool 1234 2"),
            WatchReport::Spool {
                bytes: 1234,
                claims: 2
            }
        );
        assert_eq!(WatchReport::parse("alive"), WatchReport::Alive);
        assert_eq!(
            WatchReport::parse("note Couldn't watch /var/mail"),
            WatchReport::Note("Couldn't watch /var/mail".into())
        );
        assert_eq!(
            WatchReport::parse("spool x 1"),
            WatchReport::Note("spool x 1".into())
        );
    }

    /// The script has nothing `compact` would break (here-documents,
    /// quoted strings across lines) and is valid sh.
    #[test]
    fn script_compacts_and_parses() {
        crate::engine::ssh::assert_compacts_and_parses(SCRIPT_SOURCE, &script().text);
    }

    /// A report counts only this login's claims (the tests run as root):
    /// regular files it owns beside the spool and in the claims directory,
    /// not another user's file named like one, nor a symbolic link to one
    /// of ours; both with `test -O` (dash has it) and with the `ls` the
    /// script uses where the shell lacks it. Fails when either check lets
    /// the other user's file through (checked by breaking each).
    #[test]
    fn a_report_counts_only_this_logins_claims() {
        use std::io::{BufRead, BufReader};
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let claims = dir.path().join("claims");
        std::fs::create_dir(&claims).unwrap();
        std::fs::write(&spool, b"From a\n\n").unwrap();
        std::fs::write(dir.path().join("spool.mailhaul-claim.1"), b"x").unwrap();
        std::fs::write(claims.join("a.mbox"), b"x").unwrap();
        let theirs = claims.join("b.mbox");
        std::fs::write(&theirs, b"x").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        std::os::unix::fs::symlink(claims.join("a.mbox"), claims.join("c.mbox")).unwrap();
        let probe = r#"if [ -O / ] 2>/dev/null || [ "$?" = 1 ]; then"#;
        assert!(script().text.contains(probe));
        for (check, text) in [
            ("test -O", script().text.clone()),
            ("ls", script().text.replace(probe, "if false; then")),
        ] {
            // Its own process group, as sshd gives it: it ends by killing it.
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(r#"{ eval "$MH_SCRIPT"; } 3<&0 </dev/null"#)
                .arg("sh")
                .arg(&spool)
                .arg(&claims)
                .arg("1")
                .arg("60")
                .env("MH_SCRIPT", &text)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .process_group(0)
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let report = lines
                .by_ref()
                .map(Result::unwrap)
                .find(|line| line.starts_with("spool "));
            drop(child.stdin.take());
            child.wait().unwrap();
            assert_eq!(report.as_deref(), Some("spool 8 2"), "with {check}");
        }
    }
}
