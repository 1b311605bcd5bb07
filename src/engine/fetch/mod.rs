//! The fetch of one account, every step of the protocol
//! (docs/design.md):
//! connect (host key, auth), recover what earlier runs left (locally staged
//! claims first, then claims still on the server), claim the spool under the
//! delivery agents' dot-lock, stream each claim compressed into a verified,
//! fsynced staging file, deliver it idempotently, release it on the server,
//! and journal each step so that a kill -9 anywhere loses and duplicates
//! nothing (durable-before-release, exactly-once). Progress goes out as typed [`FetchEvent`]s on the one
//! event channel; [`spawn`] runs a fetch on its own worker thread.

pub mod dictionary;
mod error;
mod facts;
mod inspect;
pub mod link;
mod prefile;
mod run;

pub use error::{DownloadError, FetchError};
pub use inspect::{describe, inspect, keep_ready, probe, Inspection};
use inspect::{script, script_on, spool_arg, survey, survey_records};
use run::Run;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::engine::account::{Account, TransportCompression};
use crate::engine::civil::UtcTime;
use crate::engine::event::{Event, FetchEvent, FetchFailure, FetchSummary, HostKeyInfo, Level};
use crate::engine::filing::Destination;
use crate::engine::history;
use crate::engine::hook;
use crate::engine::journal::Workspace;
use crate::engine::ssh::{
    self, Connection, HostKeyDecision, Prompter, SshError, Target, UnknownHost,
};

/// Replaces `path` whole with `bytes` through a temporary file beside it,
/// mode 0600 (local files are private): the account's kept server facts,
/// its dictionary and the dictionary's state, the link rate. Not synced:
/// each of them is checked when read (a key, a sha256, a parse) and made
/// again when it is missing or wrong, and none of them holds mail.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?
        .write_all(bytes)?;
    std::fs::rename(tmp, path)
}

/// Environment variable naming a point at which the process kills itself
/// with SIGKILL, so that tests can check recovery from a crash at exactly
/// that point: `claimed`, `mid-transfer`, `verified`, `mid-delivery`,
/// `delivered`, `release-sent` (journalled, not yet sent), `released`.
pub const CRASH_ENV: &str = "MAILHAUL_TEST_CRASH_AT";

/// What a fetch needs besides the account and config.
#[derive(Clone)]
pub struct FetchOptions {
    /// Connect, probe and report what would happen; claim nothing.
    pub dry_run: bool,
    /// Where journals, staging files and the history live
    /// ([`Workspace::default_data_dir`] normally).
    pub data_dir: PathBuf,
    /// Who answers unknown host keys and passphrase questions.
    pub prompter: Arc<dyn Prompter + Send + Sync>,
    /// Set to stop the fetch at the next safe point (between steps, or
    /// mid-transfer: the claim stays on the server, the journal resumes).
    pub cancel: Arc<AtomicBool>,
    /// Also take claims another installation made and left on the server
    /// (see [`journal::installation_id`]); for when that machine is gone.
    pub adopt_claims: bool,
}

