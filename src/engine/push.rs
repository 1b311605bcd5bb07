//! Push: one account kept connected, its spool watched by
//! `assets/remote/watch.sh` ([`crate::engine::watch`]) on a long-lived
//! channel of that session, and fetched over the very same session (no new
//! handshake) a moment after the watcher reports mail. This is what
//! `mailhaul watch` runs per account, on a thread of its own.
//!
//! Reports debounce: a fetch starts once the watcher has been quiet for
//! [`PushSettings::quiet`], and at the latest [`PushSettings::max_delay`]
//! after the first report, so a burst of deliveries is fetched in a few
//! fetches rather than one per message. A dropped link (the watcher's
//! channel ends, a read fails, or the heartbeat stays away) is reconnected
//! with exponential backoff and jitter. Stopping ([`Stop`]) cancels a fetch
//! in flight at its next safe point (the journal completes it next time).

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::engine::account::{Account, Compression};
use crate::engine::event::{Event, FetchEvent, FetchSummary, Level};
use crate::engine::failure::Failure;
use crate::engine::fetch::{self, FetchError, FetchOptions};
use crate::engine::filing::Destination;
use crate::engine::ssh::Connection;
use crate::engine::watch::{self, wait_readable, SpoolWatcher, WatchMode, WatchReport};

/// Timings of the push loop.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// The watcher's stat-loop interval where the server has no inotify.
    pub poll: Duration,
    /// The watcher's heartbeat; the link counts as dead after
    /// [`watch::silence_limit`] of silence.
    pub heartbeat: Duration,
    /// Quiet period after the latest report before a fetch starts.
    pub quiet: Duration,
    /// Longest wait from the first report to the fetch, however busy the spool.
    pub max_delay: Duration,
    /// First reconnect delay; doubled after every failure.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            poll: watch::DEFAULT_POLL,
            heartbeat: watch::DEFAULT_HEARTBEAT,
            quiet: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// A stop request shared by every push worker: a flag (also the fetches'
/// cancel flag) and a socket pair whose readable end wakes each worker's
/// poll(2) at once.
pub struct Stop {
    flag: Arc<AtomicBool>,
    wake_read: UnixStream,
    wake_write: UnixStream,
}

impl Stop {
    /// A stop not requested yet.
    pub fn new() -> std::io::Result<Stop> {
        let (wake_read, wake_write) = UnixStream::pair()?;
        Ok(Stop {
            flag: Arc::new(AtomicBool::new(false)),
            wake_read,
            wake_write,
        })
    }

    /// Asks every worker to stop (fetches at their next safe point).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // Never read: the end stays readable and wakes every poll.
        use std::io::Write;
        let _ = (&self.wake_write).write(&[1]);
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag, for [`FetchOptions::cancel`].
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    fn wake_fd(&self) -> RawFd {
        self.wake_read.as_raw_fd()
    }

    /// Sleeps `d` unless stopped first; returns whether it was stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        while !self.is_stopped() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fd = libc::pollfd {
                fd: self.wake_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: one live pollfd; poll only writes its `revents`.
            unsafe { libc::poll(&mut fd, 1, millis) };
        }
        true
    }
}

/// How one session ended.
enum SessionEnd {
    /// The link dropped or a step failed in a way a reconnect may cure.
    Lost(String),
    /// A failure no reconnect can cure: the worker ends with it.
    Fatal(FetchError),
}

impl From<FetchError> for SessionEnd {
    fn from(e: FetchError) -> Self {
        if is_permanent(&e) {
            SessionEnd::Fatal(e)
        } else {
            SessionEnd::Lost(e.to_string())
        }
    }
}

impl From<watch::WatchError> for SessionEnd {
    fn from(e: watch::WatchError) -> Self {
        SessionEnd::Lost(e.to_string())
    }
}

/// Failures no reconnect can cure: the worker ends with them.
fn is_permanent(e: &FetchError) -> bool {
    matches!(
        e.failure(),
        Failure::HostKey | Failure::Auth | Failure::Config | Failure::ServerUnsupported
    )
}

/// `d` scaled by a pseudo-random factor in [0.5, 1.0): reconnecting clients
/// do not all come back at the same moment.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let fraction = (h.finish() % 1000) as f64 / 2000.0;
    d.mul_f64(0.5 + fraction)
}

/// Runs the push loop of `account` until `stop`, reporting on `events`;
/// returns early only with a failure no reconnect can cure (host key,
/// authentication, config, a server that cannot be claimed from safely).
pub fn run(
    account: &Account,
    destination: &Destination,
    options: &FetchOptions,
    settings: &PushSettings,
    events: &Sender<Event>,
    stop: &Stop,
) -> Result<(), FetchError> {
    let mut worker = Worker {
        account,
        destination,
        options,
        settings,
        events,
        stop,
        backoff: settings.backoff_min,
    };
    while !stop.is_stopped() {
        match worker.session() {
            Ok(()) => {}
            Err(SessionEnd::Fatal(e)) => {
                worker.log(Level::Error, format!("{e}; giving up on this account"));
                return Err(e);
            }
            Err(SessionEnd::Lost(message)) => worker.log(Level::Warn, message),
        }
        if stop.is_stopped() {
            break;
        }
        let wait = jitter(worker.backoff);
        worker.log(
            Level::Info,
            format!("reconnecting in {:.1} s", wait.as_secs_f64()),
        );
        worker.backoff = (worker.backoff * 2).min(settings.backoff_max);
        if stop.sleep(wait) {
            break;
        }
    }
    worker.log(Level::Info, "stopped".into());
    Ok(())
}

struct Worker<'a> {
    account: &'a Account,
    destination: &'a Destination,
    options: &'a FetchOptions,
    settings: &'a PushSettings,
    events: &'a Sender<Event>,
    stop: &'a Stop,
    backoff: Duration,
}

