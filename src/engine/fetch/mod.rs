//! The fetch of one account, every step of the protocol in DESIGN.md:
//! connect (host key, auth), recover what earlier runs left (locally staged
//! claims first, then claims still on the server), claim the spool under the
//! delivery agents' dot-lock, stream each claim compressed into a verified,
//! fsynced staging file, release it on the server, deliver it idempotently,
//! and journal each step so that a kill -9 anywhere loses and duplicates
//! nothing (I1, I2). Progress goes out as typed [`FetchEvent`]s on the one
//! event channel; [`spawn`] runs a fetch on its own worker thread.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::engine::account::{Account, Compression, TransportCompression};
use crate::engine::civil::UtcTime;
use crate::engine::claim::{
    self, choose_method, choose_strategy, parse_claims, parse_probe, parse_reply, ClaimReply,
    Method, MethodChoice, Probe, RemoteClaim, ScriptError, StrategyChoice, Unsupported,
};
use crate::engine::deliver::{Filer, SetupError, StableId};
use crate::engine::event::{
    Event, FetchEvent, FetchFailure, FetchSummary, HostKeyInfo, Level, Stage, TransferProgress,
};
use crate::engine::failure::Failure;
use crate::engine::filing::Destination;
use crate::engine::history;
use crate::engine::hook;
use crate::engine::journal::{self, AccountBusy, Journal, JournalClaim, Workspace, WorkspaceError};
use crate::engine::mbox::MboxSplitter;
use crate::engine::pipeline::file_messages;
use crate::engine::ssh::{
    self, Connection, HostKeyDecision, Prompter, SshError, Target, UnknownHost,
};
use crate::engine::transfer::{self, TransferError};

/// How often transfer progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Environment variable naming a point at which the process kills itself
/// with SIGKILL, so that tests can check recovery from a crash at exactly
/// that point: `claimed`, `mid-transfer`, `verified`, `released`,
/// `mid-delivery`.
pub const CRASH_ENV: &str = "MAILHAUL_TEST_CRASH_AT";

/// A fetch failure: what went wrong and where the mail is, with the error
/// that caused it as its source; [`FetchError::failure`] gives its class.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No home directory to keep the data dir in.
    #[error("cannot find the home directory for the data dir")]
    NoDataDir,
    /// Another fetch of this account holds its workspace.
    #[error(transparent)]
    Busy(AccountBusy),
    /// Local I/O failed (data dir, journal, staging).
    #[error("{what}: {source}")]
    Local {
        /// What was being used.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reaching or using the server over SSH failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The server-side script refused or failed.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// The server lacks what a safe claim, or the configured compression, needs.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    /// The filter's rules or folders cannot be used.
    #[error(transparent)]
    Filing(#[from] SetupError),
    /// The server could not send a claim.
    #[error("sending {path} failed on the server: {stderr}")]
    ServerSend {
        /// The claim on the server.
        path: String,
        /// What the server said.
        stderr: String,
    },
    /// The download broke off or did not verify; the claim stays on the server.
    #[error("{source}{server}; the claim stays on the server and is fetched next time")]
    Download {
        /// What the server said, when its side failed too (` (server: ...)`).
        server: String,
        /// Why the download failed.
        #[source]
        source: DownloadError,
    },
    /// Writing the staging file failed; the claim stays on the server.
    #[error("{source}; the claim stays on the server and is fetched next time")]
    Staging {
        /// Why.
        #[source]
        source: TransferError,
    },
    /// Reading a staged claim broke off during delivery.
    #[error("{reason}; the claim is kept in {}", staged.display())]
    ReadStaged {
        /// The staged claim, kept.
        staged: PathBuf,
        /// What the splitter reported.
        reason: String,
    },
    /// Messages could be neither filed nor quarantined.
    #[error(
        "{count} message(s) could be neither filed nor quarantined; the claim is kept in {} \
         and the next fetch delivers them",
        staged.display()
    )]
    Unkept {
        /// How many.
        count: usize,
        /// The staged claim, kept.
        staged: PathBuf,
    },
    /// The fetch ran to its end, but some messages went to the quarantine.
    #[error("{0} message(s) could not be delivered where the rules say; see the log")]
    Undelivered(u64),
    /// The watcher asked the fetch to stop.
    #[error("stopped on request; nothing is lost, the next fetch resumes where this one stopped")]
    Cancelled,
}