impl FetchOptions {
    /// Options for a headless run: data in the XDG data dir, no prompts.
    pub fn headless(dry_run: bool) -> Result<FetchOptions, FetchError> {
        let data_dir = Workspace::default_data_dir().ok_or(FetchError::NoDataDir)?;
        Ok(FetchOptions {
            dry_run,
            data_dir,
            adopt_claims: false,
            prompter: Arc::new(ssh::NoPrompts),
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// How long an [`EventPrompter`] waits for the user's answer before it
/// refuses the key (the fetch then fails as with a refused key).
pub const HOST_KEY_ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// A [`Prompter`] for the dashboard: an unknown host key is reported as a
/// [`FetchEvent::HostKeyUnknown`] event and the fetch waits for the user's
/// answer on `answers` (`true`: record the key and go on). Encrypted keys
/// without `passphrase_command` are skipped.
pub struct EventPrompter {
    account: String,
    events: Sender<Event>,
    answers: Receiver<bool>,
}

impl EventPrompter {
    /// A prompter for `account` reporting on `events`; send the answer on the
    /// sender paired with `answers` (dropping it refuses).
    pub fn new(account: &str, events: Sender<Event>, answers: Receiver<bool>) -> EventPrompter {
        EventPrompter {
            account: account.to_string(),
            events,
            answers,
        }
    }
}

impl Prompter for EventPrompter {
    fn unknown_host(&self, host: &UnknownHost) -> HostKeyDecision {
        // An answer to an earlier question that came too late is no answer
        // to this one.
        while self.answers.try_recv().is_ok() {}
        let asked = self.events.send(Event::Fetch {
            account: self.account.clone(),
            event: FetchEvent::HostKeyUnknown(HostKeyInfo {
                host: host.host.clone(),
                port: host.port,
                key_type: host.key_type.clone(),
                fingerprint: host.fingerprint.clone(),
            }),
        });
        let answer = asked
            .ok()
            .and_then(|()| self.answers.recv_timeout(HOST_KEY_ANSWER_TIMEOUT).ok());
        match answer {
            Some(true) => HostKeyDecision::AcceptAndRecord,
            _ => HostKeyDecision::Refuse,
        }
    }
}

/// Runs the fetch of `account` on a new worker thread, filing into
/// `destination`, reporting on `events` (a [`FetchEvent::Ended`] always
/// ends it).
pub fn spawn(
    account: Account,
    destination: Destination,
    options: FetchOptions,
    events: Sender<Event>,
) -> JoinHandle<Result<FetchSummary, FetchError>> {
    std::thread::Builder::new()
        .name(format!("fetch {}", account.name))
        .spawn(move || fetch(&account, &destination, &options, &events))
        .expect("spawn a fetch thread")
}

/// Fetches one account, filing into `destination`, reporting on `events`;
/// the result is also sent as the last event, [`FetchEvent::Ended`].
pub fn fetch(
    account: &Account,
    destination: &Destination,
    options: &FetchOptions,
    events: &Sender<Event>,
) -> Result<FetchSummary, FetchError> {
    fetch_then(&mut None, account, destination, options, events, true)
}

/// [`fetch`] over the open session in `session` (no new handshake), or over
/// a new one left there for the next fetch. The caller drops a session that
/// failed (a fetch failing on it may mean it is dead). A fetch that needs
/// SSH transport compression the session lacks opens its own connection.
pub fn fetch_over(
    session: &mut Option<Connection>,
    account: &Account,
    destination: &Destination,
    options: &FetchOptions,
    events: &Sender<Event>,
) -> Result<FetchSummary, FetchError> {
    fetch_then(session, account, destination, options, events, false)
}

/// [`fetch_over`]; `closes_after`: the session is dropped after this fetch
/// (its last release then goes without waiting for the answer).
fn fetch_then(
    session: &mut Option<Connection>,
    account: &Account,
    destination: &Destination,
    options: &FetchOptions,
    events: &Sender<Event>,
    closes_after: bool,
) -> Result<FetchSummary, FetchError> {
    let started = Instant::now();
    let mut run = Run {
        account,
        destination,
        options,
        events,
        summary: FetchSummary::default(),
        raw_total: 0,
        raw_before: 0,
        payload_before: 0,
        socket_bytes: 0,
        socket_base: 0,
        dictionary: Default::default(),
        closes_after,
        spool: String::new(),
    };
    let result = run.fetch(session);
    run.summary.elapsed = started.elapsed();
    // A failed fetch that still moved mail is in the history too.
    let moved = run.summary.messages > 0 || run.summary.raw_bytes > 0;
    if !options.dry_run && (result.is_ok() || moved) {
        let path = options.data_dir.join(history::FILE_NAME);
        if let Err(e) = history::append(&path, &account.name, &run.summary) {
            run.log(
                Level::Warn,
                format!("cannot append to {}: {e}", path.display()),
            );
        }
    }
    // The new-mail hook, on its own thread: it never delays or fails a fetch.
    if let Some(argv) = &account.on_new_mail {
        if run.summary.messages > 0 && !options.dry_run {
            hook::spawn(
                argv.get_ref(),
                &account.name,
                &run.summary,
                hook::HOOK_TIMEOUT,
                events.clone(),
            );
        }
    }
    let result = match result {
        Ok(()) if run.summary.undelivered > 0 => Err((
            Some(run.summary.clone()),
            FetchError::Undelivered(run.summary.undelivered),
        )),
        Ok(()) => Ok(run.summary.clone()),
        Err(e) => Err((None, e)),
    };
    match result {
        Ok(summary) => {
            run.emit(FetchEvent::Ended {
                summary: Some(summary.clone()),
                failure: None,
            });
            Ok(summary)
        }
        Err((summary, e)) => {
            run.emit(FetchEvent::Ended {
                summary,
                failure: Some(FetchFailure {
                    class: e.failure(),
                    message: e.to_string(),
                }),
            });
            Err(e)
        }
    }
}

/// Opens a connection for `account` (host key check, authentication).
pub fn connect(
    account: &Account,
    compress: bool,
    prompter: &dyn Prompter,
) -> Result<Connection, FetchError> {
    Ok(connect_ssh(account, compress, prompter)?)
}

pub(super) fn connect_ssh(
    account: &Account,
    compress: bool,
    prompter: &dyn Prompter,
) -> Result<Connection, SshError> {
    let target = Target::resolve_with_user_config(account)?;
    // What the fetch sends up is small (scripts); the download is compressed
    // by the server. Upstream's Huffman-only coding is enough for the former.
    let compression = if compress {
        TransportCompression::Huffman
    } else {
        TransportCompression::Off
    };
    let mut conn = ssh::connect(&target, compression, prompter)?;
    // The claim may wait on a busy lock for lock_timeout seconds in silence.
    conn.set_idle_timeout(
        ssh::DEFAULT_IDLE_TIMEOUT.max(Duration::from_secs(account.lock_timeout.saturating_add(60))),
    );
    Ok(conn)
}

/// Kills the process with SIGKILL if the crash-test variable names `point`.
pub(super) fn crash_point(point: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == point) {
        // SAFETY: raising a signal on our own process has no preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// The claim's time from its id (`YYYYmmddTHHMMSS-PID-RANDOM`), in seconds
/// since the epoch; 0 when the id has another shape.
pub fn claim_time(id: &str) -> u64 {
    let digits = |r: std::ops::Range<usize>| id.get(r).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = (
        digits(0..4),
        digits(4..6),
        digits(6..8),
        digits(9..11),
        digits(11..13),
        digits(13..15),
    ) else {
        return 0;
    };
    if id.as_bytes().get(8) != Some(&b'T') {
        return 0;
    }
    let t = UtcTime {
        year: y,
        month: mo as u32,
        day: d as u32,
        hour: h as u32,
        minute: mi as u32,
        second: s as u32,
        weekday: 0,
    };
    u64::try_from(t.to_unix()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_time_reads_the_id() {
        assert_eq!(claim_time("19700101T000000-1-2"), 0);
        assert_eq!(claim_time("20261231T235959-77-123"), 1_798_761_599);
        assert_eq!(claim_time("garbage"), 0);
    }
}