impl Worker<'_> {
    fn log(&self, level: Level, message: String) {
        let _ = self.events.send(Event::Log {
            level,
            account: Some(self.account.name.clone()),
            message,
        });
    }

    /// One session: connect, watch, fetch on reports; returns when the link
    /// drops (the error says why) or on stop (`Ok`).
    fn session(&mut self) -> Result<(), SessionEnd> {
        let compress = self.account.compression == Compression::Ssh;
        let conn = fetch::connect(self.account, compress, &*self.options.prompter)?;
        let probe = fetch::probe(&conn, self.account)?;
        let claims_dir = format!("{}/.mailhaul/claims", probe.home.trim_end_matches('/'));
        let mut watcher = SpoolWatcher::start(
            &conn,
            &probe.spool,
            &claims_dir,
            self.settings.poll,
            self.settings.heartbeat,
        )?;
        let mut session = Some(conn);
        let result = self.watch(&mut session, &mut watcher);
        if let Some(conn) = &session {
            watcher.close(conn);
        }
        result
    }

    fn watch(
        &mut self,
        session: &mut Option<Connection>,
        watcher: &mut SpoolWatcher,
    ) -> Result<(), SessionEnd> {
        let silence = watch::silence_limit(self.settings.heartbeat);
        let ready_limit = Duration::from_secs(30);
        let started = Instant::now();
        let mut mode: Option<WatchMode> = None;
        let mut last_heard = Instant::now();
        let mut claims_seen = 0u64;
        // (first report, fetch due) of the pending fetch; the first fetch
        // runs once the watcher is ready: mail (or claims) may be waiting.
        let mut pending: Option<(Instant, Instant)> = None;
        let mut retry_delay = self.settings.backoff_min;
        loop {
            let Some(conn) = session.as_ref() else {
                return Err(SessionEnd::Lost("the session was dropped".into()));
            };
            let reports = watcher.read_available(conn)?;
            let now = Instant::now();
            let mut latest: Option<(u64, u64)> = None;
            for report in reports {
                last_heard = now;
                match report {
                    WatchReport::Ready(m) => {
                        mode = Some(m);
                        self.backoff = self.settings.backoff_min;
                        self.log(
                            Level::Info,
                            format!(
                                "connected to {}; watching the spool ({})",
                                conn.host(),
                                m.as_str()
                            ),
                        );
                        pending = Some((now, now));
                    }
                    WatchReport::Spool { bytes, claims } => latest = Some((bytes, claims)),
                    WatchReport::Alive => {}
                    WatchReport::Note(note) => {
                        self.log(Level::Warn, format!("spool watcher: {note}"))
                    }
                }
            }
            if let Some((bytes, claims)) = latest {
                let _ = self.events.send(Event::Fetch {
                    account: self.account.name.clone(),
                    event: FetchEvent::SpoolSize {
                        bytes,
                        messages: None,
                    },
                });
                if bytes > 0 || claims > claims_seen {
                    // Each report moves the fetch to a quiet period later,
                    // never beyond the bound from the first one.
                    let first = pending.map_or(now, |(first, _)| first);
                    let due = (now + self.settings.quiet).min(first + self.settings.max_delay);
                    pending = Some((first, due));
                }
                claims_seen = claims;
            }
            if self.stop.is_stopped() {
                return Ok(());
            }
            if mode.is_none() && started.elapsed() > ready_limit {
                return Err(SessionEnd::Lost(format!(
                    "the spool watcher did not start within {} s",
                    ready_limit.as_secs()
                )));
            }
            if last_heard.elapsed() > silence {
                return Err(SessionEnd::Lost(format!(
                    "no word from the server for {} s: the link is dead",
                    silence.as_secs()
                )));
            }
            if pending.is_some_and(|(_, due)| due <= now) && mode.is_some() {
                pending = None;
                match self.fetch(session) {
                    Ok(_) => retry_delay = self.settings.backoff_min,
                    Err(e) if is_permanent(&e) => return Err(SessionEnd::Fatal(e)),
                    Err(e) => {
                        if session.is_none() {
                            return Err(e.into());
                        }
                        // The spool still holds the mail: try again later
                        // (a busy lock, a full disk), sooner if it changes.
                        let at = Instant::now() + retry_delay;
                        pending = Some((at, at));
                        retry_delay = (retry_delay * 2).min(self.settings.backoff_max);
                    }
                }
                last_heard = Instant::now();
                continue;
            }
            let until_heartbeat = silence.saturating_sub(last_heard.elapsed());
            let until_fetch = pending
                .filter(|_| mode.is_some())
                .map_or(Duration::MAX, |(_, due)| due.saturating_duration_since(now));
            let timeout = until_heartbeat
                .min(until_fetch)
                .max(Duration::from_millis(1));
            wait_readable(conn.raw_fd(), Some(self.stop.wake_fd()), timeout);
        }
    }

    /// One fetch over the open session; a session a fetch failed on is
    /// checked: the watcher's next read says whether it is still alive.
    fn fetch(&self, session: &mut Option<Connection>) -> Result<FetchSummary, FetchError> {
        fetch::fetch_over(
            session,
            self.account,
            self.destination,
            self.options,
            self.events,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(5) && j < Duration::from_secs(10),
                "{j:?}"
            );
        }
    }

    #[test]
    fn stop_wakes_a_sleeper_at_once() {
        let stop = Arc::new(Stop::new().unwrap());
        let sleeper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let start = Instant::now();
                (stop.sleep(Duration::from_secs(60)), start.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        stop.stop();
        let (stopped, took) = sleeper.join().unwrap();
        assert!(stopped);
        assert!(took < Duration::from_secs(30), "{took:?}");
        assert!(stop.is_stopped());
    }
}