/// Why a download failed: the connection broke off, or what arrived is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The stream from the server broke off.
    #[error("the download of {path} from {host} broke off: {source}")]
    BrokeOff {
        /// The claim on the server.
        path: String,
        /// The server.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The stream ended but what arrived does not verify.
    #[error(transparent)]
    Transfer(TransferError),
}

impl FetchError {
    /// The class of this failure.
    pub fn failure(&self) -> Failure {
        match self {
            FetchError::NoDataDir
            | FetchError::Local { .. }
            | FetchError::Staging { .. }
            | FetchError::Cancelled => Failure::Local,
            FetchError::Busy(_) => Failure::LockBusy,
            FetchError::Ssh(e) => e.failure(),
            FetchError::Script(e) => e.failure(),
            FetchError::Unsupported(_) => Failure::ServerUnsupported,
            FetchError::Filing(_) => Failure::Config,
            FetchError::ServerSend { .. } | FetchError::Download { .. } => Failure::Transfer,
            FetchError::ReadStaged { .. }
            | FetchError::Unkept { .. }
            | FetchError::Undelivered(_) => Failure::PartialDelivery,
        }
    }

    fn local(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> FetchError {
        FetchError::Local {
            what: what.to_string(),
            source: Box::new(e),
        }
    }
}

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

/// What `check` (and a dry run) learned about an account's server.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The probe's facts.
    pub probe: Probe,
    /// The claim strategy a fetch would use, or why none is safe.
    pub strategy: Result<StrategyChoice, Unsupported>,
    /// The compression a fetch would use, or why the configured one cannot.
    pub method: Result<MethodChoice, Unsupported>,
    /// Claims left on the server by earlier interrupted runs.
    pub leftovers: Vec<RemoteClaim>,
    /// SSH transport compression negotiated on this connection.
    pub transport_compression: String,
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
    fetch_over(&mut None, account, destination, options, events)
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

fn connect_ssh(
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

/// Runs one command of the claim script and returns its records.
fn script(conn: &Connection, args: &[&[u8]]) -> Result<Vec<(String, String)>, FetchError> {
    let out = conn.run_script(claim::script(), args)?;
    Ok(parse_reply(&out.stdout, out.stderr.as_bytes(), out.status)?)
}

fn spool_arg(account: &Account) -> &[u8] {
    account.spool.as_deref().unwrap_or("").as_bytes()
}

/// Probes the server over an open connection: spool path and size, tools.
/// The dashboard's periodic spool-size check.
pub fn probe(conn: &Connection, account: &Account) -> Result<Probe, FetchError> {
    Ok(parse_probe(&script(
        conn,
        &[b"probe", spool_arg(account)],
    )?)?)
}

/// Probes the server and lists the finished claims earlier runs left there
/// (when it can hash them), in one remote step.
fn survey(conn: &Connection, account: &Account) -> Result<(Probe, ClaimReply), FetchError> {
    let records = script(conn, &[b"survey", spool_arg(account)])?;
    Ok((parse_probe(&records)?, parse_claims(&records)?))
}

/// Probes the server and says what a fetch would do, claiming nothing.
pub fn inspect(conn: &Connection, account: &Account) -> Result<Inspection, FetchError> {
    let (probe, leftovers) = survey(conn, account)?;
    let leftovers = leftovers.claims;
    Ok(Inspection {
        strategy: choose_strategy(&probe, account.claim),
        method: choose_method(&probe, account.compression, account.zstd_level),
        leftovers,
        transport_compression: conn.compression().1,
        probe,
    })
}

/// Kills the process with SIGKILL if the crash-test variable names `point`.
fn crash_point(point: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == point) {
        // SAFETY: raising a signal on our own process has no preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// The state of one fetch in progress.
struct Run<'a> {
    account: &'a Account,
    /// Where the claims' messages are filed.
    destination: &'a Destination,
    options: &'a FetchOptions,
    events: &'a Sender<Event>,
    summary: FetchSummary,
    /// Raw bytes of every claim known to need downloading in this run.
    raw_total: u64,
    /// Raw bytes of claims already downloaded in this run.
    raw_before: u64,
    /// Payload bytes of claims already downloaded in this run.
    payload_before: u64,
    socket_bytes: u64,
    /// Bytes the session had received before this fetch (a reused session).
    socket_base: u64,
}

impl Run<'_> {
    fn emit(&self, event: FetchEvent) {
        let _ = self.events.send(Event::Fetch {
            account: self.account.name.clone(),
            event,
        });
    }

    fn log(&self, level: Level, message: String) {
        let _ = self.events.send(Event::Log {
            level,
            account: Some(self.account.name.clone()),
            message,
        });
    }

    /// Stops here if the watcher asked to stop; every caller sits at a
    /// point a later run resumes from.
    fn check_cancel(&self) -> Result<(), FetchError> {
        if self.options.cancel.load(Ordering::Relaxed) {
            Err(FetchError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Bytes received on `conn` during this fetch.
    fn socket_received(&self, conn: &Connection) -> u64 {
        conn.socket_bytes_received()
            .unwrap_or(0)
            .saturating_sub(self.socket_base)
    }

    fn fetch(&mut self, session: &mut Option<Connection>) -> Result<(), FetchError> {
        self.emit(FetchEvent::Stage(Stage::Connecting));
        let ws = match Workspace::open(&self.options.data_dir, &self.account.name) {
            Ok(ws) => ws,
            Err(WorkspaceError::Busy(b)) => return Err(FetchError::Busy(b)),
            Err(e) => return Err(FetchError::local("data dir", e)),
        };
        let mut journal =
            Journal::open(&ws.journal_path()).map_err(|e| FetchError::local("journal", e))?;
        self.drop_partials(&ws)?;

        // Claims downloaded and released by an earlier run need no server.
        if !self.options.dry_run {
            for c in journal.pending().into_iter().filter(|c| c.released) {
                self.emit(FetchEvent::Stage(Stage::Recovering));
                self.deliver(&ws, &mut journal, &c, true)?;
            }
        }

        self.check_cancel()?;
        let compress_first = self.account.compression == Compression::Ssh;
        let reused = match session {
            Some(conn) => conn,
            None => session.insert(self.connect(compress_first)?),
        };
        self.socket_base = reused.socket_bytes_received().unwrap_or(0);
        let (mut probe, mut leftovers) = survey(reused, self.account)?;
        for name in &leftovers.ignored {
            self.log(
                Level::Warn,
                format!(
                    "ignored {name} on the server: named like a claim, but not a regular file \
                     of {} with one link (another user may have planted it); left alone",
                    probe.user
                ),
            );
        }
        // Later steps send the script gzip-compressed: it is most of the upload.
        reused.set_gzip_scripts(probe.tools.gzip_login);
        if let Some(bytes) = probe.spool_size {
            self.emit(FetchEvent::SpoolSize {
                bytes,
                messages: probe.spool_messages,
            });
        }
        let method = choose_method(&probe, self.account.compression, self.account.zstd_level)?;
        let compressed;
        let conn: &Connection = if method.method.needs_transport_compression() && !compress_first {
            let mut own = self.connect(true)?;
            self.socket_base = 0;
            (probe, leftovers) = survey(&own, self.account)?;
            own.set_gzip_scripts(probe.tools.gzip_login);
            compressed = own;
            &compressed
        } else {
            reused
        };
        self.summary.method = method.method.label();
        let strategy = choose_strategy(&probe, self.account.claim);

        if self.options.dry_run {
            let inspection = inspect(conn, self.account)?;
            self.log(Level::Info, describe(&inspection));
            self.socket_bytes = self.socket_received(conn);
            self.summary.socket_bytes = self.socket_bytes;
            return Ok(());
        }
        let strategy = strategy?;
        self.log(
            Level::Info,
            format!(
                "{}: {} ({}); compression {} ({})",
                probe.spool,
                strategy.strategy.as_str(),
                strategy.reason,
                method.method.label(),
                method.reason
            ),
        );

        // Staged but not yet released: the server copy may still be there.
        // Released now, it is no leftover any more.
        let mut done = std::collections::HashSet::new();
        for c in journal.pending() {
            self.emit(FetchEvent::Stage(Stage::Recovering));
            self.release(conn, &mut journal, &c.remote)?;
            let c = journal.get(&c.id).cloned().expect("just journalled");
            self.deliver(&ws, &mut journal, &c, true)?;
            done.insert(c.remote.path.clone());
        }

        // Claims left on the server by an interrupted run come first.
        self.emit(FetchEvent::Stage(Stage::Recovering));
        let me = journal::installation_id(&self.options.data_dir)
            .map_err(|e| FetchError::local("installation id", e))?;
        leftovers.claims.retain(|c| !done.contains(&c.path));
        let (mine, theirs): (Vec<RemoteClaim>, Vec<RemoteClaim>) = leftovers
            .claims
            .into_iter()
            .partition(|c| self.may_take(c, &me));
        leftovers.claims = mine;
        // Left to the installation that made them; not warned about twice.
        let left: std::collections::HashSet<String> = theirs.into_iter().map(|c| c.path).collect();
        self.raw_total += leftovers.claims.iter().map(|c| c.size).sum::<u64>();
        for c in &leftovers.claims {
            self.log(
                Level::Info,
                format!(
                    "recovering claim {} ({} bytes) left by an earlier run",
                    c.shown(),
                    c.size
                ),
            );
            self.process(conn, &ws, &mut journal, c, method.method)?;
            done.insert(c.path.clone());
        }

        self.check_cancel()?;
        self.emit(FetchEvent::Stage(Stage::Claiming));
        let wait = self.account.lock_timeout.to_string();
        let stale = self.account.stale_lock_time.to_string();
        let reply: ClaimReply = parse_claims(&script(
            conn,
            &[
                b"claim",
                spool_arg(self.account),
                strategy.strategy.as_str().as_bytes(),
                wait.as_bytes(),
                me.as_bytes(),
                stale.as_bytes(),
            ],
        )?)?;
        for note in &reply.stale_locks {
            self.log(
                Level::Warn,
                format!(
                    "removed the stale lock {note} (stale_lock_time = {} s, as Postfix's local does)",
                    self.account.stale_lock_time
                ),
            );
        }
        for note in &reply.repaired {
            self.log(
                Level::Warn,
                format!("repaired an interrupted claim: {note}"),
            );
        }
        crash_point("claimed");
        let fresh: Vec<&RemoteClaim> = reply
            .claims
            .iter()
            .filter(|c| !done.contains(&c.path) && !left.contains(&c.path))
            .filter(|c| self.may_take(c, &me))
            .collect();
        self.raw_total += fresh.iter().map(|c| c.size).sum::<u64>();
        if fresh.is_empty() {
            self.log(Level::Info, "no new mail".into());
        }
        for c in fresh {
            self.process(conn, &ws, &mut journal, c, method.method)?;
        }
        self.summary.socket_bytes = conn
            .socket_bytes_received()
            .map_or(self.socket_bytes, |n| n.saturating_sub(self.socket_base));
        journal
            .compact()
            .map_err(|e| FetchError::local("journal", e))?;
        Ok(())
    }

    /// Whether this run takes claim `c` (made by installation `me` or by
    /// none, or any with `adopt_claims`); says why it leaves one alone.
    fn may_take(&self, c: &RemoteClaim, me: &str) -> bool {
        if self.options.adopt_claims || c.belongs_to(me) {
            return true;
        }
        self.log(
            Level::Warn,
            format!(
                "claim {} ({} bytes) was made by another mailhaul installation ({}) \
                 and is left on the server for it to deliver; if that installation is \
                 gone for good, `mailhaul fetch --adopt-claims` takes it over",
                c.shown(),
                c.size,
                c.owner().unwrap_or_default()
            ),
        );
        false
    }

    /// Connects, telling the watcher about a changed or revoked host key.
    fn connect(&self, compress: bool) -> Result<Connection, FetchError> {
        connect_ssh(self.account, compress, &*self.options.prompter).map_err(|e| {
            let key = match &e {
                SshError::HostKeyChanged(c) => Some(HostKeyInfo {
                    host: c.host.clone(),
                    port: c.port,
                    key_type: c.key_type.clone(),
                    fingerprint: c.got.clone(),
                }),
                SshError::HostKeyRevoked {
                    host,
                    port,
                    fingerprint,
                    ..
                } => Some(HostKeyInfo {
                    host: host.clone(),
                    port: *port,
                    key_type: String::new(),
                    fingerprint: fingerprint.clone(),
                }),
                _ => None,
            };
            if let Some(key) = key {
                self.emit(FetchEvent::HostKeyChanged {
                    key,
                    detail: e.to_string(),
                });
            }
            FetchError::from(e)
        })
    }

    /// Removes downloads cut short by an earlier run (their claims are still
    /// on the server, since nothing is released before it is verified).
    fn drop_partials(&self, ws: &Workspace) -> Result<(), FetchError> {
        let dir = ws.staging_dir();
        let entries = std::fs::read_dir(&dir).map_err(|e| FetchError::local("staging", e))?;
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|x| x == "part") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Download (unless already staged), release, deliver one claim.
    fn process(
        &mut self,
        conn: &Connection,
        ws: &Workspace,
        journal: &mut Journal,
        remote: &RemoteClaim,
        method: Method,
    ) -> Result<(), FetchError> {
        self.check_cancel()?;
        let id = remote.id();
        let staged = ws.staged_path(&id);
        let already = journal
            .get(&id)
            .is_some_and(|c| c.remote.sha256 == remote.sha256)
            && transfer::verify_staged(&staged, remote).unwrap_or(false);
        if !already {
            self.download(conn, ws, remote, method)?;
            journal
                .staged(remote)
                .map_err(|e| FetchError::local("journal", e))?;
            crash_point("verified");
        }
        self.release(conn, journal, remote)?;
        let c = journal.get(&id).cloned().expect("journalled above");
        self.deliver(ws, journal, &c, already)
    }

    fn download(
        &mut self,
        conn: &Connection,
        ws: &Workspace,
        remote: &RemoteClaim,
        method: Method,
    ) -> Result<(), FetchError> {
        self.emit(FetchEvent::Stage(Stage::Transferring));
        let id = remote.id();
        let (name, level) = method.send_args();
        let mut stream = conn.start_script(
            claim::script(),
            &[
                b"send".as_slice(),
                remote.path.as_bytes(),
                name.as_bytes(),
                level.as_bytes(),
            ],
        )?;
        let (raw_before, payload_before, raw_total, socket_base) = (
            self.raw_before,
            self.payload_before,
            self.raw_total,
            self.socket_base,
        );
        let mut halfway_crash = false;
        let mut report = |raw: u64, payload: u64| {
            let progress = TransferProgress {
                raw_done: raw_before + raw,
                raw_total,
                payload_bytes: payload_before + payload,
                socket_bytes: conn
                    .socket_bytes_received()
                    .unwrap_or(0)
                    .saturating_sub(socket_base),
            };
            let _ = self.events.send(Event::Fetch {
                account: self.account.name.clone(),
                event: FetchEvent::Progress(progress),
            });
            if !halfway_crash && raw * 2 >= remote.size && raw < remote.size {
                halfway_crash = true;
                crash_point("mid-transfer");
            }
        };
        let staged = transfer::stage(
            Cancellable {
                inner: &mut stream,
                cancel: &self.options.cancel,
            },
            method,
            remote,
            &ws.partial_path(&id),
            &ws.staged_path(&id),
            // A crash test needs the mid-transfer point reached at any speed.
            if std::env::var_os(CRASH_ENV).is_some() {
                Duration::ZERO
            } else {
                PROGRESS_EVERY
            },
            &mut report,
        );
        // On a stop or a local failure, dropping the channel abandons the
        // rest of the stream; the claim stays on the server.
        if staged.is_err() && self.options.cancel.load(Ordering::Relaxed) {
            let _ = std::fs::remove_file(ws.partial_path(&id));
            return Err(FetchError::Cancelled);
        }
        if let Err(e @ TransferError::Local { .. }) = staged {
            let _ = std::fs::remove_file(ws.partial_path(&id));
            return Err(FetchError::Staging { source: e });
        }
        let status = stream.finish();
        let transferred = match (staged, status) {
            (Ok(t), Ok(s)) if s.success() => t,
            (Ok(_), Ok(s)) => {
                let _ = std::fs::remove_file(ws.staged_path(&id));
                return Err(FetchError::ServerSend {
                    path: remote.shown(),
                    stderr: claim::escape_server_text(s.stderr.trim().as_bytes()),
                });
            }
            (Err(e), status) => {
                let server = match status {
                    Ok(s) if !s.success() => format!(
                        " (server: {})",
                        claim::escape_server_text(s.stderr.trim().as_bytes())
                    ),
                    _ => String::new(),
                };
                let _ = std::fs::remove_file(ws.partial_path(&id));
                let source = match e {
                    TransferError::Io(e) => DownloadError::BrokeOff {
                        path: remote.shown(),
                        host: conn.host().to_string(),
                        source: e,
                    },
                    other => DownloadError::Transfer(other),
                };
                return Err(FetchError::Download { server, source });
            }
            (Ok(_), Err(e)) => return Err(e.into()),
        };
        self.emit(FetchEvent::Stage(Stage::Verifying));
        self.raw_before += transferred.raw;
        self.payload_before += transferred.payload;
        self.summary.raw_bytes += transferred.raw;
        self.summary.payload_bytes += transferred.payload;
        self.socket_bytes = self.socket_received(conn);
        self.summary.socket_bytes = self.socket_bytes;
        Ok(())
    }

    /// Deletes the server copy of a verified, journalled claim.
    fn release(
        &mut self,
        conn: &Connection,
        journal: &mut Journal,
        remote: &RemoteClaim,
    ) -> Result<(), FetchError> {
        let id = remote.id();
        if journal.get(&id).is_some_and(|c| c.released) {
            return Ok(());
        }
        script(conn, &[b"release", remote.path.as_bytes()])?;
        journal
            .released(&id)
            .map_err(|e| FetchError::local("journal", e))?;
        crash_point("released");
        Ok(())
    }

    /// Splits, filters and files a staged claim; names are stable per
    /// (claim, index), so a delivery `resumed` after a crash skips what is
    /// already filed. A claim downloaded in this run was never delivered
    /// (delivery follows its release, and a released claim is not on the
    /// server to be downloaded again): its delivery lists no folder.
    fn deliver(
        &mut self,
        ws: &Workspace,
        journal: &mut Journal,
        c: &JournalClaim,
        resumed: bool,
    ) -> Result<(), FetchError> {
        self.check_cancel()?;
        self.emit(FetchEvent::Stage(Stage::Delivering));
        let staged = ws.staged_path(&c.id);
        let file = std::fs::File::open(&staged)
            .map_err(|e| FetchError::local(&format!("staged claim {}", staged.display()), e))?;
        let stable = StableId {
            time: claim_time(&c.id),
            claim: c.id.clone(),
            resumed,
        };
        let mut filer = Filer::new(
            &self.destination.filter,
            &self.destination.maildir,
            Some(stable),
        )?;
        let events = self.events;
        let account = &self.account.name;
        let mut filed_events = 0u64;
        let report = file_messages(
            MboxSplitter::new(
                std::io::BufReader::new(file),
                self.destination.filter.format,
            ),
            &staged.display().to_string(),
            &mut filer,
            &mut |event| {
                let _ = events.send(Event::Fetch {
                    account: account.clone(),
                    event,
                });
                filed_events += 1;
                if filed_events == 1 {
                    crash_point("mid-delivery");
                }
            },
        );
        self.summary.messages += report.delivered_total();
        for (folder, n) in &report.delivered {
            *self.summary.folders.entry(folder.clone()).or_default() += n;
        }
        self.summary.undelivered += report.undelivered.len() as u64;
        for u in &report.undelivered {
            self.log(Level::Warn, u.to_string());
        }
        if let Some(e) = report.read_error {
            return Err(FetchError::ReadStaged { staged, reason: e });
        }
        // A message neither filed nor quarantined exists only in the staged
        // claim: keep it (and leave the claim undelivered in the journal) so
        // that the next fetch delivers it; stable names skip the rest.
        let unkept = report
            .undelivered
            .iter()
            .filter(|u| u.kept.is_none())
            .count();
        if unkept > 0 {
            return Err(FetchError::Unkept {
                count: unkept,
                staged,
            });
        }
        journal
            .delivered(&c.id, report.messages)
            .map_err(|e| FetchError::local("journal", e))?;
        std::fs::remove_file(&staged).map_err(|e| FetchError::local("staging", e))?;
        Ok(())
    }
}

/// A reader that fails once the fetch is asked to stop, so a long download
/// ends promptly (the claim stays on the server).
struct Cancellable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped on request"));
        }
        self.inner.read(buf)
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

/// A paragraph saying what a fetch of this server would do, and why.
pub fn describe(i: &Inspection) -> String {
    let p = &i.probe;
    let mut lines = vec![match p.spool_size {
        Some(n) => format!(
            "spool {} holds {n} bytes{}",
            p.spool,
            p.spool_messages
                .map(|m| format!(" ({m} message(s))"))
                .unwrap_or_default()
        ),
        None => format!("spool {} does not exist (no mail)", p.spool),
    }];
    lines.push(match &i.strategy {
        Ok(s) => format!("claim: {} — {}", s.strategy.as_str(), s.reason),
        Err(e) => format!("claim: impossible — {e}"),
    });
    lines.push(match &i.method {
        Ok(m) => format!("compression: {} — {}", m.method.label(), m.reason),
        Err(e) => format!("compression: impossible — {e}"),
    });
    lines.push(format!(
        "SSH transport compression on this connection: {}",
        i.transport_compression
    ));
    if !i.leftovers.is_empty() {
        let bytes: u64 = i.leftovers.iter().map(|c| c.size).sum();
        lines.push(format!(
            "{} claim(s) left by earlier runs ({bytes} bytes) will be fetched first",
            i.leftovers.len()
        ));
    }
    lines.join("\n")
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
